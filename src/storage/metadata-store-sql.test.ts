import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { digestOf } from '../oci/index.js';
import { runMetadataStoreContract } from './metadata-store.contract.js';
import Database from 'better-sqlite3';
import { openSqliteMetadataStore, sqliteStores } from './sqlite.js';

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
      await first.putManifest(
        'r',
        { digest: digestOf('m'), mediaType: 'x', size: 1, createdAt: 1 },
        { tag: 'v1' },
      );
      await first.close();
      const second = await openSqliteMetadataStore(file);
      assert.equal(await second.resolveTag('r', 'v1'), digestOf('m'));
      await second.close();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('reports a full database as SQLITE_FULL, not as the failed ROLLBACK after it, and keeps what it had', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'airlock-meta-'));
    const database = new Database(join(dir, 'airlock.db'));
    try {
      const { metadata } = await sqliteStores(database);
      await metadata.putManifest(
        'r',
        { digest: digestOf('kept'), mediaType: 'x', size: 1, createdAt: 1 },
        { tag: 'v1' },
      );
      // A database that may grow by two pages stands for a full disk: SQLite fails the write with
      // SQLITE_FULL and ends the transaction itself.
      const pages = database.pragma('page_count', { simple: true }) as number;
      database.pragma(`max_page_count = ${pages + 2}`);
      let failure: unknown;
      for (let i = 0; i < 10_000 && failure === undefined; i++) {
        await metadata
          .putManifest(
            `r${i}`,
            { digest: digestOf(`m${i}`), mediaType: 'x'.repeat(500), size: 1, createdAt: 1 },
            { tag: 't' },
          )
          .catch((error: unknown) => (failure = error));
      }
      assert.equal((failure as { code?: string } | undefined)?.code, 'SQLITE_FULL', String(failure));
      assert.equal(database.inTransaction, false);
      assert.equal(await metadata.resolveTag('r', 'v1'), digestOf('kept'));
      // Once there is room again, writes work.
      database.pragma('max_page_count = 1073741823');
      await metadata.putManifest(
        'after',
        { digest: digestOf('after'), mediaType: 'x', size: 1, createdAt: 1 },
        { tag: 'v1' },
      );
      assert.equal(await metadata.resolveTag('after', 'v1'), digestOf('after'));
      await metadata.close();
    } finally {
      if (database.open) database.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
