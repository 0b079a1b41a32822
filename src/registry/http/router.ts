import { RegistryError } from '../errors.js';
import type { Registry } from '../registry.js';
import type { Action } from '../auth/policy.js';
import { challenge, type Context } from './context.js';
import * as v2 from './v2-handlers.js';

type Handler = (ctx: Context, registry: Registry, target: v2.Target) => Promise<void> | void;

interface Route {
  readonly label: string;
  readonly pattern: RegExp;
  readonly methods: Readonly<Record<string, Handler>>;
  /** What each method needs on the repository. */
  readonly needs: Readonly<Record<string, Action>>;
}

/** `/v2/<name>/…` routes, matched from the end so that names may contain slashes. */
const ROUTES: readonly Route[] = [
  {
    label: 'manifests',
    pattern: /^\/v2\/(.+)\/manifests\/([^/]+)$/,
    methods: { GET: v2.getManifest, HEAD: v2.getManifest, PUT: v2.putManifest, DELETE: v2.deleteManifest },
    needs: { GET: 'pull', HEAD: 'pull', PUT: 'push', DELETE: 'delete' },
  },
  {
    label: 'uploads',
    pattern: /^\/v2\/(.+)\/blobs\/uploads\/?()$/,
    methods: { POST: v2.startUpload },
    needs: { POST: 'push' },
  },
  {
    label: 'upload',
    pattern: /^\/v2\/(.+)\/blobs\/uploads\/([^/]+)$/,
    methods: { GET: v2.uploadStatus, PATCH: v2.patchUpload, PUT: v2.finishUpload, DELETE: v2.cancelUpload },
    needs: { GET: 'push', PATCH: 'push', PUT: 'push', DELETE: 'push' },
  },
  {
    label: 'blobs',
    pattern: /^\/v2\/(.+)\/blobs\/([^/]+)$/,
    methods: { GET: v2.getBlob, HEAD: v2.getBlob, DELETE: v2.deleteBlob },
    needs: { GET: 'pull', HEAD: 'pull', DELETE: 'delete' },
  },
  {
    label: 'tags',
    pattern: /^\/v2\/(.+)\/tags\/list()$/,
    methods: { GET: v2.tagsList, HEAD: v2.tagsList },
    needs: { GET: 'pull', HEAD: 'pull' },
  },
  {
    label: 'referrers',
    pattern: /^\/v2\/(.+)\/referrers\/([^/]+)$/,
    methods: { GET: v2.referrers },
    needs: { GET: 'pull' },
  },
];

function decode(part: string): string {
  if (!part.includes('%')) return part;
  try {
    return decodeURIComponent(part);
  } catch {
    throw new RegistryError('NAME_INVALID', `Path segment "${part}" is not valid percent-encoding`);
  }
}

/**
 * Dispatches a `/v2/` request: false when no route matches the path, true when it was answered at once,
 * else a promise of the answer. Errors may be thrown or rejected.
 */
export function routeV2(ctx: Context, registry: Registry): boolean | Promise<void> {
  const { path } = ctx;
  const method = ctx.req.method ?? 'GET';
  if (path === '/v2/' || path === '/v2') {
    ctx.route = 'base';
    if (method !== 'GET' && method !== 'HEAD') throw methodNotAllowed(ctx, path, ['GET', 'HEAD']);
    // Any valid token answers the version check, an anonymous one too (as the reference registry does).
    if (ctx.access.enabled && ctx.caller.principal.kind === 'anonymous' && !ctx.caller.claims) {
      throw new RegistryError('UNAUTHORIZED', 'Authentication required');
    }
    v2.base(ctx);
    return true;
  }
  if (path === '/v2/_catalog') {
    ctx.route = 'catalog';
    if (method !== 'GET') throw methodNotAllowed(ctx, path, ['GET']);
    if (ctx.access.enabled && ctx.caller.principal.kind === 'anonymous') {
      throw new RegistryError('UNAUTHORIZED', 'Authentication required to list repositories', {
        detail: { scope: 'registry:catalog:*' },
      });
    }
    return v2.catalog(ctx, registry);
  }
  for (const route of ROUTES) {
    const match = route.pattern.exec(path);
    if (!match) continue;
    ctx.route = route.label;
    const handler = route.methods[method];
    if (!handler) throw methodNotAllowed(ctx, path, Object.keys(route.methods));
    const name = decode(match[1] ?? '');
    registry.checkName(name);
    const need = route.needs[method];
    if (need && !ctx.access.allows(ctx.caller, name, need)) denied(ctx, name, need);
    const target = { name, ref: decode(match[2] ?? '') };
    if (need === 'push') return registry.checkPushTarget(name).then(() => handler(ctx, registry, target));
    return handler(ctx, registry, target) ?? true;
  }
  return false;
}

/** 401 with a challenge for the anonymous or a token lacking scope; 403 for a known caller without the role. */
function denied(ctx: Context, name: string, action: Action): never {
  const scope = `repository:${name}:${action === 'pull' ? 'pull' : `pull,${action}`}`;
  if (ctx.caller.claims) {
    ctx.res.setHeader('www-authenticate', challenge(ctx, scope, true));
    throw new RegistryError('UNAUTHORIZED', `The token does not grant "${action}" on "${name}"`, {
      detail: { scope },
    });
  }
  if (ctx.caller.principal.kind === 'anonymous') {
    throw new RegistryError('UNAUTHORIZED', `Authentication required to ${action} "${name}"`, {
      detail: { scope },
    });
  }
  throw new RegistryError('DENIED', `${ctx.caller.principal.member} may not ${action} "${name}"`, {
    detail: { repository: name, action },
  });
}

/** 405, with the methods the path does take in `Allow` (as HTTP requires). */
function methodNotAllowed(ctx: Context, path: string, allowed: readonly string[]): RegistryError {
  ctx.res.setHeader('allow', allowed.join(', '));
  const method = ctx.req.method ?? 'GET';
  return new RegistryError('UNSUPPORTED', `Method ${method} is not supported on "${path}"`, { status: 405 });
}
