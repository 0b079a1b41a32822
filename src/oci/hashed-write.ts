import { closeSync, constants, createWriteStream, fstatSync, openSync, write, writeSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { once } from 'node:events';
import { Readable } from 'node:stream';
import { finished } from 'node:stream/promises';
import type { Digester } from './digest.js';
import { hashWorkerCount, pickHashWorker, WorkerHash, workerError, type WorkerReply } from './hash-pool.js';

export interface HashedWriteOptions {
  /** Hashes every byte written (and counts them). */
  readonly digester: Digester;
  /** Append to the file instead of replacing it. Default: false. */
  readonly append?: boolean;
  /** Largest total `digester.size` allowed; past it `tooLarge()` is thrown. Default: unlimited. */
  readonly maxBytes?: number;
  readonly tooLarge?: (maxBytes: number) => Error;
  readonly signal?: AbortSignal;
}

/**
 * Bytes per slot: one message to the worker and back, one hash update and one write(2) per slot. Waking
 * a thread on another CPU costs ~150 µs of CPU on this kind of VM, so slots are large.
 */
const SLOT_SIZE = 2 * 1024 * 1024;
/** Slots per write: the main thread fills one while the worker hashes and writes the others. */
const SLOT_COUNT = 4;
/** Free slot buffers kept for the next writes (at most this many). */
const SPARE_SLOTS = 8;
const spareSlots: ArrayBuffer[] = [];

function slotBuffer(): ArrayBuffer {
  return spareSlots.pop() ?? new ArrayBuffer(SLOT_SIZE);
}

/**
 * Copies a stream to a file, hashing on the way, with back-pressure. The registry's blob store and the
 * client's OCI layouts both write through it.
 *
 * By default everything runs on the calling thread: a loop over a 1 MiB write stream. With
 * `AIRLOCK_HASH_WORKERS=N` (N > 0), content past the first slot is hashed and written by hashing worker
 * threads (`hash-pool.ts`) instead: the calling thread only copies what it receives into 2 MiB slots, so
 * receiving, hashing and writing use separate cores. The digester's state then stays in that worker,
 * later appends to the same digester (chunked uploads) go to it too, and `digester.finish()` reads the
 * result; on failure an offloaded digester is disposed (its state no longer matches the file). Smaller
 * content and a digester that already hashed bytes on this thread stay on the calling thread.
 */
export async function writeHashed(
  source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
  path: string,
  options: HashedWriteOptions,
): Promise<void> {
  const { digester } = options;
  const offloadable = digester.offloaded !== undefined || (digester.size === 0 && hashWorkerCount() > 0);
  if (!offloadable && lendsChunks(source)) return writeLentChunks(source, path, options);
  if (!offloadable) return writeOnThisThread(source, path, options);
  const sink = new SlotSink(path, options);
  try {
    if (lendsChunks(source)) await pumpBorrowed(source, sink, options.signal);
    else if (source instanceof Readable) await pumpReadable(source, sink, options.signal);
    else await pumpIterable(source, sink, options.signal);
    await sink.end();
  } catch (error) {
    if (source instanceof Readable) source.destroy();
    await sink.abort();
    digester.dispose();
    throw error;
  }
}

/**
 * A source that lends its chunks: each one is valid only until `onChunk` returns (the source reads the
 * next one into the same memory), so the consumer copies it. Returning false pauses the source until
 * `resume()`. `done` settles at the end of the content or on the source's failure.
 */
export interface BorrowedChunkSource {
  pumpBorrowed(onChunk: (chunk: Uint8Array) => boolean): { done: Promise<void>; resume(): void };
}

function lendsChunks(source: unknown): source is BorrowedChunkSource {
  return typeof (source as Partial<BorrowedChunkSource>).pumpBorrowed === 'function';
}

/** Write buffers per lent-chunk write: copies of chunks waiting for the thread pool to write them. */
const LENT_WRITE_BUFFERS = 4;
const LENT_WRITE_BUFFER_SIZE = 1024 * 1024;
/**
 * Write buffers kept between lent-chunk writes. A chunked upload makes one write per PATCH; fresh
 * buffers for each would have the kernel find and zero new pages every time, which on the VMs Airlock
 * is measured on costs more than the copies they hold.
 */
const spareWriteBuffers: Buffer[] = [];
const MAX_SPARE_WRITE_BUFFERS = 4 * LENT_WRITE_BUFFERS;

/**
 * Lent chunks on the calling thread: each is hashed at once and copied into the one of a few reused
 * 1 MiB buffers being filled; a full buffer goes to libuv's thread pool, which writes it at its position
 * in the file while the next chunks arrive; with every buffer busy the source pauses. A transfer thus
 * allocates nothing per chunk, and the page-cache writes overlap the hashing. Sources that lend chunks:
 * the client's raw HTTP reader (downloads) and the registry's HTTP server (uploads).
 */
function writeLentChunks(
  source: BorrowedChunkSource,
  path: string,
  options: HashedWriteOptions,
): Promise<void> {
  const { digester, signal } = options;
  const maxBytes = options.maxBytes ?? Infinity;
  const append = options.append ?? false;
  return new Promise<void>((resolve, reject) => {
    let fd: number | undefined;
    let settled = false;
    let ended = false;
    let failure: Error | undefined;
    let inFlight = 0;
    let position = 0;
    let paused = false;
    let allocated = 0;
    const free: Buffer[] = [];
    // The buffer being filled, and where in the file it starts.
    let current: Buffer | undefined;
    let filled = 0;
    let currentAt = 0;
    // Closes the file once no write is in flight (a pending write must never meet a reused fd number).
    const finish = (): void => {
      if (settled || inFlight > 0 || !(ended || failure)) return;
      settled = true;
      signal?.removeEventListener('abort', onAbort);
      if (current) free.push(current);
      current = undefined;
      for (const buffer of free) {
        if (spareWriteBuffers.length < MAX_SPARE_WRITE_BUFFERS) spareWriteBuffers.push(buffer);
      }
      free.length = 0;
      try {
        if (fd !== undefined) closeSync(fd);
      } catch (closeError) {
        failure ??= closeError as Error;
      }
      if (failure) {
        if (source instanceof Readable) source.destroy();
        reject(failure);
      } else resolve();
    };
    const fail = (error: Error): void => {
      failure ??= error;
      finish();
    };
    const onAbort = (): void => fail(abortError(signal));
    try {
      signal?.throwIfAborted();
      // Appends write at positions too (from the current end), so the thread pool may write them in any order.
      fd = openSync(path, append ? constants.O_WRONLY | constants.O_CREAT : 'w');
      if (append) position = fstatSync(fd).size;
    } catch (error) {
      fail(error as Error);
      return;
    }
    const file = fd;
    signal?.addEventListener('abort', onAbort, { once: true });
    const takeBuffer = (): Buffer | undefined => {
      const buffer = free.pop();
      if (buffer || allocated === LENT_WRITE_BUFFERS) return buffer;
      allocated += 1;
      return spareWriteBuffers.pop() ?? Buffer.allocUnsafeSlow(LENT_WRITE_BUFFER_SIZE);
    };
    // Hands the filled part of the current buffer to the thread pool, to be written at its position.
    const submit = (): void => {
      const buffer = current;
      const length = filled;
      const at = currentAt;
      current = undefined;
      filled = 0;
      if (!buffer) return;
      if (length === 0) {
        free.push(buffer);
        return;
      }
      inFlight += 1;
      const writeRest = (offset: number): void => {
        write(file, buffer, offset, length - offset, at + offset, (error, bytes) => {
          if (!error && offset + bytes < length) {
            writeRest(offset + bytes);
            return;
          }
          inFlight -= 1;
          free.push(buffer);
          if (error) {
            fail(error);
            return;
          }
          if (paused && !failure) {
            paused = false;
            control.resume();
          }
          finish();
        });
      };
      writeRest(0);
    };
    const control = source.pumpBorrowed((chunk) => {
      if (failure || settled) return false;
      try {
        if (digester.size + chunk.byteLength > maxBytes) throw tooLargeError(options, maxBytes);
        digester.update(chunk);
        let offset = 0;
        while (offset < chunk.byteLength) {
          if (!current) {
            current = takeBuffer();
            currentAt = position;
            if (!current) {
              // Every buffer is in flight (a source that ignored the pause): write the rest here.
              for (; offset < chunk.byteLength;) {
                const bytes = writeSync(file, chunk, offset, chunk.byteLength - offset, position);
                offset += bytes;
                position += bytes;
              }
              break;
            }
          }
          const take = Math.min(chunk.byteLength - offset, current.byteLength - filled);
          current.set(take === chunk.byteLength ? chunk : chunk.subarray(offset, offset + take), filled);
          filled += take;
          offset += take;
          position += take;
          if (filled === current.byteLength) submit();
        }
        if (!current && free.length === 0 && allocated === LENT_WRITE_BUFFERS) {
          paused = true;
          return false;
        }
        return true;
      } catch (error) {
        fail(error as Error);
        return false;
      }
    });
    control.done.then(() => {
      ended = true;
      submit();
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
  const out = createWriteStream(path, { flags: options.append ? 'a' : 'w', highWaterMark: 1024 * 1024 });
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

/**
 * Runs a pump until it settles, once: at the source's end (`settle()`), on an error, on an abort or on
 * the sink's failure. `start` begins pumping and returns what to undo when it settles.
 */
function pumpUntilSettled(
  sink: SlotSink,
  signal: AbortSignal | undefined,
  start: (settle: (error?: Error) => void, isSettled: () => boolean) => () => void,
): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    let settled = false;
    let cleanup = (): void => undefined;
    const settle = (error?: Error): void => {
      if (settled) return;
      settled = true;
      cleanup();
      signal?.removeEventListener('abort', onAbort);
      sink.onFailure = undefined;
      if (error) reject(error);
      else resolve();
    };
    const onAbort = (): void => settle(abortError(signal));
    if (signal?.aborted) {
      onAbort();
      return;
    }
    sink.onFailure = settle;
    signal?.addEventListener('abort', onAbort, { once: true });
    cleanup = start(settle, () => settled);
    if (settled) cleanup();
  });
}

/** Event-driven: a `data` listener, paused while every slot is busy (no promise per chunk). */
function pumpReadable(source: Readable, sink: SlotSink, signal: AbortSignal | undefined): Promise<void> {
  return pumpUntilSettled(sink, signal, (settle, isSettled) => {
    const onData = (chunk: Uint8Array): void => {
      try {
        if (!sink.write(chunk)) {
          source.pause();
          sink.ready().then(
            () => isSettled() || source.resume(),
            () => undefined,
          );
        }
      } catch (error) {
        settle(error as Error);
      }
    };
    const onEnd = (): void => settle();
    const onClose = (): void => {
      if (!source.readableEnded) settle(new Error('The stream closed before its end'));
    };
    source.on('data', onData);
    source.once('end', onEnd);
    source.once('error', settle);
    source.once('close', onClose);
    source.resume();
    return () => {
      source.off('data', onData);
      source.off('end', onEnd);
      source.off('error', settle);
      source.off('close', onClose);
    };
  });
}

/** Borrowed chunks are copied into slots at once; what does not fit is copied aside. */
function pumpBorrowed(
  source: BorrowedChunkSource,
  sink: SlotSink,
  signal: AbortSignal | undefined,
): Promise<void> {
  return pumpUntilSettled(sink, signal, (settle, isSettled) => {
    const control = source.pumpBorrowed((chunk) => {
      if (isSettled()) return false;
      try {
        if (sink.write(chunk, { borrowed: true })) return true;
        sink.ready().then(
          () => isSettled() || control.resume(),
          () => undefined,
        );
        return false;
      } catch (error) {
        settle(error as Error);
        return false;
      }
    });
    control.done.then(() => settle(), settle);
    return () => undefined;
  });
}

async function pumpIterable(
  source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
  sink: SlotSink,
  signal: AbortSignal | undefined,
): Promise<void> {
  for await (const chunk of source) {
    signal?.throwIfAborted();
    if (!sink.write(chunk)) await sink.ready();
  }
}

/**
 * The calling thread's half: copies chunks into slots and hands full ones to the worker. Content
 * that ends inside the first slot is hashed and written here instead (unless the digester already lives
 * in a worker), so small blobs cost no thread hop.
 */
class SlotSink {
  readonly #path: string;
  readonly #options: HashedWriteOptions;
  readonly #maxBytes: number;
  /** Slot buffers this thread holds (the others are in the worker), by slot number. */
  readonly #views: (Uint8Array | undefined)[] = [];
  #free: number[] = [];
  #allocated = 0;
  #current: number | undefined;
  #used = 0;
  /** Bytes accepted so far (the digester counts them once the worker has them). */
  #accepted = 0;
  readonly #overflow: Uint8Array[] = [];
  #readyWaiters: { resolve: () => void; reject: (error: Error) => void }[] = [];
  #job: { id: number; hash: WorkerHash } | undefined;
  #closed: { resolve: () => void; reject: (error: Error) => void } | undefined;
  #error: Error | undefined;
  /** Told when the worker fails while the source is paused or still sending. */
  onFailure: ((error: Error) => void) | undefined;

  constructor(path: string, options: HashedWriteOptions) {
    this.#path = path;
    this.#options = options;
    this.#maxBytes = options.maxBytes ?? Infinity;
  }

  /**
   * Takes a chunk; false when the caller should wait for `ready()` before sending more. A `borrowed`
   * chunk's memory is reused by its source after this returns, so what does not fit is copied.
   */
  write(chunk: Uint8Array, options: { borrowed?: boolean } = {}): boolean {
    if (this.#error) throw this.#error;
    if (this.#options.digester.size + this.#accepted + chunk.byteLength > this.#maxBytes) {
      throw tooLargeError(this.#options, this.#maxBytes);
    }
    this.#accepted += chunk.byteLength;
    if (this.#overflow.length > 0) {
      this.#overflow.push(options.borrowed ? chunk.slice() : chunk);
      return false;
    }
    this.#fill(chunk, options.borrowed ?? false);
    return this.#overflow.length === 0;
  }

  /** Resolves once every chunk taken so far sits in a slot. */
  ready(): Promise<void> {
    if (this.#error) return Promise.reject(this.#error);
    if (this.#overflow.length === 0) return Promise.resolve();
    return new Promise((resolve, reject) => this.#readyWaiters.push({ resolve, reject }));
  }

  #fill(chunk: Uint8Array, borrowed = false): void {
    let offset = 0;
    while (offset < chunk.byteLength) {
      if (this.#current === undefined) {
        this.#current = this.#takeSlot();
        if (this.#current === undefined) {
          const rest = offset === 0 ? chunk : chunk.subarray(offset);
          this.#overflow.push(borrowed ? rest.slice() : rest);
          return;
        }
      }
      const view = this.#views[this.#current] as Uint8Array;
      const length = Math.min(chunk.byteLength - offset, SLOT_SIZE - this.#used);
      view.set(chunk.subarray(offset, offset + length), this.#used);
      this.#used += length;
      offset += length;
      if (this.#used === SLOT_SIZE) this.#ship();
    }
  }

  #takeSlot(): number | undefined {
    const free = this.#free.pop();
    if (free !== undefined || this.#allocated === SLOT_COUNT) return free;
    this.#views.push(new Uint8Array(slotBuffer()));
    return this.#allocated++;
  }

  /** Sends the current slot to the worker (opening the job on the first one). */
  #ship(): void {
    const slot = this.#current as number;
    const job = this.#job ?? this.#open();
    const view = this.#views[slot] as Uint8Array;
    this.#views[slot] = undefined;
    job.hash.worker.post(
      { op: 'chunk', job: job.id, slot, buffer: view.buffer as ArrayBuffer, length: this.#used },
      [view.buffer as ArrayBuffer],
    );
    this.#options.digester.countOffloaded(this.#used);
    this.#accepted -= this.#used;
    this.#used = 0;
    this.#current = undefined;
  }

  #open(): { id: number; hash: WorkerHash } {
    const { digester } = this.#options;
    let hash = digester.offloaded;
    if (!hash) {
      const worker = pickHashWorker();
      if (!worker) throw new Error('No hashing worker thread is available');
      hash = worker.newHash(digester.algorithm);
      digester.offload(hash);
    }
    if (!(hash instanceof WorkerHash)) throw new Error('The digester is hashed outside this pool');
    const worker = hash.worker;
    const id = worker.startJob((reply) => this.#onReply(reply));
    this.#job = { id, hash };
    worker.post({
      op: 'open',
      job: id,
      hash: hash.id,
      algorithm: digester.algorithm,
      path: this.#path,
      append: this.#options.append ?? false,
    });
    return this.#job;
  }

  #onReply(reply: WorkerReply | { op: 'exit'; error: Error }): void {
    switch (reply.op) {
      case 'slot':
        this.#views[reply.slot] = new Uint8Array(reply.buffer);
        this.#free.push(reply.slot);
        this.#drainOverflow();
        return;
      case 'closed':
        this.#finishJob();
        this.#closed?.resolve();
        return;
      case 'error':
        this.#fail(workerError(reply.error));
        return;
      case 'exit':
        this.#fail(reply.error);
        return;
      case 'digest':
        return;
    }
  }

  #drainOverflow(): void {
    while (this.#overflow.length > 0) {
      const before = this.#overflow.length;
      const chunk = this.#overflow.shift() as Uint8Array;
      this.#fill(chunk);
      // #fill put the rest back at the end; move it to the front to keep the order.
      if (this.#overflow.length >= before) {
        this.#overflow.unshift(this.#overflow.pop() as Uint8Array);
        return;
      }
    }
    const waiters = this.#readyWaiters;
    this.#readyWaiters = [];
    for (const waiter of waiters) waiter.resolve();
  }

  #fail(error: Error): void {
    if (this.#error) return;
    this.#error = error;
    this.#finishJob();
    const waiters = this.#readyWaiters;
    this.#readyWaiters = [];
    for (const waiter of waiters) waiter.reject(error);
    this.#closed?.reject(error);
    this.onFailure?.(error);
  }

  #finishJob(): void {
    if (this.#job) this.#job.hash.worker.endJob(this.#job.id);
  }

  /** Writes what is left and closes the file. */
  async end(): Promise<void> {
    await this.ready();
    const { digester } = this.#options;
    if (!this.#job && !digester.offloaded) {
      // Everything fits in the first slot: hash and write it here.
      const view = (this.#views[this.#current ?? 0] ?? new Uint8Array(0)).subarray(0, this.#used);
      digester.update(view);
      try {
        await writeFile(this.#path, view, { flag: this.#options.append ? 'a' : 'w' });
      } finally {
        this.#recycle();
      }
      return;
    }
    if (this.#used > 0 || !this.#job) {
      if (this.#current === undefined) this.#current = this.#takeSlot();
      this.#ship();
    }
    await this.#close();
    this.#recycle();
  }

  /** Stops after a failure: waits until the worker has closed the file (no write lands after this). */
  async abort(): Promise<void> {
    if (this.#job && !this.#error) await this.#close().catch(() => undefined);
    this.#recycle();
  }

  /** Keeps the slot buffers this thread holds for later writes. */
  #recycle(): void {
    for (const view of this.#views) {
      if (view && spareSlots.length < SPARE_SLOTS) spareSlots.push(view.buffer as ArrayBuffer);
    }
    this.#views.length = 0;
    this.#free = [];
  }

  #close(): Promise<void> {
    const job = this.#job as { id: number; hash: WorkerHash };
    return new Promise<void>((resolve, reject) => {
      if (this.#error) {
        reject(this.#error);
        return;
      }
      this.#closed = { resolve, reject };
      job.hash.worker.post({ op: 'close', job: job.id });
    });
  }
}
