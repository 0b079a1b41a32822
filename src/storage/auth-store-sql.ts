import type { Kysely } from 'kysely';
import type {
  AuditEntry,
  AuthStore,
  Binding,
  ClusterTrust,
  RepositorySettings,
  RobotRecord,
  Role,
  UserRecord,
} from './auth-store.js';
import type { Schema } from './sql-schema.js';

type RobotRow = Schema['robots'];

function robot(row: RobotRow): RobotRecord {
  return {
    name: row.name,
    secretHash: row.secret_hash,
    description: row.description,
    createdAt: Number(row.created_at),
    ...(row.expires_at === null ? {} : { expiresAt: Number(row.expires_at) }),
    ...(row.revoked_at === null ? {} : { revokedAt: Number(row.revoked_at) }),
  };
}

/** AuthStore over the same Kysely database as the metadata (migrated by SqlMetadataStore.open). */
export class SqlAuthStore implements AuthStore {
  readonly #db: Kysely<Schema>;

  constructor(db: Kysely<Schema>) {
    this.#db = db;
  }

  async countUsers(): Promise<number> {
    const row = await this.#db
      .selectFrom('users')
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .executeTakeFirst();
    return Number(row?.n ?? 0);
  }

  async getUser(name: string): Promise<UserRecord | undefined> {
    const row = await this.#db.selectFrom('users').selectAll().where('name', '=', name).executeTakeFirst();
    return row && { name: row.name, passwordHash: row.password_hash, createdAt: Number(row.created_at) };
  }

  async putUser(user: UserRecord): Promise<void> {
    await this.#db
      .insertInto('users')
      .values({ name: user.name, password_hash: user.passwordHash, created_at: user.createdAt })
      .onConflict((oc) => oc.column('name').doUpdateSet({ password_hash: user.passwordHash }))
      .execute();
  }

  async deleteUser(name: string): Promise<boolean> {
    return this.#db.transaction().execute(async (trx) => {
      await trx.deleteFrom('bindings').where('member', '=', `user:${name}`).execute();
      const result = await trx.deleteFrom('users').where('name', '=', name).executeTakeFirst();
      return Number(result.numDeletedRows) > 0;
    });
  }

  async listUsers(): Promise<UserRecord[]> {
    const rows = await this.#db.selectFrom('users').selectAll().orderBy('name').execute();
    return rows.map((row) => ({
      name: row.name,
      passwordHash: row.password_hash,
      createdAt: Number(row.created_at),
    }));
  }

  async getRobot(name: string): Promise<RobotRecord | undefined> {
    const row = await this.#db.selectFrom('robots').selectAll().where('name', '=', name).executeTakeFirst();
    return row && robot(row);
  }

  async putRobot(record: RobotRecord): Promise<void> {
    await this.#db
      .insertInto('robots')
      .values({
        name: record.name,
        secret_hash: record.secretHash,
        description: record.description,
        created_at: record.createdAt,
        expires_at: record.expiresAt ?? null,
        revoked_at: record.revokedAt ?? null,
      })
      .execute();
  }

  async revokeRobot(name: string, at: number): Promise<boolean> {
    const result = await this.#db
      .updateTable('robots')
      .set({ revoked_at: at })
      .where('name', '=', name)
      .where('revoked_at', 'is', null)
      .executeTakeFirst();
    return Number(result.numUpdatedRows) > 0;
  }

  async listRobots(): Promise<RobotRecord[]> {
    return (await this.#db.selectFrom('robots').selectAll().orderBy('name').execute()).map(robot);
  }

  async addBinding(binding: Binding): Promise<void> {
    await this.#db
      .insertInto('bindings')
      .values({
        member: binding.member,
        role: binding.role,
        scope: binding.scope,
        created_at: binding.createdAt,
      })
      .onConflict((oc) => oc.columns(['member', 'scope']).doUpdateSet({ role: binding.role }))
      .execute();
  }

  async removeBinding(member: string, scope: string): Promise<boolean> {
    const result = await this.#db
      .deleteFrom('bindings')
      .where('member', '=', member)
      .where('scope', '=', scope)
      .executeTakeFirst();
    return Number(result.numDeletedRows) > 0;
  }

  async listBindings(filter: { member?: string; scope?: string } = {}): Promise<Binding[]> {
    let query = this.#db.selectFrom('bindings').selectAll().orderBy('scope').orderBy('member');
    if (filter.member !== undefined) query = query.where('member', '=', filter.member);
    if (filter.scope !== undefined) query = query.where('scope', '=', filter.scope);
    const rows = await query.execute();
    return rows.map((row) => ({
      member: row.member,
      role: row.role as Role,
      scope: row.scope,
      createdAt: Number(row.created_at),
    }));
  }

  async getRepositorySettings(name: string): Promise<RepositorySettings | undefined> {
    const row = await this.#db
      .selectFrom('repository_settings')
      .selectAll()
      .where('name', '=', name)
      .executeTakeFirst();
    return (
      row && {
        name: row.name,
        description: row.description,
        publicRead: row.public_read === 1,
        createdAt: Number(row.created_at),
      }
    );
  }

  async putRepositorySettings(settings: RepositorySettings): Promise<void> {
    const values = { description: settings.description, public_read: settings.publicRead ? 1 : 0 };
    await this.#db
      .insertInto('repository_settings')
      .values({ name: settings.name, created_at: settings.createdAt, ...values })
      .onConflict((oc) => oc.column('name').doUpdateSet(values))
      .execute();
  }

  async deleteRepositorySettings(name: string): Promise<boolean> {
    const result = await this.#db
      .deleteFrom('repository_settings')
      .where('name', '=', name)
      .executeTakeFirst();
    return Number(result.numDeletedRows) > 0;
  }

  async listRepositorySettings(): Promise<RepositorySettings[]> {
    const rows = await this.#db.selectFrom('repository_settings').selectAll().orderBy('name').execute();
    return rows.map((row) => ({
      name: row.name,
      description: row.description,
      publicRead: row.public_read === 1,
      createdAt: Number(row.created_at),
    }));
  }

  async putCluster(cluster: ClusterTrust): Promise<void> {
    const values = { issuer: cluster.issuer, jwks: cluster.jwks ?? null };
    await this.#db
      .insertInto('clusters')
      .values({ name: cluster.name, created_at: cluster.createdAt, ...values })
      .onConflict((oc) => oc.column('name').doUpdateSet(values))
      .execute();
  }

  async getCluster(name: string): Promise<ClusterTrust | undefined> {
    const row = await this.#db.selectFrom('clusters').selectAll().where('name', '=', name).executeTakeFirst();
    return (
      row && {
        name: row.name,
        issuer: row.issuer,
        createdAt: Number(row.created_at),
        ...(row.jwks === null ? {} : { jwks: row.jwks }),
      }
    );
  }

  async listClusters(): Promise<ClusterTrust[]> {
    const rows = await this.#db.selectFrom('clusters').selectAll().orderBy('name').execute();
    return rows.map((row) => ({
      name: row.name,
      issuer: row.issuer,
      createdAt: Number(row.created_at),
      ...(row.jwks === null ? {} : { jwks: row.jwks }),
    }));
  }

  async deleteCluster(name: string): Promise<boolean> {
    const result = await this.#db.deleteFrom('clusters').where('name', '=', name).executeTakeFirst();
    return Number(result.numDeletedRows) > 0;
  }

  async appendAudit(entry: Omit<AuditEntry, 'id'>): Promise<void> {
    await this.#db
      .insertInto('audit_log')
      .values({
        id: undefined,
        at: entry.at,
        actor: entry.actor,
        action: entry.action,
        target: entry.target,
        detail: entry.detail ? JSON.stringify(entry.detail) : null,
      })
      .execute();
  }

  async listAudit(filter: { since?: number; actor?: string; limit?: number } = {}): Promise<AuditEntry[]> {
    let query = this.#db
      .selectFrom('audit_log')
      .selectAll()
      .orderBy('id', 'desc')
      .limit(filter.limit ?? 1000);
    if (filter.since !== undefined) query = query.where('at', '>=', filter.since);
    if (filter.actor !== undefined) query = query.where('actor', '=', filter.actor);
    const rows = await query.execute();
    return rows.map((row) => ({
      id: Number(row.id),
      at: Number(row.at),
      actor: row.actor,
      action: row.action,
      target: row.target,
      ...(row.detail === null ? {} : { detail: JSON.parse(row.detail) as Record<string, unknown> }),
    }));
  }
}
