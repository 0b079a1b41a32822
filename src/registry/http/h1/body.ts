import { HttpProtocolError, type BodyFraming } from './head.js';

/** Longest chunk-size line (size, extensions) or trailer section accepted in a chunked body. */
const MAX_CHUNK_LINE = 4096;
const MAX_TRAILERS = 16 * 1024;

/**
 * Turns the bytes after a request head into body bytes. `feed` hands each piece of body to `onData`
 * (a view into `input`: valid only during the call) and stops early when `onData` returns false;
 * it returns how many input bytes it used, so whatever follows the body (a pipelined request, or the
 * rest after a pause) stays with the caller.
 */
export interface BodyDecoder {
  feed(input: Buffer, onData: (data: Buffer) => boolean): { used: number; paused: boolean };
  /** Every body byte was delivered. */
  readonly done: boolean;
  /** Body bytes delivered so far. */
  readonly received: number;
  /** Body bytes still to come when the length is known (Content-Length), else undefined. */
  readonly remaining: number | undefined;
  /** Counts `bytes` of body read straight into the reader's memory (never more than `remaining`). */
  accept(bytes: number): void;
}

export function bodyDecoder(framing: BodyFraming): BodyDecoder {
  switch (framing.kind) {
    case 'none':
      return new LengthDecoder(0);
    case 'length':
      return new LengthDecoder(framing.length);
    case 'chunked':
      return new ChunkedDecoder();
  }
}

class LengthDecoder implements BodyDecoder {
  readonly #length: number;
  received = 0;

  constructor(length: number) {
    this.#length = length;
  }

  get done(): boolean {
    return this.received >= this.#length;
  }

  get remaining(): number {
    return this.#length - this.received;
  }

  accept(bytes: number): void {
    if (bytes > this.#length - this.received) throw new Error('More body bytes than the Content-Length');
    this.received += bytes;
  }

  feed(input: Buffer, onData: (data: Buffer) => boolean): { used: number; paused: boolean } {
    const take = Math.min(input.byteLength, this.#length - this.received);
    if (take <= 0) return { used: 0, paused: false };
    this.received += take;
    const more = onData(take === input.byteLength ? input : input.subarray(0, take));
    return { used: take, paused: !more };
  }
}

type ChunkState = 'size' | 'data' | 'data-end' | 'trailers' | 'done';

/** RFC 9112 section 7.1: hex size lines (extensions ignored), data, CRLF, a zero chunk, trailers (ignored). */
class ChunkedDecoder implements BodyDecoder {
  #state: ChunkState = 'size';
  #line = '';
  #left = 0;
  received = 0;

  get done(): boolean {
    return this.#state === 'done';
  }

  readonly remaining = undefined;

  accept(): void {
    throw new Error('A chunked body is only read through feed()');
  }

  feed(input: Buffer, onData: (data: Buffer) => boolean): { used: number; paused: boolean } {
    let at = 0;
    while (at < input.byteLength && this.#state !== 'done') {
      if (this.#state === 'data') {
        const take = Math.min(this.#left, input.byteLength - at);
        this.#left -= take;
        this.received += take;
        if (this.#left === 0) this.#state = 'data-end';
        const more = onData(input.subarray(at, at + take));
        at += take;
        if (!more) return { used: at, paused: true };
        continue;
      }
      // The other states read lines; a line may arrive split across reads.
      const newline = input.indexOf(10, at);
      const end = newline < 0 ? input.byteLength : newline + 1;
      this.#line += input.toString('latin1', at, end);
      at = end;
      const limit = this.#state === 'trailers' ? MAX_TRAILERS : MAX_CHUNK_LINE;
      if (this.#line.length > limit) throw new HttpProtocolError(400, 'A chunked body has an over-long line');
      if (newline < 0) break;
      this.#lineComplete();
    }
    return { used: at, paused: false };
  }

  #lineComplete(): void {
    const line = this.#line;
    if (!line.endsWith('\r\n')) throw new HttpProtocolError(400, 'A chunked body has a line without CRLF');
    switch (this.#state) {
      case 'size': {
        this.#line = '';
        const size = /^([0-9A-Fa-f]{1,12})[ \t]*(;[^\r\n]*)?\r\n$/.exec(line);
        if (!size) throw new HttpProtocolError(400, `Malformed chunk size "${line.slice(0, 40).trim()}"`);
        this.#left = parseInt(size[1] as string, 16);
        this.#state = this.#left === 0 ? 'trailers' : 'data';
        return;
      }
      case 'data-end':
        this.#line = '';
        if (line !== '\r\n') throw new HttpProtocolError(400, 'A chunk is longer than its declared size');
        this.#state = 'size';
        return;
      case 'trailers':
        // Trailer fields are read and dropped; an empty line ends the body.
        if (line.endsWith('\r\n\r\n') || line === '\r\n') this.#state = 'done';
        return;
      default:
        return;
    }
  }
}
