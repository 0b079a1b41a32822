import { createHash, randomBytes, randomFillSync, type Hash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { open } from 'node:fs/promises';

const WRITE_CHUNK = 4 * 1024 * 1024;
/** Bytes of the unique suffix every {@link BlobSource.of} blob ends with. */
export const SUFFIX_BYTES = 16;
/** Read size when streaming bodies from the file (the same size Airlock reads and writes with). */
export const STREAM_CHUNK = 1024 * 1024;

/** Random bytes kept in memory (for hashing) and on disk (for streaming request bodies). */
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

type Segment =
  | { readonly kind: 'file'; readonly path: string; readonly start: number; readonly end: number }
  | { readonly kind: 'bytes'; readonly bytes: Buffer };

function segmentSize(segment: Segment): number {
  return segment.kind === 'file' ? segment.end - segment.start : segment.bytes.byteLength;
}

/**
 * A blob whose bytes are parts of the random file followed by a unique 16-byte suffix, so that every
 * upload is new content (no registry can skip the write because it already has the blob).
 */
export class BlobSource {
  readonly size: number;
  readonly digest: string;
  readonly #segments: readonly Segment[];

  private constructor(segments: readonly Segment[], digest: string) {
    this.#segments = segments;
    this.size = segments.reduce((sum, s) => sum + segmentSize(s), 0);
    this.digest = digest;
  }

  /** A small blob held in memory. */
  static fromBytes(bytes: Buffer): BlobSource {
    return new BlobSource(
      [{ kind: 'bytes', bytes }],
      `sha256:${createHash('sha256').update(bytes).digest('hex')}`,
    );
  }

  /** The first `bytes` of the file, `repeat` times over, then a fresh random suffix. */
  static of(file: RandomFile, options: { bytes?: number; repeat?: number } = {}): BlobSource {
    const bytes = options.bytes ?? file.data.byteLength;
    const repeat = options.repeat ?? 1;
    const suffix = randomBytes(SUFFIX_BYTES);
    const segments: Segment[] = [];
    for (let i = 0; i < repeat; i++) segments.push({ kind: 'file', path: file.path, start: 0, end: bytes });
    segments.push({ kind: 'bytes', bytes: suffix });
    let hash: Hash;
    if (repeat === 1 && bytes === file.data.byteLength) {
      hash = file.hash.copy();
    } else {
      hash = createHash('sha256');
      for (let i = 0; i < repeat; i++) hash.update(file.data.subarray(0, bytes));
    }
    return new BlobSource(segments, `sha256:${hash.update(suffix).digest('hex')}`);
  }

  /** Streams bytes [start, end) of the blob, reading the file parts from disk. */
  async *stream(start = 0, end = this.size): AsyncGenerator<Buffer> {
    let offset = 0;
    for (const segment of this.#segments) {
      const size = segmentSize(segment);
      const from = Math.max(start - offset, 0);
      const to = Math.min(end - offset, size);
      offset += size;
      if (from >= to) continue;
      if (segment.kind === 'bytes') {
        yield segment.bytes.subarray(from, to);
        continue;
      }
      const stream = createReadStream(segment.path, {
        start: segment.start + from,
        end: segment.start + to - 1,
        highWaterMark: STREAM_CHUNK,
      });
      for await (const chunk of stream) yield chunk as Buffer;
    }
  }
}
