import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readdirSync } from 'node:fs';
import { mkdtemp, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { Digester } from './digest.js';
import { PositionalFile, returnBufferSet, takeBufferSet } from './direct-io.js';
import { hashThread, hashThreadAllowed } from './hash-thread.js';
import { writeHashed, type BorrowedChunkSource, type DirectTarget } from './hashed-write.js';

const MiB = 1024 * 1024;

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'airlock-hashed-'));
  try {
    await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

function sha256(bytes: Uint8Array): string {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
}

/**
 * A source that lends its chunks from one reused buffer, like the client's raw HTTP reader, and
 * scribbles over the buffer after each hand-out, so a consumer that keeps a reference is caught.
 */
function lending(bytes: Buffer): AsyncIterable<Uint8Array> & BorrowedChunkSource {
  const shared = Buffer.alloc(300_000);
  return {
    [Symbol.asyncIterator]: () => {
      throw new Error('read through pumpBorrowed only');
    },
    pumpBorrowed(onChunk) {
      let offset = 0;
      let resolveDone: () => void = () => undefined;
      const done = new Promise<void>((resolve) => (resolveDone = resolve));
      const pump = (): void => {
        while (offset < bytes.length) {
          const length = bytes.copy(shared, 0, offset, offset + shared.length);
          offset += length;
          const more = onChunk(shared.subarray(0, length));
          shared.fill(0xee);
          if (!more) return;
        }
        resolveDone();
      };
      setImmediate(pump);
      return { done, resume: () => setImmediate(pump) };
    },
  };
}

/**
 * A source that reads like the registry's HTTP server: into the writer's own memory when offered
 * (`direct.target`), in reads of at most `read` bytes, else lending chunks from a reused buffer; it
 * pauses when told. With `failAfter`, it asks for memory once more past that many bytes and then fails
 * without filling it (a client gone mid-read).
 */
function reading(
  bytes: Buffer,
  options: { read?: number; failAfter?: number } = {},
): AsyncIterable<Uint8Array> &
  BorrowedChunkSource & { directBytes: number; lastView: Uint8Array | undefined } {
  const read = options.read ?? 200_000;
  const scratch = Buffer.alloc(read);
  const source = {
    directBytes: 0,
    lastView: undefined as Uint8Array | undefined,
    [Symbol.asyncIterator]: (): AsyncIterator<Uint8Array> => {
      throw new Error('read through pumpBorrowed only');
    },
    pumpBorrowed(onChunk: (chunk: Uint8Array) => boolean, direct?: DirectTarget) {
      let offset = 0;
      let settle: { resolve: () => void; reject: (error: Error) => void } | undefined;
      const done = new Promise<void>((resolve, reject) => (settle = { resolve, reject }));
      const pump = (): void => {
        while (offset < bytes.length) {
          const want = Math.min(read, bytes.length - offset);
          const view = direct?.target(bytes.length - offset);
          if (view && options.failAfter !== undefined && offset >= options.failAfter) {
            source.lastView = view;
            settle?.reject(new Error('client gone'));
            return;
          }
          let more: boolean;
          if (view) {
            const n = bytes.copy(view, 0, offset, offset + Math.min(want, view.byteLength));
            offset += n;
            source.directBytes += n;
            more = direct?.filled(n) ?? false;
          } else {
            const n = bytes.copy(scratch, 0, offset, offset + want);
            offset += n;
            more = onChunk(scratch.subarray(0, n));
            scratch.fill(0xee);
          }
          if (!more) return;
        }
        settle?.resolve();
      };
      setImmediate(pump);
      return { done, resume: () => setImmediate(pump) };
    },
  };
  return source;
}

/** Splits bytes into chunks of the given sizes, cycling. */
function chunks(bytes: Buffer, sizes: number[]): Buffer[] {
  const out: Buffer[] = [];
  for (let offset = 0, i = 0; offset < bytes.length; i++) {
    const size = sizes[i % sizes.length] as number;
    out.push(bytes.subarray(offset, offset + size));
    offset += size;
  }
  return out;
}

describe('writeHashed', () => {
  test('large content: bytes and digest match for odd chunk sizes', async () => {
    await withDir(async (dir) => {
      const bytes = randomBytes(9 * MiB + 12345);
      const digester = new Digester();
      const path = join(dir, 'blob');
      await writeHashed(chunks(bytes, [65536, 1, 3 * MiB + 7, 1000]), path, { digester });
      assert.equal(digester.size, bytes.length);
      assert.equal(digester.digest(), sha256(bytes));
      assert.deepEqual(await readFile(path), bytes);
    });
  });

  test('one chunk of many MiB is written whole', async () => {
    await withDir(async (dir) => {
      const bytes = randomBytes(11 * MiB + 3);
      const digester = new Digester();
      await writeHashed([bytes], join(dir, 'blob'), { digester });
      assert.equal(digester.digest(), sha256(bytes));
      assert.deepEqual(await readFile(join(dir, 'blob')), bytes);
    });
  });

  test('small content', async () => {
    await withDir(async (dir) => {
      const bytes = Buffer.from('small blob');
      const digester = new Digester();
      await writeHashed([bytes], join(dir, 'blob'), { digester });
      assert.equal(digester.digest(), sha256(bytes));
      assert.deepEqual(await readFile(join(dir, 'blob')), bytes);
    });
  });

  test('empty content writes an empty file', async () => {
    await withDir(async (dir) => {
      const digester = new Digester();
      await writeHashed([], join(dir, 'blob'), { digester });
      assert.equal(digester.digest(), sha256(Buffer.alloc(0)));
      assert.equal((await readFile(join(dir, 'blob'))).length, 0);
    });
  });

  test('appends continue one digester across calls, small and large', async () => {
    await withDir(async (dir) => {
      const path = join(dir, 'upload');
      const parts = [randomBytes(2 * MiB + 5), randomBytes(100), randomBytes(5 * MiB), Buffer.alloc(0)];
      const digester = new Digester();
      await writeFile(path, '');
      for (const part of parts) {
        await writeHashed(chunks(part, [65536]), path, { digester, append: true });
      }
      const all = Buffer.concat(parts);
      assert.equal(digester.size, all.length);
      assert.equal(digester.digest(), sha256(all));
      assert.deepEqual(await readFile(path), all);
    });
  });

  test('an append needs its file: one that is gone fails with ENOENT and is not made again', async () => {
    await withDir(async (dir) => {
      const path = join(dir, 'gone');
      const big = randomBytes(3 * MiB);
      for (const source of [[big], lending(big)]) {
        await assert.rejects(writeHashed(source, path, { digester: new Digester(), append: true }), {
          code: 'ENOENT',
        });
        await assert.rejects(readFile(path), { code: 'ENOENT' });
      }
    });
  });

  test('a digester that already hashed what the file holds continues (restart recovery path)', async () => {
    await withDir(async (dir) => {
      const path = join(dir, 'upload');
      const first = Buffer.from('already on disk');
      await writeFile(path, first);
      const digester = new Digester();
      digester.update(first);
      const more = randomBytes(3 * MiB);
      await writeHashed([more], path, { digester, append: true });
      assert.equal(digester.digest(), sha256(Buffer.concat([first, more])));
    });
  });

  test('a Readable source', async () => {
    await withDir(async (dir) => {
      const bytes = randomBytes(16 * MiB);
      const source = Readable.from(chunks(bytes, [65536]), { objectMode: false, highWaterMark: 65536 });
      const digester = new Digester();
      await writeHashed(source, join(dir, 'blob'), { digester });
      assert.equal(digester.digest(), sha256(bytes));
      assert.deepEqual(await readFile(join(dir, 'blob')), bytes);
    });
  });

  test('past maxBytes: tooLarge() is thrown and the source destroyed', async () => {
    await withDir(async (dir) => {
      const source = new PassThrough();
      const digester = new Digester();
      const writing = writeHashed(source, join(dir, 'blob'), {
        digester,
        maxBytes: 3 * MiB,
        tooLarge: (max) => new Error(`over ${max}`),
      });
      for (let i = 0; i < 4; i++) source.write(randomBytes(MiB));
      await assert.rejects(writing, /over 3145728/);
      assert.ok(source.destroyed);
    });
  });

  test('a source that fails mid-way rejects with its error', async () => {
    await withDir(async (dir) => {
      const source = new PassThrough();
      const writing = writeHashed(source, join(dir, 'blob'), { digester: new Digester() });
      source.write(randomBytes(2 * MiB));
      setImmediate(() => source.destroy(new Error('connection reset')));
      await assert.rejects(writing, /connection reset/);
    });
  });

  test('a source that closes before its end is an error, not a short file', async () => {
    await withDir(async (dir) => {
      const source = new PassThrough();
      const writing = writeHashed(source, join(dir, 'blob'), { digester: new Digester() });
      source.write(randomBytes(2 * MiB));
      setImmediate(() => source.destroy());
      await assert.rejects(writing, /closed before its end|Premature close/);
    });
  });

  test('an abort signal stops the write', async () => {
    await withDir(async (dir) => {
      const source = new PassThrough();
      const controller = new AbortController();
      const writing = writeHashed(source, join(dir, 'blob'), {
        digester: new Digester(),
        signal: controller.signal,
      });
      source.write(randomBytes(2 * MiB));
      setImmediate(() => controller.abort(new Error('stopped by the caller')));
      await assert.rejects(writing, /stopped by the caller/);
    });
  });

  test('a file that cannot be opened fails with the fs error code', async () => {
    await withDir(async (dir) => {
      const path = join(dir, 'missing-folder', 'blob');
      await assert.rejects(
        writeHashed([randomBytes(3 * MiB)], path, { digester: new Digester() }),
        (error: NodeJS.ErrnoException) => error.code === 'ENOENT',
      );
    });
  });

  test('lent chunks are consumed before the source reuses their memory', async () => {
    await withDir(async (dir) => {
      const bytes = randomBytes(7 * MiB + 99);
      const digester = new Digester();
      await writeHashed(lending(bytes), join(dir, 'blob'), { digester });
      assert.equal(digester.digest(), sha256(bytes));
      assert.deepEqual(await readFile(join(dir, 'blob')), bytes);
    });
  });

  test('a lending source that honours the pause never meets a full set of buffers', async () => {
    // The overflow path (writing on the calling thread) is for sources that ignore the pause; one
    // that pauses must be stopped early enough that no chunk finds every buffer in flight.
    // eslint-disable-next-line @typescript-eslint/unbound-method -- called back with its own this
    const original = PositionalFile.prototype.writeSync;
    let overflows = 0;
    PositionalFile.prototype.writeSync = function (this: PositionalFile, chunk, position) {
      overflows += 1;
      original.call(this, chunk, position);
    };
    try {
      await withDir(async (dir) => {
        const bytes = randomBytes(24 * MiB + 5);
        const digester = new Digester();
        await writeHashed(lending(bytes), join(dir, 'blob'), { digester });
        assert.deepEqual(await readFile(join(dir, 'blob')), bytes);
      });
    } finally {
      PositionalFile.prototype.writeSync = original;
    }
    assert.equal(overflows, 0);
  });

  test('lent chunks appended over several calls land after what the file holds, in order', async () => {
    await withDir(async (dir) => {
      const bytes = randomBytes(9 * MiB + 12_345);
      const path = join(dir, 'upload');
      const digester = new Digester();
      // The first part written by another path (a Readable), then lent parts appended after it.
      await writeHashed([bytes.subarray(0, 1000)], path, { digester });
      const cuts = [1000, 3 * MiB + 7, 3 * MiB + 8, 8 * MiB, bytes.length];
      for (let i = 0; i + 1 < cuts.length; i++) {
        const part = bytes.subarray(cuts[i], cuts[i + 1]);
        await writeHashed(lending(part), path, { digester, append: true });
      }
      assert.equal(digester.digest(), sha256(bytes));
      assert.deepEqual(await readFile(path), bytes);
    });
  });

  test('lent content is hashed on the hash thread (24 MiB; then appended over calls) with the right digest', async () => {
    await withDir(async (dir) => {
      const bytes = randomBytes(24 * MiB + 77);
      const digester = new Digester();
      await writeHashed(lending(bytes), join(dir, 'blob'), { digester });
      assert.equal(digester.onHashThread, hashThreadAllowed());
      assert.equal(digester.digest(), sha256(bytes));
      assert.deepEqual(await readFile(join(dir, 'blob')), bytes);

      // A chunked upload: the digester moves with its first large PATCH, later ones (small too) follow.
      const path = join(dir, 'upload');
      const parts = [randomBytes(4 * MiB + 1), randomBytes(10), randomBytes(6 * MiB)];
      const upload = new Digester();
      await writeFile(path, '');
      for (const part of parts) {
        await writeHashed(lending(part), path, { digester: upload, append: true });
        assert.equal(upload.onHashThread, hashThreadAllowed());
      }
      assert.equal(upload.digest(), sha256(Buffer.concat(parts)));
      assert.deepEqual(await readFile(path), Buffer.concat(parts));
    });
  });

  test('AIRLOCK_HASH_THREAD=0 hashes lent content on the calling thread, with the same result', async () => {
    const saved = process.env.AIRLOCK_HASH_THREAD;
    process.env.AIRLOCK_HASH_THREAD = '0';
    try {
      await withDir(async (dir) => {
        const bytes = randomBytes(8 * MiB + 5);
        const digester = new Digester();
        await writeHashed(lending(bytes), join(dir, 'blob'), { digester });
        assert.equal(digester.onHashThread, false);
        assert.equal(digester.digest(), sha256(bytes));
      });
    } finally {
      if (saved === undefined) delete process.env.AIRLOCK_HASH_THREAD;
      else process.env.AIRLOCK_HASH_THREAD = saved;
    }
  });

  test('a source reading into the offered memory: same bytes and digest, odd read sizes, appends', async () => {
    await withDir(async (dir) => {
      for (const [size, read] of [
        [9 * MiB + 12_345, 200_000],
        [3 * MiB, 2 * MiB],
        [5 * MiB + 1, 65_536],
        [700_000, 100_000],
      ] as const) {
        const bytes = randomBytes(size);
        const digester = new Digester();
        const source = reading(bytes, { read });
        const path = join(dir, `blob-${size}`);
        await writeHashed(source, path, { digester });
        assert.equal(digester.digest(), sha256(bytes), `${size}/${read}`);
        assert.deepEqual(await readFile(path), bytes);
        assert.ok(source.directBytes > size / 2, `${source.directBytes} of ${size} read directly`);
      }
      // Appends at odd offsets continue one digester.
      const parts = [randomBytes(1000), randomBytes(3 * MiB + 7), randomBytes(2 * MiB)];
      const digester = new Digester();
      const path = join(dir, 'upload');
      await writeFile(path, '');
      for (const part of parts) await writeHashed(reading(part), path, { digester, append: true });
      assert.equal(digester.digest(), sha256(Buffer.concat(parts)));
      assert.deepEqual(await readFile(path), Buffer.concat(parts));
    });
  });

  test('past maxBytes with direct reads: tooLarge() is thrown', async () => {
    await withDir(async (dir) => {
      await assert.rejects(
        writeHashed(reading(randomBytes(5 * MiB)), join(dir, 'blob'), {
          digester: new Digester(),
          maxBytes: 4 * MiB,
          tooLarge: (max) => new Error(`over ${max}`),
        }),
        /over 4194304/,
      );
    });
  });

  test('memory a failed source may still read into is never handed to another write', async () => {
    await withDir(async (dir) => {
      const source = reading(randomBytes(6 * MiB), { failAfter: 3 * MiB });
      await assert.rejects(
        writeHashed(source, join(dir, 'blob'), { digester: new Digester() }),
        /client gone/,
      );
      const lent = source.lastView;
      assert.ok(lent, 'the source asked for memory before failing');
      // Every spare buffer set, and a new one: none shares memory with what the source still holds.
      const sets = Array.from({ length: 6 }, () => takeBufferSet());
      for (const set of sets) {
        for (const buffer of set.buffers) assert.notEqual(buffer.buffer, lent.buffer);
      }
      for (const set of sets) returnBufferSet(set);
    });
  });

  test('a mistyped AIRLOCK_HASH_THREAD fails the write with its message (never a hang or a crash)', async () => {
    const saved = process.env.AIRLOCK_HASH_THREAD;
    process.env.AIRLOCK_HASH_THREAD = 'yes';
    try {
      await withDir(async (dir) => {
        // 5 MiB: buffers submitted while chunks arrive; 1.5 MiB: the one buffer submitted at the end.
        for (const size of [5 * MiB, 1.5 * MiB]) {
          await assert.rejects(
            writeHashed(lending(randomBytes(size)), join(dir, `blob-${size}`), { digester: new Digester() }),
            /AIRLOCK_HASH_THREAD must be 0 \(off\) or 1 \(on\), not "yes"/,
          );
        }
      });
    } finally {
      if (saved === undefined) delete process.env.AIRLOCK_HASH_THREAD;
      else process.env.AIRLOCK_HASH_THREAD = saved;
    }
  });

  test('a hash thread that stops mid-write fails the write instead of publishing a digest', async () => {
    await withDir(async (dir) => {
      const bytes = randomBytes(16 * MiB);
      const digester = new Digester();
      const source = lending(bytes);
      let stopped = false;
      const stopping: AsyncIterable<Uint8Array> & BorrowedChunkSource = {
        [Symbol.asyncIterator]: () => {
          throw new Error('read through pumpBorrowed only');
        },
        pumpBorrowed(onChunk) {
          let seen = 0;
          return source.pumpBorrowed((chunk) => {
            seen += chunk.byteLength;
            if (!stopped && seen > 6 * MiB) {
              stopped = true;
              void hashThread.terminate();
            }
            return onChunk(chunk);
          });
        },
      };
      const write = writeHashed(stopping, join(dir, 'blob'), { digester });
      if (hashThreadAllowed()) {
        await assert.rejects(write, /hash thread/);
        assert.throws(() => digester.digest(), /hash thread|before settle/);
      } else {
        await write;
      }
    });
  });

  test('a failed write of lent chunks rejects with the fs error (ENOSPC from /dev/full)', async () => {
    await assert.rejects(
      writeHashed(lending(randomBytes(3 * MiB)), '/dev/full', { digester: new Digester() }),
      (error: NodeJS.ErrnoException) => error.code === 'ENOSPC',
    );
  });

  test('a source that ends after the write failed gets nothing written afterwards', async () => {
    // The registry's body decoder can end the body in the same tick as the chunk that went past
    // maxBytes: the partly filled buffer must not be written once the writer has failed and closed.
    await withDir(async (dir) => {
      const path = join(dir, 'upload');
      await writeFile(path, Buffer.alloc(0));
      const fds = (): number => readdirSync('/proc/self/fd').length;
      const before = fds();
      const source: AsyncIterable<Uint8Array> & BorrowedChunkSource = {
        [Symbol.asyncIterator]: () => {
          throw new Error('read through pumpBorrowed only');
        },
        pumpBorrowed(onChunk) {
          let end: () => void = () => undefined;
          const done = new Promise<void>((resolve) => (end = resolve));
          setImmediate(() => {
            onChunk(Buffer.alloc(MiB, 0x41));
            onChunk(Buffer.alloc(64 * 1024, 0x42));
            end();
          });
          return { done, resume: () => undefined };
        },
      };
      await writeFile(path, '');
      await assert.rejects(
        writeHashed(source, path, { digester: new Digester(), append: true, maxBytes: MiB + 1000 }),
        /larger than/,
      );
      await truncate(path, 0); // what appendUpload does with a failed PATCH
      await new Promise((resolve) => setTimeout(resolve, 100));
      assert.equal((await readFile(path)).length, 0, 'no write landed after the failure');
      assert.equal(fds(), before, 'no descriptor left open');
    });
  });

  test(
    'a hash that fails while the body still arrives fails the write as incomplete, even when the source then runs to its end; one that fails after every byte is written says the file is whole',
    { skip: !hashThreadAllowed() && 'needs the hash thread (AIRLOCK_HASH_THREAD=0, or one CPU)' },
    async () => {
      await withDir(async (dir) => {
        // Like the registry's body reader: reads arrive one by one, and it goes on to the end of the body
        // whatever the writer answers.
        const heedless = (parts: Buffer[], between: () => Promise<void>): BorrowedChunkSource => ({
          pumpBorrowed(onChunk) {
            const done = (async () => {
              for (const [i, part] of parts.entries()) {
                if (i > 0) await between();
                for (let at = 0; at < part.length; at += 256 * 1024) {
                  await new Promise((resolve) => setImmediate(resolve));
                  onChunk(part.subarray(at, at + 256 * 1024));
                }
              }
            })();
            return { done, resume: () => undefined };
          },
        });
        const early = join(dir, 'early');
        const mid = heedless([randomBytes(4 * MiB), randomBytes(3 * MiB)], () => hashThread.terminate());
        const failedEarly = await writeHashed(mid as never, early, { digester: new Digester() }).then(
          () => undefined,
          (error: unknown) => error as Error,
        );
        assert.ok(failedEarly, 'the write failed');
        assert.notEqual(failedEarly.name, 'UnhashedWriteError', 'bytes were dropped: not a whole file');
        // Every byte written, then the hash thread stops before the last buffers are hashed.
        const late = join(dir, 'late');
        let written = false;
        const whole = randomBytes(5 * MiB);
        const failedLate = await writeHashed(heedless([whole], () => Promise.resolve()) as never, late, {
          digester: new Digester(),
          onWritten: () => {
            written = true;
            void hashThread.terminate();
          },
        }).then(
          () => undefined,
          (error: unknown) => error as Error,
        );
        if (failedLate) {
          assert.equal(failedLate.name, 'UnhashedWriteError');
          assert.ok(written);
          assert.deepEqual(await readFile(late), whole);
        }
      });
    },
  );

  test('lent chunks past maxBytes: tooLarge() is thrown', async () => {
    await withDir(async (dir) => {
      await assert.rejects(
        writeHashed(lending(randomBytes(5 * MiB)), join(dir, 'blob'), {
          digester: new Digester(),
          maxBytes: 4 * MiB,
          tooLarge: (max) => new Error(`over ${max}`),
        }),
        /over 4194304/,
      );
    });
  });

  test('concurrent writes share the pool and stay separate', async () => {
    await withDir(async (dir) => {
      const blobs = Array.from({ length: 6 }, () => randomBytes(3 * MiB + 17));
      const digesters = blobs.map(() => new Digester());
      await Promise.all(
        blobs.map((bytes, i) =>
          writeHashed(chunks(bytes, [65536, 333]), join(dir, `b${i}`), {
            digester: digesters[i] as Digester,
          }),
        ),
      );
      for (const [i, bytes] of blobs.entries()) {
        assert.equal((digesters[i] as Digester).digest(), sha256(bytes));
        assert.deepEqual(await readFile(join(dir, `b${i}`)), bytes);
      }
    });
  });
});
