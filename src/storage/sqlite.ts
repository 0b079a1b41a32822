import Database from 'better-sqlite3';
import { Kysely, SqliteDialect, SqliteDriver, type DatabaseConnection, type Driver } from 'kysely';
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
  return sqliteStores(new Database(file));
}

/** The stores over an open SQLite database (set up here: journal, sync, foreign keys, migrations). */
export async function sqliteStores(
  database: Database.Database,
): Promise<{ metadata: SqlMetadataStore; auth: SqlAuthStore }> {
  try {
    database.pragma('journal_mode = WAL');
    database.pragma('synchronous = FULL');
    database.pragma('busy_timeout = 5000');
    database.pragma('foreign_keys = ON');
    const db = new Kysely<Schema>({ dialect: new RollbackSafeDialect(database) });
    return { metadata: await SqlMetadataStore.open(db), auth: new SqlAuthStore(db) };
  } catch (error) {
    // A database that could not be set up (a full disk, a migration that failed) is not left open.
    database.close();
    throw error;
  }
}

/**
 * SQLite ends a transaction by itself when a write fails with SQLITE_FULL (disk full), SQLITE_IOERR and a
 * few others. Kysely's ROLLBACK then fails with "cannot rollback - no transaction is active", and that
 * error replaced the real one (a full disk reported as an internal error). This driver skips the
 * ROLLBACK when SQLite already ended the transaction, so the first error is the one thrown.
 */
class RollbackSafeDriver extends SqliteDriver {
  readonly #database: Database.Database;

  constructor(database: Database.Database) {
    super({ database });
    this.#database = database;
  }

  override async rollbackTransaction(connection: DatabaseConnection): Promise<void> {
    if (this.#database.inTransaction) await super.rollbackTransaction(connection);
  }
}

class RollbackSafeDialect extends SqliteDialect {
  readonly #database: Database.Database;

  constructor(database: Database.Database) {
    super({ database });
    this.#database = database;
  }

  override createDriver(): Driver {
    return new RollbackSafeDriver(this.#database);
  }
}
