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
  try {
    const blobs = new FsBlobStore(dataDir);
    await blobs.init();
    return { blobs, ...(await openSqliteStores(join(dataDir, 'airlock.db'))) };
  } catch (error) {
    throw await explainFsError(error, 'open the data folder', dataDir);
  }
}
