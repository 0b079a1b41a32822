// The sign library against a real Airlock started in-process: signatures it writes verify, and every
// kind of bad signature in the list is rejected with its own message.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { RegistryClient } from '../../src/client/index.js';
import { digestOf, MediaType, parseReference, type Digest, type Reference } from '../../src/oci/index.js';
import {
  CosignAnnotation,
  CosignMediaType,
  generateKeyPair,
  loadPrivateKey,
  loadPublicKeys,
  signatureTag,
  signImage,
  SignError,
  verifyImage,
  type PublicKey,
  type SigningKey,
  type VerifyImageOptions,
} from '../../src/sign/index.js';
import { startTestRegistry, type TestRegistry } from '../helpers/in-process.js';
import { image, index } from '../helpers/oci-fixtures.js';
import { sign as nodeSign } from 'node:crypto';

const FAST = { scrypt: { N: 1024, r: 8, p: 1 } };

let registry: TestRegistry;
let client: RegistryClient;
let host: string;
let key: SigningKey;
let keys: PublicKey[];
let otherKey: SigningKey;
let otherKeys: PublicKey[];

async function newKey(): Promise<[SigningKey, PublicKey[]]> {
  const pair = await generateKeyPair('pw', FAST);
  return [await loadPrivateKey(pair.privatePem, 'pw'), loadPublicKeys(pair.publicPem)];
}

async function pushBytes(repository: string, bytes: Buffer): Promise<Digest> {
  const digest = digestOf(bytes);
  await client.pushBlob(repository, { digest, size: bytes.length, open: () => Readable.from([bytes]) });
  return digest;
}

let counter = 0;
/** A fresh image in its own repository (or `repository`), returned as a tag reference. */
async function pushImage(repository = `sign/app-${++counter}`): Promise<{ ref: Reference; digest: Digest }> {
  const img = image();
  for (const blob of [img.config, ...img.layers]) await pushBytes(repository, blob.bytes);
  await client.putManifest(repository, 'v1', { bytes: img.manifest, mediaType: img.mediaType });
  return { ref: parseReference(`${host}/${repository}:v1`), digest: img.digest };
}

/** Writes `layers` as the `.sig` manifest of `digest` (for crafting bad signatures). */
async function putSigManifest(ref: Reference, digest: Digest, layers: unknown[]): Promise<void> {
  const config = Buffer.from('{}');
  const body = {
    schemaVersion: 2,
    mediaType: MediaType.OciManifest,
    config: { mediaType: MediaType.OciConfig, digest: await pushBytes(ref.repository, config), size: 2 },
    layers,
  };
  await client.putManifest(ref.repository, signatureTag(digest), {
    bytes: Buffer.from(JSON.stringify(body)),
    mediaType: MediaType.OciManifest,
  });
}

interface Layer {
  mediaType: string;
  digest: Digest;
  size: number;
  annotations: Record<string, string>;
}

/** The layers of a `.sig` manifest (at least one, or the test fails). */
async function sigLayers(ref: Reference, digest: Digest): Promise<[Layer, ...Layer[]]> {
  const sig = await client.getManifest(ref.repository, signatureTag(digest));
  const layers = (JSON.parse(sig.bytes.toString()) as { layers: Layer[] }).layers;
  assert.ok(layers[0], 'the .sig manifest has layers');
  return layers as [Layer, ...Layer[]];
}

async function rejects(ref: Reference, options: Partial<VerifyImageOptions>, code: string, pattern: RegExp) {
  await assert.rejects(verifyImage(client, ref, { keys, ...options }), (error: unknown) => {
    assert.ok(error instanceof SignError, String(error));
    assert.equal(error.code, code);
    assert.match(error.message, pattern);
    return true;
  });
}

before(async () => {
  registry = await startTestRegistry();
  host = new URL(registry.url).host;
  client = new RegistryClient(host);
  [key, keys] = await newKey();
  [otherKey, otherKeys] = await newKey();
});
after(async () => {
  client.close();
  await registry.dispose();
});

describe('signImage and verifyImage', () => {
  it("signs a tag's digest into the .sig tag and verifies it with its claims", async () => {
    const { ref, digest } = await pushImage();
    const [signed] = await signImage(client, ref, { key, annotations: { env: 'prod' } });
    assert.equal(signed?.digest, digest);
    assert.equal(signed?.signatureTag, `sha256-${digest.slice(7)}.sig`);
    const layers = await sigLayers(ref, digest);
    assert.equal(layers.length, 1);
    assert.equal(layers[0].mediaType, CosignMediaType.SimpleSigning);
    const result = await verifyImage(client, ref, { keys });
    assert.equal(result.digest, digest);
    assert.equal(result.signatures.length, 1);
    assert.deepEqual(result.signatures[0]?.annotations, { env: 'prod' });
    assert.equal(result.signatures[0]?.dockerReference, `${host}/${ref.repository}`);
    assert.equal(result.signatures[0]?.keyId, keys[0]?.id);
    // By digest too.
    const byDigest = await verifyImage(client, { ...ref, digest }, { keys });
    assert.equal(byDigest.signatures.length, 1);
  });

  it('appends signatures from other keys and does not store the same one twice', async () => {
    const { ref, digest } = await pushImage();
    await signImage(client, ref, { key });
    const [again] = await signImage(client, ref, { key });
    assert.equal(again?.added, false);
    await signImage(client, ref, { key: otherKey });
    assert.equal((await sigLayers(ref, digest)).length, 2);
    assert.equal((await verifyImage(client, ref, { keys: otherKeys })).signatures.length, 1);
    assert.equal((await verifyImage(client, ref, { keys: [...keys, ...otherKeys] })).signatures.length, 2);
  });

  it('signs an index, and with recursive each manifest it lists', async () => {
    const repository = `sign/index-${++counter}`;
    const children = [image(), image()];
    for (const child of children) {
      for (const blob of [child.config, ...child.layers]) await pushBytes(repository, blob.bytes);
      await client.putManifest(repository, child.digest, {
        bytes: child.manifest,
        mediaType: child.mediaType,
      });
    }
    const idx = index(children);
    await client.putManifest(repository, 'v1', { bytes: idx.manifest, mediaType: idx.mediaType });
    const ref = parseReference(`${host}/${repository}:v1`);
    assert.equal((await signImage(client, ref, { key })).length, 1);
    await rejects({ ...ref, digest: children[0]!.digest }, {}, 'NO_SIGNATURES', /^no signatures found$/);
    const signed = await signImage(client, ref, { key: otherKey, recursive: true });
    assert.deepEqual(
      signed.map((s) => s.digest),
      [idx.digest, ...children.map((c) => c.digest)],
    );
    for (const child of children) {
      const result = await verifyImage(client, { ...ref, digest: child.digest }, { keys: otherKeys });
      assert.equal(result.signatures.length, 1);
    }
  });

  it('accepts a signature when any of several keys matches', async () => {
    const { ref } = await pushImage();
    await signImage(client, ref, { key: otherKey });
    const result = await verifyImage(client, ref, { keys: [...keys, ...otherKeys] });
    assert.equal(result.signatures[0]?.keyId, otherKeys[0]?.id);
  });
});

describe('verifyImage rejects bad signatures with a specific message', () => {
  it('an unsigned image: no signatures found', async () => {
    const { ref } = await pushImage();
    await rejects(ref, {}, 'NO_SIGNATURES', /^no signatures found$/);
  });

  it('a wrong key', async () => {
    const { ref } = await pushImage();
    await signImage(client, ref, { key: otherKey });
    await rejects(
      ref,
      {},
      'NO_MATCHING_SIGNATURES',
      /^no matching signatures: .*\.sig layer 1: the signature does not verify with the key$/,
    );
  });

  it('a tampered payload', async () => {
    const { ref, digest } = await pushImage();
    await signImage(client, ref, { key, annotations: { env: 'dev' } });
    const [layer] = await sigLayers(ref, digest);
    const payload = await client.getBlobBytes(ref.repository, layer.digest, 1 << 20);
    const tampered = Buffer.from(payload.toString().replace('"dev"', '"prd"'));
    const tamperedDigest = await pushBytes(ref.repository, tampered);
    await putSigManifest(ref, digest, [{ ...layer, digest: tamperedDigest, size: tampered.length }]);
    await rejects(ref, {}, 'NO_MATCHING_SIGNATURES', /the signature does not verify with the key/);
  });

  it('a signature made for another digest', async () => {
    const a = await pushImage();
    const b = await pushImage(a.ref.repository.replace(/-\d+$/, `-${++counter}`));
    await signImage(client, a.ref, { key });
    const layers = await sigLayers(a.ref, a.digest);
    // Same repository name is not needed for the digest check: copy A's layer into B's .sig.
    await pushBytes(b.ref.repository, await client.getBlobBytes(a.ref.repository, layers[0].digest, 1 << 20));
    await putSigManifest(b.ref, b.digest, layers);
    await rejects(
      b.ref,
      { checkReference: false },
      'NO_MATCHING_SIGNATURES',
      new RegExp(`it signs digest "${a.digest}", not "${b.digest}"`),
    );
  });

  const signatureCases: Array<[string, (sig: Buffer) => string, RegExp]> = [
    [
      'truncated',
      (sig) => sig.subarray(0, sig.length - 5).toString('base64'),
      /the signature is not a DER-encoded ECDSA signature/,
    ],
    [
      'not DER (raw r||s)',
      () => randomBytes(64).toString('base64'),
      /the signature is not a DER-encoded ECDSA signature/,
    ],
    ['not base64', () => '%%%', /the signature is not base64/],
  ];
  for (const [name, change, pattern] of signatureCases) {
    it(`a signature that is ${name}`, async () => {
      const { ref, digest } = await pushImage();
      await signImage(client, ref, { key });
      const [layer] = await sigLayers(ref, digest);
      const sig = Buffer.from(layer.annotations[CosignAnnotation.Signature] ?? '', 'base64');
      await putSigManifest(ref, digest, [
        { ...layer, annotations: { [CosignAnnotation.Signature]: change(sig) } },
      ]);
      await rejects(ref, {}, 'NO_MATCHING_SIGNATURES', pattern);
    });
  }

  it('malformed .sig manifests', async () => {
    const { ref, digest } = await pushImage();
    await signImage(client, ref, { key });
    const [layer] = await sigLayers(ref, digest);
    await putSigManifest(ref, digest, []);
    await rejects(
      ref,
      {},
      'NO_MATCHING_SIGNATURES',
      /signature manifest ".*\.sig" is malformed: it has no layers/,
    );
    await putSigManifest(ref, digest, [{ ...layer, mediaType: 'application/octet-stream' }]);
    await rejects(
      ref,
      {},
      'NO_MATCHING_SIGNATURES',
      /layer 1: media type "application\/octet-stream" is not "application\/vnd.dev.cosign.simplesigning.v1\+json"/,
    );
    await putSigManifest(ref, digest, [{ ...layer, annotations: {} }]);
    await rejects(
      ref,
      {},
      'NO_MATCHING_SIGNATURES',
      /layer 1: no "dev.cosignproject.cosign\/signature" annotation/,
    );
    const idx = index([]);
    await client.putManifest(ref.repository, signatureTag(digest), {
      bytes: idx.manifest,
      mediaType: idx.mediaType,
    });
    await rejects(ref, {}, 'NO_MATCHING_SIGNATURES', /is malformed: it is an index, not an image manifest/);
    await assert.rejects(
      signImage(client, ref, { key }),
      /Cannot add to the signature manifest ".*\.sig": it is an index, not an image manifest \(delete the tag to start over\)/,
    );
  });

  it('a signature tag pointing at a huge blob, judged by its size before reading it', async () => {
    const { ref, digest } = await pushImage();
    await signImage(client, ref, { key });
    const [layer] = await sigLayers(ref, digest);
    const huge = randomBytes(2 * 1024 * 1024);
    const hugeDigest = await pushBytes(ref.repository, huge);
    await putSigManifest(ref, digest, [{ ...layer, digest: hugeDigest, size: huge.length }]);
    await rejects(
      ref,
      {},
      'NO_MATCHING_SIGNATURES',
      /the payload is 2097152 bytes, more than the 1048576 allowed/,
    );
    await rejects(ref, { maxSignatureBytes: 16 }, 'NO_MATCHING_SIGNATURES', /more than the 16 allowed/);
  });

  it('a signature copied from another repository, unless the reference check is off', async () => {
    const { ref, digest } = await pushImage();
    await signImage(client, ref, { key });
    const copy = parseReference(`${host}/sign/copy-${++counter}:v1`);
    const source = await client.getManifest(ref.repository, digest);
    const manifest = JSON.parse(source.bytes.toString()) as { config: Layer; layers: Layer[] };
    for (const d of [manifest.config, ...manifest.layers])
      await pushBytes(copy.repository, await client.getBlobBytes(ref.repository, d.digest, 1 << 20));
    await client.putManifest(copy.repository, 'v1', { bytes: source.bytes, mediaType: source.mediaType });
    const layers = await sigLayers(ref, digest);
    await pushBytes(copy.repository, await client.getBlobBytes(ref.repository, layers[0].digest, 1 << 20));
    await putSigManifest(copy, digest, layers);
    await rejects(
      copy,
      {},
      'NO_MATCHING_SIGNATURES',
      new RegExp(`it names repository "${host}/${ref.repository}", not "${host}/${copy.repository}"`),
    );
    assert.equal((await verifyImage(client, copy, { keys, checkReference: false })).signatures.length, 1);
  });
});

describe('verifyImage reads sigstore bundles attached as referrers', () => {
  function dsseBundle(statement: unknown, signer: SigningKey = key): Buffer {
    const payload = Buffer.from(JSON.stringify(statement));
    const type = 'application/vnd.in-toto+json';
    const pae = Buffer.concat([Buffer.from(`DSSEv1 ${type.length} ${type} ${payload.length} `), payload]);
    const sig = nodeSign('sha256', pae, { key: signer.privateKey, dsaEncoding: 'der' }).toString('base64');
    return Buffer.from(
      JSON.stringify({
        mediaType: CosignMediaType.BundleV03,
        verificationMaterial: { publicKey: { hint: '' } },
        dsseEnvelope: { payload: payload.toString('base64'), payloadType: type, signatures: [{ sig }] },
      }),
    );
  }

  function statement(digest: Digest, predicateType = 'https://sigstore.dev/cosign/sign/v1'): unknown {
    return {
      _type: 'https://in-toto.io/Statement/v1',
      subject: [{ digest: { sha256: digest.slice(7) }, annotations: {} }],
      predicateType,
      predicate: {},
    };
  }

  async function attach(ref: Reference, digest: Digest, bundle: Buffer): Promise<void> {
    const empty = Buffer.from('{}');
    const body = {
      schemaVersion: 2,
      mediaType: MediaType.OciManifest,
      artifactType: CosignMediaType.BundleV03,
      config: { mediaType: MediaType.OciEmpty, digest: await pushBytes(ref.repository, empty), size: 2 },
      layers: [
        {
          mediaType: CosignMediaType.BundleV03,
          digest: await pushBytes(ref.repository, bundle),
          size: bundle.length,
        },
      ],
      subject: { mediaType: MediaType.OciManifest, digest, size: 1 },
    };
    const bytes = Buffer.from(JSON.stringify(body));
    await client.putManifest(ref.repository, digestOf(bytes), { bytes, mediaType: MediaType.OciManifest });
  }

  it('accepts a key-signed DSSE bundle (what cosign v3 writes)', async () => {
    const { ref, digest } = await pushImage();
    await attach(ref, digest, dsseBundle(statement(digest)));
    const result = await verifyImage(client, ref, { keys });
    assert.equal(result.signatures[0]?.format, 'bundle-dsse');
    assert.equal(result.signatures[0]?.source, 'referrer');
  });

  it('accepts a message-signature bundle over the manifest', async () => {
    const { ref, digest } = await pushImage();
    const manifest = (await client.getManifest(ref.repository, digest)).bytes;
    const bundle = Buffer.from(
      JSON.stringify({
        mediaType: CosignMediaType.BundleV03,
        messageSignature: {
          messageDigest: {
            algorithm: 'SHA2_256',
            digest: Buffer.from(digest.slice(7), 'hex').toString('base64'),
          },
          signature: nodeSign('sha256', manifest, { key: key.privateKey, dsaEncoding: 'der' }).toString(
            'base64',
          ),
        },
      }),
    );
    await attach(ref, digest, bundle);
    assert.equal(
      (await verifyImage(client, ref, { keys })).signatures[0]?.format,
      'bundle-message-signature',
    );
  });

  it('rejects bundles with a wrong key, another digest or an attestation instead of a signature', async () => {
    const { ref, digest } = await pushImage();
    const other = await pushImage();
    await attach(ref, digest, dsseBundle(statement(digest), otherKey));
    await rejects(
      ref,
      {},
      'NO_MATCHING_SIGNATURES',
      /sigstore bundle sha256:[0-9a-f]+: the signature does not verify with the key/,
    );
    await attach(ref, digest, dsseBundle(statement(other.digest)));
    await rejects(ref, {}, 'NO_MATCHING_SIGNATURES', new RegExp(`it signs ${other.digest}, not "${digest}"`));
    await attach(ref, digest, dsseBundle(statement(digest, 'https://slsa.dev/provenance/v1')));
    await rejects(
      ref,
      {},
      'NO_MATCHING_SIGNATURES',
      /attestation of predicate type "https:\/\/slsa.dev\/provenance\/v1", not a cosign signature/,
    );
  });
});
