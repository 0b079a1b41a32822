import type { Socket } from 'node:net';
import { STATUS_CODES } from 'node:http';
import { DirectReads, type DirectTarget } from '../../../oci/index.js';
import { bodyDecoder, type BodyDecoder } from './body.js';
import { HttpProtocolError, MAX_HEAD_BYTES, parseRequestHead, type RequestHead } from './head.js';
import { H1Request, type BodyChannel } from './request.js';
import { H1Response, type ResponseChannel } from './response.js';

export type RequestHandler = (req: H1Request, res: H1Response) => void;

/** A request whose response is not yet complete. */
interface Exchange {
  readonly head: RequestHead;
  readonly req: H1Request;
  readonly res: H1Response;
  readonly decoder: BodyDecoder;
  consumer: ((chunk: Uint8Array) => boolean) | undefined;
  /** The body reader's own memory for direct reads, when it offers it. */
  direct?: DirectTarget | undefined;
  bodyDone?: { resolve(): void; reject(error: Error): void };
  bodyFailed?: Error;
  responded: boolean;
}

/**
 * How long a connection may take to send a request head, idle between requests, or leave a body that is
 * being read without new bytes.
 */
export interface ConnectionTimeouts {
  readonly headersMs: number;
  readonly keepAliveMs: number;
  readonly bodyIdleMs: number;
}

export interface H1ConnectionOptions {
  /** The clock the timeouts are measured with, in milliseconds. Default: Date.now. */
  readonly now?: () => number;
}

/**
 * One client connection: reads request heads, hands each request to the handler, feeds its body to
 * whoever reads it, and takes the next request once the response is out. Requests on a connection are
 * answered in order (pipelined requests wait in a buffer). Reading pauses whenever the body's reader
 * cannot take more, so a slow disk slows the client instead of filling memory.
 *
 * `receive` is given each read; the bytes are only valid during the call unless it returns false (the
 * socket is then paused and the bytes are kept until `resume`): with net's `onread`, reads land in one
 * reused buffer, or (`nextReadBuffer`/`receiveRead`) a Content-Length body goes straight into memory its
 * reader offers, so blob bytes reach the blob store's write buffers without a copy.
 */
export class H1Connection implements BodyChannel, ResponseChannel {
  readonly socket: Socket;
  readonly #handler: RequestHandler;
  readonly #remoteAddress: string;
  readonly #now: () => number;
  /** Head bytes received so far (a copy), or bytes of the next request that came before the response. */
  #head: Buffer | undefined;
  #headStartedAt = 0;
  #idleSince: number;
  /** When bytes last arrived, or reading last (re)started: a body being read must move within bodyIdleMs. */
  #readAt: number;
  #current: Exchange | undefined;
  /** Unprocessed input kept while paused (valid because nothing is read until `resume`). */
  #held: Buffer | undefined;
  #paused = false;
  #processing = false;
  /** `resume` was called while input was being processed (by the reader, from inside its callback). */
  #resumeWanted = false;
  #closeAfter = false;
  /** Ending: whatever the client still sends is dropped. */
  #discard = false;
  #closed = false;
  /** The body reader's memory the socket reads into next (from `nextReadBuffer`), if any. */
  readonly #reads = new DirectReads();

  constructor(socket: Socket, handler: RequestHandler, options: H1ConnectionOptions = {}) {
    this.socket = socket;
    this.#handler = handler;
    this.#remoteAddress = socket.remoteAddress ?? '';
    this.#now = options.now ?? Date.now;
    this.#idleSince = this.#now();
    this.#readAt = this.#idleSince;
    socket.on('close', () => this.#onClose());
    // The client finished sending (a half-close): answer what is in progress, then close.
    socket.on('end', () => {
      this.#closeAfter = true;
      const exchange = this.#current;
      if (exchange === undefined) this.socket.end();
      else if (!exchange.decoder.done && !exchange.bodyFailed) {
        exchange.req.destroyed = true;
        this.#failBody(exchange, clientGone());
      }
    });
    socket.on('error', () => {
      // 'close' follows; a reset by the client is not the server's problem.
    });
  }

  /** Whether the connection is between requests (for shutdown and idle timeouts). */
  get idle(): boolean {
    return this.#current === undefined && this.#head === undefined;
  }

  /** One read from the socket; false pauses reading. */
  receive(chunk: Buffer): boolean {
    if (this.#closed || this.#discard) return true; // the connection is ending: input is dropped
    this.#readAt = this.#now();
    if (this.#held !== undefined) {
      // Cannot happen while paused; kept safe anyway.
      this.#held = Buffer.concat([this.#held, chunk]);
      this.#pause();
      return false;
    }
    const more = this.#process(chunk);
    if (!more) this.#pause();
    return more;
  }

  /**
   * The memory the socket's next read goes into (net's `onread` asks after every read): while a
   * Content-Length body is being read by a consumer that offers its own memory, with nothing held or
   * paused, at most the rest of the body straight into that memory; otherwise `readBuffer`, whose
   * bytes go through `receive`. Never more than the body, so a pipelined request cannot land there.
   */
  nextReadBuffer(readBuffer: Buffer): Uint8Array {
    const exchange = this.#current;
    const reading =
      exchange !== undefined &&
      !exchange.bodyFailed &&
      !this.#paused &&
      this.#held === undefined &&
      !this.#closed &&
      !this.#discard;
    return this.#reads.next(
      reading ? exchange.direct : undefined,
      exchange?.decoder.remaining ?? 0,
      readBuffer,
    );
  }

  /** One read of `bytes` into `buffer`, the memory `nextReadBuffer` gave; false pauses reading. */
  receiveRead(bytes: number, buffer: Uint8Array): boolean {
    if (!this.#reads.claim(buffer)) {
      return this.receive(Buffer.from(buffer.buffer, buffer.byteOffset, bytes));
    }
    const exchange = this.#current;
    // Body bytes already where the reader wants them; after a failure or on a closing connection they
    // are dropped (the reader has let go of that memory's contents).
    if (!exchange?.direct || this.#closed || this.#discard) return true;
    this.#readAt = this.#now();
    let more: boolean;
    try {
      exchange.decoder.accept(bytes);
      more = exchange.direct.filled(bytes);
    } catch (error) {
      this.#failBody(exchange, error as Error);
      return true;
    }
    if (exchange.decoder.done) {
      this.#bodyComplete(exchange);
      return true;
    }
    if (!more) this.#pause();
    return more;
  }

  #pause(): void {
    if (this.#paused) return;
    this.#paused = true;
    this.socket.pause();
  }

  /** Closes the connection at once if no request is in progress (shutdown); otherwise after the response. */
  closeIfIdle(): boolean {
    if (this.#current === undefined) {
      this.socket.destroy();
      return true;
    }
    this.#closeAfter = true;
    return false;
  }

  /** Enforces the head, keep-alive and body timeouts; called periodically by the server. */
  checkTimeouts(now: number, timeouts: ConnectionTimeouts): void {
    if (this.#closed) return;
    const exchange = this.#current;
    if (exchange === undefined && this.#head !== undefined && this.#headStartedAt > 0) {
      if (now - this.#headStartedAt > timeouts.headersMs)
        this.#reject(new HttpProtocolError(408, 'The request head took too long'));
      return;
    }
    if (this.idle && now - this.#idleSince > timeouts.keepAliveMs) {
      this.socket.destroy();
      return;
    }
    // Only while the server waits for the client: a body nobody reads yet, or one its reader paused (a
    // slow disk), is not the client's delay.
    const waiting =
      exchange !== undefined && exchange.consumer !== undefined && !this.#paused && !this.#discard;
    if (waiting && now - this.#readAt > timeouts.bodyIdleMs) this.#bodyStalled(exchange, timeouts.bodyIdleMs);
  }

  /**
   * A client that stopped sending a body it announced (but keeps the connection open) would hold the
   * request, and whatever its handler holds (an upload session), forever: its reader fails and the
   * connection is closed.
   */
  #bodyStalled(exchange: Exchange, idleMs: number): void {
    exchange.req.destroyed = true;
    this.#failBody(
      exchange,
      new HttpProtocolError(408, `No request body bytes arrived for ${idleMs / 1000} s: connection closed`),
    );
    this.socket.destroy();
  }

  // ---- ResponseChannel ----

  keepAliveAfter(): boolean {
    const exchange = this.#current;
    if (this.#closeAfter || !exchange || !exchange.head.keepAlive) return false;
    // A response that goes out before its request body was read closes the connection: the rest of the
    // body would otherwise be taken for the next request.
    if (!exchange.decoder.done) {
      this.#closeAfter = true;
      return false;
    }
    return true;
  }

  closeAfterResponse(): void {
    this.#closeAfter = true;
  }

  responseEnded(): void {
    const exchange = this.#current;
    if (!exchange) return;
    exchange.responded = true;
    // An unread or broken body cannot be told apart from the next request: the connection ends.
    if (this.#closeAfter || !exchange.head.keepAlive || !exchange.decoder.done || exchange.bodyFailed) {
      this.#closeAfter = true;
      this.#endGracefully();
      return;
    }
    this.#complete(exchange);
  }

  // ---- BodyChannel ----

  lend(
    onChunk: (chunk: Uint8Array) => boolean,
    direct?: DirectTarget,
  ): { done: Promise<void>; resume(): void } {
    const exchange = this.#current;
    if (!exchange) throw new Error('No request is in progress on this connection');
    const done = new Promise<void>((resolve, reject) => (exchange.bodyDone = { resolve, reject }));
    if (exchange.bodyFailed) {
      exchange.bodyDone?.reject(exchange.bodyFailed);
      return { done, resume: () => undefined };
    }
    if (exchange.decoder.done) {
      exchange.bodyDone?.resolve();
      return { done, resume: () => undefined };
    }
    exchange.consumer = onChunk;
    exchange.direct = direct;
    // The client may have waited for the reader (or for 100 Continue): its time starts now.
    this.#readAt = this.#now();
    if (exchange.head.expectContinue && !exchange.res.headersSent) {
      this.socket.write('HTTP/1.1 100 Continue\r\n\r\n', 'latin1');
    }
    const resume = (): void => {
      if (this.#current === exchange && !exchange.decoder.done) this.#resume();
    };
    process.nextTick(resume);
    return { done, resume };
  }

  #resume(): void {
    if (this.#processing) {
      this.#resumeWanted = true;
      return;
    }
    if (!this.#paused || this.#closed) return;
    const held = this.#held;
    this.#held = undefined;
    if (held !== undefined && !this.#process(held)) return;
    this.#unpause();
  }

  #unpause(): void {
    if (!this.#paused) return;
    this.#paused = false;
    this.#readAt = this.#now();
    this.socket.resume();
  }

  /** Parses and dispatches `input`; false when reading must pause (the rest is in `#held`). */
  #process(input: Buffer): boolean {
    this.#processing = true;
    this.#resumeWanted = false;
    try {
      let more = this.#processInput(input);
      while (!more && this.#resumeWanted) {
        this.#resumeWanted = false;
        const held = this.#held;
        this.#held = undefined;
        more = held === undefined || this.#processInput(held);
      }
      return more;
    } catch (error) {
      this.#reject(error);
      return true;
    } finally {
      this.#processing = false;
    }
  }

  #processInput(input: Buffer): boolean {
    let at = 0;
    while (at < input.byteLength && !this.#closed && !this.#discard) {
      const exchange = this.#current;
      if (exchange && !exchange.decoder.done) {
        const consumer = exchange.consumer;
        if (!consumer) return this.#hold(input.subarray(at));
        let result: { used: number; paused: boolean };
        try {
          result = exchange.decoder.feed(input.subarray(at), consumer);
        } catch (error) {
          this.#failBody(exchange, error as Error);
          return true;
        }
        at += result.used;
        if (exchange.decoder.done) this.#bodyComplete(exchange);
        // A pause asked for with the last body byte is moot: what follows belongs to the next request.
        if (result.paused && !exchange.decoder.done && this.#current === exchange) {
          return this.#hold(input.subarray(at));
        }
        continue;
      }
      if (this.#closeAfter && !exchange) return true; // no further request on a closing connection
      if (exchange) {
        // Bytes of a pipelined request while this response is being produced: kept until it is out.
        this.#head = this.#head
          ? Buffer.concat([this.#head, input.subarray(at)])
          : Buffer.from(input.subarray(at));
        return this.#head.byteLength <= MAX_HEAD_BYTES;
      }
      let view = input.subarray(at);
      if (this.#head !== undefined) {
        view = Buffer.concat([this.#head, view]);
        this.#head = undefined;
      }
      // Empty lines before a request line are allowed (RFC 9112 section 2.2).
      let start = 0;
      while (view[start] === 13 && view[start + 1] === 10) start += 2;
      const end = view.indexOf('\r\n\r\n', start, 'latin1');
      if (end < 0) {
        if (view.byteLength - start > MAX_HEAD_BYTES) {
          throw new HttpProtocolError(431, 'The request head is larger than 64 KiB');
        }
        if (view.byteLength > start) {
          checkPartialRequestLine(view.subarray(start));
          this.#head = Buffer.from(view.subarray(start));
          if (this.#headStartedAt === 0) this.#headStartedAt = this.#now();
        }
        return true;
      }
      if (end - start > MAX_HEAD_BYTES)
        throw new HttpProtocolError(431, 'The request head is larger than 64 KiB');
      this.#headStartedAt = 0;
      this.#start(parseRequestHead(view.subarray(start, end)));
      input = view;
      at = end + 4;
    }
    return true;
  }

  #hold(rest: Buffer): boolean {
    this.#held = rest.byteLength > 0 ? rest : undefined;
    return false;
  }

  #start(head: RequestHead): void {
    const req = new H1Request(head, this, this.#remoteAddress);
    const res = new H1Response(this, head);
    const exchange: Exchange = {
      head,
      req,
      res,
      decoder: bodyDecoder(head.framing),
      consumer: undefined,
      responded: false,
    };
    this.#current = exchange;
    this.#handler(req, res);
  }

  #bodyComplete(exchange: Exchange): void {
    const done = exchange.bodyDone;
    exchange.consumer = undefined;
    exchange.direct = undefined;
    done?.resolve();
    if (exchange.responded) this.#complete(exchange);
  }

  #failBody(exchange: Exchange, error: Error): void {
    exchange.bodyFailed = error;
    exchange.consumer = undefined;
    exchange.direct = undefined;
    this.#closeAfter = true;
    exchange.bodyDone?.reject(error);
    if (exchange.responded) this.#endGracefully();
  }

  /** Request read and response sent: the connection takes the next request. */
  #complete(exchange: Exchange): void {
    if (this.#current !== exchange) return;
    this.#current = undefined;
    this.#idleSince = this.#now();
    exchange.req.emit('close');
    if (this.#processing) return; // the loop in #processInput goes on with the rest of its input
    // Nothing is held here: input is held only while a body is unfinished. What came after the body
    // (a pipelined request) waits in #head.
    const next = this.#head;
    this.#head = undefined;
    if (next !== undefined && !this.#process(next)) {
      this.#pause();
      return;
    }
    this.#unpause();
  }

  /** Answers a request the server cannot take and closes the connection. */
  #reject(error: unknown): void {
    const status = error instanceof HttpProtocolError ? error.status : 400;
    const message = error instanceof Error ? error.message : String(error);
    this.#closeAfter = true;
    if (!this.#current || !this.#current.res.headersSent) {
      const body = `${JSON.stringify({ errors: [{ code: 'UNSUPPORTED', message }] })}\n`;
      this.socket.write(
        `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Bad Request'}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
        'latin1',
      );
    }
    this.#endGracefully();
  }

  /**
   * Half-closes after the queued response and drops whatever the client still sends, then closes: a
   * close with unread input would reset the connection and could lose the response on the way.
   */
  #endGracefully(): void {
    if (this.#closed || this.#discard) return;
    this.#discard = true;
    this.socket.end();
    this.#held = undefined;
    this.#unpause();
    setTimeout(() => this.socket.destroy(), 2000).unref();
  }

  #onClose(): void {
    this.#closed = true;
    const exchange = this.#current;
    this.#current = undefined;
    if (!exchange) return;
    if (!exchange.decoder.done && !exchange.bodyFailed) {
      exchange.bodyFailed = clientGone();
      exchange.bodyDone?.reject(exchange.bodyFailed);
    }
    exchange.req.destroyed = true;
    exchange.req.emit('close');
    if (!exchange.responded || !exchange.res.writableEnded) exchange.res.emit('close');
  }
}

function clientGone(): Error {
  return Object.assign(new Error('The client closed the connection during the request body'), {
    code: 'ECONNRESET',
  });
}

/**
 * Refuses a head that cannot become a request line before it is complete, so a client speaking something
 * else (a TLS handshake sent to the plain-HTTP port, which Go clients try first) is answered at once
 * instead of at the head timeout.
 */
function checkPartialRequestLine(partial: Buffer): void {
  const lineEnd = partial.indexOf(13);
  const line = lineEnd < 0 ? partial : partial.subarray(0, lineEnd);
  for (let i = 0; i < line.byteLength; i++) {
    const byte = line[i] as number;
    if (byte < 0x20 || byte > 0x7e)
      throw new HttpProtocolError(
        400,
        'The request line has a byte that is not printable ASCII: not an HTTP request',
      );
  }
  const space = line.indexOf(32);
  const method = space < 0 ? line : line.subarray(0, space);
  if (method.byteLength > 32 || space === 0)
    throw new HttpProtocolError(400, 'Malformed request line: no method');
}
