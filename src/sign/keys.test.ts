import assert from 'node:assert/strict';
import { generateKeyPairSync, sign, verify } from 'node:crypto';
import { describe, it } from 'node:test';
import { SignError } from './errors.js';
import {
  COSIGN_PRIVATE_KEY_LABEL,
  generateKeyPair,
  loadPrivateKey,
  loadPublicKeys,
  publicKeyOf,
} from './keys.js';
import { decodePem, encodePem } from './pem.js';

// Low scrypt cost keeps the tests fast; the cost is read from each file, as cosign does.
const FAST = { scrypt: { N: 1024, r: 8, p: 1 } };

async function rejectsWith(promise: Promise<unknown>, code: string, pattern: RegExp): Promise<void> {
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(error instanceof SignError, String(error));
    assert.equal(error.code, code);
    assert.match(error.message, pattern);
    return true;
  });
}

interface Envelope {
  kdf: { name: string; params: { N: number; r: number; p: number }; salt: string };
  cipher: { name: string; nonce: string };
  ciphertext: string;
}

function envelopeOf(pem: string): Envelope {
  return JSON.parse((decodePem(pem)[0]?.der ?? Buffer.alloc(0)).toString('utf8')) as Envelope;
}

function withEnvelope(pem: string, change: (e: Envelope) => void): string {
  const envelope = envelopeOf(pem);
  change(envelope);
  return encodePem('ENCRYPTED SIGSTORE PRIVATE KEY', Buffer.from(JSON.stringify(envelope)));
}

describe('generateKeyPair', () => {
  it('writes cosign formats: a scrypt + nacl/secretbox envelope and a PKIX public key', async () => {
    const pair = await generateKeyPair('secret', FAST);
    assert.match(pair.privatePem, /^-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\n/);
    assert.match(pair.publicPem, /^-----BEGIN PUBLIC KEY-----\n/);
    const envelope = envelopeOf(pair.privatePem);
    assert.equal(envelope.kdf.name, 'scrypt');
    assert.deepEqual(envelope.kdf.params, { N: 1024, r: 8, p: 1 });
    assert.equal(Buffer.from(envelope.kdf.salt, 'base64').length, 32);
    assert.equal(envelope.cipher.name, 'nacl/secretbox');
    assert.equal(Buffer.from(envelope.cipher.nonce, 'base64').length, 24);
  });

  it("uses cosign's default scrypt cost unless told otherwise", async () => {
    const pair = await generateKeyPair('');
    assert.deepEqual(envelopeOf(pair.privatePem).kdf.params, { N: 65536, r: 8, p: 1 });
  });

  it('round-trips: the private key signs what the public key verifies', async () => {
    const pair = await generateKeyPair('pw', FAST);
    const key = await loadPrivateKey(pair.privatePem, 'pw');
    assert.equal(key.privateKey.asymmetricKeyDetails?.namedCurve, 'prime256v1');
    const [pub] = loadPublicKeys(pair.publicPem);
    assert.ok(pub);
    assert.equal(pub.id, publicKeyOf(key).id);
    const sig = sign('sha256', Buffer.from('x'), key.privateKey);
    assert.ok(verify('sha256', Buffer.from('x'), pub.key, sig));
  });
});

describe('loadPrivateKey', () => {
  it('reads the older "ENCRYPTED COSIGN PRIVATE KEY" label', async () => {
    const pair = await generateKeyPair('pw', FAST);
    const old = pair.privatePem.replaceAll('ENCRYPTED SIGSTORE PRIVATE KEY', COSIGN_PRIVATE_KEY_LABEL);
    const key = await loadPrivateKey(old, 'pw');
    assert.equal(key.publicKey.asymmetricKeyType, 'ec');
  });

  it('reads any scrypt cost stored in the file', async () => {
    for (const scrypt of [
      { N: 16, r: 1, p: 1 },
      { N: 4096, r: 8, p: 2 },
    ]) {
      const pair = await generateKeyPair('pw', { scrypt });
      assert.ok(await loadPrivateKey(pair.privatePem, 'pw'));
    }
  });

  it('rejects a wrong password with WRONG_PASSWORD', async () => {
    const pair = await generateKeyPair('right', FAST);
    await rejectsWith(
      loadPrivateKey(pair.privatePem, 'wrong'),
      'WRONG_PASSWORD',
      /^Cannot decrypt cosign private key: wrong password$/,
    );
  });

  const malformed: Array<[string, (pem: string) => string, RegExp]> = [
    ['no PEM at all', () => 'hello', /no PEM block found/],
    [
      'a public key instead',
      () =>
        generateKeyPairSync('ec', { namedCurve: 'P-256' })
          .publicKey.export({ type: 'spki', format: 'pem' })
          .toString(),
      /PEM label "PUBLIC KEY" is not/,
    ],
    [
      'an unencrypted PKCS #8 key',
      () =>
        generateKeyPairSync('ec', { namedCurve: 'P-256' })
          .privateKey.export({ type: 'pkcs8', format: 'pem' })
          .toString(),
      /PEM label "PRIVATE KEY" is not/,
    ],
    [
      'an envelope that is not JSON',
      () => encodePem('ENCRYPTED SIGSTORE PRIVATE KEY', Buffer.from('{nope')),
      /not JSON/,
    ],
    [
      'another key derivation',
      (pem) => withEnvelope(pem, (e) => (e.kdf.name = 'pbkdf2')),
      /key derivation "pbkdf2" is not supported/,
    ],
    [
      'another cipher',
      (pem) => withEnvelope(pem, (e) => (e.cipher.name = 'aes-gcm')),
      /cipher "aes-gcm" is not supported/,
    ],
    [
      'an N that is not a power of two',
      (pem) => withEnvelope(pem, (e) => (e.kdf.params.N = 1000)),
      /N a power of two/,
    ],
    [
      'a scrypt cost past the limit',
      (pem) => withEnvelope(pem, (e) => (e.kdf.params.N = 1 << 24)),
      /above the limit/,
    ],
    [
      'a short nonce',
      (pem) => withEnvelope(pem, (e) => (e.cipher.nonce = 'AAAA')),
      /nonce is 3 bytes, not 24/,
    ],
  ];
  for (const [name, make, pattern] of malformed) {
    it(`rejects ${name} with INVALID_KEY`, async () => {
      const pair = await generateKeyPair('pw', FAST);
      await rejectsWith(loadPrivateKey(make(pair.privatePem), 'pw'), 'INVALID_KEY', pattern);
    });
  }
});

describe('loadPublicKeys', () => {
  it('reads every PUBLIC KEY block of a file', async () => {
    const a = await generateKeyPair('', FAST);
    const b = await generateKeyPair('', FAST);
    const keys = loadPublicKeys(`${a.publicPem}${b.publicPem}`);
    assert.equal(keys.length, 2);
    assert.notEqual(keys[0]?.id, keys[1]?.id);
    assert.match(keys[0]?.id ?? '', /^sha256:[0-9a-f]{64}$/);
  });

  it('rejects a file without a public key', () => {
    assert.throws(
      () => loadPublicKeys('nothing here'),
      /Cannot read public key: no "PUBLIC KEY" PEM block found/,
    );
  });

  it('rejects a damaged public key', () => {
    assert.throws(
      () => loadPublicKeys(encodePem('PUBLIC KEY', Buffer.from('not der'))),
      (error: unknown) => error instanceof SignError && /^Cannot read public key: /.test(error.message),
    );
  });

  it('rejects key types cosign signatures here never use', () => {
    const ed = generateKeyPairSync('ed25519').publicKey.export({ type: 'spki', format: 'pem' }).toString();
    assert.throws(() => loadPublicKeys(ed), /key type "ed25519" is not supported/);
  });
});
