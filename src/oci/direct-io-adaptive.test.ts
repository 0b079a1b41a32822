import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { closeSync, constants, openSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  DirectWriteMeter,
  directWrites,
  PositionalFile,
  returnBufferSet,
  SLOW_DIRECT_WRITES,
  takeBufferSet,
} from './direct-io.js';

// Its own file (its own process under node --test): the last test marks this process's direct writes slow
// for good, which would change what every later direct-I/O test saw.

const MiB = 1024 * 1024;

/** A meter on a clock the test moves; `write` is one write alone in flight for `ms`, ending with `bytes`. */
function meterAt(): {
  meter: DirectWriteMeter;
  advance: (ms: number) => void;
  write: (ms: number, bytes: number) => void;
} {
  let now = 0;
  const meter = new DirectWriteMeter(SLOW_DIRECT_WRITES, () => now);
  const advance = (ms: number): void => {
    now += ms;
  };
  const write = (ms: number, bytes: number): void => {
    meter.started();
    advance(ms);
    meter.ended(bytes);
  };
  return { meter, advance, write };
}

describe('DirectWriteMeter', () => {
  test('a disk that takes 2 MiB writes at 2 GB/s is never judged slow', () => {
    const { meter, write } = meterAt();
    for (let i = 0; i < 100; i++) write(1.05, 2 * MiB);
    assert.equal(meter.slow, false);
  });

  test('a disk at 300 MB/s is judged slow, but only once 128 MiB were written', () => {
    const { meter, write } = meterAt();
    for (let i = 0; i < 63; i++) write(7, 2 * MiB);
    assert.equal(meter.slow, false, '126 MiB: not judged yet');
    write(7, 2 * MiB);
    assert.equal(meter.slow, true);
    // A burst that lifts the running rate far above the threshold (1 GiB more in 0.1 ms).
    write(0.1, 1024 * MiB);
    assert.equal(meter.slow, true, 'once slow, it stays so');
  });

  test('time with no write in flight does not count (a slow source is not a slow disk)', () => {
    const { meter, advance, write } = meterAt();
    for (let i = 0; i < 64; i++) {
      advance(100);
      write(2, 2 * MiB);
    }
    assert.equal(meter.slow, false);
  });

  test('writes in flight together count their time once', () => {
    // Four 2 MiB writes at a time, each round 12 ms: 8 MiB per 12 ms is 699 MB/s (fast); counted per
    // write it would look like 175 MB/s.
    const { meter, advance } = meterAt();
    for (let round = 0; round < 16; round++) {
      for (let i = 0; i < 4; i++) meter.started();
      advance(12);
      for (let i = 0; i < 4; i++) meter.ended(2 * MiB);
    }
    assert.equal(meter.slow, false);
    // Two 2.5 MiB writes overlapping in part (0-8 ms and 4-12 ms): 5 MiB per 12 ms is 437 MB/s (fast);
    // the sum of their times (16 ms) would make it 328 MB/s.
    const { meter: other, advance: move } = meterAt();
    for (let round = 0; round < 26; round++) {
      other.started();
      move(4);
      other.started();
      move(4);
      other.ended(2.5 * MiB);
      move(4);
      other.ended(2.5 * MiB);
    }
    assert.equal(other.slow, false);
  });

  test('the time of failed writes counts, their bytes do not', () => {
    // 64 writes of 2 MiB in 1 ms each (2 GB/s) and 64 failures of 10 ms each: 128 MiB in 704 ms is slow.
    const { meter, write } = meterAt();
    for (let i = 0; i < 64; i++) {
      write(10, 0);
      write(1, 2 * MiB);
    }
    assert.equal(meter.slow, true);
  });
});

describe("PositionalFile, direct: 'adaptive'", () => {
  let dir = '';
  let saved: string | undefined;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'airlock-adaptive-'));
    saved = process.env.AIRLOCK_DIRECT_IO;
    delete process.env.AIRLOCK_DIRECT_IO;
  });
  after(async () => {
    if (saved !== undefined) process.env.AIRLOCK_DIRECT_IO = saved;
    await rm(dir, { recursive: true, force: true });
  });

  test('writes past the page cache until the process measured its direct writes slow, then through it', async (t) => {
    if (constants.O_DIRECT === undefined) {
      t.skip('no O_DIRECT on this platform');
      return;
    }
    try {
      closeSync(openSync(join(dir, 'probe'), constants.O_WRONLY | constants.O_CREAT | constants.O_DIRECT));
    } catch {
      t.skip('this file system has no O_DIRECT');
      return;
    }
    const set = takeBufferSet();
    const [first, second] = set.buffers as [Buffer, Buffer];
    const write = (file: PositionalFile, buffer: Buffer, length: number, at: number): Promise<void> =>
      new Promise((resolve, reject) =>
        file.write({ buffer, length, at }, (error) => (error ? reject(error) : resolve())),
      );
    try {
      const path = join(dir, 'switched');
      const file = PositionalFile.open(path, { append: false, direct: 'adaptive' });
      const pinned = PositionalFile.open(join(dir, 'pinned'), { append: false, direct: true });
      assert.equal(file.direct, true, 'the disk has not been measured yet');
      const head = randomBytes(first.byteLength);
      head.copy(first);
      await write(file, first, head.length, 0);

      // 128 MiB in 450 ms or more: at most 298 MB/s.
      directWrites.started();
      await new Promise((resolve) => setTimeout(resolve, 450));
      directWrites.ended(128 * MiB);
      assert.equal(directWrites.slow, true);

      assert.equal(file.direct, false, 'an open adaptive file switches to the page cache');
      // Direct, a buffer 100 bytes past an aligned offset would stop at the next one (64 KiB on).
      assert.equal(file.fill(head.length + 100, 2 * MiB), 2 * MiB, 'and no longer aligns its buffers');
      const tail = randomBytes(MiB + 3);
      tail.copy(second);
      await write(file, second, tail.length, head.length);
      file.close();
      assert.deepEqual(
        await readFile(path),
        Buffer.concat([head, tail]),
        'the bytes of both ways land whole',
      );

      const later = PositionalFile.open(join(dir, 'later'), { append: false, direct: 'adaptive' });
      assert.equal(later.direct, false, 'files opened afterwards start through the page cache');
      later.close();
      assert.equal(pinned.direct, true, 'direct: true is not adaptive');
      pinned.close();
    } finally {
      returnBufferSet(set);
    }
  });
});
