import { repositoryNameProblem } from '../../oci/index.js';
import type { Role } from '../../storage/index.js';
import { RegistryError } from '../errors.js';
import { memberProblem } from '../auth/access.js';
import { hashPassword, newRobotSecret } from '../auth/password.js';
import { ROLES, scopeProblem } from '../auth/policy.js';
import { gcAuditDetail, type GarbageCollectionOptions } from '../gc.js';
import type { Registry } from '../registry.js';
import { readSmallBody, recordAudit, sendEmpty, sendJson, type Context } from './context.js';
import { harborApi } from './harbor-api.js';
import { eventStream } from './events-handler.js';

type Json = Record<string, unknown>;

/** The request's JSON object; with `emptyAs`, an empty body is read as that (`curl -X POST` without -d). */
async function body(ctx: Context, emptyAs?: Json): Promise<Json> {
  const bytes = await readSmallBody(ctx, 1024 * 1024, 'request');
  if (emptyAs && bytes.byteLength === 0) return emptyAs;
  try {
    const parsed = JSON.parse(bytes.toString('utf8')) as unknown;
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed))
      throw new Error('not an object');
    return parsed as Json;
  } catch (error) {
    throw new RegistryError(
      'UNSUPPORTED',
      `The request body is not a JSON object: ${(error as Error).message}`,
      { status: 400 },
    );
  }
}

function field(data: Json, name: string, required = true): string | undefined {
  const value = data[name];
  if (value === undefined && !required) return undefined;
  if (typeof value !== 'string' || value === '')
    throw new RegistryError('UNSUPPORTED', `Field "${name}" must be a non-empty string`, { status: 400 });
  return value;
}

/** The body of `POST /api/v1/gc`: `dryRun`, `deleteUntagged` (booleans), `graceSeconds` (whole seconds). */
function gcOptions(data: Json): GarbageCollectionOptions {
  for (const key of Object.keys(data)) {
    if (!['dryRun', 'deleteUntagged', 'graceSeconds'].includes(key))
      throw badRequest(`Unknown field "${key}": expected dryRun, deleteUntagged or graceSeconds`);
  }
  for (const key of ['dryRun', 'deleteUntagged']) {
    if (data[key] !== undefined && typeof data[key] !== 'boolean')
      throw badRequest(`Field "${key}" must be true or false`);
  }
  const grace = data.graceSeconds;
  if (grace !== undefined && (typeof grace !== 'number' || !Number.isSafeInteger(grace) || grace < 0))
    throw badRequest('Field "graceSeconds" must be a whole number of seconds, 0 or more');
  return {
    dryRun: data.dryRun === true,
    deleteUntagged: data.deleteUntagged === true,
    ...(grace === undefined ? {} : { graceMs: grace * 1000 }),
  };
}

function badRequest(message: string): RegistryError {
  return new RegistryError('UNSUPPORTED', message, { status: 400 });
}

function requireLogin(ctx: Context): void {
  if (ctx.access.enabled && ctx.caller.principal.kind === 'anonymous')
    throw new RegistryError('UNAUTHORIZED', 'Authentication required');
}

function requireAdmin(ctx: Context): void {
  requireLogin(ctx);
  if (!ctx.access.isRegistryAdmin(ctx.caller))
    throw new RegistryError('DENIED', `${ctx.caller.principal.member} is not a registry admin`);
}

/** Admin on a repository or prefix: an admin binding on a scope covering it. */
function requireManage(ctx: Context, scope: string): void {
  requireLogin(ctx);
  const probe = scope === '*' ? '' : scope.endsWith('/') ? `${scope}x` : scope;
  if (
    scope === '*' ? !ctx.access.isRegistryAdmin(ctx.caller) : !ctx.access.allows(ctx.caller, probe, 'manage')
  ) {
    throw new RegistryError('DENIED', `${ctx.caller.principal.member} may not manage "${scope}"`);
  }
}

/** Routes `/api/v1/…` (management) and `/api/v2.0/…` (Harbor-compatible reads); false when nothing matches. */
export async function routeApi(ctx: Context, registry: Registry): Promise<boolean> {
  if (ctx.path.startsWith('/api/v2.0/')) return harborApi(ctx, registry);
  const method = ctx.req.method ?? 'GET';
  const path = ctx.path.slice('/api/v1'.length);
  const store = ctx.access.store;
  ctx.route = 'api';

  if (path === '/repositories') {
    if (method === 'GET') {
      requireLogin(ctx);
      const settings = new Map((await store.listRepositorySettings()).map((r) => [r.name, r]));
      const names = new Set([...(await registry.listRepositories({ n: 100_000 })), ...settings.keys()]);
      const list = [...names]
        .sort()
        .filter((n) => ctx.access.canSee(ctx.caller, n) || ctx.access.allows(ctx.caller, n, 'manage'));
      sendJson(
        ctx,
        list.map((name) => ({
          name,
          description: settings.get(name)?.description ?? '',
          public: settings.get(name)?.publicRead ?? false,
        })),
      );
      return true;
    }
    if (method === 'POST') {
      const data = await body(ctx);
      const name = field(data, 'name') as string;
      const problem = repositoryNameProblem(name);
      if (problem) throw new RegistryError('NAME_INVALID', `Invalid repository name "${name}": ${problem}`);
      requireManage(ctx, name);
      const existing = await store.getRepositorySettings(name);
      if (existing || (await registry.repositoryExists(name))) {
        throw new RegistryError('UNSUPPORTED', `Repository "${name}" already exists`, { status: 409 });
      }
      const description = typeof data.description === 'string' ? data.description : '';
      await store.putRepositorySettings({
        name,
        description,
        publicRead: data.public === true,
        createdAt: Date.now(),
      });
      await registry.createRepository(name);
      await ctx.access.refresh();
      await recordAudit(ctx, { action: 'repository.create', target: name, detail: { description } });
      sendJson(ctx, { name, description, public: data.public === true }, { status: 201 });
      return true;
    }
  }
  const repoMatch = /^\/repositories\/(.+)$/.exec(path);
  if (repoMatch && method === 'DELETE') {
    const name = decodeURIComponent(repoMatch[1] ?? '');
    requireManage(ctx, name);
    const hadContent = await registry.deleteRepository(name);
    const hadSettings = await store.deleteRepositorySettings(name);
    if (!hadContent && !hadSettings)
      throw new RegistryError('NAME_UNKNOWN', `Repository "${name}" is not known`);
    await ctx.access.refresh();
    await recordAudit(ctx, { action: 'repository.delete', target: name });
    sendEmpty(ctx, 204);
    return true;
  }

  if (path === '/bindings') {
    if (method === 'GET') {
      const scope = ctx.query.get('scope') ?? undefined;
      if (scope !== undefined) requireManage(ctx, scope);
      else requireAdmin(ctx);
      const member = ctx.query.get('member') ?? undefined;
      const list = await store.listBindings({
        ...(scope === undefined ? {} : { scope }),
        ...(member === undefined ? {} : { member }),
      });
      sendJson(ctx, list);
      return true;
    }
    if (method === 'POST' || method === 'DELETE') {
      const data = method === 'POST' ? await body(ctx) : Object.fromEntries(ctx.query.entries());
      const member = field(data, 'member') as string;
      const scope = field(data, 'scope') as string;
      const memberWhy = memberProblem(member);
      if (memberWhy) throw badRequest(`Invalid member "${member}": ${memberWhy}`);
      const scopeWhy = scopeProblem(scope);
      if (scopeWhy) throw badRequest(`Invalid scope "${scope}": ${scopeWhy}`);
      requireManage(ctx, scope);
      if (method === 'DELETE') {
        if (!(await store.removeBinding(member, scope)))
          throw new RegistryError('NAME_UNKNOWN', `No binding of ${member} on "${scope}"`);
        await ctx.access.refresh();
        await recordAudit(ctx, { action: 'binding.remove', target: scope, detail: { member } });
        sendEmpty(ctx, 204);
        return true;
      }
      const role = field(data, 'role') as string;
      if (!(ROLES as readonly string[]).includes(role))
        throw badRequest(`Invalid role "${role}": use ${ROLES.join(', ')}`);
      await store.addBinding({ member, scope, role: role as Role, createdAt: Date.now() });
      await ctx.access.refresh();
      await recordAudit(ctx, { action: 'binding.add', target: scope, detail: { member, role } });
      sendJson(ctx, { member, scope, role }, { status: 201 });
      return true;
    }
  }

  if (path === '/users') {
    requireAdmin(ctx);
    if (method === 'GET') {
      sendJson(
        ctx,
        (await store.listUsers()).map((u) => ({
          name: u.name,
          createdAt: new Date(u.createdAt).toISOString(),
        })),
      );
      return true;
    }
    if (method === 'POST') {
      const data = await body(ctx);
      const name = field(data, 'name') as string;
      if (!/^[A-Za-z0-9._@-]{1,128}$/.test(name))
        throw badRequest(`Invalid user name "${name}": letters, digits, ".", "_", "@" and "-"`);
      const password = field(data, 'password') as string;
      if (password.length < 8) throw badRequest('The password must have at least 8 characters');
      if (await store.getUser(name))
        throw new RegistryError('UNSUPPORTED', `User "${name}" already exists`, { status: 409 });
      await store.putUser({ name, passwordHash: await hashPassword(password), createdAt: Date.now() });
      await ctx.access.refresh();
      await recordAudit(ctx, { action: 'user.add', target: name });
      sendJson(ctx, { name }, { status: 201 });
      return true;
    }
  }
  const userMatch = /^\/users\/([^/]+)(\/password)?$/.exec(path);
  if (userMatch) {
    const name = decodeURIComponent(userMatch[1] ?? '');
    const self = ctx.caller.principal.member === `user:${name}`;
    if (userMatch[2] && method === 'PUT') {
      if (!self) requireAdmin(ctx);
      const password = field(await body(ctx), 'password') as string;
      if (password.length < 8) throw badRequest('The password must have at least 8 characters');
      const user = await store.getUser(name);
      if (!user) throw new RegistryError('NAME_UNKNOWN', `No user "${name}"`);
      await store.putUser({ ...user, passwordHash: await hashPassword(password) });
      await ctx.access.refresh();
      await recordAudit(ctx, { action: 'user.passwd', target: name });
      sendEmpty(ctx, 204);
      return true;
    }
    if (!userMatch[2] && method === 'DELETE') {
      requireAdmin(ctx);
      if (!(await store.deleteUser(name))) throw new RegistryError('NAME_UNKNOWN', `No user "${name}"`);
      await ctx.access.refresh();
      await recordAudit(ctx, { action: 'user.remove', target: name });
      sendEmpty(ctx, 204);
      return true;
    }
  }

  if (path === '/robots') {
    requireAdmin(ctx);
    if (method === 'GET') {
      sendJson(
        ctx,
        (await store.listRobots()).map((r) => ({
          name: r.name,
          description: r.description,
          createdAt: new Date(r.createdAt).toISOString(),
          ...(r.expiresAt ? { expiresAt: new Date(r.expiresAt).toISOString() } : {}),
          revoked: r.revokedAt !== undefined,
        })),
      );
      return true;
    }
    if (method === 'POST') {
      const data = await body(ctx);
      const name = field(data, 'name') as string;
      if (!/^[a-z0-9._-]{1,128}$/.test(name))
        throw badRequest(`Invalid robot name "${name}": lower-case letters, digits, ".", "_" and "-"`);
      if (await store.getRobot(name))
        throw new RegistryError('UNSUPPORTED', `Robot "${name}" already exists`, { status: 409 });
      const days = data.expiresInDays;
      if (days !== undefined && (typeof days !== 'number' || !(days > 0)))
        throw badRequest('expiresInDays must be a positive number');
      const { secret, hash } = newRobotSecret();
      const createdAt = Date.now();
      await store.putRobot({
        name,
        secretHash: hash,
        description: typeof data.description === 'string' ? data.description : '',
        createdAt,
        ...(typeof days === 'number' ? { expiresAt: createdAt + days * 86_400_000 } : {}),
      });
      await recordAudit(ctx, { action: 'robot.create', target: name });
      sendJson(
        ctx,
        { name, username: `robot$${name}`, secret, note: 'the secret is shown once' },
        { status: 201 },
      );
      return true;
    }
  }
  const robotMatch = /^\/robots\/([^/]+)$/.exec(path);
  if (robotMatch && method === 'DELETE') {
    requireAdmin(ctx);
    const name = decodeURIComponent(robotMatch[1] ?? '');
    if (!(await store.revokeRobot(name, Date.now())))
      throw new RegistryError('NAME_UNKNOWN', `No active robot "${name}"`);
    await ctx.access.refresh();
    await recordAudit(ctx, { action: 'robot.revoke', target: name });
    sendEmpty(ctx, 204);
    return true;
  }

  if (path === '/clusters') {
    requireAdmin(ctx);
    if (method === 'GET') {
      sendJson(
        ctx,
        (await store.listClusters()).map((c) => ({
          name: c.name,
          issuer: c.issuer,
          staticJwks: c.jwks !== undefined,
        })),
      );
      return true;
    }
    if (method === 'POST') {
      const data = await body(ctx);
      const name = field(data, 'name') as string;
      if (!/^[a-z0-9.-]{1,128}$/.test(name))
        throw badRequest(`Invalid cluster name "${name}": lower-case letters, digits, "." and "-"`);
      const issuer = field(data, 'issuer') as string;
      let jwks: string | undefined;
      if (data.jwks !== undefined) {
        const parsed = typeof data.jwks === 'string' ? (JSON.parse(data.jwks) as unknown) : data.jwks;
        if (
          typeof parsed !== 'object' ||
          parsed === null ||
          !Array.isArray((parsed as { keys?: unknown }).keys)
        ) {
          throw badRequest('jwks must be a JSON Web Key Set: {"keys": [...]}');
        }
        jwks = JSON.stringify(parsed);
      } else if (!/^https:\/\//.test(issuer)) {
        throw badRequest(
          'Without a static jwks the issuer must be an https URL whose OIDC discovery the registry can reach',
        );
      }
      await store.putCluster({ name, issuer, createdAt: Date.now(), ...(jwks ? { jwks } : {}) });
      await ctx.access.refresh();
      await recordAudit(ctx, { action: 'cluster.trust', target: name, detail: { issuer } });
      sendJson(ctx, { name, issuer, staticJwks: jwks !== undefined }, { status: 201 });
      return true;
    }
  }
  const clusterMatch = /^\/clusters\/([^/]+)$/.exec(path);
  if (clusterMatch && method === 'DELETE') {
    requireAdmin(ctx);
    const name = decodeURIComponent(clusterMatch[1] ?? '');
    if (!(await store.deleteCluster(name)))
      throw new RegistryError('NAME_UNKNOWN', `No trusted cluster "${name}"`);
    await ctx.access.refresh();
    await recordAudit(ctx, { action: 'cluster.remove', target: name });
    sendEmpty(ctx, 204);
    return true;
  }

  if (path === '/audit' && method === 'GET') {
    requireAdmin(ctx);
    const since = ctx.query.get('since');
    const actor = ctx.query.get('actor');
    sendJson(
      ctx,
      await store.listAudit({
        ...(since ? { since: Date.parse(since) } : {}),
        ...(actor ? { actor } : {}),
        limit: Number(ctx.query.get('limit') ?? 1000),
      }),
    );
    return true;
  }
  if (path === '/events' && method === 'GET') {
    requireLogin(ctx);
    eventStream(ctx, registry);
    return true;
  }
  if (path === '/gc' && method === 'POST') {
    requireAdmin(ctx);
    const options = gcOptions(await body(ctx, {}));
    const report = await registry.collectGarbage(options);
    if (!report.dryRun) {
      await recordAudit(ctx, {
        action: 'gc',
        target: '*',
        detail: gcAuditDetail(report),
      });
    }
    sendJson(ctx, report);
    return true;
  }
  if (path === '/whoami' && method === 'GET') {
    sendJson(ctx, { member: ctx.caller.principal.member, admin: ctx.access.isRegistryAdmin(ctx.caller) });
    return true;
  }
  return false;
}
