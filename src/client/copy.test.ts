import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { digestOf, MediaType, type Descriptor, type Digest, type Platform } from '../oci/index.js';
import { copyImage, type CopyProgress } from './copy.js';
import { ClientError } from './errors.js';
import type { ImageSource, ImageTarget, PutBlobResult } from './image-store.js';
import type { ManifestResult } from './registry-client.js';

/** An in-memory image store, usable as source and target, that logs what it was asked to do. */
class MemoryStore implements ImageSource, ImageTarget {
  readonly name = 'memory';
  readonly manifests = new Map<Digest, ManifestResult>();
  readonly blobs = new Map<Digest, Buffer>();
  readonly tags = new Map<string, Digest>();
  readonly referrersOf = new Map<Digest, Descriptor[]>();
  readonly log: string[] = [];
  inFlight = 0;
  maxInFlight = 0;
  failBlob: Digest | undefined;

  constructor(readonly tag: string | undefined = undefined) {}

  root(): Promise<ManifestResult> {
    const digest = this.tags.get(this.tag ?? 'latest');
    const manifest = digest && this.manifests.get(digest);
    return manifest ? Promise.resolve(manifest) : Promise.reject(new ClientError('NOT_FOUND', 'no root'));
  }

  manifest(digest: Digest): Promise<ManifestResult> {
    const manifest = this.manifests.get(digest);
    return manifest
      ? Promise.resolve(manifest)
      : Promise.reject(new ClientError('NOT_FOUND', `no ${digest}`));
  }

  blob(descriptor: Descriptor): Promise<Readable> {
    const bytes = this.blobs.get(descriptor.digest);
    return bytes
      ? Promise.resolve(Readable.from([bytes]))
      : Promise.reject(new ClientError('NOT_FOUND', 'no blob'));
  }

  referrers(digest: Digest): Promise<Descriptor[]> {
    return Promise.resolve(this.referrersOf.get(digest) ?? []);
  }

  async putBlob(descriptor: Descriptor, open: () => Promise<Readable>): Promise<PutBlobResult> {
    if (this.blobs.has(descriptor.digest)) return 'exists';
    this.inFlight++;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    try {
      await new Promise((r) => setTimeout(r, 2));
      if (descriptor.digest === this.failBlob) throw new ClientError('NETWORK', `lost ${descriptor.digest}`);
      const chunks: Buffer[] = [];
      for await (const chunk of await open()) chunks.push(chunk as Buffer);
      this.blobs.set(descriptor.digest, Buffer.concat(chunks));
      this.log.push(`blob ${descriptor.digest}`);
      return 'uploaded';
    } finally {
      this.inFlight--;
    }
  }

  putManifest(
    manifest: ManifestResult,
    options: { tag?: string | undefined; root?: boolean } = {},
  ): Promise<void> {
    this.manifests.set(manifest.digest, manifest);
    if (options.tag) this.tags.set(options.tag, manifest.digest);
    this.log.push(
      `manifest ${manifest.digest}${options.root ? ' root' : ''}${options.tag ? ` tag=${options.tag}` : ''}`,
    );
    return Promise.resolve();
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}

function manifestOf(body: unknown): ManifestResult {
  const bytes = Buffer.from(JSON.stringify(body));
  return { bytes, digest: digestOf(bytes), mediaType: (body as { mediaType: string }).mediaType };
}

function descriptor(m: ManifestResult, extra: Partial<Descriptor> = {}): Descriptor {
  return { mediaType: m.mediaType, digest: m.digest, size: m.bytes.length, ...extra };
}

/** Adds an image with `layers` random layers to `store`; returns its manifest. */
function addImage(
  store: MemoryStore,
  options: { layers?: number; subject?: ManifestResult; shared?: Buffer; foreign?: boolean } = {},
): ManifestResult {
  const config = Buffer.from(JSON.stringify({ nonce: Math.random() }));
  store.blobs.set(digestOf(config), config);
  const layers: Descriptor[] = [];
  for (let i = 0; i < (options.layers ?? 1); i++) {
    const bytes = Buffer.from(`layer ${i} ${Math.random()}`);
    store.blobs.set(digestOf(bytes), bytes);
    layers.push({ mediaType: MediaType.OciLayerGzip, digest: digestOf(bytes), size: bytes.length });
  }
  if (options.shared) {
    store.blobs.set(digestOf(options.shared), options.shared);
    layers.push({
      mediaType: MediaType.OciLayerGzip,
      digest: digestOf(options.shared),
      size: options.shared.length,
    });
  }
  if (options.foreign) {
    layers.push({
      mediaType: MediaType.DockerForeignLayer,
      digest: digestOf('elsewhere'),
      size: 9,
      urls: ['https://x/l'],
    });
  }
  const manifest = manifestOf({
    schemaVersion: 2,
    mediaType: MediaType.OciManifest,
    config: { mediaType: MediaType.OciConfig, digest: digestOf(config), size: config.length },
    layers,
    ...(options.subject ? { subject: descriptor(options.subject) } : {}),
  });
  store.manifests.set(manifest.digest, manifest);
  return manifest;
}

function addIndex(store: MemoryStore, children: readonly [ManifestResult, Platform][]): ManifestResult {
  const index = manifestOf({
    schemaVersion: 2,
    mediaType: MediaType.OciIndex,
    manifests: children.map(([m, platform]) => descriptor(m, { platform })),
  });
  store.manifests.set(index.digest, index);
  return index;
}

describe('copyImage', () => {
  it('copies every platform of an index: blobs, then each child, then the index under the tag', async () => {
    const source = new MemoryStore('v1');
    const shared = Buffer.from('a layer both platforms use');
    const amd = addImage(source, { layers: 2, shared });
    const arm = addImage(source, { layers: 1, shared });
    const index = addIndex(source, [
      [amd, { os: 'linux', architecture: 'amd64' }],
      [arm, { os: 'linux', architecture: 'arm64', variant: 'v8' }],
    ]);
    source.tags.set('v1', index.digest);
    const target = new MemoryStore('copied');
    const events: CopyProgress[] = [];

    const result = await copyImage(source, target, { onProgress: (e) => events.push(e) });
    assert.equal(result.digest, index.digest);
    assert.equal(result.manifests, 3);
    assert.equal(result.blobs, 6, 'the shared layer counts once');
    assert.deepEqual([...target.blobs.keys()].sort(), [...source.blobs.keys()].sort());
    for (const [digest, bytes] of source.blobs) assert.deepEqual(target.blobs.get(digest), bytes);
    const manifests = target.log.filter((l) => l.startsWith('manifest'));
    assert.deepEqual(manifests, [
      `manifest ${amd.digest}`,
      `manifest ${arm.digest}`,
      `manifest ${index.digest} root tag=copied`,
    ]);
    // Every blob of a child is written before that child's manifest.
    const at = (line: string): number => target.log.indexOf(line);
    for (const layer of JSON.parse(amd.bytes.toString()).layers as Descriptor[])
      assert.ok(at(`blob ${layer.digest}`) < at(`manifest ${amd.digest}`));
    assert.equal(events.filter((e) => e.kind === 'manifest').length, 3);
  });

  it('starts the largest blobs first, so a small one (the config) is the last to start', async () => {
    const source = new MemoryStore('v1');
    const image = addImage(source, { layers: 3, shared: Buffer.alloc(5000, 1) });
    source.tags.set('v1', image.digest);
    const target = new MemoryStore('copied');
    await copyImage(source, target, { concurrency: 1 });
    const sizes = target.log
      .filter((line) => line.startsWith('blob '))
      .map((line) => (source.blobs.get(line.slice(5) as Digest) as Buffer).length);
    assert.equal(sizes.length, 5);
    assert.deepEqual(
      sizes,
      [...sizes].sort((a, b) => b - a),
    );
    assert.equal(sizes[0], 5000);
  });

  it('copies one platform, which becomes the root, and names the platform it cannot find', async () => {
    const source = new MemoryStore('v1');
    const amd = addImage(source);
    const arm = addImage(source);
    const index = addIndex(source, [
      [amd, { os: 'linux', architecture: 'amd64' }],
      [arm, { os: 'linux', architecture: 'arm64', variant: 'v8' }],
    ]);
    source.tags.set('v1', index.digest);

    const target = new MemoryStore('arm');
    const result = await copyImage(source, target, { platform: { os: 'linux', architecture: 'arm64' } });
    assert.equal(result.digest, arm.digest);
    assert.equal(target.tags.get('arm'), arm.digest);
    assert.equal(target.manifests.has(index.digest), false);
    assert.equal(target.manifests.has(amd.digest), false);

    const variant = new MemoryStore('x');
    await copyImage(source, variant, { platform: { os: 'linux', architecture: 'arm64', variant: 'v8' } });
    assert.equal(variant.tags.get('x'), arm.digest);

    await assert.rejects(
      copyImage(source, new MemoryStore('none'), { platform: { os: 'windows', architecture: 'amd64' } }),
      (e: unknown) =>
        e instanceof ClientError &&
        e.code === 'NOT_FOUND' &&
        /no manifest for platform windows\/amd64/.test(e.message),
    );
  });

  it('copies referrers, and referrers of referrers, only when asked to', async () => {
    const source = new MemoryStore('v1');
    const image = addImage(source);
    source.tags.set('v1', image.digest);
    const signature = addImage(source, { subject: image });
    const signatureOfSignature = addImage(source, { subject: signature });
    source.referrersOf.set(image.digest, [descriptor(signature)]);
    source.referrersOf.set(signature.digest, [descriptor(signatureOfSignature)]);

    const plain = new MemoryStore('v1');
    await copyImage(source, plain);
    assert.deepEqual([...plain.manifests.keys()], [image.digest]);

    const full = new MemoryStore('v1');
    const result = await copyImage(source, full, { withReferrers: true });
    assert.deepEqual(
      [...full.manifests.keys()],
      [image.digest, signature.digest, signatureOfSignature.digest],
    );
    assert.equal(result.digest, image.digest);
    assert.equal(full.tags.get('v1'), image.digest, 'referrers do not take the tag');
  });

  it('keeps at most `concurrency` blobs in flight and leaves foreign layers (with urls) where they are', async () => {
    const source = new MemoryStore('v1');
    const image = addImage(source, { layers: 12, foreign: true });
    source.tags.set('v1', image.digest);
    const target = new MemoryStore('v1');
    const result = await copyImage(source, target, { concurrency: 3 });
    assert.equal(target.maxInFlight, 3);
    assert.equal(result.blobs, 13);
    assert.equal(target.blobs.has(digestOf('elsewhere')), false);

    const again = await copyImage(source, target, { concurrency: 3 });
    assert.deepEqual([again.uploaded, again.skipped], [0, 13]);
  });

  it('rejects with the first blob failure and writes no manifest', async () => {
    const source = new MemoryStore('v1');
    const image = addImage(source, { layers: 6 });
    source.tags.set('v1', image.digest);
    const target = new MemoryStore('v1');
    target.failBlob = (JSON.parse(image.bytes.toString()) as { layers: Descriptor[] }).layers[2]?.digest;
    await assert.rejects(copyImage(source, target, { concurrency: 2 }), /lost sha256:/);
    assert.equal(target.manifests.size, 0);
  });
});
