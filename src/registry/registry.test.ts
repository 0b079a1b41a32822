import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { digestOf, MediaType } from '../oci/index.js';
import { FsBlobStore, openSqliteStores, type MetadataStore } from '../storage/index.js';
import { Registry } from './registry.js';

/**
 * `inner` with one method answered by `replacement()` whenever that returns a function; every other
 * member (and that method, when it returns undefined) is `inner`'s own.
 */
function overriding(
  inner: MetadataStore,
  method: keyof MetadataStore,
  replacement: () => ((...args: never[]) => unknown) | undefined,
): MetadataStore {
  return new Proxy(inner, {
    get(target, property, receiver) {
      const replaced = property === method ? replacement() : undefined;
      if (replaced) return replaced;
      const value: unknown = Reflect.get(target, property, receiver);
      return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
    },
  });
}

/** A metadata store whose next tag lookup waits until released, to interleave a read with a write. */
function gatedResolve(inner: MetadataStore): { store: MetadataStore; hold(): () => void } {
  let gate: Promise<void> | undefined;
  const store = overriding(
    inner,
    'resolveTag',
    () =>
      async (...args: Parameters<MetadataStore['resolveTag']>) => {
        const answer = await inner.resolveTag(...args);
        const waiting = gate;
        gate = undefined;
        if (waiting) await waiting;
        return answer;
      },
  );
  return {
    store,
    hold() {
      let release!: () => void;
      gate = new Promise((resolve) => (release = resolve));
      return release;
    },
  };
}

/** `inner` whose first putManifest goes through `around` (given the real write to call); later ones do not. */
function aroundFirstPut(
  inner: MetadataStore,
  around: (put: () => ReturnType<MetadataStore['putManifest']>) => ReturnType<MetadataStore['putManifest']>,
): MetadataStore {
  let first = true;
  return overriding(inner, 'putManifest', () =>
    first
      ? (...args: Parameters<MetadataStore['putManifest']>) => {
          first = false;
          return around(() => inner.putManifest(...args));
        }
      : undefined,
  );
}

/** Pushes a `{}` config into p/app; returns it and the bytes of an image manifest naming it. */
async function pushConfig(registry: Registry): Promise<{ config: Buffer; body: Buffer }> {
  const config = Buffer.from('{}');
  await registry.putBlob('p/app', digestOf(config), Readable.from([config]));
  const body = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MediaType.OciManifest,
      config: { mediaType: MediaType.OciConfig, digest: digestOf(config), size: 2 },
      layers: [],
    }),
  );
  return { config, body };
}

describe('Registry caches', () => {
  const dirs: string[] = [];
  after(() => Promise.all(dirs.map((dir) => rm(dir, { recursive: true, force: true }))));

  /** Blob and metadata stores in a new folder, removed after the tests. */
  const freshStores = async (): Promise<{ blobs: FsBlobStore; metadata: MetadataStore }> => {
    const dir = await mkdtemp(join(tmpdir(), 'airlock-registry-'));
    dirs.push(dir);
    const blobs = new FsBlobStore(dir);
    await blobs.init();
    const { metadata } = await openSqliteStores(join(dir, 'airlock.db'));
    return { blobs, metadata };
  };

  it('does not cache a tag read that a concurrent push made stale', async () => {
    const { blobs, metadata } = await freshStores();
    const gated = gatedResolve(metadata);
    const registry = new Registry({ blobs, metadata: gated.store });
    const config = Buffer.from('{}');
    await registry.putBlob('p/app', digestOf(config), Readable.from([config]));
    const manifest = (n: number): Buffer =>
      Buffer.from(
        JSON.stringify({
          schemaVersion: 2,
          mediaType: MediaType.OciManifest,
          config: {
            mediaType: 'application/vnd.oci.image.config.v1+json',
            digest: digestOf(config),
            size: 2,
          },
          layers: [],
          annotations: { n: String(n) },
        }),
      );
    const first = manifest(1);
    const second = manifest(2);
    await registry.putManifest('p/app', 'v1', { body: first, contentType: MediaType.OciManifest });
    // A fresh instance on the same data (nothing cached): its first read of v1 goes to SQL.
    const reader = new Registry({ blobs, metadata: gated.store });
    const release = gated.hold();
    const reading = reader.getManifest('p/app', 'v1');
    // While that read waits, the tag moves through the same instance.
    await new Promise((resolve) => setTimeout(resolve, 20));
    await reader.putManifest('p/app', 'v1', { body: second, contentType: MediaType.OciManifest });
    release();
    assert.equal((await reading).digest, digestOf(first), 'the read answers what it read');
    // ...but it must not have put the old digest back into the cache.
    assert.equal((await reader.getManifest('p/app', 'v1')).digest, digestOf(second));
    assert.equal(reader.cachedManifest('p/app', 'v1')?.digest, digestOf(second));
    metadata.close();
  });

  it('refuses a manifest whose repository was deleted after its blobs were checked, leaving no tag', async () => {
    const { blobs, metadata } = await freshStores();
    // The repository is deleted just as the manifest is about to be written, after #checkReferences.
    const registry: Registry = new Registry({
      blobs,
      metadata: aroundFirstPut(metadata, async (put) => {
        await registry.deleteRepository('p/app');
        return put();
      }),
    });
    const { config, body } = await pushConfig(registry);
    await assert.rejects(registry.putManifest('p/app', 'v1', { body, contentType: MediaType.OciManifest }), {
      code: 'MANIFEST_BLOB_UNKNOWN',
      message: new RegExp(`"${digestOf(config)}" is no longer in repository "p/app"`),
    });
    assert.equal(await metadata.repositoryExists('p/app'), false, 'not brought back by the push');
    assert.equal(registry.cachedManifest('p/app', 'v1'), undefined);
    await assert.rejects(registry.getManifest('p/app', 'v1'), { code: 'MANIFEST_UNKNOWN' });
    // Pushed again in full, it is accepted.
    await registry.putBlob('p/app', digestOf(config), Readable.from([config]));
    await registry.putManifest('p/app', 'v1', { body, contentType: MediaType.OciManifest });
    assert.equal((await registry.getManifest('p/app', 'v1')).digest, digestOf(body));
    metadata.close();
  });

  for (const deleted of ['digest', 'tag'] as const) {
    it(`does not cache a pushed manifest whose ${deleted} was deleted just after the write`, async () => {
      const { blobs, metadata } = await freshStores();
      let body: Buffer = Buffer.alloc(0);
      // A DELETE queued behind the push's transaction runs between the write and the push's next read.
      const registry: Registry = new Registry({
        blobs,
        metadata: aroundFirstPut(metadata, async (put) => {
          const written = await put();
          await registry.deleteManifest('p/app', deleted === 'tag' ? 'v1' : digestOf(body));
          return written;
        }),
      });
      ({ body } = await pushConfig(registry));
      await registry.putManifest('p/app', 'v1', { body, contentType: MediaType.OciManifest });
      assert.equal(await metadata.resolveTag('p/app', 'v1'), undefined, 'the tag is gone from the database');
      assert.equal(registry.cachedManifest('p/app', 'v1'), undefined, 'and not answered from memory');
      await assert.rejects(registry.getManifest('p/app', 'v1'), { code: 'MANIFEST_UNKNOWN' });
      if (deleted === 'digest')
        await assert.rejects(registry.getManifest('p/app', digestOf(body)), { code: 'MANIFEST_UNKNOWN' });
      metadata.close();
    });
  }

  it('checks the upload sessions it started without SQL, older ones in SQL, and forgets ended ones at once', async () => {
    const { blobs, metadata } = await freshStores();
    let lookups = 0;
    const counting = overriding(
      metadata,
      'getUpload',
      () =>
        (...args: Parameters<MetadataStore['getUpload']>) => {
          lookups++;
          return metadata.getUpload(...args);
        },
    );
    const registry = new Registry({ blobs, metadata: counting });
    const id = await registry.startUpload('p/app');
    await registry.appendUpload('p/app', id, { body: Readable.from([Buffer.from('abc')]) });
    assert.equal(await registry.uploadStatus('p/app', id), 3);
    await assert.rejects(registry.uploadStatus('p/other', id), { code: 'BLOB_UPLOAD_UNKNOWN' });
    assert.equal(lookups, 0);

    // After a restart the session is found in SQL, in its own repository only.
    const restarted = new Registry({ blobs, metadata: counting });
    assert.equal(await restarted.uploadStatus('p/app', id), 3);
    await assert.rejects(restarted.uploadStatus('p/other', id), { code: 'BLOB_UPLOAD_UNKNOWN' });
    assert.equal(lookups, 2);

    // Committed, cancelled or purged: unknown at once, to the instance that started it too.
    await registry.finishUpload('p/app', id, digestOf('abc'));
    await assert.rejects(registry.uploadStatus('p/app', id), { code: 'BLOB_UPLOAD_UNKNOWN' });
    const cancelled = await registry.startUpload('p/app');
    await registry.cancelUpload('p/app', cancelled);
    await assert.rejects(registry.appendUpload('p/app', cancelled, { body: Readable.from([]) }), {
      code: 'BLOB_UPLOAD_UNKNOWN',
    });
    const stale = await registry.startUpload('p/app');
    assert.equal(await registry.purgeUploads(-1), 1);
    await assert.rejects(registry.uploadStatus('p/app', stale), { code: 'BLOB_UPLOAD_UNKNOWN' });
    metadata.close();
  });

  it('keeps an upload session whole when its row cannot be deleted (a full disk)', async () => {
    const { blobs, metadata } = await freshStores();
    let full = true;
    const failing = overriding(metadata, 'deleteUpload', () =>
      full
        ? () => Promise.reject(Object.assign(new Error('database or disk is full'), { code: 'SQLITE_FULL' }))
        : undefined,
    );
    const registry = new Registry({ blobs, metadata: failing });
    const id = await registry.startUpload('p/app');
    await registry.appendUpload('p/app', id, { body: Readable.from([Buffer.from('abc')]) });
    await assert.rejects(registry.cancelUpload('p/app', id), { code: 'SQLITE_FULL' });
    // The session and its bytes are still there: the client may go on or cancel again.
    assert.equal(await registry.uploadStatus('p/app', id), 3);
    full = false;
    await registry.cancelUpload('p/app', id);
    await assert.rejects(registry.uploadStatus('p/app', id), { code: 'BLOB_UPLOAD_UNKNOWN' });
    assert.equal(await blobs.uploadSize(id), undefined);
    metadata.close();
  });
});
