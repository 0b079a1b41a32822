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
