import { RegistryError } from '../errors.js';
import type { Registry } from '../registry.js';
import type { Context } from './context.js';
import * as v2 from './v2-handlers.js';

type Handler = (ctx: Context, registry: Registry, target: v2.Target) => Promise<void> | void;

interface Route {
  readonly label: string;
  readonly pattern: RegExp;
  readonly methods: Readonly<Record<string, Handler>>;
}

/** `/v2/<name>/…` routes, matched from the end so that names may contain slashes. */
const ROUTES: readonly Route[] = [
  {
    label: 'manifests',
    pattern: /^\/v2\/(.+)\/manifests\/([^/]+)$/,
    methods: { GET: v2.getManifest, HEAD: v2.getManifest, PUT: v2.putManifest, DELETE: v2.deleteManifest },
  },
  {
    label: 'uploads',
    pattern: /^\/v2\/(.+)\/blobs\/uploads\/?()$/,
    methods: { POST: v2.startUpload },
  },
  {
    label: 'upload',
    pattern: /^\/v2\/(.+)\/blobs\/uploads\/([^/]+)$/,
    methods: { GET: v2.uploadStatus, PATCH: v2.patchUpload, PUT: v2.finishUpload, DELETE: v2.cancelUpload },
  },
  {
    label: 'blobs',
    pattern: /^\/v2\/(.+)\/blobs\/([^/]+)$/,
    methods: { GET: v2.getBlob, HEAD: v2.getBlob, DELETE: v2.deleteBlob },
  },
  {
    label: 'tags',
    pattern: /^\/v2\/(.+)\/tags\/list()$/,
    methods: { GET: v2.tagsList },
  },
  {
    label: 'referrers',
    pattern: /^\/v2\/(.+)\/referrers\/([^/]+)$/,
    methods: { GET: v2.referrers },
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

/** Dispatches a `/v2/` request; returns false when no route matches the path. */
export async function routeV2(ctx: Context, registry: Registry): Promise<boolean> {
  const { path } = ctx;
  const method = ctx.req.method ?? 'GET';
  if (path === '/v2/' || path === '/v2') {
    ctx.route = 'base';
    if (method !== 'GET' && method !== 'HEAD') throw methodNotAllowed(method, path);
    v2.base(ctx);
    return true;
  }
  if (path === '/v2/_catalog') {
    ctx.route = 'catalog';
    if (method !== 'GET') throw methodNotAllowed(method, path);
    await v2.catalog(ctx, registry);
    return true;
  }
  for (const route of ROUTES) {
    const match = route.pattern.exec(path);
    if (!match) continue;
    ctx.route = route.label;
    const handler = route.methods[method];
    if (!handler) throw methodNotAllowed(method, path);
    const name = decode(match[1] ?? '');
    registry.checkName(name);
    await handler(ctx, registry, { name, ref: decode(match[2] ?? '') });
    return true;
  }
  return false;
}

function methodNotAllowed(method: string, path: string): RegistryError {
  return new RegistryError('UNSUPPORTED', `Method ${method} is not supported on "${path}"`, { status: 405 });
}
