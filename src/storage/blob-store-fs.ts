import {
  closeSync,
  constants as fsConstants,
  createReadStream,
  openSync,
  statSync,
  writeSync,
} from 'node:fs';
import { link, mkdir, open, readFile, readdir, rm, stat, truncate, unlink } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import {
  Digester,
  isDigest,
  parseDigest,
  sendFileTo,
  kernelSends,
  UnhashedWriteError,
  writeHashed,
  type Digest,
  type DigestAlgorithm,
} from '../oci/index.js';
import type {
  BlobInfo,
  BlobStore,
  BlobWriteOptions,
  ByteRange,
  ByteSink,
  StoredBlobInfo,
  UploadAppendOptions,
} from './blob-store.js';
import { StorageError } from './errors.js';

const UPLOAD_ID_RE = /^[A-Za-z0-9_-]{1,128}$/;
const TEMP_PREFIX = 'tmp-';
/** Beside an upload's file: the size of its chunks written whole (ids never hold a dot). */
const SIZE_SUFFIX = '.size';
/**
 * Digits of a size record (zero-padded): more than the 16 of the largest safe integer, so each write
 * covers every digit of the one before, including an unpadded record left by an older version.
 */
const SIZE_RECORD_WIDTH = 20;
const READ_CHUNK = 1024 * 1024;

interface UploadState {
  digester: Digester;
  size: number;
}

function isMissing(error: unknown): boolean {
  return (error as NodeJS.ErrnoException).code === 'ENOENT';
}

async function fsyncPath(path: string): Promise<void> {
  const handle = await open(path, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** An upload whose file went away while an operation was on it (a cancel, a purge, a commit). */
const gone = (id: string): StorageError =>
  new StorageError('UPLOAD_NOT_FOUND', `Upload "${id}" was completed or cancelled meanwhile`);

const tooLarge = (maxBytes: number): StorageError =>
  new StorageError('TOO_LARGE', `Blob is larger than the ${maxBytes} bytes allowed`);

export interface FsBlobStoreOptions {
  /** Whether to fsync blob files and folders before a blob becomes visible. Default: true. */
  readonly fsync?: boolean;
}

/**
 * Blobs as files: `blobs/<alg>/<2 hex>/<hex>`, uploads as `uploads/<id>`. New blobs are written to a
 * temp file in `uploads/` (same file system), hashed on the way, fsynced, then renamed into place, so
 * a crash never leaves a visible blob whose bytes do not match its name.
 */
export class FsBlobStore implements BlobStore {
  readonly #root: string;
  readonly #fsync: boolean;
  readonly #uploads = new Map<string, UploadState>();
  /**
   * Each upload's size as of its last complete chunk, known before a chunk is written to its file: the
   * file also holds the bytes of a chunk in flight (or of one that failed, until it is cut back), which
   * are not part of the upload yet. Unknown for an upload this process has not appended to.
   */
  readonly #committed = new Map<string, number>();
  /**
   * Who is working on an upload: one append, commit or cancel at a time, taken before the first await.
   * A commit publishes the upload's file itself (a hard link), so nothing may write to it once the commit
   * has begun; two appends at once would both write at the same offset.
   */
  readonly #owners = new Map<string, 'append' | 'commit' | 'cancel'>();
  /**
   * Chunks answered before their hashing was done (see appendUpload), by upload: settles, never
   * rejecting, once it is. The upload stays held ('append') until then, and the next operation on it
   * waits for it first.
   */
  readonly #tails = new Map<string, Promise<void>>();
  #ready: Promise<void> | undefined;
  #usage: Promise<number> | undefined;

  constructor(root: string, options: FsBlobStoreOptions = {}) {
    this.#root = root;
    this.#fsync = options.fsync ?? true;
  }

  /** Creates the folders and removes temp files a crash may have left behind. */
  init(): Promise<void> {
    this.#ready ??= (async () => {
      await mkdir(join(this.#root, 'blobs'), { recursive: true });
      await mkdir(join(this.#root, 'uploads'), { recursive: true });
      const names = new Set(await readdir(join(this.#root, 'uploads')));
      for (const name of names) {
        // Temp files, and size records whose upload is gone (a crash between removing the two).
        const orphan = name.endsWith(SIZE_SUFFIX) && !names.has(name.slice(0, -SIZE_SUFFIX.length));
        if (name.startsWith(TEMP_PREFIX) || orphan)
          await rm(join(this.#root, 'uploads', name), { force: true });
      }
      // Sum existing blobs before any write can run, so the running total never counts one twice.
      this.#usage = Promise.resolve(await this.#scanUsage());
    })();
    return this.#ready;
  }

  #blobPath(digest: Digest): string {
    const { algorithm, hex } = parseDigest(digest);
    return join(this.#root, 'blobs', algorithm, hex.slice(0, 2), hex);
  }

  /** Beside an upload's file: the size of its whole chunks (see #recordSize). */
  #sizePath(id: string): string {
    return this.#uploadPath(id) + SIZE_SUFFIX;
  }

  #uploadPath(id: string): string {
    if (!UPLOAD_ID_RE.test(id)) throw new StorageError('UPLOAD_NOT_FOUND', `Upload "${id}" does not exist`);
    return join(this.#root, 'uploads', id);
  }

  async stat(digest: Digest): Promise<BlobInfo | undefined> {
    try {
      const info = await stat(this.#blobPath(digest));
      return { digest, size: info.size };
    } catch (error) {
      if (isMissing(error)) return undefined;
      throw error;
    }
  }

  async read(digest: Digest, range?: ByteRange): Promise<Readable> {
    const path = this.#blobPath(digest);
    const handle = await open(path, 'r').catch((error: unknown) => {
      if (isMissing(error)) throw new StorageError('BLOB_NOT_FOUND', `Blob "${digest}" is not stored`);
      throw error;
    });
    if (range) {
      const { size } = await handle.stat();
      if (range.start < 0 || range.start > range.end || range.end >= size) {
        await handle.close();
        throw new StorageError(
          'RANGE_NOT_SATISFIABLE',
          `Range ${range.start}-${range.end} is outside 0-${size - 1}`,
        );
      }
    }
    return createReadStream('', {
      fd: handle,
      highWaterMark: READ_CHUNK,
      ...(range ? { start: range.start, end: range.end } : {}),
    });
  }

  /** Sends a blob's bytes (`sendFileTo`: reused page-aligned buffers); stops quietly once `destination` closes. */
  async writeTo(digest: Digest, destination: ByteSink, range?: ByteRange): Promise<void> {
    const handle = await open(this.#blobPath(digest), 'r').catch((error: unknown) => {
      if (isMissing(error)) throw new StorageError('BLOB_NOT_FOUND', `Blob "${digest}" is not stored`);
      throw error;
    });
    try {
      const { size } = await handle.stat();
      const start = range?.start ?? 0;
      const end = range?.end ?? size - 1;
      if (range && (start < 0 || start > end || end >= size)) {
        throw new StorageError('RANGE_NOT_SATISFIABLE', `Range ${start}-${end} is outside 0-${size - 1}`);
      }
      // A client that went away stops the send; there is no one left to tell.
      // Blob downloads time their kernel sends, and copy where that is the faster way (`SendMeter`).
      await sendFileTo(
        { file: handle, start, length: end - start + 1, name: `Blob "${digest}"` },
        destination,
        { meter: kernelSends },
      );
    } finally {
      await handle.close();
    }
  }

  async readBytes(digest: Digest, maxBytes: number): Promise<Buffer> {
    const info = await this.stat(digest);
    if (!info) throw new StorageError('BLOB_NOT_FOUND', `Blob "${digest}" is not stored`);
    if (info.size > maxBytes) {
      throw new StorageError('TOO_LARGE', `Blob "${digest}" is ${info.size} bytes, more than ${maxBytes}`);
    }
    const handle = await open(this.#blobPath(digest), 'r');
    try {
      return await handle.readFile();
    } finally {
      await handle.close();
    }
  }

  async put(
    source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
    expected: Digest,
    options: BlobWriteOptions = {},
  ): Promise<BlobInfo> {
    await this.init();
    const { algorithm } = parseDigest(expected);
    const temp = join(this.#root, 'uploads', `${TEMP_PREFIX}${randomBytes(12).toString('hex')}`);
    const digester = new Digester(algorithm);
    try {
      await writeHashed(source, temp, {
        tooLarge,
        digester,
        maxBytes: options.maxBytes ?? Infinity,
        append: false,
        ...(options.signal ? { signal: options.signal } : {}),
      });
      return await this.#publish(temp, digester, expected);
    } finally {
      await rm(temp, { force: true });
    }
  }

  async putBytes(bytes: Uint8Array, expected: Digest): Promise<BlobInfo> {
    return this.put([bytes], expected);
  }

  /**
   * Verifies the digest, fsyncs `temp` and hard-links it into place. A link, unlike a rename, fails when
   * the target exists, so two concurrent uploads of one blob publish (and count) it exactly once.
   */
  async #publish(temp: string, digester: Digester, expected: Digest): Promise<BlobInfo> {
    const actual = digester.digest();
    if (actual !== expected) {
      throw new StorageError('DIGEST_MISMATCH', `Content digest is "${actual}", not "${expected}"`);
    }
    const target = this.#blobPath(expected);
    const size = digester.size;
    if (await this.stat(expected)) return { digest: expected, size };
    if (this.#fsync) await fsyncPath(temp);
    const dir = join(target, '..');
    const created = await mkdir(dir, { recursive: true });
    // A new folder must itself be recorded in its parent before the blob inside it is durable.
    if (created !== undefined && this.#fsync) await fsyncPath(join(created, '..'));
    try {
      await link(temp, target);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'EEXIST') return { digest: expected, size };
      throw error;
    }
    if (this.#fsync) await fsyncPath(dir);
    this.#adjustUsage(size);
    return { digest: expected, size };
  }

  async delete(digest: Digest): Promise<boolean> {
    try {
      const path = this.#blobPath(digest);
      const { size } = await stat(path);
      await unlink(path);
      this.#adjustUsage(-size);
      return true;
    } catch (error) {
      if (isMissing(error)) return false;
      throw error;
    }
  }

  async listBlobs(): Promise<StoredBlobInfo[]> {
    await this.init();
    const found: StoredBlobInfo[] = [];
    const blobs = join(this.#root, 'blobs');
    for (const algorithm of await readdir(blobs)) {
      for (const prefix of await readdir(join(blobs, algorithm)).catch(() => [])) {
        for (const hex of await readdir(join(blobs, algorithm, prefix)).catch(() => [])) {
          const digest = `${algorithm}:${hex}`;
          // Only files named as their digest and filed under its first two hex digits are blobs.
          if (!isDigest(digest) || !hex.startsWith(prefix) || prefix.length !== 2) continue;
          try {
            const info = await stat(join(blobs, algorithm, prefix, hex));
            if (info.isFile()) found.push({ digest, size: info.size, modifiedAt: info.mtimeMs });
          } catch (error) {
            if (!isMissing(error)) throw error;
          }
        }
      }
    }
    return found;
  }

  async createUpload(id: string): Promise<void> {
    await this.init();
    const handle = await open(this.#uploadPath(id), 'wx');
    await handle.close();
    this.#recordSize(id, 0);
    this.#uploads.set(id, { digester: new Digester(), size: 0 });
    this.#committed.set(id, 0);
  }

  /**
   * Records how many bytes of an upload's file are whole chunks (`<id>.size`). The file may hold more: the
   * start of a chunk being written, which a crash can leave with holes in it, since its buffers are
   * written in any order. A process that takes the upload over cuts those off.
   *
   * The record is a fixed-width decimal overwritten in place by one write at offset 0: a write within one
   * page is applied whole or not at all when the process is killed, so a crash leaves the old value or
   * the new one, and every write covers all the digits of the one before. Done on this thread (three
   * system calls): trips through libuv's pool wait behind the chunk's own writes.
   */
  #recordSize(id: string, size: number): void {
    const text = String(size).padStart(SIZE_RECORD_WIDTH, '0');
    const fd = openSync(this.#sizePath(id), fsConstants.O_WRONLY | fsConstants.O_CREAT);
    try {
      const written = writeSync(fd, text, 0);
      if (written !== text.length) {
        throw new Error(`Recording the size of upload "${id}" wrote ${written} of ${text.length} bytes`);
      }
    } finally {
      closeSync(fd);
    }
  }

  /** The recorded size of an upload's whole chunks; undefined when none is (an upload of an older version). */
  async #recordedSize(id: string): Promise<number | undefined> {
    const text = await readFile(this.#sizePath(id), 'utf8').catch(() => undefined);
    const size = text === undefined ? NaN : Number(text);
    return Number.isSafeInteger(size) && size >= 0 ? size : undefined;
  }

  /** Bytes of the upload's complete chunks: never those of a chunk still being written. */
  async uploadSize(id: string): Promise<number | undefined> {
    await this.#quiet(id);
    const size = this.#fileSize(id);
    if (size === undefined) return undefined;
    // Read after the stat: a chunk being written meanwhile recorded the size before it first.
    const committed = this.#committed.get(id);
    if (committed !== undefined) return committed;
    // An upload this process has not written to: its recorded size, unless the file is shorter.
    return Math.min(size, (await this.#recordedSize(id)) ?? size);
  }

  /**
   * The size of an upload's file, undefined when there is none. A stat on this thread: every chunk asks
   * twice, and a trip through libuv's pool waits for a pool thread to be scheduled, which costs most on a
   * machine the upload itself keeps busy.
   */
  #fileSize(id: string): number | undefined {
    try {
      return statSync(this.#uploadPath(id)).size;
    } catch (error) {
      if (isMissing(error) || error instanceof StorageError) return undefined;
      throw error;
    }
  }

  /** The in-memory hash state, rebuilt from the file when the process restarted since the last append. */
  async #state(id: string): Promise<UploadState> {
    const size = this.#fileSize(id);
    if (size === undefined) throw new StorageError('UPLOAD_NOT_FOUND', `Upload "${id}" does not exist`);
    const known = this.#uploads.get(id);
    // Unless its hash state was lost with a hash thread that went away since the last chunk.
    if (known && known.size === size && known.digester.usable) return known;
    // Bytes past the recorded size are a chunk that never ended (a crash, a failed cut): they go.
    const recorded = await this.#recordedSize(id);
    if (recorded !== undefined && recorded < size) {
      await truncate(this.#uploadPath(id), recorded).catch((error: unknown) => {
        throw isMissing(error) ? gone(id) : error;
      });
    }
    const state = await this.#rehash(id);
    this.#uploads.set(id, state);
    return state;
  }

  /**
   * Appends a chunk. A chunk from a source that lends its buffers (the registry's HTTP server) is answered
   * once all of it is written to the upload's file and its size recorded, while its last buffers may
   * still be on the hash thread: the hashing goes on while the client sends its next request, which waits
   * for it (`#tails`). Should the hashing fail then (the hash thread stopped), the bytes stay and the
   * upload is hashed again from its file.
   */
  async appendUpload(
    id: string,
    source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
    options: UploadAppendOptions = {},
  ): Promise<number> {
    if (this.#tails.has(id)) await this.#quiet(id);
    const release = this.#own(id, 'append');
    // Handed to the chunk's tail when it is answered before its hashing is done.
    let held = true;
    try {
      const state = await this.#state(id);
      if (options.offset !== undefined && options.offset !== state.size) {
        throw new StorageError(
          'UPLOAD_OFFSET_MISMATCH',
          `Chunk starts at ${options.offset} but upload "${id}" has ${state.size} bytes`,
        );
      }
      const chunkDigester = state.digester;
      const sizeBefore = state.size;
      this.#committed.set(id, sizeBefore);
      let onWritten = (): void => undefined;
      const written = new Promise<'written'>((resolve) => {
        onWritten = () => resolve('written');
      });
      // Settles with the failure, or undefined, once the chunk is written and hashed; never rejects.
      const outcome = writeHashed(source, this.#uploadPath(id), {
        tooLarge,
        digester: chunkDigester,
        maxBytes: options.maxBytes ?? Infinity,
        append: true,
        onWritten,
        ...(options.signal ? { signal: options.signal } : {}),
      }).then(
        () => undefined,
        (error: unknown) => (error instanceof Error ? error : new Error(String(error))),
      );
      const first = await Promise.race([written, outcome]);
      // A chunk that failed part-way (a client gone, a malformed body, a full disk), or whose size could
      // not be recorded, is taken back whole: the upload stays as it was before it, and the hash state is
      // rebuilt from disk on the next call.
      const takeBack = async (error: Error): Promise<never> => {
        this.#uploads.delete(id);
        if (isMissing(error)) {
          this.#committed.delete(id);
          throw gone(id);
        }
        if (this.#committed.has(id)) this.#committed.set(id, sizeBefore);
        await truncate(this.#uploadPath(id), sizeBefore).catch(() => undefined);
        throw error;
      };
      if (first instanceof Error && !(first instanceof UnhashedWriteError)) return await takeBack(first);
      // Every byte is in the file (and counted by the digester).
      const size = chunkDigester.size;
      try {
        this.#recordSize(id, size);
      } catch (error) {
        await takeBack(error as Error);
      }
      // The upload was cancelled meanwhile (the chunk went into its unlinked file): its record goes too.
      if (!this.#committed.has(id) || this.#fileSize(id) === undefined) {
        await rm(this.#sizePath(id), { force: true });
        this.#uploads.delete(id);
        this.#committed.delete(id);
        throw gone(id);
      }
      state.size = size;
      this.#committed.set(id, size);
      // A hash that failed after the bytes were written (the hash thread stopped), now or in the tail: the
      // state is forgotten and rebuilt from the file when next needed.
      const unhashed = (error: Error | undefined): void => {
        if (error && this.#uploads.get(id) === state) this.#uploads.delete(id);
      };
      if (first !== 'written') {
        unhashed(first);
        return size;
      }
      held = false;
      const tail = outcome.then(unhashed).finally(() => {
        this.#tails.delete(id);
        release();
      });
      this.#tails.set(id, tail);
      return size;
    } finally {
      if (held) release();
    }
  }

  /** The chunks of an upload answered so far are hashed. */
  async #quiet(id: string): Promise<void> {
    for (let tail = this.#tails.get(id); tail; tail = this.#tails.get(id)) await tail;
  }

  /**
   * Waits for the hashing of every chunk already answered and for every operation under way on an upload
   * (one queued behind such hashing, say), at most `maxMs`: before the process stops. False when work was
   * still under way at the deadline.
   */
  async flush(maxMs = 10_000): Promise<boolean> {
    const deadline = Date.now() + maxMs;
    // Looked at from a timer, after every pending promise job: an operation that was waiting for a chunk's
    // writes has taken the upload by then.
    do await new Promise((resolve) => setTimeout(resolve, 5));
    while (this.#busy() && Date.now() < deadline);
    return !this.#busy();
  }

  #busy(): boolean {
    return this.#owners.size > 0 || this.#tails.size > 0;
  }

  async commitUpload(id: string, expected: Digest): Promise<BlobInfo> {
    const { algorithm } = parseDigest(expected);
    const path = this.#uploadPath(id);
    if (this.#tails.has(id)) await this.#quiet(id);
    const release = this.#own(id, 'commit');
    try {
      let state = await this.#state(id);
      if (algorithm !== state.digester.algorithm) {
        state = await this.#rehash(id, algorithm);
      }
      return await this.#publish(path, state.digester, expected);
    } catch (error) {
      // Cancelled (or purged) under the commit's feet.
      if (isMissing(error)) throw gone(id);
      throw error;
    } finally {
      await rm(path, { force: true });
      await rm(this.#sizePath(id), { force: true });
      this.#uploads.delete(id);
      this.#committed.delete(id);
      release();
    }
  }

  /**
   * Takes an upload for one operation, synchronously; throws when another holds it: 404 while it is being
   * committed or cancelled, 416 while a chunk is being written. Returns the release.
   */
  #own(id: string, role: 'append' | 'commit' | 'cancel'): () => void {
    const holder = this.#owners.get(id);
    if (holder === 'commit' || holder === 'cancel') {
      throw new StorageError('UPLOAD_NOT_FOUND', `Upload "${id}" is being completed or cancelled`);
    }
    if (holder === 'append') {
      throw new StorageError('UPLOAD_OFFSET_MISMATCH', `Upload "${id}" is being written to`);
    }
    this.#owners.set(id, role);
    return () => this.#owners.delete(id);
  }

  /** The upload's state hashed again from its file (after a restart, a failed chunk, another algorithm). */
  async #rehash(id: string, algorithm?: DigestAlgorithm): Promise<UploadState> {
    const digester = new Digester(algorithm);
    try {
      for await (const chunk of createReadStream(this.#uploadPath(id), { highWaterMark: READ_CHUNK })) {
        digester.update(chunk as Buffer);
      }
    } catch (error) {
      if (isMissing(error)) throw gone(id);
      throw error;
    }
    return { digester, size: digester.size };
  }

  async cancelUpload(id: string): Promise<boolean> {
    if (this.#tails.has(id)) await this.#quiet(id);
    const holder = this.#owners.get(id);
    // A commit removes the file itself; a second cancel has nothing left to do.
    if (holder === 'commit' || holder === 'cancel') return false;
    // A chunk being written goes on into the removed file and is lost with the upload.
    const release = holder === 'append' ? () => undefined : this.#own(id, 'cancel');
    this.#uploads.delete(id);
    this.#committed.delete(id);
    try {
      await unlink(this.#uploadPath(id));
      await rm(this.#sizePath(id), { force: true });
      return true;
    } catch (error) {
      if (isMissing(error)) return false;
      throw error;
    } finally {
      release();
    }
  }

  #adjustUsage(delta: number): void {
    if (this.#usage) this.#usage = this.#usage.then((bytes) => bytes + delta);
  }

  async #scanUsage(): Promise<number> {
    let total = 0;
    const walk = async (dir: string): Promise<void> => {
      for (const entry of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
        const path = join(dir, entry.name);
        if (entry.isDirectory()) await walk(path);
        else if (entry.isFile()) total += (await stat(path)).size;
      }
    };
    await walk(join(this.#root, 'blobs'));
    return total;
  }

  /** Total blob bytes: summed once in init(), then kept up to date by publishes and deletes. */
  async usage(): Promise<number> {
    await this.init();
    return (await this.#usage) ?? 0;
  }

  async listUploads(): Promise<string[]> {
    await this.init();
    return (await readdir(join(this.#root, 'uploads'))).filter(
      (name) => !name.startsWith(TEMP_PREFIX) && !name.endsWith(SIZE_SUFFIX),
    );
  }
}
