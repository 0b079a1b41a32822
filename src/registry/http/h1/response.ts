import { EventEmitter } from 'node:events';
import { STATUS_CODES } from 'node:http';
import type { Socket } from 'node:net';
import type { DirectSocket } from '../../../oci/index.js';
import { BAD_VALUE, TOKEN } from './head.js';

export type HeaderValue = string | number | readonly string[];

/** What a response needs from its connection. */
export interface ResponseChannel {
  readonly socket: Socket;
  /** Whether the connection stays open after this exchange (false adds `Connection: close`). */
  keepAliveAfter(): boolean;
  /** This response cannot be followed by another on the connection (its body ends when it closes). */
  closeAfterResponse(): void;
  /** The response was handed to the socket whole. */
  responseEnded(): void;
}

const SMALL_BODY = 64 * 1024;

let dateSecond = 0;
let dateText = '';
function httpDate(): string {
  const now = Date.now();
  const second = Math.floor(now / 1000);
  if (second !== dateSecond) {
    dateSecond = second;
    dateText = new Date(now).toUTCString();
  }
  return dateText;
}

/**
 * An HTTP/1.1 response with the part of node's ServerResponse the registry uses: headers set or given to
 * `writeHead` go out with the first write or `end`. Framing: the given Content-Length; else, when `end`
 * brings the whole body, its length; else chunked. HEAD answers and 1xx/204/304 carry no body.
 * Emits 'finish' once the last byte was handed to the OS, 'close' after that or when the connection went
 * away first, and 'drain' when a write that returned false has been flushed.
 */
export class H1Response extends EventEmitter {
  statusCode = 200;
  headersSent = false;
  writableEnded = false;
  /** Body bytes handed to the socket so far (framing not included). */
  bodyBytes = 0;
  readonly #channel: ResponseChannel;
  readonly #method: string;
  readonly #http11: boolean;
  readonly #headers = new Map<string, HeaderValue>();
  #chunked = false;
  #noBody = false;
  #awaitingDrain = false;

  constructor(channel: ResponseChannel, options: { method: string; httpVersion: string }) {
    super();
    this.#channel = channel;
    this.#method = options.method;
    this.#http11 = options.httpVersion === '1.1';
  }

  get destroyed(): boolean {
    return this.#channel.socket.destroyed;
  }

  setHeader(name: string, value: HeaderValue): this {
    if (this.headersSent) throw new Error(`Cannot set header "${name}" after the headers were sent`);
    checkHeader(name, value);
    this.#headers.set(name.toLowerCase(), value);
    return this;
  }

  getHeader(name: string): HeaderValue | undefined {
    return this.#headers.get(name.toLowerCase());
  }

  hasHeader(name: string): boolean {
    return this.#headers.has(name.toLowerCase());
  }

  writeHead(status: number, headers: Record<string, HeaderValue> = {}): this {
    if (this.headersSent) throw new Error('The response head was already sent');
    if (!Number.isInteger(status) || status < 100 || status > 999)
      throw new RangeError(`Invalid status ${status}`);
    this.statusCode = status;
    for (const name in headers) this.setHeader(name, headers[name]!);
    return this;
  }

  /** Writes a piece of the body; false means the socket's buffer is full ('drain' follows). */
  write(chunk: string | Uint8Array, callback?: (error?: Error | null) => void): boolean {
    if (this.writableEnded) throw new Error('write after end');
    if (!this.headersSent) this.#channel.socket.write(this.#head(), 'latin1');
    return this.#writeBody(typeof chunk === 'string' ? Buffer.from(chunk) : chunk, callback);
  }

  #writeBody(bytes: Uint8Array, callback?: (error?: Error | null) => void): boolean {
    const socket = this.#channel.socket;
    if (socket.destroyed) {
      if (callback) process.nextTick(callback, new Error('The connection is closed'));
      return false;
    }
    if (this.#noBody || bytes.byteLength === 0) {
      if (callback) process.nextTick(callback, null);
      return true;
    }
    this.bodyBytes += bytes.byteLength;
    let flushed: boolean;
    if (this.#chunked) {
      socket.cork();
      socket.write(`${bytes.byteLength.toString(16)}\r\n`, 'latin1');
      socket.write(bytes);
      flushed = socket.write('\r\n', 'latin1', callback);
      socket.uncork();
    } else {
      flushed = socket.write(bytes, callback);
    }
    if (!flushed && !this.#awaitingDrain) {
      // One forwarding listener however many writes are queued (several may be, as blob downloads keep
      // a few buffers in flight).
      this.#awaitingDrain = true;
      socket.once('drain', () => {
        this.#awaitingDrain = false;
        this.emit('drain');
      });
    }
    return flushed;
  }

  /**
   * For `sendFileTo`: sends the head, waits until node has handed it to the OS, and gives the socket for
   * the body bytes written straight to it (sendfile; the Content-Length set says how many). Undefined
   * for bodies that need framing or must not be sent (chunked, HEAD, 204/304), for TLS, and once the
   * connection is gone.
   */
  async directSocket(): Promise<DirectSocket | undefined> {
    const socket = this.#channel.socket;
    if (this.writableEnded || socket.destroyed) return undefined;
    if (!this.headersSent) socket.write(this.#head(), 'latin1');
    if (this.#noBody || this.#chunked || (socket as Socket & { encrypted?: boolean }).encrypted)
      return undefined;
    const flushed = await new Promise<boolean>((resolve) => {
      socket.write('', 'latin1', (error) => resolve(!error));
    });
    if (!flushed || socket.destroyed) return undefined;
    return {
      socket,
      sent: (bytes) => {
        this.bodyBytes += bytes;
      },
    };
  }

  /** Ends the response, with a last piece of body when given. */
  end(chunk?: string | Uint8Array, callback?: () => void): this {
    if (this.writableEnded) return this;
    const socket = this.#channel.socket;
    const bytes = chunk === undefined ? undefined : typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
    this.writableEnded = true;
    const finished = (error?: Error | null): void => {
      // A failed write means the connection went away: the connection emits 'close' then.
      if (error) return;
      this.emit('finish');
      this.emit('close');
      callback?.();
    };
    if (socket.destroyed) {
      this.#channel.responseEnded();
      return this;
    }
    if (!this.headersSent) {
      const head = this.#head(bytes ?? Buffer.alloc(0));
      const body = this.#noBody || bytes === undefined ? undefined : bytes;
      this.bodyBytes += body?.byteLength ?? 0;
      if (body === undefined || body.byteLength === 0) socket.write(head, 'latin1', finished);
      else if (body.byteLength <= SMALL_BODY) {
        // One buffer, one write: the head is latin1, one byte per character.
        const message = Buffer.allocUnsafe(head.length + body.byteLength);
        message.write(head, 0, 'latin1');
        message.set(body, head.length);
        socket.write(message, finished);
      } else {
        socket.cork();
        socket.write(head, 'latin1');
        socket.write(body, finished);
        socket.uncork();
      }
    } else if (this.#chunked) {
      socket.cork();
      if (bytes && bytes.byteLength > 0) this.#writeBody(bytes);
      socket.write('0\r\n\r\n', 'latin1', finished);
      socket.uncork();
    } else if (bytes && bytes.byteLength > 0 && !this.#noBody) {
      this.bodyBytes += bytes.byteLength;
      socket.write(bytes, finished);
    } else {
      // Nothing left to send: 'finish' once what was written is flushed.
      socket.write('', 'latin1', finished);
    }
    this.#channel.responseEnded();
    return this;
  }

  destroy(error?: Error): void {
    this.#channel.socket.destroy(error);
  }

  /**
   * Builds the head and marks it sent. `wholeBody`, when `end` brings the entire body, gives the
   * Content-Length (unless one was set); without it a body that may follow is chunked.
   */
  #head(wholeBody?: Uint8Array): string {
    this.headersSent = true;
    const status = this.statusCode;
    const statusHasBody = status >= 200 && status !== 204 && status !== 304;
    this.#noBody = this.#method === 'HEAD' || !statusHasBody;
    const headers = this.#headers;
    const keepAlive = this.#channel.keepAliveAfter();
    let text = `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Unknown'}\r\n`;
    let closeDelimited = false;
    if (!headers.has('content-length') && !headers.has('transfer-encoding')) {
      if (wholeBody !== undefined) {
        // A HEAD answer given its would-be body announces that body's length.
        const headWithoutBody = this.#method === 'HEAD' && wholeBody.byteLength === 0;
        if (statusHasBody && !headWithoutBody) text += `content-length: ${wholeBody.byteLength}\r\n`;
      } else if (!this.#noBody) {
        if (this.#http11) {
          this.#chunked = true;
          text += 'transfer-encoding: chunked\r\n';
        } else {
          closeDelimited = true;
        }
      }
    }
    for (const [name, value] of headers) {
      if (typeof value === 'object') for (const one of value) text += `${name}: ${one}\r\n`;
      else text += `${name}: ${value}\r\n`;
    }
    if (!headers.has('date')) text += `date: ${httpDate()}\r\n`;
    if (!keepAlive || closeDelimited) text += 'connection: close\r\n';
    else if (!this.#http11) text += 'connection: keep-alive\r\n';
    text += '\r\n';
    if (closeDelimited) this.#channel.closeAfterResponse();
    return text;
  }
}

/** Header names already checked (the handlers use a few dozen); bounded so odd names cannot grow it. */
const checkedNames = new Set<string>();

function checkHeader(name: string, value: HeaderValue): void {
  if (!checkedNames.has(name)) {
    if (!TOKEN.test(name)) throw new TypeError(`Invalid header name "${name.slice(0, 40)}"`);
    if (checkedNames.size < 256) checkedNames.add(name);
  }
  const bad =
    typeof value === 'string'
      ? BAD_VALUE.test(value)
      : typeof value === 'object' && value.some((one) => BAD_VALUE.test(one));
  if (bad) throw new TypeError(`Invalid character in the value of header "${name}"`);
}
