import { closeSync, constants, fstatSync, openSync, write, writeSync } from 'node:fs';
import { envSwitch } from './env-switch.js';

/**
 * File offsets and lengths of direct writes are multiples of this, and so are the memory addresses they
 * write from. It covers the logical block size of every common disk (512 or 4096 bytes) and the largest
 * common page size (64 KiB on some arm64 and ppc64 kernels), so a direct write never shares a page-cache
 * page with the bytes written through the page cache next to it (the kernel could not then keep the two
 * coherent).
 */
export const DIRECT_ALIGNMENT = 64 * 1024;
/** Bytes per write buffer. */
export const WRITE_BUFFER_SIZE = 2 * 1024 * 1024;
/** Write buffers in one set: one write fills a buffer while the thread pool writes the others. */
export const WRITE_BUFFERS_PER_SET = 4;
/** Content that ends before this offset is written through the page cache (small blobs, manifests). */
const MIN_DIRECT_END = WRITE_BUFFER_SIZE;
/**
 * Aligned buffer sets made at most (8 MiB each). They are kept for the life of the process and never
 * dropped: V8 does not count WebAssembly memory as memory pressure, so dropped sets piled up (to over a
 * GiB under two dozen concurrent downloads) until some unrelated collection ran. Past the cap, a set is
 * ordinary memory, which the collector does see.
 */
export const MAX_ALIGNED_SETS = 8;
const WASM_PAGE = 64 * 1024;

interface WasmMemoryConstructor {
  new (descriptor: { initial: number; maximum?: number; shared?: boolean }): {
    readonly buffer: ArrayBuffer | SharedArrayBuffer;
  };
}

/**
 * Write buffers, and whether their memory is aligned for direct writes. Where it can, the memory is
 * shared, so that the hash thread reads the buffers where they lie (`Digester.updateShared` checks).
 */
export interface BufferSet {
  readonly buffers: readonly Buffer[];
  readonly aligned: boolean;
  /** One of the kept sets: give it back with `returnBufferSet`, or `discardBufferSet` if it cannot be. */
  readonly pooled: boolean;
}

const spareSets: BufferSet[] = [];
let pooledSets = 0;

/**
 * A set of write buffers whose memory starts at a 64 KiB boundary, as direct I/O requires. A WebAssembly
 * memory is the one allocation node offers that is aligned by construction (an ArrayBuffer from malloc
 * is only 16-byte aligned). Each one reserves gigabytes of address space, so where that is refused (a
 * `ulimit -v`) or past `MAX_ALIGNED_SETS` the set is ordinary memory, marked unaligned, and its writes go
 * through the page cache. Aligned sets are kept between writes: fresh memory has the kernel find and zero
 * new pages each time, which on the VMs Airlock is measured on costs more than the copies they hold.
 */
export function takeBufferSet(): BufferSet {
  const pooled = takePooledBufferSet();
  if (pooled) return pooled;
  const backing = new ArrayBuffer(WRITE_BUFFER_SIZE * WRITE_BUFFERS_PER_SET);
  return { buffers: split(backing), aligned: false, pooled: false };
}

/** An aligned set from the pool (made if fewer than `MAX_ALIGNED_SETS` exist), or undefined. */
export function takePooledBufferSet(): BufferSet | undefined {
  const spare = spareSets.pop();
  if (spare) return spare;
  if (pooledSets >= MAX_ALIGNED_SETS) return undefined;
  const Memory = (globalThis as unknown as { WebAssembly: { Memory: WasmMemoryConstructor } }).WebAssembly
    .Memory;
  const pages = (WRITE_BUFFER_SIZE * WRITE_BUFFERS_PER_SET) / WASM_PAGE;
  let memory: ArrayBuffer | SharedArrayBuffer;
  try {
    memory = new Memory({ initial: pages, maximum: pages, shared: true }).buffer;
  } catch {
    try {
      memory = new Memory({ initial: pages, maximum: pages }).buffer;
    } catch {
      return undefined;
    }
  }
  pooledSets++;
  return { buffers: split(memory), aligned: true, pooled: true };
}

function split(memory: ArrayBuffer | SharedArrayBuffer): Buffer[] {
  return Array.from({ length: WRITE_BUFFERS_PER_SET }, (_, i) =>
    Buffer.from(memory, i * WRITE_BUFFER_SIZE, WRITE_BUFFER_SIZE),
  );
}

/** Gives a set back once none of its buffers is being written. */
export function returnBufferSet(set: BufferSet): void {
  if (set.pooled) spareSets.push(set);
}

/** Gives up a set that memory may still be read or written through; another may be made in its place. */
export function discardBufferSet(set: BufferSet): void {
  if (set.pooled) pooledSets--;
}

/**
 * Whether writes may bypass the page cache: on Linux (O_DIRECT exists) unless `AIRLOCK_DIRECT_IO=0`.
 * Throws on any other value than unset, empty, 0 or 1 (`envSwitch`).
 */
export function directIoAllowed(env: NodeJS.ProcessEnv = process.env): boolean {
  return envSwitch(env, 'AIRLOCK_DIRECT_IO') !== false && constants.O_DIRECT !== undefined;
}

/**
 * How a file is written: `true` whole aligned blocks past the page cache, `false` through it, `'adaptive'`
 * past it while the disk takes direct writes at least as fast as `SLOW_DIRECT_WRITES` (bytes/s), and
 * through the page cache once it has been measured slower (`DirectWriteMeter`).
 */
export type DirectMode = boolean | 'adaptive';

/**
 * Below this rate (bytes per second of time with a direct write in flight) the page cache takes writes
 * faster than the disk does past it. On the hosts Airlock was measured on, direct writes ran at
 * 1.3-2.0 GB/s on two of them and 250-330 MB/s on a third, whose page cache took a pull's writes at
 * 470-700 MB/s; buffered writes cost more CPU (the kernel copies into and manages new pages) and win
 * only over such a slow disk. On a fourth, a pull whose registry read the same disk meanwhile measured
 * 350-450 MB/s over its first 64 MiB and 385-510 over its first 256, and was still faster direct (1.7
 * s against 1.9-2.7 s through the page cache, which cost 2-3 CPU s more): hence a threshold between.
 */
export const SLOW_DIRECT_WRITES = 350e6;
/** Direct bytes written before the rate is judged (the first writes, started together, err low). */
const JUDGED_AFTER_BYTES = 128 * 1024 * 1024;

/**
 * The direct writes of the process's adaptive files: bytes written and the time at least one of them was
 * in flight, so the rate is the disk's (what it takes while writes wait for it), not the source's. Judged
 * at every completion once 128 MiB are written; it errs low, since the writes still in flight add their
 * time but not yet their bytes (with libuv's four threads, up to 8 MiB: a sixteenth at the first
 * judgement), and time a write waits behind other thread-pool work counts as the disk's. The disks it
 * tells apart (BENCHMARKS.md) are on either side of the threshold, the shared one by little. Once `slow`,
 * it stays so: adaptive files no longer write directly and so no longer measure.
 */
export class DirectWriteMeter {
  #inFlight = 0;
  #busySince = 0;
  #busyMs = 0;
  #bytes = 0;
  #slow = false;
  readonly #threshold: number;
  readonly #now: () => number;

  constructor(threshold = SLOW_DIRECT_WRITES, now: () => number = () => performance.now()) {
    this.#threshold = threshold;
    this.#now = now;
  }

  get slow(): boolean {
    return this.#slow;
  }

  started(): void {
    if (this.#inFlight++ === 0) this.#busySince = this.#now();
  }

  ended(bytes: number): void {
    const now = this.#now();
    this.#bytes += bytes;
    if (--this.#inFlight === 0) {
      this.#busyMs += now - this.#busySince;
      this.#busySince = now;
    }
    const busyMs = this.#busyMs + (this.#inFlight > 0 ? now - this.#busySince : 0);
    if (!this.#slow && this.#bytes >= JUDGED_AFTER_BYTES && busyMs > 0) {
      this.#slow = (this.#bytes * 1000) / busyMs < this.#threshold;
    }
  }
}

/** The meter of this process's direct writes. */
export const directWrites = new DirectWriteMeter();

/** The first `length` bytes of `buffer`, to be written at file offset `at`. */
export interface Segment {
  readonly buffer: Buffer;
  readonly length: number;
  readonly at: number;
}

/** Writes `buffer[from, length)` of a segment, retrying short writes. */
function writeAll(
  fd: number,
  piece: Segment & { from: number },
  done: (error: NodeJS.ErrnoException | null) => void,
): void {
  const { buffer, from, length, at } = piece;
  write(fd, buffer, from, length - from, at + from, (error, bytes) => {
    if (error) done(error);
    else if (from + bytes < length) writeAll(fd, { ...piece, from: from + bytes }, done);
    else done(null);
  });
}

/**
 * A file written at positions by libuv's thread pool, bypassing the page cache where it can.
 *
 * Large content is written with O_DIRECT: on the VMs Airlock is measured on, putting a GiB into the page
 * cache costs 0.5 CPU s when the kernel reuses pages and 4-7 s when the cache grows into memory the
 * host must first hand over, while a direct write costs 0.2-0.3 s and runs at the disk's speed. Only
 * whole aligned blocks go direct: content that ends before 2 MiB, the bytes up to the first aligned
 * offset of an append and the last partial block go through a second, buffered descriptor (the kernel
 * keeps the two coherent). A file system without O_DIRECT (tmpfs before Linux 6.6) or one that refuses a
 * direct write (EINVAL) is written through the page cache only.
 */
export class PositionalFile {
  readonly #path: string;
  #direct: number | undefined;
  /** A direct write failed with EINVAL: everything goes through the buffered descriptor. */
  #refused = false;
  #buffered: number | undefined;
  /** Writes go through the page cache once the process's direct writes were measured slow. */
  readonly #adaptive: boolean;
  #closed = false;
  /** The file's size when it was opened (0 unless appending). */
  readonly size: number;

  private constructor(path: string, fds: { direct?: number; buffered?: number }, adaptive = false) {
    const { direct, buffered } = fds;
    this.#path = path;
    this.#direct = direct;
    this.#buffered = buffered;
    this.#adaptive = adaptive;
    const fd = (direct ?? buffered) as number;
    try {
      this.size = fstatSync(fd).size;
    } catch (error) {
      closeSync(fd);
      throw error;
    }
  }

  /**
   * Opens `path`, replacing its content unless `append` (then writes go after its current end, and the
   * file must exist). `direct: false` (buffers that are not aligned) keeps every write in the page cache;
   * `'adaptive'` writes past it until the process's direct writes are measured slow (`DirectMode`).
   */
  static open(path: string, options: { append: boolean; direct?: DirectMode }): PositionalFile {
    // An append never creates the file: one that is gone (an upload committed or cancelled meanwhile)
    // fails with ENOENT instead of starting a new one.
    const flags = constants.O_WRONLY | (options.append ? 0 : constants.O_CREAT | constants.O_TRUNC);
    const adaptive = options.direct === 'adaptive';
    if (directIoAllowed() && options.direct !== false && !(adaptive && directWrites.slow)) {
      try {
        const fd = openSync(path, flags | constants.O_DIRECT, 0o666);
        return new PositionalFile(path, { direct: fd }, adaptive);
      } catch (error) {
        const code = (error as NodeJS.ErrnoException).code;
        // EINVAL: the file system has no direct I/O (tmpfs before Linux 6.6); EOPNOTSUPP: some network
        // file systems.
        if (code !== 'EINVAL' && code !== 'EOPNOTSUPP') throw error;
      }
    }
    return new PositionalFile(path, { buffered: openSync(path, flags, 0o666) });
  }

  /** Whether whole blocks are written past the page cache. */
  get direct(): boolean {
    return this.#direct !== undefined && !this.#refused && !(this.#adaptive && directWrites.slow);
  }

  /**
   * How many bytes a buffer that starts at file offset `at` should hold so that the next buffer starts
   * aligned: up to the next aligned offset when direct and `at` is not aligned, else `capacity`.
   */
  fill(at: number, capacity: number): number {
    const misaligned = at % DIRECT_ALIGNMENT;
    return !this.direct || misaligned === 0 ? capacity : Math.min(capacity, DIRECT_ALIGNMENT - misaligned);
  }

  /**
   * Writes the first `length` bytes of `buffer` (which starts at a page boundary) at file offset `at`,
   * on the thread pool; `done` is called once, when every byte is written or with the first error.
   */
  write(segment: Segment, done: (error: Error | null) => void): void {
    const { length, at } = segment;
    const aligned = this.direct && at % DIRECT_ALIGNMENT === 0 && at + length >= MIN_DIRECT_END;
    const directLength = aligned ? length - (length % DIRECT_ALIGNMENT) : 0;
    let pending = (directLength > 0 ? 1 : 0) + (directLength < length ? 1 : 0);
    let firstError: Error | null = null;
    // Called once both parts ended, even when one failed early: until then the other may still be
    // writing from this buffer through one of the descriptors, which the caller closes on `done`.
    const pieceDone = (error: Error | null): void => {
      firstError ??= error;
      pending -= 1;
      if (pending === 0) done(firstError);
    };
    if (directLength > 0) this.#writeDirect({ ...segment, length: directLength }, pieceDone);
    if (directLength < length) this.#writePlain({ ...segment, from: directLength }, pieceDone);
  }

  /** Writes `chunk` at `position` on this thread, through the page cache. */
  writeSync(chunk: Uint8Array, position: number): void {
    const fd = this.#plain();
    for (let offset = 0; offset < chunk.byteLength;) {
      const bytes = writeSync(fd, chunk, offset, chunk.byteLength - offset, position + offset);
      offset += bytes;
    }
  }

  /** Closes the descriptors; call only when no write is in flight. */
  close(): void {
    let failure: Error | undefined;
    for (const fd of [this.#direct, this.#buffered]) {
      if (fd === undefined) continue;
      try {
        closeSync(fd);
      } catch (error) {
        failure ??= error as Error;
      }
    }
    this.#direct = undefined;
    this.#buffered = undefined;
    this.#closed = true;
    if (failure) throw failure;
  }

  #writeDirect(segment: Segment, done: (error: NodeJS.ErrnoException | null) => void): void {
    // Only the files the meter decides for feed it.
    const metered = this.#adaptive;
    if (metered) directWrites.started();
    writeAll(this.#direct ?? -1, { ...segment, from: 0 }, (error) => {
      if (metered) directWrites.ended(error ? 0 : segment.length);
      if (error?.code !== 'EINVAL') {
        done(error);
        return;
      }
      // The file system or device wants another alignment: the page cache from here on. The direct
      // descriptor stays open until close(), as other writes may still be in flight on it.
      this.#refused = true;
      this.#writePlain({ ...segment, from: 0 }, done);
    });
  }

  /** Through the buffered descriptor; failing to open it is reported like a failed write, never thrown. */
  #writePlain(piece: Segment & { from: number }, done: (error: NodeJS.ErrnoException | null) => void): void {
    let fd: number;
    try {
      fd = this.#plain();
    } catch (error) {
      process.nextTick(done, error);
      return;
    }
    writeAll(fd, piece, done);
  }

  #plain(): number {
    if (this.#closed) throw new Error(`${this.#path} was written after it was closed`);
    // Opened after the direct one, so it never truncates what that one wrote.
    this.#buffered ??= openSync(this.#path, constants.O_WRONLY);
    return this.#buffered;
  }
}
