import { HttpProtocolError, type H1Request, type H1Response } from './h1/index.js';
import type { Logger } from '../../log/index.js';
import { Header } from '../../oci/index.js';
import { STORAGE_FULL } from '../../storage/index.js';
import { RegistryError } from '../errors.js';
import type { AccessControl, Caller } from '../auth/access.js';
import { writeAudit } from '../audit.js';

/** One request as the handlers see it. */
export interface Context {
  readonly req: H1Request;
  readonly res: H1Response;
  readonly path: string;
  readonly query: URLSearchParams;
  readonly id: string;
  readonly log: Logger;
  /** Route label for metrics and logs, set by the router. */
  route: string;
  readonly access: AccessControl;
  /** Who is calling; anonymous until the request's credentials were checked. */
  caller: Caller;
  /** `https` or `http`, for URLs the registry hands out (the token realm). */
  readonly scheme: string;
}

export const API_VERSION = 'registry/2.0';

/** Sends a JSON body with the right length. */
export function sendJson(
  ctx: Context,
  body: unknown,
  options: { status?: number; headers?: Record<string, string | number> } = {},
): void {
  const bytes = Buffer.from(JSON.stringify(body));
  const headers = options.headers ?? {};
  ctx.res.writeHead(options.status ?? 200, {
    'content-type': 'application/json',
    'content-length': bytes.byteLength,
    ...headers,
  });
  ctx.res.end(ctx.req.method === 'HEAD' ? undefined : bytes);
}

/** Sends a body-less response (201/202/204/304 and HEAD answers); 204 and 304 carry no Content-Length. */
export function sendEmpty(ctx: Context, status: number, headers: Record<string, string | number> = {}): void {
  ctx.res.writeHead(status, status === 204 || status === 304 ? headers : { 'content-length': 0, ...headers });
  ctx.res.end();
}

/**
 * Turns any error into a response: spec JSON for RegistryError, 507 when the disk or quota is full, a
 * generic 500 that leaks nothing otherwise.
 */
export function sendError(ctx: Context, error: unknown): void {
  // A client that hung up mid-request is not a server fault: note it and drop the connection.
  const code = (error as { code?: unknown }).code;
  if (
    (code === 'ECONNRESET' || code === 'ERR_STREAM_PREMATURE_CLOSE') &&
    (ctx.req.destroyed || ctx.res.destroyed)
  ) {
    ctx.log.info({ reqId: ctx.id, route: ctx.route }, 'client closed the connection mid-request');
    ctx.res.destroy();
    return;
  }
  if (error instanceof HttpProtocolError && error.status === 408 && ctx.res.destroyed) {
    // The server closed the connection of a client that stopped sending its body: no one to answer.
    ctx.log.info({ reqId: ctx.id, route: ctx.route }, error.message);
    return;
  }
  if (ctx.res.headersSent) {
    ctx.log.warn({ err: error }, 'request failed after the response started');
    ctx.res.destroy();
    return;
  }
  if (error instanceof RegistryError) {
    if (error.status >= 500) ctx.log.error({ err: error }, 'request failed');
    if (error.code === 'UNAUTHORIZED' && !ctx.res.hasHeader('www-authenticate')) {
      ctx.res.setHeader(
        'www-authenticate',
        challenge(ctx, (error.detail as { scope?: string } | undefined)?.scope),
      );
    }
    sendJson(ctx, error.toBody(), { status: error.status, headers: { [Header.ApiVersion]: API_VERSION } });
    return;
  }
  if (error instanceof HttpProtocolError) {
    // A request body whose framing broke mid-way (a malformed chunk): the client's fault, and the
    // connection closes after this answer.
    sendJson(ctx, { errors: [{ code: 'UNSUPPORTED', message: error.message }] }, { status: error.status });
    return;
  }
  const full = STORAGE_FULL.get(code);
  if (full) {
    // The disk (or the user's quota) is full: say so, rather than hide it behind an internal error.
    ctx.log.error({ err: error }, 'storage is full');
    sendJson(
      ctx,
      {
        errors: [
          {
            code: 'UNKNOWN',
            message: `The registry cannot store this: ${full} (${String(code)})`,
            detail: { requestId: ctx.id },
          },
        ],
      },
      { status: 507 },
    );
    return;
  }
  ctx.log.error({ err: error }, 'unexpected error');
  sendJson(
    ctx,
    {
      errors: [
        { code: 'UNKNOWN', message: 'internal error; see the registry log', detail: { requestId: ctx.id } },
      ],
    },
    { status: 500 },
  );
}

/** The Bearer challenge pointing clients at this registry's token endpoint. */
export function challenge(ctx: Context, scope?: string, insufficient = false): string {
  const host = ctx.req.headers.host ?? 'localhost';
  const realm = `${ctx.scheme}://${host}/auth/token`;
  return `Bearer realm="${realm}",service="${ctx.access.tokens.service}"${scope ? `,scope="${scope}"` : ''}${insufficient ? ',error="insufficient_scope"' : ''}`;
}

/** Reads a small request body whole; more than `limit` bytes fails with 413. */
export async function readSmallBody(ctx: Context, limit: number, what: string): Promise<Buffer> {
  const declared = Number(ctx.req.headers['content-length']);
  const tooLarge = () =>
    new RegistryError(
      what === 'manifest' ? 'MANIFEST_INVALID' : 'SIZE_INVALID',
      `The ${what} is larger than ${limit} bytes`,
      {
        status: 413,
      },
    );
  if (Number.isFinite(declared) && declared > limit) throw tooLarge();
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of ctx.req) {
    size += chunk.byteLength;
    if (size > limit) throw tooLarge();
    chunks.push(chunk);
  }
  return chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, size);
}

/** Reads and discards a body the handler does not use, so the connection can be reused. */
export async function drain(ctx: Context): Promise<void> {
  for await (const _ of ctx.req) {
    // discard
  }
}

/** `n` and `last` of a paginated listing; a bad `n` is a 400. */
export function pageQuery(ctx: Context, max: number): { n: number; last?: string } {
  const nText = ctx.query.get('n');
  let n = max;
  if (nText !== null && nText !== '') {
    n = Number(nText);
    if (!Number.isInteger(n) || n < 0) {
      throw new RegistryError('UNSUPPORTED', `Query parameter n="${nText}" must be a non-negative integer`, {
        status: 400,
      });
    }
    n = Math.min(n, max);
  }
  const last = ctx.query.get('last');
  return { n, ...(last ? { last } : {}) };
}

/** Appends who changed what to the audit log and the log stream (reads are not audited). */
export async function recordAudit(
  ctx: Context,
  entry: { action: string; target: string; detail?: Record<string, unknown> },
): Promise<void> {
  await writeAudit(ctx.access.store, ctx.log, { actor: ctx.caller.principal.member, ...entry });
}
