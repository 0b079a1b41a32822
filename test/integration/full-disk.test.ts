// A data folder on a full or read-only disk: `airlock serve` and `airlock gc --data` fail with one line
// that says so, exit 1, leave no lock or temp file, and the data already there stays readable. The disks
// are small tmpfs mounts, which need root: under CI a failed mount fails the test, locally it skips.
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { appendFile, mkdir, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { CLI, run, startAirlockProcess, tempDir } from '../helpers/processes.js';
import { image } from '../helpers/oci-fixtures.js';
import { digestOf } from '../../src/oci/index.js';
import { TestClient } from '../helpers/registry-client.js';

const mounts: string[] = [];
after(async () => {
  for (const dir of mounts) {
    try {
      execFileSync('umount', [dir], { stdio: 'ignore' });
    } catch {
      // already gone
    }
    await rm(dir, { recursive: true, force: true });
  }
});

/** A fresh tmpfs of `size` (mount's syntax, e.g. 2m) mounted with `options`, or undefined when skipped. */
async function smallDisk(t: TestContext, size: string, options = ''): Promise<string | undefined> {
  const dir = await tempDir('airlock-disk-');
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size}${options}`, 'tmpfs', dir], {
      stdio: 'pipe',
    });
  } catch (error) {
    await rm(dir, { recursive: true, force: true });
    const message = `cannot mount a tmpfs (needs root): ${String(error).split('\n')[0]}`;
    if (process.env.CI) throw new Error(message);
    t.skip(message);
    return undefined;
  }
  mounts.push(dir);
  return dir;
}

/** Fills the disk at `dir` to the last page with one file (removed again by `free`). */
async function fill(dir: string): Promise<{ free: () => Promise<void> }> {
  const path = join(dir, 'filler');
  const chunk = Buffer.alloc(256 * 1024);
  for (;;) {
    try {
      await appendFile(path, chunk);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOSPC') break;
      throw error;
    }
  }
  return { free: () => rm(path) };
}

const MIB = 1024 * 1024;

/** An upload's id, the last part of its Location. */
const uploadId = (location: string): string => new URL(location, 'http://x').pathname.split('/').at(-1) ?? '';

const serveArgs = (data: string): string[] => ['serve', '--addr', '127.0.0.1:0', '--data', data];

describe('a data folder on a full or read-only disk', () => {
  it('serve on a full disk fails in one line, exit 1, leaving no lock or temp file', async (t) => {
    const disk = await smallDisk(t, '1m');
    if (!disk) return;
    const data = join(disk, 'data');
    await mkdir(data);
    await fill(disk);
    const result = await run(process.execPath, [CLI, ...serveArgs(data)], { timeoutMs: 30_000 });
    assert.equal(result.code, 1, result.stderr);
    assert.match(
      result.stderr,
      /^Error: Cannot lock the data folder in ".*": its disk is full \(ENOSPC\)\n$/,
    );
    assert.deepEqual(await readdir(data), [], 'nothing left in the data folder');
  });

  it('serve on a disk with room for the lock but not for SQLite fails in one line and frees the lock', async (t) => {
    const disk = await smallDisk(t, '2m');
    if (!disk) return;
    const data = join(disk, 'data');
    await mkdir(data);
    // Leave a few pages: the lock file fits, SQLite's shared memory and WAL do not.
    await writeFile(join(disk, 'filler'), Buffer.alloc(2 * 1024 * 1024 - 32 * 1024)).catch(
      (error: NodeJS.ErrnoException) => {
        if (error.code !== 'ENOSPC') throw error;
      },
    );
    const result = await run(process.execPath, [CLI, ...serveArgs(data)], { timeoutMs: 30_000 });
    assert.equal(result.code, 1, result.stderr);
    assert.match(
      result.stderr,
      /^Error: Cannot (open|lock) the data folder in ".*": its disk is full \(\w+\)\n$/,
    );
    const left = await readdir(data);
    assert.ok(!left.some((name) => name.startsWith('airlock.lock')), `no lock file: ${left.join(' ')}`);
    assert.ok(
      !left.some((name) => name.startsWith('airlock.db')),
      `no half-made database: ${left.join(' ')}`,
    );
    // Once there is room again the folder opens.
    await rm(join(disk, 'filler'));
    const server = await startAirlockProcess({ dataDir: data });
    await server.stop();
  });

  it('serve on a read-only disk names it, for the folder and for a folder to be created in it', async (t) => {
    const disk = await smallDisk(t, '1m', ',ro');
    if (!disk) return;
    for (const data of [disk, join(disk, 'sub', 'data')]) {
      const result = await run(process.execPath, [CLI, ...serveArgs(data)], { timeoutMs: 30_000 });
      assert.equal(result.code, 1, result.stderr);
      assert.match(
        result.stderr,
        /^Error: Cannot (lock|create) the data folder in ".*": it is on a read-only file system \(EROFS(, at [^)]+)?\)\n$/,
      );
    }
    assert.deepEqual(await readdir(disk), []);
  });

  it('a chunk that does not fit on a full disk is refused with 507 and taken back; the upload resumes once there is room', async (t) => {
    const disk = await smallDisk(t, '8m');
    if (!disk) return;
    const server = await startAirlockProcess({ dataDir: join(disk, 'data') });
    const client = new TestClient(server.url);
    try {
      const start = await client.request('POST', '/v2/full/app/blobs/uploads/');
      assert.equal(start.status, 202);
      const location = start.headers.get('location') ?? '';
      const patch = (bytes: Buffer, from: number): Promise<Response> =>
        client.request('PATCH', location, {
          body: bytes,
          headers: { 'content-range': `${from}-${from + bytes.length - 1}` },
        });
      const [first, second] = [randomBytes(MIB), randomBytes(100 * 1024)];
      assert.equal((await patch(first, 0)).status, 202);
      const filler = await fill(disk);
      // Smaller than a write buffer: all of it is received before its one write fails. A chunk is answered
      // only once it is in the file, so this one is refused, not answered and lost.
      const refused = await patch(second, first.length);
      assert.equal(refused.status, 507);
      assert.match(await refused.text(), /its disk is full \(ENOSPC\)/);
      const status = await client.request('GET', location);
      assert.equal(status.status, 204);
      assert.equal(status.headers.get('range'), `0-${first.length - 1}`);
      assert.equal((await stat(join(disk, 'data', 'uploads', uploadId(location)))).size, first.length);
      // With room again, the client resumes from where the upload stands.
      await filler.free();
      const whole = Buffer.concat([first, second]);
      const digest = digestOf(whole);
      const put = await client.request(
        'PUT',
        `${location}${location.includes('?') ? '&' : '?'}digest=${digest}`,
        {
          body: second,
          headers: { 'content-range': `${first.length}-${whole.length - 1}` },
        },
      );
      assert.equal(put.status, 201, await put.text());
      const blob = await client.request('GET', `/v2/full/app/blobs/${digest}`);
      assert.deepEqual(Buffer.from(await blob.arrayBuffer()), whole);
    } finally {
      await server.stop();
    }
  });

  it('gc --data on a full disk fails in one line and leaves the stored image as it was', async (t) => {
    const disk = await smallDisk(t, '8m');
    if (!disk) return;
    const data = join(disk, 'data');
    const server = await startAirlockProcess({ dataDir: data });
    const img = image();
    try {
      await new TestClient(server.url).pushImage('kept/app', img, 'v1');
    } finally {
      await server.stop();
    }
    const before = (await readdir(data)).sort();
    const filler = await fill(disk);
    const result = await run(process.execPath, [CLI, 'gc', '--data', data], { timeoutMs: 30_000 });
    assert.equal(result.code, 1, result.stderr);
    assert.match(
      result.stderr,
      /^Error: Cannot (lock|open) the data folder in ".*": its disk is full \(\w+\)\n$/,
    );
    assert.deepEqual((await readdir(data)).sort(), before, 'no lock or temp file left');
    await filler.free();
    const again = await startAirlockProcess({ dataDir: data });
    try {
      const res = await new TestClient(again.url).request('GET', '/v2/kept/app/manifests/v1');
      assert.deepEqual(Buffer.from(await res.arrayBuffer()), img.manifest);
    } finally {
      await again.stop();
    }
  });
});
