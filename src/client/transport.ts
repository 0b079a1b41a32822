import {
  Agent as HttpAgent,
  request as httpRequest,
  type ClientRequest,
  type IncomingHttpHeaders,
  type IncomingMessage,
} from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { existsSync, readFileSync } from 'node:fs';
import type { Readable } from 'node:stream';
import { rootCertificates } from 'node:tls';
import { fileSourceOf, sendFileTo, type DirectSocket, type FileSink } from '../oci/index.js';
import { ClientError } from './errors.js';
import { rawGet } from './raw-get.js';
import { connectTimeout, idleTimeout } from './timeouts.js';

/**
 * A request body: bytes, or a function that makes a fresh stream (so the request can be sent again).
 * A stream made by `fileStream` (an OCI layout's blob) is not read: its file is sent from reused buffers.
 */
export type RequestBody = Buffer | (() => Readable | Promise<Readable>);

export interface HttpRequest {
  readonly method: string;
  readonly url: URL;
  readonly headers?: Readonly<Record<string, string>>;
  readonly body?: RequestBody;
  readonly signal?: AbortSignal;
  /**
   * A large response body is expected (a blob): over plain HTTP a GET then reads it with `rawGet`,
   * straight into a reused buffer, instead of through node's HTTP client.
   */
  readonly large?: boolean;
}

export interface HttpResponse {
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  /** The URL that answered (after redirects). */
  readonly url: URL;
  /** The body as a stream; read it, or call `drain()`, to free the connection. */
  readonly body: Readable;
  header(name: string): string | undefined;
  bytes(limit: number): Promise<Buffer>;
  text(limit?: number): Promise<string>;
  drain(): Promise<void>;
}

export interface TransportOptions {
  /** Extra PEM CA certificates trusted on top of the system's. Default: none. */
  readonly ca?: string | Buffer;
  /** Skip TLS certificate verification. Default: false. */
  readonly insecure?: boolean;
  /** User-Agent header. Default: airlock/<version>. */
  readonly userAgent?: string;
  /** Concurrent sockets per host. Default: 16. */
  readonly maxSockets?: number;
  /** How long a new connection may take to open. Default: 15 s, or `AIRLOCK_CONNECT_TIMEOUT` seconds. */
  readonly connectTimeoutMs?: number;
  /**
   * How long a server may stay silent once a request is sent (before its answer, or between two reads
   * of the answer's body). Default: 120 s, or `AIRLOCK_IDLE_TIMEOUT` seconds.
   */
  readonly idleTimeoutMs?: number;
}

const MAX_REDIRECTS = 5;

function wrap(res: Readable, head: { status: number; headers: IncomingHttpHeaders }, url: URL): HttpResponse {
  const bytes = async (limit: number): Promise<Buffer> => {
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of res) {
      size += (chunk as Buffer).byteLength;
      if (size > limit) {
        res.destroy();
        throw new ClientError('TOO_LARGE', `Response from ${url.host} is larger than ${limit} bytes`);
      }
      chunks.push(chunk as Buffer);
    }
    return Buffer.concat(chunks, size);
  };
  return {
    status: head.status,
    headers: head.headers,
    url,
    body: res,
    header(name) {
      const value = head.headers[name.toLowerCase()];
      return Array.isArray(value) ? value.join(', ') : value;
    },
    bytes,
    async text(limit = 1024 * 1024) {
      return (await bytes(limit)).toString('utf8');
    },
    async drain() {
      // A complete but unread response still holds its keep-alive socket until 'end' is emitted,
      // so it is resumed even when every byte has arrived.
      if (res.destroyed || res.readableEnded) return;
      res.resume();
      await new Promise<void>((resolve) => {
        res.once('end', resolve);
        res.once('close', resolve);
        res.once('error', () => resolve());
      });
    },
  };
}

function describeNetworkError(error: unknown, url: URL): ClientError {
  if (error instanceof ClientError) return error;
  const code = (error as { code?: string }).code ?? '';
  const tls =
    /CERT|SSL|TLS|SELF_SIGNED|UNABLE_TO_VERIFY|ERR_TLS/.test(code) || /certificate|SSL/i.test(String(error));
  // OpenSSL's messages end in a newline and carry its source paths: one line, and the reason only.
  const message = (error as Error).message
    .trim()
    .replace(/^.*:error:[0-9A-F]+:SSL routines:([^:]+:)?([^:]+).*$/s, 'SSL routines: $2');
  const plainServer = answersPlainHttp(error);
  const what = plainServer
    ? `TLS handshake with ${url.host} failed: the server answers plain HTTP, not HTTPS (use --plain-http)`
    : tls
      ? `TLS handshake with ${url.host} failed: ${message} (use --ca-file for a private CA, or --insecure)`
      : `Cannot reach ${url.host}: ${message}`;
  const wrapped = new ClientError(tls ? 'TLS' : 'NETWORK', what, { cause: error });
  Object.assign(wrapped, { errno: code });
  return wrapped;
}

/** Whether a failed TLS handshake met a server that answers plain HTTP. */
export function answersPlainHttp(error: unknown): boolean {
  const cause = error instanceof ClientError && error.cause !== undefined ? error.cause : error;
  const { code, message } = (cause ?? {}) as { code?: unknown; message?: unknown };
  return /wrong version number|WRONG_VERSION_NUMBER|packet length too long/i.test(
    `${String(code)} ${String(message)}`,
  );
}

/** Seconds from an environment variable (a positive number), else the default. */
function secondsFromEnv(name: string, fallbackMs: number): number {
  const value = Number(process.env[name]);
  return Number.isFinite(value) && value > 0 ? value * 1000 : fallbackMs;
}

/** HTTP/1.1 over keep-alive agents, with TLS settings, redirects and no hidden buffering of bodies. */
export class HttpTransport {
  readonly #http: HttpAgent;
  /** Made on the first HTTPS request: the CA files are read only when a connection uses TLS. */
  #https: HttpsAgent | undefined;
  readonly #options: TransportOptions;
  readonly #maxSockets: number;
  readonly #userAgent: string;
  readonly #connectMs: number;
  readonly #idleMs: number;

  constructor(options: TransportOptions = {}) {
    this.#options = options;
    this.#maxSockets = options.maxSockets ?? 16;
    this.#connectMs = options.connectTimeoutMs ?? secondsFromEnv('AIRLOCK_CONNECT_TIMEOUT', 15_000);
    this.#idleMs = options.idleTimeoutMs ?? secondsFromEnv('AIRLOCK_IDLE_TIMEOUT', 120_000);
    this.#http = new HttpAgent({ keepAlive: true, maxSockets: this.#maxSockets });
    this.#userAgent = options.userAgent ?? 'airlock/0.1';
  }

  #httpsAgent(): HttpsAgent {
    this.#https ??= new HttpsAgent({
      keepAlive: true,
      maxSockets: this.#maxSockets,
      rejectUnauthorized: !(this.#options.insecure ?? false),
      ca: [...tlsRootCertificates(), ...(this.#options.ca ? [this.#options.ca.toString()] : [])],
    });
    return this.#https;
  }

  /**
   * Sends a request. Redirects (301/302/303/307/308) are followed for GET and HEAD; the Authorization
   * header is dropped when a redirect leaves the original host (blob storage must not see registry tokens).
   */
  async send(request: HttpRequest): Promise<HttpResponse> {
    let url = request.url;
    let headers: Record<string, string> = { 'user-agent': this.#userAgent, ...request.headers };
    for (let hop = 0; ; hop++) {
      const res = await this.#once({ ...request, url, headers });
      const location = res.header('location');
      const redirect = [301, 302, 303, 307, 308].includes(res.status) && location !== undefined;
      if (!redirect || (request.method !== 'GET' && request.method !== 'HEAD')) return res;
      await res.drain();
      if (hop >= MAX_REDIRECTS)
        throw new ClientError('INVALID_RESPONSE', `Too many redirects from ${request.url.host}`);
      const next = new URL(location, url);
      if (next.host !== request.url.host) {
        const { authorization: _dropped, ...rest } = headers;
        headers = rest;
      }
      url = next;
    }
  }

  async #once(request: HttpRequest & { headers: Record<string, string> }): Promise<HttpResponse> {
    const { url } = request;
    if (request.large && request.method === 'GET' && url.protocol === 'http:') {
      let raw;
      try {
        raw = await rawGet(url, request.headers, {
          ...(request.signal ? { signal: request.signal } : {}),
          connectTimeoutMs: this.#connectMs,
          idleTimeoutMs: this.#idleMs,
        });
      } catch (error) {
        throw request.signal?.aborted ? error : describeNetworkError(error, url);
      }
      if (raw) return wrap(raw.body, raw, url);
    }
    return this.#node(request);
  }

  #node(request: HttpRequest & { headers: Record<string, string> }): Promise<HttpResponse> {
    const { url } = request;
    const isHttps = url.protocol === 'https:';
    const send = isHttps ? httpsRequest : httpRequest;
    const headers: Record<string, string> = { ...request.headers };
    const body = request.body;
    if (Buffer.isBuffer(body)) headers['content-length'] = String(body.byteLength);
    else if (
      body === undefined &&
      (request.method === 'PUT' || request.method === 'POST' || request.method === 'PATCH')
    ) {
      headers['content-length'] ??= '0';
    }
    return new Promise<HttpResponse>((resolve, reject) => {
      const req = send(
        url,
        {
          method: request.method,
          headers,
          agent: isHttps ? this.#httpsAgent() : this.#http,
          ...(request.signal ? { signal: request.signal } : {}),
        },
        (res: IncomingMessage) =>
          resolve(wrap(res, { status: res.statusCode ?? 0, headers: res.headers }, url)),
      );
      // The body's own failure (a file that cannot be read) is not the network's.
      let bodyError: Error | undefined;
      const failBody = (error: Error): void => {
        bodyError ??= error;
        req.destroy(error);
      };
      this.#watch(req, url);
      req.on('error', (error) => {
        if (request.signal?.aborted) reject(error);
        else if (bodyError instanceof ClientError) {
          // The body came from elsewhere (another registry in a copy) and failed there: its own error.
          reject(bodyError);
        } else if (bodyError) {
          reject(
            new ClientError('INVALID_INPUT', `Cannot send the body to ${url.host}: ${bodyError.message}`, {
              cause: bodyError,
            }),
          );
        } else reject(describeNetworkError(error, url));
      });
      if (body === undefined) req.end();
      else if (Buffer.isBuffer(body)) req.end(body);
      else {
        Promise.resolve()
          .then(body)
          .then((stream) =>
            sendStream(req, stream, { contentLength: headers['content-length'], fail: failBody }),
          )
          .catch((error: unknown) => failBody(error as Error));
      }
    });
  }

  /**
   * Fails a request whose connection does not open within the connect timeout, or whose server stays
   * silent for the idle timeout once the request is sent. The idle clock starts only then: a body sent
   * with sendfile moves no bytes through node's socket, so node would see it as idle.
   */
  #watch(req: ClientRequest, url: URL): void {
    req.once('socket', (socket) => {
      if (!socket.connecting) return;
      const timer = setTimeout(() => req.destroy(connectTimeout(url, this.#connectMs)), this.#connectMs);
      const clear = (): void => clearTimeout(timer);
      socket.once('connect', clear);
      socket.once('secureConnect', clear);
      req.once('close', clear);
    });
    req.once('finish', () => {
      req.setTimeout(this.#idleMs, () => req.destroy(idleTimeout(url, this.#idleMs)));
    });
  }

  close(): void {
    this.#http.destroy();
    this.#https?.destroy();
  }
}

/**
 * Sends a request body from a stream; a file's stream with a known length is not read but its file sent
 * (`sendFileTo`), which on the benchmark machine halves the client's CPU for a layout push.
 */
function sendStream(
  req: ClientRequest,
  stream: Readable,
  options: { contentLength: string | undefined; fail: (error: Error) => void },
): void {
  const { contentLength, fail } = options;
  const file = fileSourceOf(stream);
  const length = contentLength === undefined ? NaN : Number(contentLength);
  if (file && Number.isSafeInteger(length) && length >= 0) {
    // The stream opens its file on its own; a failed open after the destroy must not go unheard.
    stream.on('error', () => undefined);
    stream.destroy();
    // A request that closed first has its own error (a reset, an abort): that is the one that counts.
    const sink: FileSink = {
      write: (chunk, done) => req.write(chunk, done),
      once: (event, listener) => req.once(event, listener),
      off: (event, listener) => req.off(event, listener),
      directSocket: () => headSent(req),
    };
    sendFileTo({ file: file.path, start: file.start, length }, sink).then(
      (sent) => {
        if (sent) req.end();
      },
      (error: unknown) => fail(error as Error),
    );
    return;
  }
  stream.on('error', fail);
  stream.pipe(req);
}

/**
 * Sends the request's head and, once node has handed it to the OS, gives its socket for the body to be
 * written straight to (`sendFileTo` with sendfile); undefined when the request has no socket by then.
 */
function headSent(req: ClientRequest): Promise<DirectSocket | undefined> {
  return new Promise((resolve) => {
    // A request destroyed before its head went out never calls back; it closes (and fails on its own).
    const onClose = (): void => resolve(undefined);
    req.once('close', onClose);
    req.write(Buffer.alloc(0), (error) => {
      req.off('close', onClose);
      const socket = req.socket;
      resolve(error || !socket ? undefined : { socket, sent: () => undefined });
    });
  });
}

const SYSTEM_BUNDLES = ['/etc/ssl/certs/ca-certificates.crt', '/etc/pki/tls/certs/ca-bundle.crt'];

/**
 * Node's bundled roots, the system's CA bundle (where site CAs are installed with update-ca-certificates)
 * and the file NODE_EXTRA_CA_CERTS names: node adds that file to its roots only when no `ca` is given,
 * and the agent always gives one. A file that cannot be read is skipped, as node does (with a warning).
 */
function tlsRootCertificates(): string[] {
  const roots = [...rootCertificates];
  for (const file of SYSTEM_BUNDLES) {
    if (existsSync(file)) {
      roots.push(readFileSync(file, 'utf8'));
      break;
    }
  }
  const extra = process.env.NODE_EXTRA_CA_CERTS;
  if (extra) {
    try {
      roots.push(readFileSync(extra, 'utf8'));
    } catch {
      // node has already warned at start-up that it could not read this file
    }
  }
  return roots;
}
