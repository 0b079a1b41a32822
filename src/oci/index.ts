export { parseDigest, isDigest, digestOf, digestTag, Digester, DigestError } from './digest.js';
export type { Digest, DigestAlgorithm, ParsedDigest } from './digest.js';
export {
  parseReference,
  formatReference,
  isValidRepositoryName,
  isValidTag,
  repositoryNameProblem,
  ReferenceError,
  DEFAULT_REGISTRY,
} from './reference.js';
export type { Reference } from './reference.js';
export {
  MediaType,
  Header,
  MANIFEST_MEDIA_TYPES,
  isManifestMediaType,
  isIndexMediaType,
  isForeignLayer,
} from './media-types.js';
export type { ManifestMediaType } from './media-types.js';
export { parseManifest, parsePlatform, ManifestError, MAX_MANIFEST_BYTES } from './manifest.js';
export type { Descriptor, ParsedManifest, Platform } from './manifest.js';
export { ArchiveError, detectCompression, decompressed } from './compression.js';
export type { Compression } from './compression.js';
export { extractLayers, safeEntryPath } from './extract.js';
export type { ExtractOptions, ExtractLimits, ExtractResult } from './extract.js';
export { OciLayout, REF_NAME } from './layout.js';
export { fileStream, fileSourceOf, sendFileTo } from './file-source.js';
export type { DirectSocket, FileSink } from './file-source.js';
export { kernelSendEnabled, kernelSends, SEND_WAYS, type SendWay } from './kernel-send.js';
export type { LayoutIndex } from './layout.js';
export { checkWriteSwitches, DirectReads, UnhashedWriteError, writeHashed } from './hashed-write.js';
export { hashThread, hashThreadAllowed } from './hash-thread.js';
export type { HashedWriteOptions, BorrowedChunkSource, DirectTarget } from './hashed-write.js';
export { parseDuration } from './duration.js';
export {
  makeTempDir,
  trackTempPath,
  releaseTempPath,
  removeTempPath,
  removeTempPathsSync,
  writeThroughTemp,
  createFolders,
  processRuns,
  removeEmptyFolders,
  releaseCreatedFolders,
} from './temp-paths.js';
