import { EventEmitter } from 'node:events';
import type { IncomingHttpHeaders } from 'node:http';
import type { BorrowedChunkSource, DirectTarget } from '../../../oci/index.js';
import type { RequestHead } from './head.js';

/** What a request needs from its connection to hand out its body. */
export interface BodyChannel {
  /**
   * Starts delivering body bytes to `onChunk` (views valid only during the call; false pauses), or
   * reading them straight into the memory `direct` offers, where it can.
   */
  lend(
    onChunk: (chunk: Uint8Array) => boolean,
    direct?: DirectTarget,
  ): { done: Promise<void>; resume(): void };
}

/** How many copied chunks the async iterator keeps before it pauses the connection. */
const ITERATOR_QUEUE = 8;

/**
 * An HTTP/1.1 request. The body is read once, either lent (`pumpBorrowed`: the connection's read buffer
 * itself, for blob uploads that hash and copy it anyway) or iterated (`for await`: a copy of each read).
 * Emits 'close' when the exchange is over or the connection went away.
 */
export class H1Request extends EventEmitter implements BorrowedChunkSource, AsyncIterable<Buffer> {
  readonly method: string;
  readonly url: string;
  readonly httpVersion: string;
  readonly headers: IncomingHttpHeaders;
  readonly remoteAddress: string;
  /** The connection closed before the exchange ended. */
  destroyed = false;
  readonly #channel: BodyChannel;
  #read = false;

  constructor(head: RequestHead, channel: BodyChannel, remoteAddress: string) {
    super();
    this.method = head.method;
    this.url = head.url;
    this.httpVersion = head.httpVersion;
    this.headers = head.headers;
    this.remoteAddress = remoteAddress;
    this.#channel = channel;
  }

  pumpBorrowed(
    onChunk: (chunk: Uint8Array) => boolean,
    direct?: DirectTarget,
  ): { done: Promise<void>; resume(): void } {
    if (this.#read) throw new Error('This request body is already being read');
    this.#read = true;
    return this.#channel.lend(onChunk, direct);
  }

  async *[Symbol.asyncIterator](): AsyncIterator<Buffer> {
    const queue: Buffer[] = [];
    let ended = false;
    let failure: Error | undefined;
    let wake: (() => void) | undefined;
    const control = this.pumpBorrowed((chunk) => {
      queue.push(Buffer.from(chunk));
      wake?.();
      return queue.length < ITERATOR_QUEUE;
    });
    control.done.then(
      () => {
        ended = true;
        wake?.();
      },
      (error: unknown) => {
        failure = error as Error;
        wake?.();
      },
    );
    for (;;) {
      const next = queue.shift();
      if (next !== undefined) {
        if (queue.length === ITERATOR_QUEUE - 1) control.resume();
        yield next;
        continue;
      }
      if (failure) throw failure;
      if (ended) return;
      await new Promise<void>((resolve) => (wake = resolve));
      wake = undefined;
    }
  }
}
