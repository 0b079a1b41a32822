import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { link, readFile, stat, unlink, utimes, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { processRuns } from '../oci/index.js';
import { explainFsError, StorageError } from './errors.js';

/** The file in a data folder that says which process serves it. */
export const LOCK_FILE = 'airlock.lock';

/** A held data-folder lock; `release()` removes the file if it is still this process's (once). */
export interface FolderLock {
  release(): Promise<void>;
}

/** Lock files this process holds or is taking (a second open of the same folder in one process is refused too). */
const heldHere = new Set<string>();

interface Holder {
  readonly pid: number;
  readonly host: string;
}

function parseHolder(text: string): Holder | undefined {
  const [pid, host] = text.split('\n');
  const n = Number(pid);
  return Number.isSafeInteger(n) && n > 0 && host ? { pid: n, host } : undefined;
}

/** Whether `pid` on this host is a running Airlock (node) process other than this one. */
function aliveElsewhere(pid: number): boolean {
  if (pid === process.pid || !processRuns(pid)) return false;
  try {
    // A process that reused the number is not the holder: the holder ran node (airlock serve).
    const command = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    return /node|airlock/.test(command);
  } catch {
    return true; // no /proc to look at: assume the worst
  }
}

export interface LockOptions {
  /** How often the holder touches the lock file. Default: 10 s. */
  readonly heartbeatMs?: number;
  /** A lock from another host untouched for this long is taken over. Default: 45 s. */
  readonly staleMs?: number;
}

/**
 * Takes the data folder for this process: blobs, uploads and SQLite may be shared by several processes,
 * but the guards that keep uploads, commits and garbage collection apart live in one process's memory.
 * The lock is a file holding the pid and host, created exclusively, and touched every `heartbeatMs`
 * while held. A file left by a process that is gone (a crash, kill -9) is taken over: on this host when
 * its pid no longer runs node, from another host (a container restarted under a new host name) once it
 * has not been touched for `staleMs`. Otherwise it is refused with LOCKED, naming the holder.
 */
export async function lockDataFolder(dir: string, options: LockOptions = {}): Promise<FolderLock> {
  const heartbeatMs = options.heartbeatMs ?? 10_000;
  const staleMs = options.staleMs ?? 45_000;
  const path = join(dir, LOCK_FILE);
  if (heldHere.has(path))
    throw new StorageError('LOCKED', `Data folder "${dir}" is already open in this process`);
  // Claimed before the first await: a second open in this process that starts while this one is still
  // linking is refused here. Checked only after reading the file, it could see this process's own pid in
  // a lock whose link had not yet been reported back, take it for a stale file and take it over.
  heldHere.add(path);
  try {
    return await takeLockFile(dir, path, { heartbeatMs, staleMs });
  } catch (error) {
    heldHere.delete(path);
    throw error;
  }
}

/** Creates the lock file, taking over one left by a process that is gone; see lockDataFolder. */
async function takeLockFile(dir: string, path: string, timing: Required<LockOptions>): Promise<FolderLock> {
  const { heartbeatMs, staleMs } = timing;
  const mine = `${process.pid}\n${hostname()}\n`;
  for (let attempt = 0; ; attempt++) {
    // Written whole under a name of its own, then linked into place: a link fails when the lock exists,
    // and the lock file is never seen half written.
    const temp = `${path}.${process.pid}.${randomBytes(4).toString('hex')}`;
    try {
      // Inside the try: a write that fails (a full disk) may still have created the file.
      await writeFile(temp, mine, { mode: 0o644, flush: true });
      await link(temp, path);
      let held = true;
      const heartbeat = setInterval(() => {
        const now = new Date();
        utimes(path, now, now).catch(() => undefined);
      }, heartbeatMs);
      heartbeat.unref();
      return {
        release: async () => {
          if (!held) return;
          held = false;
          clearInterval(heartbeat);
          heldHere.delete(path);
          const now = await readFile(path, 'utf8').catch(() => '');
          if (now === mine) await unlink(path).catch(() => undefined);
        },
      };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST' || attempt >= 2)
        // The temp file it names is removed below: not worth naming.
        throw await explainFsError(error, { action: 'lock the data folder', dir, showPath: false });
    } finally {
      await unlink(temp).catch(() => undefined);
    }
    const text = await readFile(path, 'utf8').catch(() => '');
    const holder = parseHolder(text);
    const touched = await stat(path).then(
      (info) => info.mtimeMs,
      () => 0,
    );
    const live = holder
      ? holder.host === hostname()
        ? aliveElsewhere(holder.pid)
        : Date.now() - touched < staleMs
      : false;
    if (holder && live) {
      const where =
        holder.host === hostname() ? `process ${holder.pid}` : `process ${holder.pid} on ${holder.host}`;
      throw new StorageError(
        'LOCKED',
        `Data folder "${dir}" is in use by ${where}; stop it first${holder.host === hostname() ? '' : ` (or wait ${Math.ceil(staleMs / 1000)} s after it stopped)`}, or delete ${path} if it is not running`,
      );
    }
    // Left by a process that is gone (or unreadable): take it over.
    await unlink(path).catch(() => undefined);
  }
}
