import { constants, createWriteStream } from 'node:fs';
import { once } from 'node:events';
import { open } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { finished } from 'node:stream/promises';
import type { Digester } from './digest.js';
import {
  directIoAllowed,
  discardBufferSet,
  type DirectMode,
  PositionalFile,
  returnBufferSet,
  takeBufferSet,
} from './direct-io.js';
import { hashThreadAllowed, maxHashThreads } from './hash-thread.js';
import { kernelSendEnabled } from './kernel-send.js';

export interface HashedWriteOptions {
  /** Hashes every byte written (and counts them). */
  readonly digester: Digester;
  /** Append to the file instead of replacing it. Default: false. */
  readonly append?: boolean;
  /** Largest total `digester.size` allowed; past it `tooLarge()` is thrown. Default: unlimited. */
  readonly maxBytes?: number;
  readonly tooLarge?: (maxBytes: number) => Error;
  readonly signal?: AbortSignal;
  /**
   * Write whole aligned blocks past the page cache where the file system allows it (`PositionalFile`).
   * Default: true. false: through the page cache; `'adaptive'`: past it unless this process's direct
   * writes were measured slower than the page cache takes them (`DirectMode`).
   */
  readonly direct?: DirectMode;
  /**
   * Called once every byte has been taken from the source and written to the file, for sources that lend
   * their chunks (the only ones hashed on the hash thread, which may still be at it then). The returned
   * promise settles only once the hashing is done too: a caller may answer its client in between (a
   * chunked upload's PATCH) and wait for the digest before the next step that needs it. Not called when
   * the write or the hashing fails first.
   */
  readonly onWritten?: () => void;
}

/**
 * A write whose every byte reached the file but whose hashing failed (the hash thread stopped): the file
 * is whole, and only its digest has to be computed again, from the file. `cause` is the hash's failure.
 */
export class UnhashedWriteError extends Error {
  override readonly name = 'UnhashedWriteError';

  constructor(cause: unknown) {
    super(`The content was written but not hashed: ${(cause as Error).message}`, { cause });
  }
}

/**
 * Checks the I/O switches, `AIRLOCK_DIRECT_IO`, `AIRLOCK_HASH_THREAD` and `AIRLOCK_SENDFILE`: throws on a
 * value other than 0 or 1 (or on `AIRLOCK_SENDFILE=1` without the addon), and `AIRLOCK_HASH_THREADS`
 * (a count from 1 to 64), for `serve` and the CLI to refuse at start-up rather than at the first large
 * transfer.
 */
export function checkWriteSwitches(env: NodeJS.ProcessEnv = process.env): void {
  directIoAllowed(env);
  hashThreadAllowed(env);
  maxHashThreads(env);
  kernelSendEnabled(env);
}

/**
 * Copies content to a file, hashing it on the way, with back-pressure. The registry's blob store and the
 * client's OCI layouts both write through it. Sources that lend their chunks (the registry's HTTP server,
 * the client's raw HTTP reader) are written through reused page-aligned buffers, past the page cache for
 * large content (`writeLentChunks`); other sources through a 1 MiB write stream.
 */
export async function writeHashed(
  source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
  path: string,
  options: HashedWriteOptions,
): Promise<void> {
  if (lendsChunks(source)) return writeLentChunks(source, path, options);
  return writeOnThisThread(source, path, options);
}

/**
 * A source that lends its chunks: each one is valid only until `onChunk` returns (the source reads the
 * next one into the same memory), so the consumer copies it. Returning false pauses the source until
 * `resume()`. `done` settles at the end of the content or on the source's failure.
 */
export interface BorrowedChunkSource {
  pumpBorrowed(
    onChunk: (chunk: Uint8Array) => boolean,
    direct?: DirectTarget,
  ): { done: Promise<void>; resume(): void };
}

/**
 * Offered by the consumer to a source that reads a socket: memory to read the next bytes into, so they
 * arrive where they are to be written instead of being copied there. A source may use it for some reads
 * and lend chunks for others, in order.
 */
export interface DirectTarget {
  /** Memory for the next read of at most `max` bytes, or undefined (read elsewhere, then lend). */
  target(max: number): Uint8Array | undefined;
  /** The last read put `bytes` bytes into the memory `target` gave; false pauses the source. */
  filled(bytes: number): boolean;
}

/**
 * For a source that reads a socket into memory chosen per read (net's `onread`): the view a
 * `DirectTarget` offers for the next read, or the source's own buffer, and then whether a read landed
 * in that view (told apart by identity).
 */
export class DirectReads {
  #view: Uint8Array | undefined;

  /** Memory for the next read: `target`'s view of at most `max` bytes when it has one, else `fallback`. */
  next(target: DirectTarget | undefined, max: number, fallback: Buffer): Uint8Array {
    const view = target && max > 0 ? target.target(max) : undefined;
    this.#view = view && view.byteLength > 0 ? view : undefined;
    return this.#view ?? fallback;
  }

  /** Whether a read into `buffer` landed in the view `next` gave last (which is then used up). */
  claim(buffer: Uint8Array): boolean {
    if (this.#view === undefined || buffer !== this.#view) return false;
    this.#view = undefined;
    return true;
  }
}

function lendsChunks(source: unknown): source is BorrowedChunkSource {
  return typeof (source as Partial<BorrowedChunkSource>).pumpBorrowed === 'function';
}

/**
 * Bytes land in the one of a few reused, page-aligned 2 MiB buffers being filled: read there straight
 * from the socket when the source takes the `DirectTarget` offered, else copied there from lent chunks.
 * A full buffer goes at once to libuv's thread pool, which writes it at its position in the file (past
 * the page cache when it can: `PositionalFile`), and to the digester, which hashes large content on the
 * hash thread (`Digester.updateShared`), while the next bytes arrive. A buffer is reused once both are
 * done; with every buffer busy the source pauses. A transfer thus allocates nothing per read, and the
 * thread that reads the socket neither copies (direct reads) nor hashes. Sources: the client's raw HTTP
 * reader (downloads) and the registry's HTTP server (uploads).
 */
function writeLentChunks(
  source: BorrowedChunkSource,
  path: string,
  options: HashedWriteOptions,
): Promise<void> {
  const { digester, signal } = options;
  const maxBytes = options.maxBytes ?? Infinity;
  return new Promise<void>((resolve, reject) => {
    let file: PositionalFile | undefined;
    let settled = false;
    let ended = false;
    let failure: Error | undefined;
    // The first failure of a write, and of the hashing: which one it was decides what the file holds.
    let writeFailure: Error | undefined;
    let hashFailure: Error | undefined;
    let inFlight = 0;
    // Writes on the thread pool not yet done, and whether `onWritten` was called.
    let writing = 0;
    let writtenTold = false;
    // The source ended with nothing failed, and its last bytes were handed to a write: every byte taken
    // is then on its way to the file (after a failure, the source may go on to its end unread).
    let complete = false;
    let position = 0;
    // Bytes taken from the source so far (the digester counts them only when their buffer is submitted).
    let received = 0;
    const sizeBefore = digester.size;
    // Set from handing the source memory to read into (`direct.target`) until it says what it read.
    let lent = false;
    let paused = false;
    const set = takeBufferSet();
    const free: Buffer[] = [...set.buffers];
    // The buffer being filled, how much of it to fill, and where in the file it starts.
    let current: Buffer | undefined;
    let filled = 0;
    let capacity = 0;
    let currentAt = 0;
    // Closes the file once no write is in flight (a pending write must never meet a reused fd number).
    const finish = (): void => {
      if (settled || inFlight > 0 || !(ended || failure)) return;
      settled = true;
      signal?.removeEventListener('abort', onAbort);
      // Memory the source may still read into (it failed between asking and reading) is not reused.
      if (lent) discardBufferSet(set);
      else returnBufferSet(set);
      try {
        file?.close();
      } catch (closeError) {
        failure ??= closeError as Error;
      }
      if (failure) {
        if (source instanceof Readable) source.destroy();
        reject(outcome(failure));
      } else digester.settle().then(resolve, (error: unknown) => reject(outcome(error as Error)));
    };
    // A hash that failed (the first failure, or `settle` failing after none) once every byte was taken and
    // written leaves a whole file: say so.
    const outcome = (error: Error): Error => {
      if (failure !== undefined && error !== hashFailure) return error;
      if (writeFailure) return writeFailure;
      return complete ? new UnhashedWriteError(error) : error;
    };
    const fail = (error: Error): void => {
      failure ??= error;
      finish();
    };
    // Once every byte is taken, the rest is the disk's and the hash thread's work: an abort no longer stops it.
    const onAbort = (): void => {
      if (!ended) fail(abortError(signal));
    };
    try {
      signal?.throwIfAborted();
      // Appends write at positions too (from the current end): the thread pool may write them in any order.
      file = PositionalFile.open(path, {
        append: options.append ?? false,
        direct: set.aligned ? (options.direct ?? true) : false,
      });
      position = file.size;
    } catch (error) {
      fail(error as Error);
      return;
    }
    const out = file;
    signal?.addEventListener('abort', onAbort, { once: true });
    // Hands the filled part of the current buffer to the thread pool, to be written at its position, and
    // to the digester; the buffer is free again when both are done with it.
    const submit = (): void => {
      const buffer = current;
      const length = filled;
      current = undefined;
      filled = 0;
      if (!buffer) return;
      if (length === 0) {
        free.push(buffer);
        return;
      }
      let users = 2;
      const done = (error: Error | null, hashing = false): void => {
        inFlight -= 1;
        users -= 1;
        if (users === 0) free.push(buffer);
        if (error) {
          if (hashing) hashFailure ??= error;
          else writeFailure ??= error;
          fail(error);
          return;
        }
        if (paused && !failure && free.length > 0) {
          paused = false;
          control.resume();
        }
        finish();
      };
      inFlight += 2;
      writing += 1;
      digester.updateShared(buffer.subarray(0, length)).then(
        () => done(null),
        (error: unknown) => done(error as Error, true),
      );
      out.write({ buffer, length, at: currentAt }, (error) => {
        writing -= 1;
        if (!error) tellWritten();
        done(error);
      });
    };
    // Every byte is in the file (the source ended, no write is left) while nothing failed: say so once.
    const tellWritten = (): void => {
      if (writtenTold || !ended || writing > 0 || failure || settled) return;
      writtenTold = true;
      options.onWritten?.();
    };
    // Makes a free buffer the one being filled, from the current position; false when all are busy.
    const takeBuffer = (): boolean => {
      current = free.pop();
      if (!current) return false;
      currentAt = position;
      capacity = out.fill(position, current.byteLength);
      return true;
    };
    // Runs the handling of `bytes` more from the source; its answer is whether the source may go on, and
    // when not it waits for a buffer to come free (or the write failed).
    const take = (bytes: number, handle: () => boolean): boolean => {
      if (failure || settled) return false;
      try {
        if (sizeBefore + received + bytes > maxBytes) throw tooLargeError(options, maxBytes);
        received += bytes;
        if (handle()) return true;
        paused = true;
        return false;
      } catch (error) {
        fail(error as Error);
        return false;
      }
    };
    // Reads straight into the buffer being filled, for sources that read a socket: no copy.
    const direct: DirectTarget = {
      target: (max) => {
        if (failure || settled || lent || (!current && !takeBuffer())) return undefined;
        const room = Math.min(capacity - filled, max);
        if (room <= 0 || !current) return undefined;
        lent = true;
        return current.subarray(filled, filled + room);
      },
      filled: (bytes) => {
        lent = false;
        return take(bytes, () => {
          filled += bytes;
          position += bytes;
          if (filled === capacity) submit();
          // Reads are never larger than the buffer being filled: wait only when there is none.
          return current !== undefined || free.length > 0;
        });
      },
    };
    const control = source.pumpBorrowed(
      (chunk) =>
        take(chunk.byteLength, () => {
          let offset = 0;
          while (offset < chunk.byteLength) {
            if (!current && !takeBuffer()) {
              // Every buffer is in flight (a source that ignored the pause): hash and write the rest here,
              // after the buffers submitted before it.
              const rest = offset === 0 ? chunk : chunk.subarray(offset);
              digester.update(rest);
              out.writeSync(rest, position);
              position += rest.byteLength;
              break;
            }
            const buffer = current as Buffer;
            const size = Math.min(chunk.byteLength - offset, capacity - filled);
            buffer.set(size === chunk.byteLength ? chunk : chunk.subarray(offset, offset + size), filled);
            filled += size;
            offset += size;
            position += size;
            if (filled === capacity) submit();
          }
          // No buffer left for what the next chunk may bring beyond the current one: wait for a write.
          return free.length > 0;
        }),
      direct,
    );
    control.done.then(() => {
      ended = true;
      // After a failure the file may be closed already, and the buffers back in the pool.
      if (!failure && !settled) {
        complete = true;
        submit();
        tellWritten();
      }
      finish();
    }, fail);
  });
}

/** Everything on the calling thread: a loop over a 1 MiB write stream. */
async function writeOnThisThread(
  source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
  path: string,
  options: HashedWriteOptions,
): Promise<void> {
  const { digester } = options;
  const maxBytes = options.maxBytes ?? Infinity;
  // An append never creates the file (see PositionalFile.open).
  const appendTo = options.append ? await open(path, constants.O_WRONLY | constants.O_APPEND) : undefined;
  const highWaterMark = 1024 * 1024;
  const out = createWriteStream(
    path,
    appendTo ? { fd: appendTo, highWaterMark } : { flags: 'w', highWaterMark },
  );
  const failed = new Promise<never>((_, reject) => out.once('error', reject));
  failed.catch(() => undefined);
  // An abort while the source is quiet ends the wait too: the stream is destroyed with the reason.
  const { signal } = options;
  const onAbort = (): void => {
    if (source instanceof Readable) source.destroy(abortError(signal));
  };
  signal?.addEventListener('abort', onAbort, { once: true });
  try {
    signal?.throwIfAborted();
    for await (const chunk of source) {
      signal?.throwIfAborted();
      if (digester.size + chunk.byteLength > maxBytes) throw tooLargeError(options, maxBytes);
      digester.update(chunk);
      if (!out.write(chunk)) await Promise.race([once(out, 'drain'), failed]);
    }
    out.end();
    await Promise.race([finished(out), failed]);
    // A digester that moved to the hash thread in an earlier write (a chunked upload) keeps hashing there.
    await digester.settle();
  } catch (error) {
    out.destroy();
    throw error;
  } finally {
    signal?.removeEventListener('abort', onAbort);
  }
}

/** The error an aborted write fails with: the signal's reason when it is one. */
function abortError(signal: AbortSignal | undefined): Error {
  return signal?.reason instanceof Error ? signal.reason : new Error('The write was aborted');
}

function tooLargeError(options: HashedWriteOptions, maxBytes: number): Error {
  return options.tooLarge?.(maxBytes) ?? new Error(`Content is larger than the ${maxBytes} bytes allowed`);
}
