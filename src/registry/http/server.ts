import { randomBytes } from 'node:crypto';
import type { Logger } from '../../log/index.js';
import { Header } from '../../oci/index.js';
import { RegistryError } from '../errors.js';
import type { RegistryMetrics } from '../metrics.js';
import type { Registry } from '../registry.js';
import { API_VERSION, sendError, sendJson, type Context } from './context.js';
import { routeV2 } from './router.js';
import { routeApi } from './api-handlers.js';
import { tokenEndpoint } from './token-handler.js';
import { ANONYMOUS } from '../auth/policy.js';
import { H1Server, type RequestHandler } from './h1/index.js';
import type { AccessControl } from '../auth/access.js';

export interface HttpHandlerOptions {
  readonly registry: Registry;
  readonly log: Logger;
  readonly metrics: RegistryMetrics;
  /**
   * False while the process drains for shutdown; /readyz then answers 503. (The listener and idle
   * connections close as the drain begins, so in practice probes see a refused connection instead.)
   */
  readonly ready: () => boolean;
  readonly access: AccessControl;
  /** Whether the server speaks TLS (for the token realm URL). Default: false. */
  readonly tls?: boolean;
}

const BOOT = randomBytes(4).toString('hex');
/** The status counted for a request whose connection closed before its answer was sent. */
const CLIENT_CLOSED = 499;
let sequence = 0;

/** Builds the request listener: health, metrics and the /v2/ API, with logging and metrics around each request. */
export function createRequestListener(options: HttpHandlerOptions): RequestHandler {
  const { log, metrics } = options;
  return (req, res) => {
    const started = performance.now();
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const incomingId = req.headers[Header.RequestId];
    const id =
      typeof incomingId === 'string' && incomingId.length <= 128 ? incomingId : `${BOOT}-${++sequence}`;
    let query: URLSearchParams | undefined;
    const ctx: Context = {
      req,
      res,
      path: q < 0 ? url : url.slice(0, q),
      // Parsed only when a handler asks: most requests (manifest and blob reads) never do.
      get query() {
        query ??= new URLSearchParams(q < 0 ? '' : url.slice(q + 1));
        return query;
      },
      id,
      log,
      route: 'unknown',
      access: options.access,
      caller: { principal: ANONYMOUS },
      scheme: options.tls ? 'https' : 'http',
    };
    res.setHeader(Header.RequestId, id);
    res.setHeader(Header.ApiVersion, API_VERSION);
    // Once per request: when its answer was handed to the socket ('finish'), or when the connection went
    // away first ('close' alone), counted as 499 (the client closed the request, as nginx logs it).
    let recorded = false;
    const record = (status: number): void => {
      if (recorded) return;
      recorded = true;
      const seconds = (performance.now() - started) / 1000;
      const method = req.method ?? '';
      // Content-Length, not a 'data' listener: listening would consume bodies the handlers stream.
      const received = Number(req.headers['content-length'] ?? 0);
      metrics.http.record({ method, route: ctx.route, status, seconds, received, sent: res.bodyBytes });
      const level = status >= 500 ? 'error' : method === 'GET' || method === 'HEAD' ? 'debug' : 'info';
      if (!log.isLevelEnabled(level)) return;
      log[level](
        { reqId: id, method, path: ctx.path, route: ctx.route, status, ms: Math.round(seconds * 1000) },
        'request',
      );
    };
    res.on('finish', () => record(res.statusCode));
    res.on('close', () => record(CLIENT_CLOSED));
    try {
      handle(ctx, options)?.catch((error: unknown) => sendError(ctx, error));
    } catch (error) {
      sendError(ctx, error);
    }
  };
}

/**
 * Answers a request; a promise when that waits for something. (A manifest GET answered from memory
 * does not: each async step costs a promise and a turn of the microtask queue on the hottest path.)
 */
function handle(ctx: Context, options: HttpHandlerOptions): Promise<void> | undefined {
  const { path } = ctx;
  const protectedPath = path.startsWith('/v2') || path.startsWith('/api/') || path === '/auth/token';
  if (protectedPath && ctx.access.enabled) {
    return ctx.access.authenticate(ctx.req.headers.authorization, ctx.req.remoteAddress).then((caller) => {
      ctx.caller = caller;
      return dispatch(ctx, options);
    });
  }
  return dispatch(ctx, options);
}

function dispatch(ctx: Context, options: HttpHandlerOptions): Promise<void> | undefined {
  const { path } = ctx;
  if (path.startsWith('/v2')) {
    const routed = routeV2(ctx, options.registry);
    if (routed === false) {
      throw new RegistryError('NAME_UNKNOWN', `No registry API at "${path}"`, { status: 404 });
    }
    return routed === true ? undefined : routed;
  }
  return handleOther(ctx, options);
}

async function handleOther(ctx: Context, options: HttpHandlerOptions): Promise<void> {
  const { path } = ctx;
  if (path === '/auth/token') {
    await tokenEndpoint(ctx);
    return;
  }
  if (path.startsWith('/api/')) {
    if (await routeApi(ctx, options.registry)) return;
    throw new RegistryError('NAME_UNKNOWN', `No management API at "${path}"`, { status: 404 });
  }
  if (path === '/healthz') {
    ctx.route = 'healthz';
    sendJson(ctx, { status: 'ok' });
    return;
  }
  if (path === '/readyz') {
    ctx.route = 'readyz';
    const ready = options.ready();
    sendJson(ctx, { status: ready ? 'ready' : 'shutting down' }, { status: ready ? 200 : 503 });
    return;
  }
  if (path === '/metrics') {
    ctx.route = 'metrics';
    const text = await options.metrics.text();
    ctx.res.writeHead(200, { 'content-type': options.metrics.contentType });
    ctx.res.end(text);
    return;
  }
  sendJson(ctx, { errors: [{ code: 'NOT_FOUND', message: `Nothing at "${path}"` }] }, { status: 404 });
}

export interface HttpServerOptions {
  /** Serve HTTPS with this certificate and key. Default: plain HTTP. */
  readonly tls?: { cert: Buffer; key: Buffer } | undefined;
  /** Time a request body being read may go without new bytes before the request fails. Default: 60 s. */
  readonly bodyIdleTimeoutMs?: number | undefined;
}

/**
 * Creates the HTTP server: no limit on a request's duration (blob transfers), 60 s for a head, 65 s idle,
 * 60 s without body bytes.
 */
export function createHttpServer(listener: RequestHandler, options: HttpServerOptions = {}): H1Server {
  return new H1Server(listener, {
    headersTimeoutMs: 60_000,
    keepAliveTimeoutMs: 65_000,
    bodyIdleTimeoutMs: options.bodyIdleTimeoutMs ?? 60_000,
    ...(options.tls ? { tls: options.tls } : {}),
  });
}
