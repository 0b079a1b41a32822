export type {
  BlobStore,
  BlobInfo,
  ByteRange,
  ByteSink,
  BlobWriteOptions,
  StoredBlobInfo,
  UploadAppendOptions,
} from './blob-store.js';
export { FsBlobStore } from './blob-store-fs.js';
export type { FsBlobStoreOptions } from './blob-store-fs.js';
export type {
  BlobLinkRecord,
  BlobUsers,
  LinkRenewal,
  MetadataStore,
  ManifestRecord,
  TagRecord,
  UploadSession,
  Page,
} from './metadata-store.js';
export { SqlMetadataStore } from './metadata-store-sql.js';
export { openSqliteMetadataStore, openSqliteStores } from './sqlite.js';
export { openDataFolder, type DataFolderStores } from './data-folder.js';
export { SqlAuthStore } from './auth-store-sql.js';
export type {
  AuthStore,
  Role,
  UserRecord,
  RobotRecord,
  Binding,
  RepositorySettings,
  ClusterTrust,
  AuditEntry,
} from './auth-store.js';
export { explainFsError, STORAGE_FULL, StorageError } from './errors.js';
export type { StorageErrorCode } from './errors.js';
export { lockDataFolder, LOCK_FILE } from './folder-lock.js';
export type { FolderLock } from './folder-lock.js';
