import { createWriteStream } from 'node:fs';
import { once } from 'node:events';
import { finished } from 'node:stream/promises';
import type { Digester } from './digest.js';

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
 * Copies a stream to a file, hashing on the way, with back-pressure. A plain loop over a 1 MiB write
 * stream (no generator stage in between) keeps the per-chunk cost of large transfers low; the registry's
 * blob store and the client's OCI layouts both write through it.
 */
export async function writeHashed(
  source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
  path: string,
  options: HashedWriteOptions,
): Promise<void> {
  const { digester } = options;
  const maxBytes = options.maxBytes ?? Infinity;
  const out = createWriteStream(path, { flags: options.append ? 'a' : 'w', highWaterMark: 1024 * 1024 });
  const failed = new Promise<never>((_, reject) => out.once('error', reject));
  failed.catch(() => undefined);
  try {
    for await (const chunk of source) {
      options.signal?.throwIfAborted();
      if (digester.size + chunk.byteLength > maxBytes) {
        throw (
          options.tooLarge?.(maxBytes) ?? new Error(`Content is larger than the ${maxBytes} bytes allowed`)
        );
      }
      digester.update(chunk);
      if (!out.write(chunk)) await Promise.race([once(out, 'drain'), failed]);
    }
    out.end();
    await Promise.race([finished(out), failed]);
  } catch (error) {
    out.destroy();
    throw error;
  }
}
