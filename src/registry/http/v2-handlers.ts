import { Header, MediaType, MAX_MANIFEST_BYTES, type Digest } from '../../oci/index.js';
import type { ByteRange } from '../../storage/index.js';
import { RegistryError } from '../errors.js';
import type { Registry, StoredManifest } from '../registry.js';
import {
  API_VERSION,
  drain,
  pageQuery,
  readSmallBody,
  recordAudit,
  sendEmpty,
  sendJson,
  type Context,
} from './context.js';

/** The repository and the reference, digest or upload id a route names. */
export interface Target {
  readonly name: string;
  readonly ref: string;
}

const LIST_MAX = 10_000;

function uploadLocation(name: string, id: string): string {
  return `/v2/${name}/blobs/uploads/${id}`;
}

function uploadHeaders(name: string, id: string, size: number): Record<string, string> {
  return {
    location: uploadLocation(name, id),
    range: `0-${Math.max(size - 1, 0)}`,
    [Header.UploadUuid]: id,
  };
}

/**
 * The one byte range a blob GET asks for (RFC 9110), or undefined to send the whole blob: no Range, a unit
 * other than bytes (which must be ignored), or several ranges (which a server may ignore). Throws 416
 * (the caller adds a Content-Range with the blob's size) for a malformed range or one outside the blob.
 */
export function parseRangeHeader(value: string, size: number): ByteRange | undefined {
  const equals = value.indexOf('=');
  if (equals < 0 || value.slice(0, equals).trim().toLowerCase() !== 'bytes') return undefined;
  const set = value.slice(equals + 1).split(',');
  if (set.length > 1) return undefined;
  const unsatisfiable = (why: string): RegistryError =>
    new RegistryError('BLOB_UNKNOWN', `Range "${value}" ${why}`, { status: 416, detail: { size } });
  const match = /^(\d*)-(\d*)$/.exec((set[0] ?? '').trim());
  if (!match || (match[1] === '' && match[2] === '')) throw unsatisfiable('is not a byte range');
  // `-n` is the last n bytes; `a-` runs to the end; `a-b` ends at b or the blob's end (a b before a is
  // caught below as start > end).
  const start = match[1] === '' ? Math.max(size - Number(match[2]), 0) : Number(match[1]);
  const end = match[1] === '' || match[2] === '' ? size - 1 : Math.min(Number(match[2]), size - 1);
  if (start > end || start >= size) throw unsatisfiable(`is outside the blob's ${size} bytes`);
  return { start, end };
}

/** Parses a PATCH `Content-Range: start-end` (the spec's form; `bytes ` and `bytes=` prefixes tolerated). */
function parseContentRange(value: string): { start: number; end: number } {
  const match = /^(?:bytes[ =])?(\d+)-(\d+)(?:\/\d+|\/\*)?$/.exec(value.trim());
  if (!match)
    throw new RegistryError('BLOB_UPLOAD_INVALID', `Content-Range "${value}" is not "start-end"`, {
      status: 416,
    });
  const start = Number(match[1]);
  const end = Number(match[2]);
  if (end < start)
    throw new RegistryError('BLOB_UPLOAD_INVALID', `Content-Range "${value}" ends before it starts`, {
      status: 416,
    });
  return { start, end };
}

export function base(ctx: Context): void {
  sendJson(ctx, {}, { headers: { [Header.ApiVersion]: API_VERSION } });
}

export async function catalog(ctx: Context, registry: Registry): Promise<void> {
  const page = pageQuery(ctx, LIST_MAX);
  const repositories = page.n === 0 ? [] : await visibleRepositories(ctx, registry, page);
  const headers: Record<string, string> = {};
  const last = repositories.at(-1);
  if (last !== undefined && repositories.length === page.n) {
    headers.link = `</v2/_catalog?last=${encodeURIComponent(last)}&n=${page.n}>; rel="next"`;
  }
  sendJson(ctx, { repositories }, { headers });
}

/** Catalog pages holding only repositories the caller may see (pages are filled past hidden ones). */
async function visibleRepositories(
  ctx: Context,
  registry: Registry,
  page: { n: number; last?: string },
): Promise<string[]> {
  if (!ctx.access.enabled) return registry.listRepositories(page);
  const out: string[] = [];
  let last = page.last;
  for (let round = 0; round < 100 && out.length < page.n; round++) {
    const batch = await registry.listRepositories({ n: 1000, ...(last === undefined ? {} : { last }) });
    // A bearer token for the catalog names no repositories; what the principal may see is what counts.
    const who = { principal: ctx.caller.principal };
    for (const name of batch) if (out.length < page.n && ctx.access.canSee(who, name)) out.push(name);
    if (batch.length < 1000) break;
    last = batch.at(-1);
  }
  return out;
}

export async function tagsList(ctx: Context, registry: Registry, { name }: Target): Promise<void> {
  const page = pageQuery(ctx, LIST_MAX);
  const tags = await registry.listTags(name, page.n === 0 ? { n: 1 } : page);
  const shown = page.n === 0 ? [] : tags;
  const headers: Record<string, string> = {};
  const last = shown.at(-1);
  if (last !== undefined && shown.length === page.n) {
    headers.link = `</v2/${name}/tags/list?last=${encodeURIComponent(last)}&n=${page.n}>; rel="next"`;
  }
  sendJson(ctx, { name, tags: shown }, { headers });
}

export async function referrers(
  ctx: Context,
  registry: Registry,
  { name, ref: digest }: Target,
): Promise<void> {
  const artifactType = ctx.query.get('artifactType') ?? undefined;
  const all = await registry.listReferrers(name, digest, artifactType);
  const page = pageQuery(ctx, 1_000);
  let start = 0;
  if (page.last !== undefined) start = all.findIndex((d) => d.digest === page.last) + 1;
  const manifests = all.slice(start, start + page.n);
  const headers: Record<string, string> = {};
  if (artifactType !== undefined) headers[Header.OciFiltersApplied] = 'artifactType';
  const last = manifests.at(-1);
  if (last && start + manifests.length < all.length) {
    const filter = artifactType === undefined ? '' : `&artifactType=${encodeURIComponent(artifactType)}`;
    headers.link = `</v2/${name}/referrers/${digest}?last=${last.digest}&n=${page.n}${filter}>; rel="next"`;
  }
  const body = { schemaVersion: 2, mediaType: MediaType.OciIndex, manifests };
  const bytes = Buffer.from(JSON.stringify(body));
  ctx.res.writeHead(200, {
    'content-type': MediaType.OciIndex,
    'content-length': bytes.byteLength,
    ...headers,
  });
  ctx.res.end(ctx.req.method === 'HEAD' ? undefined : bytes);
}

export function getManifest(
  ctx: Context,
  registry: Registry,
  { name, ref: reference }: Target,
): Promise<void> | undefined {
  // Hot path: most manifest reads are answered from memory without a promise in between.
  const cached = registry.cachedManifest(name, reference);
  if (cached) {
    sendManifest(ctx, cached);
    return undefined;
  }
  return registry.getManifest(name, reference).then((manifest) => sendManifest(ctx, manifest));
}

/** True when the request's If-None-Match names `digest` (quoted or not, weak or not) or is `*`. */
function notModified(ctx: Context, digest: string): boolean {
  const header = ctx.req.headers['if-none-match'];
  if (header === undefined) return false;
  return header.split(',').some((tag) => {
    const text = tag.trim().replace(/^W\//, '');
    return text === '*' || text === `"${digest}"` || text === digest;
  });
}

function sendManifest(ctx: Context, manifest: StoredManifest): void {
  const headers = {
    'content-type': manifest.mediaType,
    [Header.ContentDigest]: manifest.digest,
    etag: `"${manifest.digest}"`,
  };
  if (notModified(ctx, manifest.digest)) {
    sendEmpty(ctx, 304, headers);
    return;
  }
  ctx.res.writeHead(200, {
    ...headers,
    'content-length': manifest.bytes.byteLength,
  });
  ctx.res.end(ctx.req.method === 'HEAD' ? undefined : manifest.bytes);
}

export async function putManifest(
  ctx: Context,
  registry: Registry,
  { name, ref: reference }: Target,
): Promise<void> {
  const body = await readSmallBody(ctx, MAX_MANIFEST_BYTES, 'manifest');
  const result = await registry.putManifest(name, reference, {
    body,
    contentType: ctx.req.headers['content-type'],
  });
  await recordAudit(ctx, {
    action: 'manifest.push',
    target: `${name}:${reference}`,
    detail: { digest: result.digest },
  });
  sendEmpty(ctx, 201, {
    location: `/v2/${name}/manifests/${result.digest}`,
    [Header.ContentDigest]: result.digest,
    ...(result.subject ? { [Header.OciSubject]: result.subject } : {}),
  });
}

export async function deleteManifest(
  ctx: Context,
  registry: Registry,
  { name, ref: reference }: Target,
): Promise<void> {
  await registry.deleteManifest(name, reference);
  await recordAudit(ctx, { action: 'manifest.delete', target: `${name}:${reference}` });
  sendEmpty(ctx, 202);
}

export async function getBlob(
  ctx: Context,
  registry: Registry,
  { name, ref: digest }: Target,
): Promise<void> {
  // Only a caller that may push renews the link (a pusher's HEAD before it skips the blob): a reader
  // cannot keep unreferenced content from garbage collection.
  const checkedForPush = ctx.req.method === 'HEAD' && ctx.access.allows(ctx.caller, name, 'push');
  const size = await registry.statBlob(name, digest, checkedForPush);
  const common = {
    [Header.ContentDigest]: digest,
    'accept-ranges': 'bytes',
    etag: `"${digest}"`,
    // Content-addressed: the bytes behind this URL never change.
    'cache-control': 'max-age=31536000',
  };
  if (notModified(ctx, digest)) {
    sendEmpty(ctx, 304, common);
    return;
  }
  if (ctx.req.method === 'HEAD') {
    sendEmpty(ctx, 200, { ...common, 'content-length': size, 'content-type': 'application/octet-stream' });
    return;
  }
  const rangeHeader = ctx.req.headers.range;
  let range: ByteRange | undefined;
  try {
    range = rangeHeader && size > 0 ? parseRangeHeader(rangeHeader, size) : undefined;
  } catch (error) {
    // RFC 9110: a 416 tells the current length, so a client can see its copy is already whole.
    ctx.res.setHeader('content-range', `bytes */${size}`);
    throw error;
  }
  const length = range ? range.end - range.start + 1 : size;
  ctx.res.writeHead(range ? 206 : 200, {
    ...common,
    'content-type': 'application/octet-stream',
    'content-length': length,
    ...(range ? { 'content-range': `bytes ${range.start}-${range.end}/${size}` } : {}),
  });
  // Never more than the length announced: the recorded size bounds the send even if the file grew.
  const bounds = range ?? (size > 0 ? { start: 0, end: size - 1 } : undefined);
  if (bounds) await registry.sendBlob(digest as Digest, ctx.res, bounds);
  ctx.res.end();
}

export async function deleteBlob(
  ctx: Context,
  registry: Registry,
  { name, ref: digest }: Target,
): Promise<void> {
  await registry.deleteBlob(name, digest);
  await recordAudit(ctx, { action: 'blob.delete', target: `${name}@${digest}` });
  sendEmpty(ctx, 202);
}

/** POST /blobs/uploads/: mount, monolithic upload with `?digest=`, or a new session. */
export async function startUpload(ctx: Context, registry: Registry, { name }: Target): Promise<void> {
  const mount = ctx.query.get('mount');
  const from = ctx.query.get('from');
  // A mount needs read access to the source; without it the client gets a normal upload session.
  if (mount && from && ctx.access.allows(ctx.caller, from, 'pull')) {
    if (await registry.mountBlob(name, mount, from)) {
      await drain(ctx);
      sendEmpty(ctx, 201, { location: `/v2/${name}/blobs/${mount}`, [Header.ContentDigest]: mount });
      return;
    }
  }
  const digest = ctx.query.get('digest');
  if (digest && !mount) {
    const stored = await registry.putBlob(name, digest, ctx.req);
    sendEmpty(ctx, 201, { location: `/v2/${name}/blobs/${stored}`, [Header.ContentDigest]: stored });
    return;
  }
  await drain(ctx);
  const id = await registry.startUpload(name);
  sendEmpty(ctx, 202, uploadHeaders(name, id, 0));
}

export async function uploadStatus(
  ctx: Context,
  registry: Registry,
  { name, ref: id }: Target,
): Promise<void> {
  const size = await registry.uploadStatus(name, id);
  sendEmpty(ctx, 204, uploadHeaders(name, id, size));
}

export async function patchUpload(
  ctx: Context,
  registry: Registry,
  { name, ref: id }: Target,
): Promise<void> {
  const rangeHeader = ctx.req.headers['content-range'];
  let offset: number | undefined;
  if (rangeHeader) {
    const range = parseContentRange(rangeHeader);
    const length = Number(ctx.req.headers['content-length']);
    if (Number.isFinite(length) && length !== range.end - range.start + 1) {
      throw new RegistryError(
        'BLOB_UPLOAD_INVALID',
        `Content-Range "${rangeHeader}" covers ${range.end - range.start + 1} bytes but Content-Length is ${length}`,
        { status: 416 },
      );
    }
    offset = range.start;
  }
  const size = await registry.appendUpload(name, id, { body: ctx.req, offset });
  sendEmpty(ctx, 202, uploadHeaders(name, id, size));
}

export async function finishUpload(
  ctx: Context,
  registry: Registry,
  { name, ref: id }: Target,
): Promise<void> {
  // Checked from the head, before any of the body is read: the refusal goes out at once, without a
  // 100 Continue, and the connection closes after it rather than take the unread body for a request.
  // The session stays as it was, for a retry.
  const digestText = ctx.query.get('digest');
  if (!digestText) {
    throw new RegistryError('DIGEST_INVALID', 'Closing an upload needs the query parameter "digest"');
  }
  const digest = registry.checkDigest(digestText);
  const length = Number(ctx.req.headers['content-length'] ?? 0);
  if (length > 0 || ctx.req.headers['transfer-encoding']) {
    const rangeHeader = ctx.req.headers['content-range'];
    const offset = rangeHeader ? parseContentRange(rangeHeader).start : undefined;
    await registry.appendUpload(name, id, { body: ctx.req, offset });
  } else {
    await drain(ctx);
  }
  const stored = await registry.finishUpload(name, id, digest);
  sendEmpty(ctx, 201, { location: `/v2/${name}/blobs/${stored}`, [Header.ContentDigest]: stored });
}

export async function cancelUpload(
  ctx: Context,
  registry: Registry,
  { name, ref: id }: Target,
): Promise<void> {
  await registry.cancelUpload(name, id);
  sendEmpty(ctx, 204);
}
