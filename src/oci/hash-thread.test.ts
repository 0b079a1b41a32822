import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { Digester } from './digest.js';
import { hashThread, hashThreadAllowed, maxHashThreads } from './hash-thread.js';

const MiB = 1024 * 1024;

/** `bytes` copied into shared memory, as the blob writer's buffers hold them. */
function shared(bytes: Uint8Array): Uint8Array {
  const view = new Uint8Array(new SharedArrayBuffer(bytes.byteLength));
  view.set(bytes);
  return view;
}

function hex(algorithm: 'sha256' | 'sha512', ...parts: Uint8Array[]): string {
  const hash = createHash(algorithm);
  for (const part of parts) hash.update(part);
  return `${algorithm}:${hash.digest('hex')}`;
}

async function withEnv(value: string | undefined, fn: () => Promise<void>): Promise<void> {
  const saved = process.env.AIRLOCK_HASH_THREAD;
  if (value === undefined) delete process.env.AIRLOCK_HASH_THREAD;
  else process.env.AIRLOCK_HASH_THREAD = value;
  try {
    await fn();
  } finally {
    if (saved === undefined) delete process.env.AIRLOCK_HASH_THREAD;
    else process.env.AIRLOCK_HASH_THREAD = saved;
  }
}

describe('hash thread', () => {
  test('large shared views are hashed there, with the same digest as here', async () => {
    await withEnv('1', async () => {
      const a = randomBytes(3 * MiB + 17);
      const b = randomBytes(2 * MiB);
      const digester = new Digester();
      await Promise.all([digester.updateShared(shared(a)), digester.updateShared(shared(b))]);
      assert.equal(digester.onHashThread, true);
      assert.equal(digester.size, a.length + b.length);
      await digester.settle();
      assert.equal(digester.digest(), hex('sha256', a, b));
    });
  });

  test('digest() before settle() is refused rather than answering for fewer bytes', async () => {
    await withEnv('1', async () => {
      const digester = new Digester();
      await digester.updateShared(shared(randomBytes(MiB)));
      assert.throws(() => digester.digest(), /before settle/);
      await digester.settle();
      await digester.updateShared(shared(randomBytes(MiB)));
      assert.throws(() => digester.digest(), /before settle/);
    });
  });

  test('a settled stream goes on (a chunked upload): later updates, ordinary memory too, in order', async () => {
    await withEnv('1', async () => {
      const parts = [randomBytes(MiB), randomBytes(5000), randomBytes(2 * MiB + 1), randomBytes(1)];
      const digester = new Digester();
      await digester.updateShared(shared(parts[0] as Buffer));
      await digester.settle();
      assert.equal(digester.digest(), hex('sha256', parts[0] as Buffer));
      digester.update(parts[1] as Buffer);
      const pending = digester.updateShared(shared(parts[2] as Buffer));
      digester.update(parts[3] as Buffer);
      await pending;
      await digester.settle();
      assert.equal(digester.digest(), hex('sha256', ...parts));
    });
  });

  test('a digester on the thread takes updateShared of ordinary memory (an upload chunk from an ordinary buffer set)', async () => {
    await withEnv('1', async () => {
      const parts = [randomBytes(2 * MiB), randomBytes(2 * MiB + 3), randomBytes(MiB)];
      const digester = new Digester();
      await digester.updateShared(shared(parts[0] as Buffer));
      assert.equal(digester.onHashThread, true);
      // The caller may reuse this memory as soon as the call returns: it is copied first.
      const ordinary = Buffer.from(parts[1] as Buffer);
      await digester.updateShared(ordinary);
      ordinary.fill(0);
      await digester.updateShared(shared(parts[2] as Buffer));
      await digester.settle();
      assert.equal(digester.digest(), hex('sha256', ...parts));
    });
  });

  test('sha512 streams', async () => {
    await withEnv('1', async () => {
      const bytes = randomBytes(4 * MiB + 3);
      const digester = new Digester('sha512');
      await digester.updateShared(shared(bytes));
      assert.equal(digester.onHashThread, true);
      await digester.settle();
      assert.equal(digester.digest(), hex('sha512', bytes));
    });
  });

  test('stays on this thread: after hashing here, small views, ordinary memory, AIRLOCK_HASH_THREAD=0', async () => {
    const big = randomBytes(2 * MiB);
    const cases: Array<[string, string | undefined, (d: Digester) => Promise<void>]> = [
      [
        'bytes hashed here first',
        '1',
        async (d) => {
          d.update(big.subarray(0, 10));
          await d.updateShared(shared(big.subarray(10)));
        },
      ],
      ['a view under 1 MiB', '1', (d) => d.updateShared(shared(big.subarray(0, MiB - 1)))],
      ['ordinary memory', '1', (d) => d.updateShared(big)],
      ['AIRLOCK_HASH_THREAD=0', '0', (d) => d.updateShared(shared(big))],
    ];
    for (const [name, env, feed] of cases) {
      await withEnv(env, async () => {
        const digester = new Digester();
        await feed(digester);
        assert.equal(digester.onHashThread, false, name);
        await digester.settle();
        const fed = name === 'a view under 1 MiB' ? big.subarray(0, MiB - 1) : big;
        assert.equal(digester.digest(), hex('sha256', fed), name);
      });
    }
  });

  test('a stopped hash thread fails the digesters that used it; new ones start a new thread', async () => {
    await withEnv('1', async () => {
      const before = new Digester();
      await before.updateShared(shared(randomBytes(MiB)));
      await hashThread.terminate();
      await assert.rejects(before.settle(), /hash thread/);
      assert.throws(() => before.digest(), /hash thread|before settle/);
      await assert.rejects(before.updateShared(shared(randomBytes(MiB))), /hash thread restarted/);

      const after = new Digester();
      const bytes = randomBytes(MiB);
      await after.updateShared(shared(bytes));
      await after.settle();
      assert.equal(after.digest(), hex('sha256', bytes));
    });
  });

  test('where workers are refused (permission model), large writes hash on their own thread', () => {
    // A child node under --experimental-permission without --allow-worker: creating the worker throws.
    const script = `
      import { randomBytes, createHash } from 'node:crypto';
      import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
      import { tmpdir } from 'node:os';
      import { join } from 'node:path';
      const { Digester, writeHashed } = await import(${JSON.stringify(new URL('./index.js', import.meta.url).href)});
      const bytes = randomBytes(6 * 1024 * 1024 + 5);
      const source = {
        pumpBorrowed(onChunk) {
          let at = 0;
          let finish;
          const done = new Promise((resolve) => (finish = resolve));
          const pump = () => {
            while (at < bytes.length) {
              const chunk = bytes.subarray(at, at + 256 * 1024);
              at += chunk.length;
              if (!onChunk(chunk)) return;
            }
            finish();
          };
          setImmediate(pump);
          return { done, resume: () => setImmediate(pump) };
        },
        [Symbol.asyncIterator]() { throw new Error('lent only'); },
      };
      const dir = mkdtempSync(join(tmpdir(), 'airlock-perm-'));
      try {
        const digester = new Digester();
        await writeHashed(source, join(dir, 'blob'), { digester });
        const expected = 'sha256:' + createHash('sha256').update(bytes).digest('hex');
        const same = readFileSync(join(dir, 'blob')).equals(bytes);
        console.log(JSON.stringify({ onHashThread: digester.onHashThread, ok: digester.digest() === expected && same }));
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    `;
    const child = spawnSync(
      process.execPath,
      [
        '--experimental-permission',
        '--allow-fs-read=*',
        '--allow-fs-write=*',
        '--input-type=module',
        '-e',
        script,
      ],
      { encoding: 'utf8', env: { ...process.env, AIRLOCK_HASH_THREAD: '1' } },
    );
    assert.equal(child.status, 0, child.stderr);
    assert.deepEqual(JSON.parse(child.stdout.trim().split('\n').pop() ?? ''), {
      onHashThread: false,
      ok: true,
    });
  });

  test('concurrent streams are spread over the hash threads in turn; stopping them fails every stream they held', () => {
    // A child process: the number of threads is read once per process, on first use.
    const script = `
      import { randomBytes, createHash } from 'node:crypto';
      const { Digester, hashThread } = await import(${JSON.stringify(new URL('./index.js', import.meta.url).href)});
      const shared = (bytes) => { const v = new Uint8Array(new SharedArrayBuffer(bytes.length)); v.set(bytes); return v; };
      const hex = (...parts) => { const h = createHash('sha256'); for (const p of parts) h.update(p); return 'sha256:' + h.digest('hex'); };
      const parts = Array.from({ length: 5 }, () => [randomBytes(2 * 1024 * 1024), randomBytes(3 * 1024 * 1024 + 7)]);
      const digesters = parts.map(() => new Digester());
      // Interleaved, as concurrent uploads send them.
      for (let round = 0; round < 2; round++) {
        await Promise.all(digesters.map((d, i) => d.updateShared(shared(parts[i][round]))));
      }
      const threads = hashThread.running;
      await Promise.all(digesters.map((d) => d.settle()));
      const digests = digesters.map((d, i) => d.digest() === hex(...parts[i]));
      const onThread = digesters.every((d) => d.onHashThread);
      // Three streams left unsettled, one per thread, when the threads stop: each one fails.
      const held = [new Digester(), new Digester(), new Digester()];
      await Promise.all(held.map((d) => d.updateShared(shared(randomBytes(1024 * 1024)))));
      await hashThread.terminate();
      const failures = await Promise.all(held.map((d) => d.settle().then(() => 'settled', (error) => /hash thread/.test(error.message))));
      const failed = failures.every((f) => f === true);
      const again = new Digester();
      const bytes = randomBytes(1024 * 1024);
      await again.updateShared(shared(bytes));
      await again.settle();
      console.log(JSON.stringify({ digests, onThread, threads, failed, again: again.digest() === hex(bytes) }));
    `;
    // A file, not --input-type=module -e: workers inherit the flags, and that one fails in a worker.
    const dir = mkdtempSync(join(tmpdir(), 'airlock-hash-threads-'));
    let child;
    try {
      writeFileSync(join(dir, 'spread.mjs'), script);
      child = spawnSync(process.execPath, [join(dir, 'spread.mjs')], {
        encoding: 'utf8',
        env: { ...process.env, AIRLOCK_HASH_THREAD: '1', AIRLOCK_HASH_THREADS: '3' },
      });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    assert.equal(child.status, 0, child.stderr);
    assert.deepEqual(JSON.parse(child.stdout.trim().split('\n').pop() ?? ''), {
      digests: [true, true, true, true, true],
      onThread: true,
      threads: 3,
      failed: true,
      again: true,
    });
  });

  test('AIRLOCK_HASH_THREADS: a count from 1 to 64; unset, one per CPU but one, from one to four', () => {
    assert.equal(maxHashThreads({ AIRLOCK_HASH_THREADS: '2' }), 2);
    assert.equal(
      maxHashThreads({ AIRLOCK_HASH_THREADS: '' }),
      Math.min(4, Math.max(1, availableParallelism() - 1)),
    );
    assert.equal(maxHashThreads({}), Math.min(4, Math.max(1, availableParallelism() - 1)));
    for (const bad of ['0', '65', '1.5', 'two', '-1']) {
      assert.throws(
        () => maxHashThreads({ AIRLOCK_HASH_THREADS: bad }),
        new RegExp(
          `AIRLOCK_HASH_THREADS must be a whole number from 1 to 64, not "${bad.replace('.', '\\.')}"`,
        ),
      );
    }
  });

  test('AIRLOCK_HASH_THREAD accepts 0 and 1 and refuses anything else', () => {
    assert.equal(hashThreadAllowed({ AIRLOCK_HASH_THREAD: '0' }), false);
    assert.equal(hashThreadAllowed({ AIRLOCK_HASH_THREAD: '1' }), true);
    assert.throws(
      () => hashThreadAllowed({ AIRLOCK_HASH_THREAD: 'off' }),
      /AIRLOCK_HASH_THREAD must be 0 \(off\) or 1 \(on\), not "off"/,
    );
  });
});
