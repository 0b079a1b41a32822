import { sql, type Kysely } from 'kysely';

/** Table shapes shared by the SQLite and PostgreSQL back ends. */
export interface Schema {
  schema_migrations: { version: number; applied_at: number };
  repositories: { name: string; created_at: number };
  blob_links: { repository: string; digest: string; size: number; created_at: number };
  manifests: {
    repository: string;
    digest: string;
    media_type: string;
    size: number;
    artifact_type: string | null;
    subject: string | null;
    annotations: string | null;
    created_at: number;
  };
  tags: { repository: string; name: string; digest: string; updated_at: number };
  uploads: { id: string; repository: string; created_at: number };
  users: { name: string; password_hash: string; created_at: number };
  robots: {
    name: string;
    secret_hash: string;
    description: string;
    created_at: number;
    expires_at: number | null;
    revoked_at: number | null;
  };
  bindings: { member: string; role: string; scope: string; created_at: number };
  repository_settings: { name: string; description: string; public_read: number; created_at: number };
  clusters: { name: string; issuer: string; jwks: string | null; created_at: number };
  audit_log: {
    id: number | undefined;
    at: number;
    actor: string;
    action: string;
    target: string;
    detail: string | null;
  };
}

/** Ordered, append-only list of schema changes; each runs once, inside a transaction. */
const MIGRATIONS: ReadonlyArray<(db: Kysely<Schema>) => Promise<void>> = [
  async (db) => {
    await db.schema
      .createTable('repositories')
      .addColumn('name', 'varchar(255)', (c) => c.primaryKey())
      .addColumn('created_at', 'bigint', (c) => c.notNull())
      .execute();
    await db.schema
      .createTable('blob_links')
      .addColumn('repository', 'varchar(255)', (c) => c.notNull())
      .addColumn('digest', 'varchar(200)', (c) => c.notNull())
      .addColumn('size', 'bigint', (c) => c.notNull())
      .addColumn('created_at', 'bigint', (c) => c.notNull())
      .addPrimaryKeyConstraint('blob_links_pk', ['repository', 'digest'])
      .execute();
    await db.schema.createIndex('blob_links_digest').on('blob_links').column('digest').execute();
    await db.schema
      .createTable('manifests')
      .addColumn('repository', 'varchar(255)', (c) => c.notNull())
      .addColumn('digest', 'varchar(200)', (c) => c.notNull())
      .addColumn('media_type', 'varchar(255)', (c) => c.notNull())
      .addColumn('size', 'bigint', (c) => c.notNull())
      .addColumn('artifact_type', 'varchar(255)')
      .addColumn('subject', 'varchar(200)')
      .addColumn('annotations', 'text')
      .addColumn('created_at', 'bigint', (c) => c.notNull())
      .addPrimaryKeyConstraint('manifests_pk', ['repository', 'digest'])
      .execute();
    await db.schema
      .createIndex('manifests_subject')
      .on('manifests')
      .columns(['repository', 'subject'])
      .execute();
    await db.schema
      .createTable('tags')
      .addColumn('repository', 'varchar(255)', (c) => c.notNull())
      .addColumn('name', 'varchar(128)', (c) => c.notNull())
      .addColumn('digest', 'varchar(200)', (c) => c.notNull())
      .addColumn('updated_at', 'bigint', (c) => c.notNull())
      .addPrimaryKeyConstraint('tags_pk', ['repository', 'name'])
      .execute();
    await db.schema.createIndex('tags_digest').on('tags').columns(['repository', 'digest']).execute();
    await db.schema
      .createTable('uploads')
      .addColumn('id', 'varchar(128)', (c) => c.primaryKey())
      .addColumn('repository', 'varchar(255)', (c) => c.notNull())
      .addColumn('created_at', 'bigint', (c) => c.notNull())
      .execute();
  },
  // 2: access control
  async (db) => {
    await db.schema
      .createTable('users')
      .addColumn('name', 'varchar(128)', (c) => c.primaryKey())
      .addColumn('password_hash', 'text', (c) => c.notNull())
      .addColumn('created_at', 'bigint', (c) => c.notNull())
      .execute();
    await db.schema
      .createTable('robots')
      .addColumn('name', 'varchar(128)', (c) => c.primaryKey())
      .addColumn('secret_hash', 'varchar(128)', (c) => c.notNull())
      .addColumn('description', 'text', (c) => c.notNull())
      .addColumn('created_at', 'bigint', (c) => c.notNull())
      .addColumn('expires_at', 'bigint')
      .addColumn('revoked_at', 'bigint')
      .execute();
    await db.schema
      .createTable('bindings')
      .addColumn('member', 'varchar(255)', (c) => c.notNull())
      .addColumn('role', 'varchar(16)', (c) => c.notNull())
      .addColumn('scope', 'varchar(256)', (c) => c.notNull())
      .addColumn('created_at', 'bigint', (c) => c.notNull())
      .addPrimaryKeyConstraint('bindings_pk', ['member', 'scope'])
      .execute();
    await db.schema
      .createTable('repository_settings')
      .addColumn('name', 'varchar(255)', (c) => c.primaryKey())
      .addColumn('description', 'text', (c) => c.notNull())
      .addColumn('public_read', 'integer', (c) => c.notNull())
      .addColumn('created_at', 'bigint', (c) => c.notNull())
      .execute();
    await db.schema
      .createTable('clusters')
      .addColumn('name', 'varchar(128)', (c) => c.primaryKey())
      .addColumn('issuer', 'text', (c) => c.notNull())
      .addColumn('jwks', 'text')
      .addColumn('created_at', 'bigint', (c) => c.notNull())
      .execute();
    await db.schema
      .createTable('audit_log')
      .addColumn('id', 'integer', (c) => c.primaryKey().autoIncrement())
      .addColumn('at', 'bigint', (c) => c.notNull())
      .addColumn('actor', 'varchar(255)', (c) => c.notNull())
      .addColumn('action', 'varchar(64)', (c) => c.notNull())
      .addColumn('target', 'text', (c) => c.notNull())
      .addColumn('detail', 'text')
      .execute();
    await db.schema.createIndex('audit_log_at').on('audit_log').column('at').execute();
  },
  async (db) => {
    // Tags list in case-insensitive order (then by bytes): an index in that order, so a page of a large
    // repository is read in order instead of sorting every tag.
    await sql`CREATE INDEX tags_folded ON tags (repository, lower(name), name)`.execute(db);
  },
];

/** Brings the schema up to the newest migration. */
export async function migrate(db: Kysely<Schema>): Promise<void> {
  await db.schema
    .createTable('schema_migrations')
    .ifNotExists()
    .addColumn('version', 'integer', (c) => c.primaryKey())
    .addColumn('applied_at', 'bigint', (c) => c.notNull())
    .execute();
  const row = await db
    .selectFrom('schema_migrations')
    .select(sql<number>`max(version)`.as('v'))
    .executeTakeFirst();
  const current = Number(row?.v ?? 0);
  for (let version = current + 1; version <= MIGRATIONS.length; version++) {
    const step = MIGRATIONS[version - 1];
    if (!step) break;
    await db.transaction().execute(async (trx) => {
      await step(trx);
      await trx.insertInto('schema_migrations').values({ version, applied_at: Date.now() }).execute();
    });
  }
}
