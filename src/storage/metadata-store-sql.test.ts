import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { digestOf } from '../oci/index.js';
import { runMetadataStoreContract } from './metadata-store.contract.js';
import { openSqliteMetadataStore } from './sqlite.js';

runMetadataStoreContract('SQLite', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'airlock-meta-'));
  const store = await openSqliteMetadataStore(join(dir, 'airlock.db'));
  return {
    store,
    dispose: async () => {
      await store.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
});

describe('SQLite metadata store', () => {
  it('keeps data across reopen and migrates only once', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'airlock-meta-'));
    try {
      const file = join(dir, 'airlock.db');
      const first = await openSqliteMetadataStore(file);
      await first.putManifest('r', { digest: digestOf('m'), mediaType: 'x', size: 1, createdAt: 1 }, 'v1');
      await first.close();
      const second = await openSqliteMetadataStore(file);
      assert.equal(await second.resolveTag('r', 'v1'), digestOf('m'));
      await second.close();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
