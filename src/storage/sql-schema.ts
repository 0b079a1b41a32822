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
