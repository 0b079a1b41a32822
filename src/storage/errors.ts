import { statfs } from 'node:fs/promises';

/** Closed set of storage failure codes; the registry maps each to a spec error. */
export type StorageErrorCode =
  | 'BLOB_NOT_FOUND'
  | 'DIGEST_MISMATCH'
  | 'UPLOAD_NOT_FOUND'
  | 'UPLOAD_OFFSET_MISMATCH'
  | 'RANGE_NOT_SATISFIABLE'
  | 'TOO_LARGE'
  | 'LOCKED';

/** The one error type storage implementations throw for expected failures. */
export class StorageError extends Error {
  override readonly name = 'StorageError';
  readonly code: StorageErrorCode;

  constructor(code: StorageErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
  }
}

/** Error codes that mean storage is full (files: ENOSPC, EDQUOT; SQLite: SQLITE_FULL), and what to say. */
export const STORAGE_FULL: ReadonlyMap<unknown, string> = new Map([
  ['ENOSPC', 'its disk is full'],
  ['EDQUOT', 'its disk quota is used up'],
  ['SQLITE_FULL', 'its disk is full'],
]);

/** What a file-system error code means for the folder it happened in, in words. */
const FS_REASONS: ReadonlyMap<unknown, string> = new Map([
  ...STORAGE_FULL,
  ['EROFS', 'it is on a read-only file system'],
  ['SQLITE_READONLY', 'its database cannot be written (a read-only file or file system)'],
  ['EACCES', 'permission denied'],
  ['EPERM', 'permission denied'],
  ['ENOTDIR', 'a part of its path is a file, not a folder'],
]);

/** Below this many free bytes a failed write is put down to a full disk. */
const NEARLY_FULL_BYTES = 1 << 20;

/**
 * An error that says in one line why `action` failed in `dir` (a full disk, a read-only file system,
 * no permission), keeping the original code and cause, and naming the file that failed unless
 * `showPath` is false; any other error is returned as it is. SQLite
 * reports a full disk as a bare I/O error at times (it cannot grow its shared-memory file), so for those
 * the folder's free space is looked at.
 */
export async function explainFsError(
  error: unknown,
  context: { readonly action: string; readonly dir: string; readonly showPath?: boolean },
): Promise<unknown> {
  const { action, dir } = context;
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code !== 'string') return error;
  let reason = FS_REASONS.get(code);
  if (!reason && code.startsWith('SQLITE_IOERR')) {
    const free = await statfs(dir).then(
      (info) => info.bavail * info.bsize,
      () => Number.POSITIVE_INFINITY,
    );
    reason = free < NEARLY_FULL_BYTES ? 'its disk is full' : 'a disk I/O error';
  }
  if (!reason) return error;
  // The file that failed, when it is not the folder itself (a blob a collection could not remove).
  const path = (error as { path?: unknown }).path;
  const where = context.showPath !== false && typeof path === 'string' && path !== dir ? `, at ${path}` : '';
  const explained = new Error(`Cannot ${action} in "${dir}": ${reason} (${code}${where})`, {
    cause: error,
  });
  return Object.assign(explained, { code });
}
