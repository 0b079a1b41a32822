import { sql, type Kysely } from 'kysely';
import type { Digest } from '../oci/index.js';
import type {
  BlobLinkRecord,
  BlobUsers,
  LinkRenewal,
  ManifestRecord,
  ManifestRequirements,
  MetadataStore,
  Page,
  TagRecord,
  UploadSession,
} from './metadata-store.js';
import { migrate, type Schema } from './sql-schema.js';

const DEFAULT_PAGE = 10_000;
/** Digests looked up per query when checking what a manifest requires. */
const MISSING_BATCH = 500;

type ManifestRow = Schema['manifests'];

function toRecord(row: ManifestRow): ManifestRecord {
  return {
    digest: row.digest as Digest,
    mediaType: row.media_type,
    size: Number(row.size),
    createdAt: Number(row.created_at),
    ...(row.artifact_type === null ? {} : { artifactType: row.artifact_type }),
    ...(row.subject === null ? {} : { subject: row.subject as Digest }),
    ...(row.annotations === null
      ? {}
      : { annotations: JSON.parse(row.annotations) as Record<string, string> }),
  };
}

/** Records a repository unless it is known (inside the caller's transaction when given one). */
async function ensureRepository(db: Kysely<Schema>, name: string, at: number): Promise<void> {
  await db
    .insertInto('repositories')
    .values({ name, created_at: at })
    .onConflict((oc) => oc.column('name').doNothing())
    .execute();
}

/**
 * The first blob or child manifest in `requires` that `repository` does not hold, inside the caller's
 * transaction (SQLite runs one writer at a time, so nothing changes between this and the write).
 */
async function firstMissing(
  db: Kysely<Schema>,
  repository: string,
  requires: ManifestRequirements,
): Promise<Digest | undefined> {
  const present = async (table: 'blob_links' | 'manifests', digests: readonly Digest[]) => {
    const found = new Set<string>();
    // In batches: a 4 MiB manifest can name tens of thousands of layers, more than SQLite binds at once.
    const wanted = [...new Set(digests)];
    for (let start = 0; start < wanted.length; start += MISSING_BATCH) {
      const rows = await db
        .selectFrom(table)
        .select('digest')
        .where('repository', '=', repository)
        .where('digest', 'in', wanted.slice(start, start + MISSING_BATCH))
        .execute();
      for (const row of rows) found.add(row.digest);
    }
    return found;
  };
  const blobs = await present('blob_links', requires.blobs);
  const missingBlob = requires.blobs.find((digest) => !blobs.has(digest));
  if (missingBlob !== undefined) return missingBlob;
  const manifests = await present('manifests', requires.manifests);
  return requires.manifests.find((digest) => !manifests.has(digest));
}

/** MetadataStore over any Kysely database (SQLite embedded, PostgreSQL for replicas). */
export class SqlMetadataStore implements MetadataStore {
  readonly #db: Kysely<Schema>;

  private constructor(db: Kysely<Schema>) {
    this.#db = db;
  }

  /** Migrates the schema and returns a ready store. */
  static async open(db: Kysely<Schema>): Promise<SqlMetadataStore> {
    await migrate(db);
    return new SqlMetadataStore(db);
  }

  async close(): Promise<void> {
    await this.#db.destroy();
  }

  async ensureRepository(name: string): Promise<void> {
    await ensureRepository(this.#db, name, Date.now());
  }

  async repositoryExists(name: string): Promise<boolean> {
    const row = await this.#db
      .selectFrom('repositories')
      .select('name')
      .where('name', '=', name)
      .executeTakeFirst();
    return row !== undefined;
  }

  async listRepositories(page: Page = {}): Promise<string[]> {
    let query = this.#db
      .selectFrom('repositories')
      .select('name')
      .orderBy('name')
      .limit(page.n ?? DEFAULT_PAGE);
    if (page.last !== undefined) query = query.where('name', '>', page.last);
    return (await query.execute()).map((row) => row.name);
  }

  async linkBlob(repository: string, digest: Digest, size: number): Promise<void> {
    const now = Date.now();
    await this.#db.transaction().execute(async (trx) => {
      await ensureRepository(trx, repository, now);
      await trx
        .insertInto('blob_links')
        .values({ repository, digest, size, created_at: now })
        // A re-push or mount renews the link: garbage collection's grace period counts from here.
        .onConflict((oc) => oc.columns(['repository', 'digest']).doUpdateSet({ created_at: now }))
        .execute();
    });
  }

  async blobLink(repository: string, digest: Digest, renew?: LinkRenewal): Promise<number | undefined> {
    if (renew) {
      const renewed = await this.#db
        .updateTable('blob_links')
        .set({ created_at: renew.at })
        .where('repository', '=', repository)
        .where('digest', '=', digest)
        .where('created_at', '<', renew.before)
        .returning('size')
        .executeTakeFirst();
      if (renewed) return Number(renewed.size);
      // Not renewed: missing, or made at or after renew.before (the read below tells which).
    }
    const row = await this.#db
      .selectFrom('blob_links')
      .select('size')
      .where('repository', '=', repository)
      .where('digest', '=', digest)
      .executeTakeFirst();
    return row === undefined ? undefined : Number(row.size);
  }

  async unlinkBlob(repository: string, digest: Digest, createdBefore?: number): Promise<boolean> {
    let query = this.#db
      .deleteFrom('blob_links')
      .where('repository', '=', repository)
      .where('digest', '=', digest);
    if (createdBefore !== undefined) query = query.where('created_at', '<', createdBefore);
    const result = await query.executeTakeFirst();
    return Number(result.numDeletedRows) > 0;
  }

  async repositoriesWithBlob(digest: Digest): Promise<string[]> {
    const rows = await this.#db
      .selectFrom('blob_links')
      .select('repository')
      .where('digest', '=', digest)
      .execute();
    return rows.map((row) => row.repository);
  }

  async listBlobLinks(repository: string): Promise<BlobLinkRecord[]> {
    const rows = await this.#db
      .selectFrom('blob_links')
      .select(['digest', 'size', 'created_at'])
      .where('repository', '=', repository)
      .orderBy('digest')
      .execute();
    return rows.map((row) => ({
      digest: row.digest as Digest,
      size: Number(row.size),
      createdAt: Number(row.created_at),
    }));
  }

  async blobUsers(digest: Digest): Promise<BlobUsers> {
    const links = await this.repositoriesWithBlob(digest);
    const rows = await this.#db
      .selectFrom('manifests')
      .select('repository')
      .where('digest', '=', digest)
      .execute();
    return { links, manifests: rows.map((row) => row.repository) };
  }

  async deleteRepository(name: string): Promise<boolean> {
    return this.#db.transaction().execute(async (trx) => {
      await trx.deleteFrom('tags').where('repository', '=', name).execute();
      await trx.deleteFrom('manifests').where('repository', '=', name).execute();
      await trx.deleteFrom('blob_links').where('repository', '=', name).execute();
      await trx.deleteFrom('uploads').where('repository', '=', name).execute();
      const result = await trx.deleteFrom('repositories').where('name', '=', name).executeTakeFirst();
      return Number(result.numDeletedRows) > 0;
    });
  }

  async listManifests(repository: string): Promise<ManifestRecord[]> {
    const rows = await this.#db
      .selectFrom('manifests')
      .selectAll()
      .where('repository', '=', repository)
      .orderBy('created_at', 'desc')
      .orderBy('digest')
      .execute();
    return rows.map(toRecord);
  }

  async putManifest(
    repository: string,
    manifest: ManifestRecord,
    write: { readonly tag?: string; readonly requires?: ManifestRequirements } = {},
  ): Promise<Digest | undefined> {
    const { tag, requires } = write;
    const now = Date.now();
    return this.#db.transaction().execute(async (trx) => {
      const missing = requires && (await firstMissing(trx, repository, requires));
      if (missing !== undefined) return missing;
      await ensureRepository(trx, repository, now);
      await trx
        .insertInto('manifests')
        .values({
          repository,
          digest: manifest.digest,
          media_type: manifest.mediaType,
          size: manifest.size,
          artifact_type: manifest.artifactType ?? null,
          subject: manifest.subject ?? null,
          annotations: manifest.annotations ? JSON.stringify(manifest.annotations) : null,
          created_at: manifest.createdAt,
        })
        // Pushed again: the time is renewed (garbage collection's grace period counts from the last push),
        // and the media type is the last push's (it differs only for a manifest without a mediaType field).
        .onConflict((oc) =>
          oc
            .columns(['repository', 'digest'])
            .doUpdateSet({ created_at: manifest.createdAt, media_type: manifest.mediaType }),
        )
        .execute();
      if (tag !== undefined) {
        await trx
          .insertInto('tags')
          .values({ repository, name: tag, digest: manifest.digest, updated_at: now })
          .onConflict((oc) =>
            oc.columns(['repository', 'name']).doUpdateSet({ digest: manifest.digest, updated_at: now }),
          )
          .execute();
      }
      return undefined;
    });
  }

  async getManifest(repository: string, digest: Digest): Promise<ManifestRecord | undefined> {
    const row = await this.#db
      .selectFrom('manifests')
      .selectAll()
      .where('repository', '=', repository)
      .where('digest', '=', digest)
      .executeTakeFirst();
    return row === undefined ? undefined : toRecord(row);
  }

  async deleteManifest(repository: string, digest: Digest): Promise<boolean> {
    return this.#db.transaction().execute(async (trx) => {
      await trx
        .deleteFrom('tags')
        .where('repository', '=', repository)
        .where('digest', '=', digest)
        .execute();
      const result = await trx
        .deleteFrom('manifests')
        .where('repository', '=', repository)
        .where('digest', '=', digest)
        .executeTakeFirst();
      return Number(result.numDeletedRows) > 0;
    });
  }

  async deleteManifestIfUnchanged(repository: string, digest: Digest, since: number): Promise<boolean> {
    return this.#db.transaction().execute(async (trx) => {
      const tagged = await trx
        .selectFrom('tags')
        .select('name')
        .where('repository', '=', repository)
        .where((eb) => eb.or([eb('digest', '=', digest), eb('updated_at', '>=', since)]))
        .limit(1)
        .executeTakeFirst();
      if (tagged) return false;
      const pushed = await trx
        .selectFrom('manifests')
        .select('digest')
        .where('repository', '=', repository)
        .where('created_at', '>=', since)
        .limit(1)
        .executeTakeFirst();
      if (pushed) return false;
      const result = await trx
        .deleteFrom('manifests')
        .where('repository', '=', repository)
        .where('digest', '=', digest)
        .executeTakeFirst();
      return Number(result.numDeletedRows) > 0;
    });
  }

  async resolveTag(repository: string, tag: string): Promise<Digest | undefined> {
    const row = await this.#db
      .selectFrom('tags')
      .select('digest')
      .where('repository', '=', repository)
      .where('name', '=', tag)
      .executeTakeFirst();
    return row?.digest as Digest | undefined;
  }

  /**
   * In the spec's order, "lexical (case-insensitive alphanumeric)": by lower case, then by bytes for tags
   * that differ only in case (`V1` before `v1`), so that `last` pages through every tag exactly once.
   */
  async listTags(repository: string, page: Page = {}): Promise<TagRecord[]> {
    const folded = sql<string>`lower(name)`;
    let query = this.#db
      .selectFrom('tags')
      .select(['name', 'digest', 'updated_at'])
      .where('repository', '=', repository)
      .orderBy(folded)
      .orderBy('name')
      .limit(page.n ?? DEFAULT_PAGE);
    const { last } = page;
    if (last !== undefined) {
      const lastFolded = last.toLowerCase();
      query = query.where((eb) =>
        eb.or([eb(folded, '>', lastFolded), eb.and([eb(folded, '=', lastFolded), eb('name', '>', last)])]),
      );
    }
    const rows = await query.execute();
    return rows.map((row) => ({
      name: row.name,
      digest: row.digest as Digest,
      updatedAt: Number(row.updated_at),
    }));
  }

  async deleteTag(repository: string, tag: string): Promise<boolean> {
    const result = await this.#db
      .deleteFrom('tags')
      .where('repository', '=', repository)
      .where('name', '=', tag)
      .executeTakeFirst();
    return Number(result.numDeletedRows) > 0;
  }

  async listReferrers(repository: string, subject: Digest, artifactType?: string): Promise<ManifestRecord[]> {
    let query = this.#db
      .selectFrom('manifests')
      .selectAll()
      .where('repository', '=', repository)
      .where('subject', '=', subject)
      .orderBy('created_at')
      .orderBy('digest');
    if (artifactType !== undefined) query = query.where('artifact_type', '=', artifactType);
    return (await query.execute()).map(toRecord);
  }

  async createUpload(session: UploadSession): Promise<void> {
    await this.#db.transaction().execute(async (trx) => {
      await ensureRepository(trx, session.repository, session.createdAt);
      await trx
        .insertInto('uploads')
        .values({ id: session.id, repository: session.repository, created_at: session.createdAt })
        .execute();
    });
  }

  async getUpload(id: string): Promise<UploadSession | undefined> {
    const row = await this.#db.selectFrom('uploads').selectAll().where('id', '=', id).executeTakeFirst();
    return row === undefined
      ? undefined
      : { id: row.id, repository: row.repository, createdAt: Number(row.created_at) };
  }

  async deleteUpload(id: string): Promise<boolean> {
    const result = await this.#db.deleteFrom('uploads').where('id', '=', id).executeTakeFirst();
    return Number(result.numDeletedRows) > 0;
  }

  async listUploads(olderThan?: number): Promise<UploadSession[]> {
    let query = this.#db.selectFrom('uploads').selectAll().orderBy('created_at');
    if (olderThan !== undefined) query = query.where('created_at', '<', olderThan);
    const rows = await query.execute();
    return rows.map((row) => ({ id: row.id, repository: row.repository, createdAt: Number(row.created_at) }));
  }
}
