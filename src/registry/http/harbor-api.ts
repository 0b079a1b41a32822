import { RegistryError } from '../errors.js';
import type { Registry } from '../registry.js';
import { sendJson, type Context } from './context.js';

/** Harbor's page/page_size pagination with X-Total-Count and Link headers. */
function paginate<T>(ctx: Context, items: readonly T[]): { page: T[]; headers: Record<string, string> } {
  const page = Math.max(1, Number(ctx.query.get('page') ?? 1) || 1);
  const size = Math.min(100, Math.max(1, Number(ctx.query.get('page_size') ?? 10) || 10));
  const start = (page - 1) * size;
  const links: string[] = [];
  const base = ctx.path;
  const keep = [...ctx.query.entries()]
    .filter(([k]) => k !== 'page' && k !== 'page_size')
    .map(([k, v]) => `&${k}=${encodeURIComponent(v)}`)
    .join('');
  if (page > 1) links.push(`<${base}?page=${page - 1}&page_size=${size}${keep}>; rel="prev"`);
  if (start + size < items.length)
    links.push(`<${base}?page=${page + 1}&page_size=${size}${keep}>; rel="next"`);
  return {
    page: items.slice(start, start + size),
    headers: { 'x-total-count': String(items.length), ...(links.length ? { link: links.join(', ') } : {}) },
  };
}

const iso = (ms: number): string => new Date(ms).toISOString();

/** Stable small ids derived from names, since Harbor clients expect numbers. */
function idOf(name: string): number {
  let h = 0;
  for (const c of name) h = (h * 31 + c.charCodeAt(0)) >>> 0;
  return h % 1_000_000;
}

/**
 * The read subset of Harbor's API v2.0 that scripts use: projects (a repository path's first part),
 * repositories and artifacts with tags. Repository names inside a project are URL-encoded twice, as in Harbor.
 */
export async function harborApi(ctx: Context, registry: Registry): Promise<boolean> {
  ctx.route = 'harbor';
  if ((ctx.req.method ?? 'GET') !== 'GET') return false;
  if (ctx.access.enabled && ctx.caller.principal.kind === 'anonymous')
    throw new RegistryError('UNAUTHORIZED', 'Authentication required');
  const visible = (await registry.listRepositories({ n: 1_000_000 })).filter((name) =>
    ctx.access.canSee(ctx.caller, name),
  );
  const path = ctx.path.slice('/api/v2.0'.length);
  if (path === '/projects') {
    const projects = new Map<string, string[]>();
    for (const name of visible) {
      const project = name.split('/')[0] ?? name;
      projects.set(project, [...(projects.get(project) ?? []), name]);
    }
    const list = [...projects.entries()].map(([name, repos]) => ({
      project_id: idOf(name),
      name,
      repo_count: repos.length,
      metadata: { public: 'false' },
    }));
    const { page, headers } = paginate(ctx, list);
    sendJson(ctx, page, { headers });
    return true;
  }
  const repos = /^\/projects\/([^/]+)\/repositories$/.exec(path);
  if (repos) {
    const project = decodeURIComponent(repos[1] ?? '');
    const list = [];
    for (const name of visible.filter((n) => n.startsWith(`${project}/`))) {
      const manifests = await registry.listManifests(name);
      const latest = manifests[0]?.createdAt ?? 0;
      list.push({
        id: idOf(name),
        name,
        project_id: idOf(project),
        artifact_count: manifests.length,
        creation_time: iso(manifests.at(-1)?.createdAt ?? latest),
        update_time: iso(latest),
        pull_count: 0,
      });
    }
    const { page, headers } = paginate(ctx, list);
    sendJson(ctx, page, { headers });
    return true;
  }
  const artifacts = /^\/projects\/([^/]+)\/repositories\/([^/]+)\/artifacts$/.exec(path);
  if (artifacts) {
    const project = decodeURIComponent(artifacts[1] ?? '');
    // Harbor clients encode "a/b" as a%252Fb; the URL layer turned that into a%2Fb, decode once more.
    const repository = decodeURIComponent(decodeURIComponent(artifacts[2] ?? ''));
    const name = `${project}/${repository}`;
    if (!ctx.access.canSee(ctx.caller, name))
      throw new RegistryError('NAME_UNKNOWN', `Repository "${name}" is not known`);
    const withTag = ctx.query.get('with_tag') !== 'false';
    const list = (await registry.describeArtifacts(name)).map((a) => ({
      id: idOf(a.digest),
      type:
        a.artifactType?.includes('image.config') ||
        a.artifactType?.includes('container.image') ||
        a.kind === 'index'
          ? 'IMAGE'
          : 'ARTIFACT',
      digest: a.digest,
      size: a.size,
      push_time: iso(a.createdAt),
      pull_time: '0001-01-01T00:00:00.000Z',
      media_type: a.configMediaType ?? a.mediaType,
      manifest_media_type: a.mediaType,
      artifact_type: a.artifactType ?? a.configMediaType ?? a.mediaType,
      project_id: idOf(project),
      repository_id: idOf(name),
      repository_name: name,
      tags:
        withTag && a.tags.length > 0
          ? a.tags.map((t) => ({
              name: t.name,
              push_time: iso(t.updatedAt),
              repository_id: idOf(name),
              immutable: false,
            }))
          : null,
      references:
        a.children.length > 0
          ? a.children.map((c) => ({
              child_digest: c.digest,
              ...(c.platform ? { platform: c.platform } : {}),
            }))
          : null,
      annotations: a.annotations ?? null,
    }));
    const { page, headers } = paginate(ctx, list);
    sendJson(ctx, page, { headers });
    return true;
  }
  return false;
}
