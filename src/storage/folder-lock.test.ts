import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, readFile, readdir, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { StorageError } from './errors.js';
import { LOCK_FILE, lockDataFolder } from './folder-lock.js';

const dirs: string[] = [];
after(() => Promise.all(dirs.map((dir) => rm(dir, { recursive: true, force: true }))));

async function folder(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'airlock-lock-'));
  dirs.push(dir);
  return dir;
}

const locked = (pattern: RegExp) => (error: unknown) =>
  error instanceof StorageError && error.code === 'LOCKED' && pattern.test(error.message);

/** A node process that waits, and its pid; `stop()` ends it. */
function sleeper(): { pid: number; stop: () => Promise<void> } {
  const child = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)'], { stdio: 'ignore' });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return {
    pid: child.pid ?? 0,
    stop: async () => {
      child.kill('SIGKILL');
      await exited;
    },
  };
}

describe('data folder lock', () => {
  it('holds the folder until released, refusing a second open in the same process', async () => {
    const dir = await folder();
    const lock = await lockDataFolder(dir);
    assert.equal(await readFile(join(dir, LOCK_FILE), 'utf8'), `${process.pid}\n${hostname()}\n`);
    await assert.rejects(lockDataFolder(dir), locked(/already open in this process/));
    await lock.release();
    await lock.release(); // once only
    assert.deepEqual(await readdir(dir), [], 'the lock file (and no temp file) is gone');
    await (await lockDataFolder(dir)).release();
  });

  it('refuses a folder a live process holds, naming it', async () => {
    const dir = await folder();
    const other = sleeper();
    try {
      await writeFile(join(dir, LOCK_FILE), `${other.pid}\n${hostname()}\n`);
      await assert.rejects(lockDataFolder(dir), locked(new RegExp(`in use by process ${other.pid};`)));
      assert.equal(
        await readFile(join(dir, LOCK_FILE), 'utf8'),
        `${other.pid}\n${hostname()}\n`,
        'left as it was',
      );
    } finally {
      await other.stop();
    }
    // Once that process is gone (a crash, kill -9), its lock is taken over.
    const lock = await lockDataFolder(dir);
    assert.equal(await readFile(join(dir, LOCK_FILE), 'utf8'), `${process.pid}\n${hostname()}\n`);
    await lock.release();
  });

  it('refuses a lock another host keeps touching, and takes it over once it goes stale', async () => {
    const dir = await folder();
    const path = join(dir, LOCK_FILE);
    await writeFile(path, '4242\nsome-other-host\n');
    await assert.rejects(
      lockDataFolder(dir),
      locked(/process 4242 on some-other-host; stop it first \(or wait 45 s after it stopped\), or delete/),
    );
    // Untouched for longer than the stale time (a container restarted under another host name).
    const old = new Date(Date.now() - 60_000);
    await utimes(path, old, old);
    const lock = await lockDataFolder(dir);
    await lock.release();
  });

  it('keeps its lock file touched while it holds it', async () => {
    const dir = await folder();
    const path = join(dir, LOCK_FILE);
    const lock = await lockDataFolder(dir, { heartbeatMs: 20 });
    const old = new Date(Date.now() - 60_000);
    await utimes(path, old, old);
    await new Promise((resolve) => setTimeout(resolve, 100));
    assert.ok(Date.now() - (await stat(path)).mtimeMs < 5_000, 'touched again');
    await lock.release();
  });

  it('takes over a lock file that names no process (empty or garbage)', async () => {
    for (const content of ['', 'not a pid\n', '-3\nhost\n']) {
      const dir = await folder();
      await writeFile(join(dir, LOCK_FILE), content);
      await (await lockDataFolder(dir)).release();
    }
  });

  it('lets exactly one of two concurrent opens in one process have the folder', async () => {
    const dir = await folder();
    const results = await Promise.allSettled([lockDataFolder(dir), lockDataFolder(dir)]);
    assert.equal(results.filter((r) => r.status === 'fulfilled').length, 1);
    // The second is refused as soon as it starts, not after a race over the file: seen through the file
    // alone, the first open's lock names this process, which a later open could take for a stale lock.
    const refused = results.find((r) => r.status === 'rejected');
    assert.ok(refused && locked(/already open in this process/)(refused.reason));
    for (const r of results) if (r.status === 'fulfilled') await r.value.release();
    assert.deepEqual(await readdir(dir), [], 'no lock or temp file left');
  });

  it('frees its claim when an open fails, so a later open can succeed', async () => {
    const dir = await folder();
    await rm(dir, { recursive: true });
    await assert.rejects(lockDataFolder(dir), /ENOENT/); // no folder to write the lock into
    await mkdir(dir);
    await (await lockDataFolder(dir)).release();
  });
});
