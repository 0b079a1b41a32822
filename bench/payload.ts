import { createHash, randomBytes, randomFillSync, type Hash } from 'node:crypto';
import { open } from 'node:fs/promises';

const WRITE_CHUNK = 4 * 1024 * 1024;
/** Bytes of the unique suffix every {@link BlobSource.of} blob ends with. */
export const SUFFIX_BYTES = 16;
/**
 * Size of the pieces request bodies are written to the socket in (node:http writes each one without a
 * copy, as views of the bytes in memory).
 */
export const STREAM_CHUNK = 1024 * 1024;

/**
 * Random bytes kept in memory (for hashing and for request bodies) and on disk (for the bare server that
 * streams a file as the download ceiling).
 */
export interface RandomFile {
  readonly path: string;
  readonly data: Buffer;
  /** SHA-256 state after the whole file, copied to digest "file + suffix" without rehashing. */
  readonly hash: Hash;
}

/** Writes `size` random bytes to `path` and hashes them on the way. */
export async function createRandomFile(path: string, size: number): Promise<RandomFile> {
  const data = Buffer.allocUnsafe(size);
  for (let at = 0; at < size; at += WRITE_CHUNK) randomFillSync(data, at, Math.min(WRITE_CHUNK, size - at));
  const handle = await open(path, 'w');
  try {
    for (let at = 0; at < size; at += WRITE_CHUNK) {
      await handle.write(data, at, Math.min(WRITE_CHUNK, size - at));
    }
  } finally {
    await handle.close();
  }
  return { path, data, hash: createHash('sha256').update(data) };
}

/**
 * A blob whose bytes are parts of the random file followed by a unique 16-byte suffix, so that every
 * upload is new content (no registry can skip the write because it already has the blob).
 */
export class BlobSource {
  readonly size: number;
  readonly digest: string;
  readonly #segments: readonly Buffer[];

  private constructor(segments: readonly Buffer[], digest: string) {
    this.#segments = segments;
    this.size = segments.reduce((sum, s) => sum + s.byteLength, 0);
    this.digest = digest;
  }

  /** A small blob held in memory. */
  static fromBytes(bytes: Buffer): BlobSource {
    return new BlobSource([bytes], `sha256:${createHash('sha256').update(bytes).digest('hex')}`);
  }

  /** The first `bytes` of the file, `repeat` times over, then a fresh random suffix. */
  static of(file: RandomFile, options: { bytes?: number; repeat?: number } = {}): BlobSource {
    const bytes = options.bytes ?? file.data.byteLength;
    const repeat = options.repeat ?? 1;
    const suffix = randomBytes(SUFFIX_BYTES);
    const head = file.data.subarray(0, bytes);
    const segments: Buffer[] = [...Array.from({ length: repeat }, () => head), suffix];
    let hash: Hash;
    if (repeat === 1 && bytes === file.data.byteLength) {
      hash = file.hash.copy();
    } else {
      hash = createHash('sha256');
      for (let i = 0; i < repeat; i++) hash.update(file.data.subarray(0, bytes));
    }
    return new BlobSource(segments, `sha256:${hash.update(suffix).digest('hex')}`);
  }

  /**
   * Bytes [start, end) of the blob as views of memory, in pieces of at most {@link STREAM_CHUNK}: the
   * client then costs only its socket writes, so the registry's speed is what is measured.
   */
  *stream(start = 0, end = this.size): Generator<Buffer> {
    let offset = 0;
    for (const segment of this.#segments) {
      const size = segment.byteLength;
      const from = Math.max(start - offset, 0);
      const to = Math.min(end - offset, size);
      offset += size;
      for (let at = from; at < to; at += STREAM_CHUNK) {
        yield segment.subarray(at, Math.min(at + STREAM_CHUNK, to));
      }
    }
  }
}
