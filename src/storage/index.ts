export type { BlobStore, BlobInfo, ByteRange, BlobWriteOptions, UploadAppendOptions } from './blob-store.js';
export { FsBlobStore } from './blob-store-fs.js';
export type { FsBlobStoreOptions } from './blob-store-fs.js';
export type { MetadataStore, ManifestRecord, TagRecord, UploadSession, Page } from './metadata-store.js';
export { SqlMetadataStore } from './metadata-store-sql.js';
export { openSqliteMetadataStore } from './sqlite.js';
export { StorageError } from './errors.js';
export type { StorageErrorCode } from './errors.js';
