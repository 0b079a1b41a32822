import { createGunzip } from 'node:zlib';
import * as zlib from 'node:zlib';
import { PassThrough, Transform, type Readable } from 'node:stream';

export type Compression = 'gzip' | 'zstd' | 'none';

/** Thrown for archives and layers that are malformed, unsafe or over a limit. */
export class ArchiveError extends Error {
  override readonly name = 'ArchiveError';
}

/** Tells gzip, zstd and plain data apart by their first bytes. */
export function detectCompression(head: Uint8Array): Compression {
  if (head[0] === 0x1f && head[1] === 0x8b) return 'gzip';
  if (head[0] === 0x28 && head[1] === 0xb5 && head[2] === 0x2f && head[3] === 0xfd) return 'zstd';
  return 'none';
}

function decompressor(kind: Compression): Transform {
  if (kind === 'gzip') return createGunzip();
  if (kind === 'zstd') {
    const make = (zlib as unknown as { createZstdDecompress?: () => Transform }).createZstdDecompress;
    if (!make)
      throw new ArchiveError('This layer is zstd-compressed; reading zstd needs Node.js 22.15 or newer');
    return make();
  }
  return new PassThrough();
}

/**
 * Returns the stream decompressed according to its magic bytes, and stops with an ArchiveError once more
 * than `maxBytes` come out (a decompression bomb).
 */
export async function decompressed(source: Readable, maxBytes = Infinity): Promise<Readable> {
  const iterator = source[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  const first = await iterator.next();
  const head = first.done ? Buffer.alloc(0) : first.value;
  const kind = detectCompression(head);
  const raw = new PassThrough();
  void (async () => {
    try {
      if (!first.done) raw.write(head);
      for (let next = await iterator.next(); !next.done; next = await iterator.next()) {
        if (!raw.write(next.value)) await new Promise((r) => raw.once('drain', r));
      }
      raw.end();
    } catch (error) {
      raw.destroy(error as Error);
    }
  })();
  const out = decompressor(kind);
  raw.on('error', (error) => out.destroy(error));
  let total = 0;
  const limited = new Transform({
    transform(chunk: Buffer, _enc, done) {
      total += chunk.byteLength;
      if (total > maxBytes)
        done(
          new ArchiveError(
            `Content expands to more than ${maxBytes} bytes (limit); refusing a possible decompression bomb`,
          ),
        );
      else done(null, chunk);
    },
  });
  out.on('error', (error) =>
    limited.destroy(
      error instanceof ArchiveError
        ? error
        : new ArchiveError(`Cannot decompress ${kind} data: ${error.message}`),
    ),
  );
  return raw.pipe(out).pipe(limited);
}
