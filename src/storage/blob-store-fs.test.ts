import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { digestOf, hashThread, type BorrowedChunkSource } from '../oci/index.js';
import { FsBlobStore } from './blob-store-fs.js';
import { runBlobStoreContract } from './blob-store.contract.js';

runBlobStoreContract('filesystem', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'airlock-blobs-'));
  const store = new FsBlobStore(dir);
  await store.init();
  return {
    store,
    async reopen() {
      const again = new FsBlobStore(dir);
      await again.init();
      return again;
    },
    dispose: () => rm(dir, { recursive: true, force: true }),
  };
});

const MiB = 1024 * 1024;

/** A body lent in 256 KiB reads from one reused buffer, as the registry's HTTP server lends it. */
function lentOnce(bytes: Buffer): AsyncIterable<Uint8Array> & BorrowedChunkSource {
  const scratch = Buffer.alloc(256 * 1024);
  return {
    [Symbol.asyncIterator]: () => {
      throw new Error('read through pumpBorrowed only');
    },
    pumpBorrowed(onChunk) {
      let at = 0;
      let finish: () => void = () => undefined;
      const done = new Promise<void>((resolve) => (finish = resolve));
      const pump = (): void => {
        while (at < bytes.length) {
          const n = bytes.copy(scratch, 0, at, at + scratch.length);
          at += n;
          if (!onChunk(scratch.subarray(0, n))) return;
        }
        finish();
      };
      setImmediate(pump);
      return { done, resume: () => setImmediate(pump) };
    },
  };
}

describe('FsBlobStore on disk', () => {
  it('lays blobs out as blobs/<alg>/<2 hex>/<hex>', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'airlock-blobs-'));
    try {
      const store = new FsBlobStore(dir);
      const digest = digestOf('x');
      await store.putBytes(Buffer.from('x'), digest);
      const hex = digest.slice('sha256:'.length);
      assert.deepEqual(await readdir(join(dir, 'blobs', 'sha256', hex.slice(0, 2))), [hex]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('chunked uploads of large PATCHes (hashed on the hash thread) commit the right digest, even when the hash thread stopped before the commit', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'airlock-blobs-'));
    try {
      const store = new FsBlobStore(dir);
      for (const stop of [false, true]) {
        const parts = [randomBytes(5 * MiB + 3), randomBytes(4 * MiB), randomBytes(1000)];
        const id = `chunked-${String(stop)}`;
        await store.createUpload(id);
        for (const part of parts) await store.appendUpload(id, lentOnce(part));
        // The digest was settled with the last PATCH: the commit does not need the thread any more.
        if (stop) await hashThread.terminate();
        const whole = Buffer.concat(parts);
        const digest = digestOf(whole);
        assert.deepEqual(await store.commitUpload(id, digest), { digest, size: whole.length });
        const stream = await store.read(digest);
        const chunks: Buffer[] = [];
        for await (const chunk of stream) chunks.push(chunk as Buffer);
        assert.ok(Buffer.concat(chunks).equals(whole));
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('removes temp files a crash left behind when it starts', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'airlock-blobs-'));
    try {
      await mkdir(join(dir, 'uploads'), { recursive: true });
      await writeFile(join(dir, 'uploads', 'tmp-deadbeef'), 'partial');
      const store = new FsBlobStore(dir);
      await store.init();
      assert.deepEqual(await readdir(join(dir, 'uploads')), []);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
