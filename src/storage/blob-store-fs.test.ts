import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { digestOf } from '../oci/index.js';
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
