import Database from 'better-sqlite3';
import { Kysely, SqliteDialect } from 'kysely';
import type { Schema } from './sql-schema.js';
import { SqlMetadataStore } from './metadata-store-sql.js';
import { SqlAuthStore } from './auth-store-sql.js';

/**
 * Opens (creating if needed) the embedded SQLite metadata database. WAL journaling with
 * `synchronous=FULL` makes every committed transaction survive a process kill or power loss.
 */
export async function openSqliteMetadataStore(file: string): Promise<SqlMetadataStore> {
  return (await openSqliteStores(file)).metadata;
}

/** The metadata and auth stores over one SQLite file (one connection, one migration history). */
export async function openSqliteStores(
  file: string,
): Promise<{ metadata: SqlMetadataStore; auth: SqlAuthStore }> {
  const database = new Database(file);
  database.pragma('journal_mode = WAL');
  database.pragma('synchronous = FULL');
  database.pragma('busy_timeout = 5000');
  database.pragma('foreign_keys = ON');
  const db = new Kysely<Schema>({ dialect: new SqliteDialect({ database }) });
  return { metadata: await SqlMetadataStore.open(db), auth: new SqlAuthStore(db) };
}
