import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { pbkdf2, randomBytes } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { closeSync, constants, openSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  DIRECT_ALIGNMENT,
  directIoAllowed,
  discardBufferSet,
  MAX_ALIGNED_SETS,
  PositionalFile,
  returnBufferSet,
  takeBufferSet,
  WRITE_BUFFER_SIZE,
} from './direct-io.js';

const MiB = 1024 * 1024;

/** Whether the folder's file system takes O_DIRECT at all (tmpfs before Linux 6.6 does not). */
function supportsDirect(dir: string): boolean {
  if (constants.O_DIRECT === undefined) return false;
  try {
    closeSync(openSync(join(dir, 'probe'), constants.O_WRONLY | constants.O_CREAT | constants.O_DIRECT));
    return true;
  } catch {
    return false;
  }
}

function writeAt(file: PositionalFile, buffer: Buffer, length: number, at: number): Promise<void> {
  return new Promise((resolve, reject) =>
    file.write({ buffer, length, at }, (error) => (error ? reject(error) : resolve())),
  );
}

/** Writes `bytes` from `at` the way the hashed writer does: aligned buffers, the first one up to alignment. */
async function writeThrough(file: PositionalFile, bytes: Buffer, at: number): Promise<void> {
  const set = takeBufferSet();
  try {
    const pending: Promise<void>[] = [];
    for (let offset = 0, i = 0; offset < bytes.length; i++) {
      const buffer = set.buffers[i % set.buffers.length] as Buffer;
      if (i >= set.buffers.length) await pending[i - set.buffers.length];
      const take = Math.min(file.fill(at + offset, buffer.byteLength), bytes.length - offset);
      bytes.copy(buffer, 0, offset, offset + take);
      pending.push(writeAt(file, buffer, take, at + offset));
      offset += take;
    }
    await Promise.all(pending);
  } finally {
    returnBufferSet(set);
  }
}

describe('PositionalFile', () => {
  let dir = '';
  let direct = false;
  let saved: string | undefined;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'airlock-direct-'));
    direct = supportsDirect(dir);
    saved = process.env.AIRLOCK_DIRECT_IO;
    delete process.env.AIRLOCK_DIRECT_IO;
  });
  after(async () => {
    if (saved !== undefined) process.env.AIRLOCK_DIRECT_IO = saved;
    await rm(dir, { recursive: true, force: true });
  });

  test('bypasses the page cache where the file system allows it', () => {
    const file = PositionalFile.open(join(dir, 'a'), { append: false });
    assert.equal(file.direct, direct);
    file.close();
  });

  test('AIRLOCK_DIRECT_IO=0 writes through the page cache, with the same bytes', async () => {
    process.env.AIRLOCK_DIRECT_IO = '0';
    try {
      const path = join(dir, 'plain');
      const file = PositionalFile.open(path, { append: false });
      assert.equal(file.direct, false);
      const bytes = randomBytes(2 * MiB + 5);
      await writeThrough(file, bytes, 0);
      file.close();
      assert.deepEqual(await readFile(path), bytes);
    } finally {
      delete process.env.AIRLOCK_DIRECT_IO;
    }
  });

  test('AIRLOCK_DIRECT_IO accepts 0 and 1 and refuses anything else when a file is opened', () => {
    assert.equal(directIoAllowed({ AIRLOCK_DIRECT_IO: '0' }), false);
    assert.equal(directIoAllowed({ AIRLOCK_DIRECT_IO: '1' }), constants.O_DIRECT !== undefined);
    assert.equal(directIoAllowed({}), constants.O_DIRECT !== undefined);
    assert.throws(
      () => directIoAllowed({ AIRLOCK_DIRECT_IO: 'no' }),
      /must be 0 \(off\) or 1 \(on\), not "no"/,
    );
    process.env.AIRLOCK_DIRECT_IO = 'false';
    try {
      assert.throws(
        () => PositionalFile.open(join(dir, 'refused-setting'), { append: false }),
        /AIRLOCK_DIRECT_IO/,
      );
    } finally {
      delete process.env.AIRLOCK_DIRECT_IO;
    }
  });

  test('fill(): a buffer that starts off alignment stops at the next aligned offset', () => {
    const file = PositionalFile.open(join(dir, 'b'), { append: false });
    assert.equal(file.fill(0, WRITE_BUFFER_SIZE), WRITE_BUFFER_SIZE);
    assert.equal(file.fill(8 * DIRECT_ALIGNMENT, WRITE_BUFFER_SIZE), WRITE_BUFFER_SIZE);
    assert.equal(file.fill(1000, WRITE_BUFFER_SIZE), direct ? DIRECT_ALIGNMENT - 1000 : WRITE_BUFFER_SIZE);
    assert.equal(file.fill(DIRECT_ALIGNMENT + 1, 100), 100);
    file.close();
  });

  for (const size of [0, 1, 4095, 4096, MiB - 1, MiB, MiB + 1, 3 * MiB + 4097, 5 * MiB + 123]) {
    test(`${size} bytes land whole: aligned blocks direct, the rest through the page cache`, async () => {
      const path = join(dir, `size-${size}`);
      const bytes = randomBytes(size);
      const file = PositionalFile.open(path, { append: false });
      await writeThrough(file, bytes, 0);
      assert.equal(file.direct, direct, 'no direct write was refused');
      file.close();
      assert.deepEqual(await readFile(path), bytes);
    });
  }

  test('appends start at the end, at any offset, and never truncate', async () => {
    const path = join(dir, 'append');
    const parts = [randomBytes(1000), randomBytes(2 * MiB + 7), randomBytes(3), randomBytes(MiB + 4093)];
    await writeFile(path, parts[0] as Buffer);
    for (const part of parts.slice(1)) {
      const file = PositionalFile.open(path, { append: true });
      const before = (await readFile(path)).length;
      assert.equal(file.size, before);
      await writeThrough(file, part, file.size);
      file.close();
    }
    assert.deepEqual(await readFile(path), Buffer.concat(parts));
  });

  test('opening without append replaces the content', async () => {
    const path = join(dir, 'replace');
    await writeFile(path, randomBytes(3 * MiB));
    const file = PositionalFile.open(path, { append: false });
    assert.equal(file.size, 0);
    const bytes = randomBytes(MiB + 10);
    await writeThrough(file, bytes, 0);
    file.close();
    assert.deepEqual(await readFile(path), bytes);
  });

  test('a direct write the kernel refuses (EINVAL: memory off alignment) is written through the page cache', async (t) => {
    if (!direct) {
      t.skip('this file system has no O_DIRECT');
      return;
    }
    const path = join(dir, 'refused');
    const file = PositionalFile.open(path, { append: false });
    const bytes = randomBytes(2 * MiB);
    // A Buffer from malloc is 16-byte aligned at best; 16 bytes past a page boundary is never 512-aligned.
    const set = takeBufferSet();
    const first = set.buffers[0] as Buffer;
    const misaligned = Buffer.from(first.buffer, first.byteOffset + 16, 2 * MiB);
    bytes.copy(misaligned);
    await writeAt(file, misaligned, bytes.length, 0);
    returnBufferSet(set);
    assert.equal(file.direct, false, 'later writes go through the page cache');
    const more = randomBytes(MiB + 3);
    await writeThrough(file, more, bytes.length);
    file.close();
    assert.deepEqual(await readFile(path), Buffer.concat([bytes, more]));
  });

  test('writeSync (the overflow path) writes at its position through the page cache', async () => {
    const path = join(dir, 'sync');
    const file = PositionalFile.open(path, { append: false });
    const bytes = randomBytes(MiB + 77);
    await writeThrough(file, bytes.subarray(0, MiB), 0);
    file.writeSync(bytes.subarray(MiB), MiB);
    file.close();
    assert.deepEqual(await readFile(path), bytes);
  });

  test('failing to open the buffered descriptor is a write error, not an exception', async (t) => {
    if (!direct) {
      t.skip('this file system has no O_DIRECT (the buffered descriptor is opened up front)');
      return;
    }
    const path = join(dir, 'vanished');
    const file = PositionalFile.open(path, { append: false });
    await rm(path);
    const set = takeBufferSet();
    // Content under 1 MiB goes through the buffered descriptor, opened by path on first use.
    const failed = new Promise<NodeJS.ErrnoException | null>((resolve) => {
      assert.doesNotThrow(() =>
        file.write({ buffer: set.buffers[0] as Buffer, length: 100, at: 0 }, resolve),
      );
    });
    assert.equal((await failed)?.code, 'ENOENT');
    returnBufferSet(set);
    file.close();
  });

  test('a write split in two reports a failure of one part only once the other part has ended', async (t) => {
    if (!direct) {
      t.skip('this file system has no O_DIRECT (nothing is split)');
      return;
    }
    const path = join(dir, 'split');
    const file = PositionalFile.open(path, { append: false });
    await rm(path); // the buffered part's descriptor (opened by path) now fails with ENOENT at once
    const set = takeBufferSet();
    // Keep the thread pool busy, so the direct part waits in its queue while the buffered part fails.
    let finishedJobs = 0;
    const busy = Array.from(
      { length: 4 },
      () =>
        new Promise<void>((resolve) =>
          pbkdf2('x', 'y', 200_000, 32, 'sha256', () => {
            finishedJobs += 1;
            resolve();
          }),
        ),
    );
    const error = await new Promise<NodeJS.ErrnoException | null>((resolve) =>
      file.write({ buffer: set.buffers[0] as Buffer, length: 2 * MiB + 5000, at: 0 }, resolve),
    );
    // Had `done` come at once, the caller would close the descriptors while the direct part could
    // still write through a number the next open() in the process reuses.
    assert.ok(finishedJobs > 0, 'done waited for the direct part, queued behind the busy thread pool');
    assert.equal(error?.code, 'ENOENT');
    await Promise.all(busy);
    file.close();
    returnBufferSet(set);
  });

  test('direct: false keeps every write in the page cache', async () => {
    const path = join(dir, 'not-direct');
    const file = PositionalFile.open(path, { append: false, direct: false });
    assert.equal(file.direct, false);
    const bytes = randomBytes(3 * MiB + 1);
    await writeThrough(file, bytes, 0);
    file.close();
    assert.deepEqual(await readFile(path), bytes);
  });

  test('under a virtual-memory limit that refuses WebAssembly memories, writes still work (page cache)', () => {
    const script = [
      `import { writeHashed } from ${JSON.stringify(new URL('./hashed-write.js', import.meta.url).href)};`,
      `import { Digester } from ${JSON.stringify(new URL('./digest.js', import.meta.url).href)};`,
      `import { takeBufferSet } from ${JSON.stringify(new URL('./direct-io.js', import.meta.url).href)};`,
      `import { createHash, randomBytes } from 'node:crypto';`,
      `import { readFileSync } from 'node:fs';`,
      `const bytes = randomBytes(3 * 1024 * 1024 + 7);`,
      `const digester = new Digester();`,
      `await writeHashed([bytes], process.argv[1], { digester });`,
      `const same = readFileSync(process.argv[1]).equals(bytes);`,
      `const expected = 'sha256:' + createHash('sha256').update(bytes).digest('hex');`,
      `const lent = { [Symbol.asyncIterator]() { throw new Error('no'); }, pumpBorrowed(onChunk) {`,
      `  setImmediate(() => { onChunk(bytes); end(); }); let end; const done = new Promise((r) => (end = r));`,
      `  return { done, resume() {} }; } };`,
      `const d2 = new Digester();`,
      `await writeHashed(lent, process.argv[1] + '.lent', { digester: d2 });`,
      `const lentSame = readFileSync(process.argv[1] + '.lent').equals(bytes);`,
      `console.log(JSON.stringify({ aligned: takeBufferSet().aligned, same, lentSame, ok: d2.digest() === expected }));`,
    ].join('\n');
    const result = spawnSync(
      'bash',
      [
        '-c',
        'ulimit -v 6000000 && exec "$0" --input-type=module -e "$1" "$2"',
        process.execPath,
        script,
        join(dir, 'limited'),
      ],
      { encoding: 'utf8' },
    );
    assert.equal(result.status, 0, result.stderr);
    assert.deepEqual(JSON.parse(result.stdout), { aligned: false, same: true, lentSame: true, ok: true });
  });

  test('an fs error reaches the callback once', async () => {
    const file = PositionalFile.open('/dev/full', { append: false });
    const set = takeBufferSet();
    await assert.rejects(writeAt(file, set.buffers[0] as Buffer, 100, 0), (error: NodeJS.ErrnoException) => {
      return error.code === 'ENOSPC';
    });
    returnBufferSet(set);
    file.close();
  });
});

describe('buffer sets', () => {
  test('makes at most MAX_ALIGNED_SETS aligned sets, reuses them, and gives ordinary memory past the cap', () => {
    const taken = Array.from({ length: MAX_ALIGNED_SETS + 3 }, () => takeBufferSet());
    const pooled = taken.filter((set) => set.pooled);
    assert.ok(pooled.length <= MAX_ALIGNED_SETS, `${pooled.length} pooled sets`);
    const extra = taken.slice(MAX_ALIGNED_SETS);
    for (const set of extra) {
      assert.equal(set.pooled, false);
      assert.equal(set.aligned, false);
      assert.ok(!(set.buffers[0]!.buffer instanceof SharedArrayBuffer));
    }
    for (const set of taken) returnBufferSet(set);
    // Only pooled sets come back; ordinary ones are left to the collector.
    const again = Array.from({ length: pooled.length }, () => takeBufferSet());
    assert.deepEqual(new Set(again), new Set(pooled));
    // A discarded set is never handed out again, and frees its place for a new one.
    const [dropped, ...rest] = again;
    discardBufferSet(dropped!);
    for (const set of rest) returnBufferSet(set);
    const next = Array.from({ length: pooled.length }, () => takeBufferSet());
    assert.ok(!next.includes(dropped!));
    assert.equal(next.filter((set) => set.pooled).length, pooled.length);
    for (const set of next) returnBufferSet(set);
  });
});
