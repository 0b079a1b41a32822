import { rmdirSync, rmSync } from 'node:fs';
import { mkdir, mkdtemp, rename, rm, rmdir } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';

/**
 * Temp files and folders being written right now (staging folders, `.partial` files, blobs not yet
 * verified, a layout a copy created), so that a CLI stopped by a signal can remove them before it exits:
 * the normal clean-up runs in `finally` blocks, which a signal never reaches.
 */
const pending = new Set<string>();

/** Notes `path` as temporary until it is removed (removeTempPath) or becomes the result (releaseTempPath). */
export function trackTempPath(path: string): void {
  pending.add(path);
}

/** `path` was renamed into place or is the command's result now: a signal must leave it alone. */
export function releaseTempPath(path: string): void {
  pending.delete(path);
}

/** Removes a temp path (recursively, if it is there at all) and forgets it. */
export async function removeTempPath(path: string): Promise<void> {
  await rm(path, { recursive: true, force: true });
  pending.delete(path);
}

/**
 * Folders a command created for its result, innermost first: removed only while empty, so that what
 * another process finished into them meanwhile stays.
 */
const createdFolders = new Set<readonly string[]>();

/**
 * Creates `dir` with its missing parents and notes the folders it created (innermost first, absolute), to
 * be removed if still empty when the command fails (removeEmptyFolders) or is stopped by a signal.
 */
export async function createFolders(dir: string): Promise<readonly string[]> {
  const absolute = resolve(dir);
  const topmost = await mkdir(absolute, { recursive: true });
  const created: string[] = [];
  if (topmost !== undefined) {
    for (let folder = absolute; ; folder = dirname(folder)) {
      created.push(folder);
      if (folder === topmost || dirname(folder) === folder) break;
    }
  }
  createdFolders.add(created);
  return created;
}

/** Removes the noted folders that are empty (innermost first) and forgets them; keeps the rest. */
export async function removeEmptyFolders(folders: readonly string[]): Promise<void> {
  createdFolders.delete(folders);
  for (const folder of folders) {
    try {
      await rmdir(folder);
    } catch {
      return; // not empty (or gone): it and its parents stay
    }
  }
}

/** The noted folders are the command's result now: a signal must leave them alone. */
export function releaseCreatedFolders(folders: readonly string[]): void {
  createdFolders.delete(folders);
}

/** Removes every temp path still noted, synchronously: for a signal handler that exits next. */
export function removeTempPathsSync(): void {
  for (const path of pending) {
    try {
      rmSync(path, { recursive: true, force: true });
    } catch {
      // On the way out: what cannot be removed now stays, as it would after a crash.
    }
  }
  pending.clear();
  for (const folders of createdFolders) {
    for (const folder of folders) {
      try {
        rmdirSync(folder);
      } catch {
        break;
      }
    }
  }
  createdFolders.clear();
}

/** `mkdtemp`, noted as temporary: remove it with removeTempPath. */
export async function makeTempDir(prefix: string): Promise<string> {
  const dir = await mkdtemp(prefix);
  trackTempPath(dir);
  return dir;
}

/**
 * Writes `final` through `temp` (a file or folder beside it): `write` fills `temp`, which is then renamed
 * onto `final`. On any failure, or a signal meanwhile, `temp` is removed and `final` is left as it was.
 */
export async function writeThroughTemp(
  temp: string,
  final: string,
  write: (temp: string) => Promise<void>,
): Promise<void> {
  trackTempPath(temp);
  try {
    await write(temp);
    await rename(temp, final);
    releaseTempPath(temp);
  } catch (error) {
    await removeTempPath(temp);
    throw error;
  }
}

/** Whether a process with this pid runs on this machine (one of another user's counts). */
export function processRuns(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}
