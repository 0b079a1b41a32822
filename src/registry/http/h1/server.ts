import { EventEmitter } from 'node:events';
import type { Server as NetServer } from 'node:net';
import { Socket, createServer as createNetServer, type AddressInfo } from 'node:net';
import { createServer as createTlsServer, type TLSSocket } from 'node:tls';
import { H1Connection, type ConnectionTimeouts, type RequestHandler } from './connection.js';

export interface H1ServerOptions {
  /** Serve HTTPS with this certificate and key. Default: plain HTTP. */
  readonly tls?: { readonly cert: Buffer; readonly key: Buffer };
  /** Time a client may take to send a request head. Default: 60 s. */
  readonly headersTimeoutMs?: number;
  /** Time an idle keep-alive connection stays open. Default: 65 s. */
  readonly keepAliveTimeoutMs?: number;
  /**
   * Time a request body that is being read may go without new bytes; then the request fails and the
   * connection closes. Time the server itself pauses reading (back-pressure) does not count. Default: 60 s.
   */
  readonly bodyIdleTimeoutMs?: number;
  /** The clock the timeouts are measured with, in milliseconds. Default: Date.now. */
  readonly now?: () => number;
}

/** Bytes read from a plain-HTTP socket at a time, into one buffer per connection. */
const READ_BUFFER = 256 * 1024;
const TIMEOUT_CHECK_MS = 1000;
/** Idle time before TCP keep-alive probes start, so a peer that vanished without a FIN or RST is noticed. */
const TCP_KEEPALIVE_MS = 30_000;

/**
 * Airlock's HTTP/1.1 server. Node's HTTP server copies every request body chunk into a new allocation;
 * on the 2-core machines Airlock is measured on that copy and the per-read allocations cost as much CPU
 * as hashing the blob. Here plain-HTTP sockets read with net's `onread` into memory chosen per read:
 * one reused buffer per connection, or, for a blob upload's body, the blob writer's own buffer (see
 * H1Connection). TLS sockets use ordinary reads through the same connection logic.
 */
export class H1Server extends EventEmitter {
  readonly #server: NetServer;
  readonly #connections = new Set<H1Connection>();
  readonly #timeouts: ConnectionTimeouts;
  readonly #now: () => number;
  #timer: NodeJS.Timeout | undefined;
  #closing = false;
  /** Called once the last connection closed after `close`. */
  #drained: (() => void) | undefined;

  constructor(handler: RequestHandler, options: H1ServerOptions = {}) {
    super();
    this.#timeouts = {
      headersMs: options.headersTimeoutMs ?? 60_000,
      keepAliveMs: options.keepAliveTimeoutMs ?? 65_000,
      bodyIdleMs: options.bodyIdleTimeoutMs ?? 60_000,
    };
    this.#now = options.now ?? Date.now;
    if (options.tls) {
      this.#server = createTlsServer(
        { cert: options.tls.cert, key: options.tls.key, allowHalfOpen: true },
        (socket: TLSSocket) => {
          this.#adopt(socket, handler, false);
        },
      );
      // A failed handshake is the client's problem, not a server error.
      this.#server.on('tlsClientError', () => undefined);
    } else {
      this.#server = createNetServer({ pauseOnConnect: true, allowHalfOpen: true }, (socket) =>
        this.#adopt(socket, handler, true),
      );
    }
    this.#server.on('error', (error) => this.emit('error', error));
  }

  listen(port: number, host: string, callback?: () => void): this {
    this.#server.listen(port, host, () => {
      this.#timer = setInterval(() => this.checkTimeouts(), TIMEOUT_CHECK_MS);
      this.#timer.unref();
      callback?.();
    });
    return this;
  }

  address(): AddressInfo | string | null {
    return this.#server.address();
  }

  /** Stops accepting; calls back once every connection has closed. Idle connections close at once. */
  close(callback?: (error?: Error) => void): this {
    this.#closing = true;
    if (this.#timer) clearInterval(this.#timer);
    let pending = 2;
    const step = (): void => {
      if (--pending === 0) callback?.();
    };
    this.#server.close(() => step());
    if (this.#connections.size === 0) step();
    else this.#drained = step;
    this.closeIdleConnections();
    return this;
  }

  /** Closes connections between requests; busy ones close after their current response. */
  closeIdleConnections(): void {
    for (const connection of this.#connections) connection.closeIfIdle();
  }

  closeAllConnections(): void {
    for (const connection of this.#connections) connection.socket.destroy();
  }

  #adopt(accepted: Socket, handler: RequestHandler, lend: boolean): void {
    if (this.#closing) {
      accepted.destroy();
      return;
    }
    // The first read buffer is asked for while the socket is built, before the connection exists (so it is
    // the plain read buffer); read callbacks only come later, from the event loop.
    const ref: { connection?: H1Connection } = {};
    const lending: Socket | undefined = lend
      ? rebuildWithReadBuffer(accepted, {
          next: (readBuffer) => ref.connection?.nextReadBuffer(readBuffer) ?? readBuffer,
          read: (bytes, buffer) => ref.connection?.receiveRead(bytes, buffer) ?? true,
        })
      : undefined;
    const socket: Socket = lending ?? accepted;
    if (!lending) socket.on('data', (chunk: Buffer) => ref.connection?.receive(chunk));
    socket.setNoDelay(true);
    socket.setKeepAlive(true, TCP_KEEPALIVE_MS);
    const adopted = new H1Connection(socket, handler, { now: this.#now });
    ref.connection = adopted;
    this.#connections.add(adopted);
    socket.on('close', () => {
      this.#connections.delete(adopted);
      if (this.#connections.size === 0 && this.#drained) {
        const drained = this.#drained;
        this.#drained = undefined;
        drained();
      }
    });
    socket.resume();
  }

  /** Enforces the head, keep-alive and body timeouts now; a listening server does so every second. */
  checkTimeouts(): void {
    const now = this.#now();
    for (const connection of this.#connections) connection.checkTimeouts(now, this.#timeouts);
  }
}

/** Where each read of a rebuilt socket goes, and who takes it. */
interface ReadTarget {
  /** The memory for the next read: the connection's read buffer or a body reader's own memory. */
  next(readBuffer: Buffer): Uint8Array;
  /** A read of `bytes` into `buffer` (what `next` returned); false pauses reading. */
  read(bytes: number, buffer: Uint8Array): boolean;
}

/**
 * net's `onread` (reads into memory the caller chooses, asked for after every read) is only offered
 * when a socket is created, so an accepted socket is rebuilt around its handle: the handle stays open,
 * the old socket object is released. Undefined when this node has no such handle (the caller then
 * reads with 'data' events).
 */
function rebuildWithReadBuffer(accepted: Socket, target: ReadTarget): Socket | undefined {
  const internals = accepted as unknown as { _handle?: object | null };
  const handle = internals._handle;
  if (!handle) return undefined;
  internals._handle = null;
  accepted.destroy();
  const readBuffer = Buffer.allocUnsafe(READ_BUFFER);
  return new Socket({
    handle,
    allowHalfOpen: true,
    onread: {
      buffer: () => target.next(readBuffer),
      callback: (bytes: number, buffer: Uint8Array) => target.read(bytes, buffer),
    },
  } as ConstructorParameters<typeof Socket>[0]);
}
