import type { Readable } from 'node:stream';
import type { Digest, DirectSocket } from '../oci/index.js';

export interface BlobInfo {
  readonly digest: Digest;
  readonly size: number;
}

/** A stored blob as `listBlobs` finds it. */
export interface StoredBlobInfo extends BlobInfo {
  /** When its bytes were last published or confirmed present, in milliseconds since the epoch. */
  readonly modifiedAt: number;
}

/** Inclusive byte range, as in HTTP `Range: bytes=start-end`. */
export interface ByteRange {
  readonly start: number;
  readonly end: number;
}

export interface BlobWriteOptions {
  /** Aborts the write; the partial data is discarded. Default: none. */
  readonly signal?: AbortSignal;
  /** Largest number of bytes accepted; more fails with TOO_LARGE. Default: unlimited. */
  readonly maxBytes?: number;
}

export interface UploadAppendOptions extends BlobWriteOptions {
  /** Where the caller believes the upload ends; a different actual size fails with UPLOAD_OFFSET_MISMATCH. */
  readonly offset?: number;
}

/** Where `writeTo` sends bytes: a writable stream, or anything with the same write and 'close'. */
export interface ByteSink {
  write(chunk: Uint8Array, callback: (error?: Error | null) => void): boolean;
  once(event: 'close', listener: () => void): unknown;
  off(event: 'close', listener: () => void): unknown;
  /** Optional: hands over a plain TCP socket for bytes sent with sendfile(2) (see oci's `FileSink`). */
  directSocket?(): Promise<DirectSocket | undefined>;
}

/**
 * Content-addressed blob bytes. A blob is visible only after its bytes were verified against its
 * digest and made durable; an upload is a staging area that becomes a blob on `commitUpload`.
 */
export interface BlobStore {
  /** Size of a stored blob, or undefined when it is not stored. */
  stat(digest: Digest): Promise<BlobInfo | undefined>;
  /** Streams a blob or a byte range of it; throws BLOB_NOT_FOUND or RANGE_NOT_SATISFIABLE. */
  read(digest: Digest, range?: ByteRange): Promise<Readable>;
  /**
   * Writes a blob (or a range of it) to `destination`, honouring back-pressure, and resolves when the
   * last byte was handed over. Throws BLOB_NOT_FOUND or RANGE_NOT_SATISFIABLE before writing anything.
   */
  writeTo(digest: Digest, destination: ByteSink, range?: ByteRange): Promise<void>;
  /** Reads a small blob whole (manifests, configs); throws TOO_LARGE past `maxBytes`. */
  readBytes(digest: Digest, maxBytes: number): Promise<Buffer>;
  /** Stores a stream whose digest must be `expected`; throws DIGEST_MISMATCH and keeps nothing otherwise. */
  put(
    source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
    expected: Digest,
    options?: BlobWriteOptions,
  ): Promise<BlobInfo>;
  /** Stores bytes already in memory, verifying them against `expected`. */
  putBytes(bytes: Uint8Array, expected: Digest): Promise<BlobInfo>;
  /** Removes a blob's bytes; true when it existed. */
  delete(digest: Digest): Promise<boolean>;
  /** Every stored blob (for garbage collection); files that are not blobs are left out. */
  listBlobs(): Promise<StoredBlobInfo[]>;

  /** Starts an empty resumable upload. */
  createUpload(id: string): Promise<void>;
  /** Appends a stream to an upload and returns the new size. */
  appendUpload(
    id: string,
    source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
    options?: UploadAppendOptions,
  ): Promise<number>;
  /**
   * Bytes of the chunks appended whole so far, never of one still being written or one that failed;
   * undefined when the upload does not exist.
   */
  uploadSize(id: string): Promise<number | undefined>;
  /** Verifies the upload against `expected` and turns it into a blob; on mismatch the upload is discarded. */
  commitUpload(id: string, expected: Digest): Promise<BlobInfo>;
  /**
   * Waits until the work of every chunk already answered is done (a store may answer an append before it
   * has hashed the last bytes) and no upload operation is under way; called before the process stops.
   * False when it gave up waiting: work was still under way.
   */
  flush(): Promise<boolean>;
  /** Discards an upload; true when it existed. */
  cancelUpload(id: string): Promise<boolean>;
  /** Total bytes of stored blobs. */
  usage(): Promise<number>;
  /** Ids of uploads present in the store (to reconcile with session records after a crash). */
  listUploads(): Promise<string[]>;
}
