import { existsSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { FsBlobStore } from './blob-store-fs.js';
import { explainFsError } from './errors.js';
import { openSqliteStores } from './sqlite.js';
import type { SqlAuthStore } from './auth-store-sql.js';
import type { SqlMetadataStore } from './metadata-store-sql.js';

/** The stores of an embedded-default data folder. */
export interface DataFolderStores {
  readonly blobs: FsBlobStore;
  readonly metadata: SqlMetadataStore;
  readonly auth: SqlAuthStore;
}

/**
 * Opens the blob store and the SQLite database (`airlock.db`) of a data folder the caller has locked
 * (see lockDataFolder). A full or read-only disk fails with one line that says so.
 */
export async function openDataFolder(dataDir: string): Promise<DataFolderStores> {
  const database = join(dataDir, 'airlock.db');
  const isNew = !existsSync(database);
  try {
    const blobs = new FsBlobStore(dataDir);
    await blobs.init();
    return { blobs, ...(await openSqliteStores(database)) };
  } catch (error) {
    // A database this call created but could not set up (a disk that filled) is not left looking like
    // one: the folder would then pass for an Airlock data folder (`gc --data`) without a schema.
    if (isNew) {
      for (const suffix of ['', '-wal', '-shm']) await rm(`${database}${suffix}`, { force: true });
    }
    throw await explainFsError(error, { action: 'open the data folder', dir: dataDir });
  }
}
