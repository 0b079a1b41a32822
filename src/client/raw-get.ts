import { connect, type Socket } from 'node:net';
import type { IncomingHttpHeaders } from 'node:http';
import { Readable } from 'node:stream';
import { DirectReads, type BorrowedChunkSource, type DirectTarget } from '../oci/index.js';
import { ClientError } from './errors.js';
import { connectTimeout, idleTimeout } from './timeouts.js';

/** Bytes read from the socket at a time, into one reused buffer. */
const READ_BUFFER = 1024 * 1024;
/** Largest response head (status line and headers) accepted. */
const MAX_HEAD = 64 * 1024;
/** Largest non-200 body kept (error pages, redirects); larger ones go through node's HTTP client. */
const MAX_SMALL_BODY = 1024 * 1024;

export interface RawResponse {
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  readonly body: RawBody;
}

type Phase =
  | { kind: 'head'; head: Buffer }
  | {
      kind: 'small';
      status: number;
      headers: IncomingHttpHeaders;
      want: number;
      parts: Buffer[];
      got: number;
    }
  | { kind: 'body' }
  | { kind: 'done' };

/**
 * A plain-HTTP GET whose response body is read straight into one reused buffer (net's `onread`), or into
 * the memory its reader offers (a layout's write buffers), for large blob downloads. Node's HTTP client
 * copies every body chunk into a newly allocated buffer; on the 2-core VMs Airlock is measured on, that
 * costs about five times the CPU of the read itself. The request
 * says `Connection: close`, so the socket carries exactly one response.
 *
 * Resolves `undefined` (socket closed, nothing consumed) when the response is one this reader does not
 * frame: no `Content-Length`, chunked encoding, an informational status or a non-200 body over 1 MiB;
 * the caller then sends the request through node's client.
 */
export interface RawGetOptions {
  readonly signal?: AbortSignal;
  /** Fail when the connection has not opened after this long. Default: no limit. */
  readonly connectTimeoutMs?: number;
  /** Fail when the server sends nothing for this long once the request is out. Default: no limit. */
  readonly idleTimeoutMs?: number;
}

export function rawGet(
  url: URL,
  headers: Readonly<Record<string, string>>,
  options: RawGetOptions = {},
): Promise<RawResponse | undefined> {
  const { signal, connectTimeoutMs, idleTimeoutMs } = options;
  // Header values can come from elsewhere (a token server's token): no line breaks into the request.
  for (const [name, value] of Object.entries(headers)) {
    if (!/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(name) || /[\r\n\0]/.test(value)) {
      return Promise.reject(
        new ClientError(
          'INVALID_RESPONSE',
          `Refusing to send the header "${name.slice(0, 40)}": invalid characters`,
        ),
      );
    }
  }
  return new Promise((resolve, reject) => {
    let phase: Phase = { kind: 'head', head: Buffer.alloc(0) };
    let body: RawBody | undefined;
    let settled = false;
    const settle = (value: RawResponse | undefined, error?: Error): void => {
      if (settled) return;
      settled = true;
      signal?.removeEventListener('abort', onAbort);
      if (error) reject(error);
      else resolve(value);
    };
    const onAbort = (): void => {
      const reason = signal?.reason instanceof Error ? signal.reason : new Error('The request was aborted');
      socket.destroy(reason);
      settle(undefined, reason);
    };

    const onHead = (head: Buffer, rest: Buffer): boolean => {
      const parsed = parseHead(head, url);
      const length = parsed.headers['content-length'];
      const chunked = /chunked/i.test(String(parsed.headers['transfer-encoding'] ?? ''));
      const size = length === undefined ? NaN : Number(length);
      const framed = !chunked && Number.isSafeInteger(size) && size >= 0 && parsed.status >= 200;
      if (!framed || (parsed.status !== 200 && size > MAX_SMALL_BODY)) {
        phase = { kind: 'done' };
        socket.destroy();
        settle(undefined);
        return false;
      }
      if (parsed.status !== 200) {
        phase = { kind: 'small', ...parsed, want: size, parts: [], got: 0 };
        return onSmall(phase, rest);
      }
      phase = { kind: 'body' };
      body = new RawBody(socket, size, url);
      if (rest.byteLength > 0) body.hold(rest);
      settle({ status: 200, headers: parsed.headers, body });
      // Paused until the body's reader starts.
      return body.started;
    };
    // An error page or redirect, kept whole; the response is ready once it is all here.
    const onSmall = (small: Extract<Phase, { kind: 'small' }>, chunk: Buffer): boolean => {
      if (chunk.byteLength > 0) small.parts.push(Buffer.from(chunk));
      small.got += chunk.byteLength;
      if (small.got < small.want) return true;
      phase = { kind: 'done' };
      socket.destroy();
      const bytes = Buffer.concat(small.parts).subarray(0, small.want);
      settle({ status: small.status, headers: small.headers, body: RawBody.ofBytes(bytes) });
      return false;
    };

    const readBuffer = Buffer.allocUnsafe(READ_BUFFER);
    const socket: Socket = connect({
      host: url.hostname.replace(/^\[|\]$/g, ''),
      port: Number(url.port || 80),
      onread: {
        // Asked for after every read: a body reader's own memory while it reads directly.
        buffer: () => (phase.kind === 'body' && body ? body.nextReadBuffer(readBuffer) : readBuffer),
        callback: (bytes: number, buffer: Uint8Array): boolean => {
          const chunk = Buffer.from(buffer.buffer, buffer.byteOffset, bytes);
          try {
            switch (phase.kind) {
              case 'head': {
                const head = Buffer.concat([phase.head, chunk]);
                const end = head.indexOf('\r\n\r\n');
                if (end < 0) {
                  if (head.byteLength > MAX_HEAD) throw invalid(url, 'a response head over 64 KiB');
                  phase = { kind: 'head', head };
                  return true;
                }
                return onHead(head.subarray(0, end), head.subarray(end + 4));
              }
              case 'small':
                return onSmall(phase, chunk);
              case 'body':
                return (body as RawBody).receiveRead(bytes, buffer) ?? (body as RawBody).receive(chunk);
              case 'done':
                return false;
            }
          } catch (error) {
            socket.destroy(error as Error);
            return false;
          }
        },
      },
    });
    socket.setNoDelay(true);
    const connectTimer =
      connectTimeoutMs === undefined
        ? undefined
        : setTimeout(() => socket.destroy(connectTimeout(url, connectTimeoutMs)), connectTimeoutMs);
    socket.on('connect', () => {
      clearTimeout(connectTimer);
      // A socket paused because its reader is slow counts as idle too; the limit is far above a disk's pauses.
      if (idleTimeoutMs !== undefined)
        socket.setTimeout(idleTimeoutMs, () => socket.destroy(idleTimeout(url, idleTimeoutMs)));
      const lines = [`GET ${url.pathname}${url.search} HTTP/1.1`, `host: ${url.host}`];
      for (const [name, value] of Object.entries(headers)) lines.push(`${name}: ${value}`);
      lines.push('accept-encoding: identity', 'connection: close', '', '');
      socket.write(lines.join('\r\n'));
    });
    socket.on('error', (error) => {
      body?.fail(error);
      settle(undefined, error);
    });
    socket.on('close', () => {
      clearTimeout(connectTimer);
      body?.socketClosed();
      if (!settled) settle(undefined, invalid(url, 'a connection closed before the response'));
    });
    if (signal?.aborted) onAbort();
    else signal?.addEventListener('abort', onAbort, { once: true });
  });
}

function invalid(url: URL, what: string): ClientError {
  return new ClientError('INVALID_RESPONSE', `${url.host} sent ${what}`);
}

function parseHead(head: Buffer, url: URL): { status: number; headers: IncomingHttpHeaders } {
  const lines = head.toString('latin1').split('\r\n');
  const match = /^HTTP\/1\.[01] (\d{3})(?: .*)?$/.exec(lines[0] ?? '');
  if (!match) throw invalid(url, `a malformed status line "${(lines[0] ?? '').slice(0, 80)}"`);
  const headers: Record<string, string> = {};
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(':');
    if (colon <= 0) throw invalid(url, `a malformed header line "${line.slice(0, 80)}"`);
    const name = line.slice(0, colon).trim().toLowerCase();
    const value = line.slice(colon + 1).trim();
    headers[name] = headers[name] === undefined ? value : `${headers[name]}, ${value}`;
  }
  return { status: Number(match[1]), headers };
}

/**
 * The body of a raw 200 response. As a Readable it pushes a copy of each read; `pumpBorrowed` (used by
 * `writeHashed`) hands out the read buffer itself, which the consumer copies into its own slots.
 */
export class RawBody extends Readable implements BorrowedChunkSource {
  readonly #socket: Socket | undefined;
  readonly #size: number;
  readonly #url: URL | undefined;
  #received = 0;
  #held: Buffer | undefined;
  #borrower: ((chunk: Uint8Array) => boolean) | undefined;
  #borrowDone: { resolve: () => void; reject: (error: Error) => void } | undefined;
  /** The reader's memory for direct reads, and the part of it the socket reads into next. */
  #direct: DirectTarget | undefined;
  readonly #reads = new DirectReads();
  /** Whether a reader started: until then the socket stays paused. */
  started = false;

  constructor(socket: Socket | undefined, size: number, url: URL | undefined) {
    super({ highWaterMark: READ_BUFFER });
    this.#socket = socket;
    this.#size = size;
    this.#url = url;
  }

  /** A body already in memory (a small error page). */
  static ofBytes(bytes: Buffer): RawBody {
    const body = new RawBody(undefined, bytes.byteLength, undefined);
    body.started = true;
    body.push(bytes);
    body.push(null);
    return body;
  }

  /** Bytes that arrived with the head, kept until a reader starts. */
  hold(bytes: Buffer): void {
    this.#held = Buffer.from(bytes);
  }

  /**
   * The memory for the socket's next read: while a reader takes bytes directly, at most the rest of the
   * body into its own memory; otherwise `readBuffer` (whose bytes then go through `receive`).
   */
  nextReadBuffer(readBuffer: Buffer): Uint8Array {
    return this.#reads.next(this.started ? this.#direct : undefined, this.#size - this.#received, readBuffer);
  }

  /**
   * A read of `bytes` into `buffer`: when that is the reader's memory (from `nextReadBuffer`), counts it
   * and returns whether to go on; undefined for a read into the ordinary buffer.
   */
  receiveRead(bytes: number, buffer: Uint8Array): boolean | undefined {
    const direct = this.#direct;
    if (!direct || !this.#reads.claim(buffer)) return undefined;
    this.#received += bytes;
    const more = direct.filled(bytes);
    if (this.#received >= this.#size) this.#finish();
    return more;
  }

  /** One read from the socket; false pauses the socket. */
  receive(chunk: Buffer): boolean {
    const take = chunk.subarray(0, Math.max(0, this.#size - this.#received));
    this.#received += take.byteLength;
    const more = this.#deliver(take);
    if (this.#received >= this.#size) this.#finish();
    return more;
  }

  #deliver(chunk: Uint8Array): boolean {
    if (chunk.byteLength === 0) return true;
    if (this.#borrower) return this.#borrower(chunk);
    return this.push(Buffer.from(chunk));
  }

  #finish(): void {
    this.#socket?.destroy();
    if (this.#borrowDone) this.#borrowDone.resolve();
    else this.push(null);
  }

  /** The socket failed. */
  fail(error: Error): void {
    if (this.#borrowDone) {
      this.#borrowDone.reject(error);
      // Listeners of the stream hear of it too; the borrower already has it, so none is required.
      this.once('error', () => undefined);
    }
    this.destroy(error);
  }

  /** The socket closed: an error unless every byte arrived. */
  socketClosed(): void {
    if (this.#received >= this.#size) return;
    const error = new ClientError(
      'NETWORK',
      `${this.#url?.host ?? 'The server'} closed the connection after ${this.#received} of ${this.#size} bytes`,
    );
    // A cut-off body is a network failure worth another try (see retry.ts).
    this.fail(Object.assign(error, { errno: 'ECONNRESET' }));
  }

  #start(): void {
    if (this.started) return;
    this.started = true;
    const held = this.#held;
    this.#held = undefined;
    if (held) {
      const more = this.receive(held);
      if (!more) return;
    } else if (this.#size === 0) {
      this.#finish();
      return;
    }
    this.#socket?.resume();
  }

  override _read(): void {
    if (!this.started) this.#start();
    else this.#socket?.resume();
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.#socket?.destroy();
    callback(error);
  }

  pumpBorrowed(
    onChunk: (chunk: Uint8Array) => boolean,
    direct?: DirectTarget,
  ): { done: Promise<void>; resume(): void } {
    if (this.started) throw new Error('This body is already being read');
    const done = new Promise<void>((resolve, reject) => (this.#borrowDone = { resolve, reject }));
    this.#borrower = onChunk;
    this.#direct = direct;
    this.#start();
    return { done, resume: () => this.#socket?.resume() };
  }
}
