export { RegistryClient, isLocalHost, pullScope, pushScope, verifyingStream } from './registry-client.js';
export type {
  RegistryClientOptions,
  ManifestResult,
  ManifestHead,
  BlobSource,
  BlobPushResult,
  RegistryPushEvent,
} from './registry-client.js';
export { HttpTransport } from './transport.js';
export { rawGet } from './raw-get.js';
export type { RawResponse } from './raw-get.js';
export type { TransportOptions, HttpRequest, HttpResponse, RequestBody } from './transport.js';
export { Authenticator, parseChallenge } from './auth.js';
export type { Challenge } from './auth.js';
export {
  lookupCredentials,
  storeCredentials,
  eraseCredentials,
  readDockerConfig,
  writeDockerConfig,
  dockerConfigPath,
  runCredentialHelper,
  toHelperCredential,
} from './credentials.js';
export type { Credentials, DockerConfig } from './credentials.js';
export { CredentialStore, credentialStorePath, serverHost } from './credential-store.js';
export type { StoredCredential } from './credential-store.js';
export { ClientError } from './errors.js';
export type { ClientErrorCode } from './errors.js';
export { withRetry, isRetryableStatus, parseRetryAfter } from './retry.js';
export type { RetryPolicy, Attempt } from './retry.js';
export { copyImage } from './copy.js';
export type { CopyOptions, CopyProgress, CopyResult } from './copy.js';
export type { ImageSource, ImageTarget, PutBlobResult } from './image-store.js';
export { parseImageLocation, openSource, openTarget } from './image-ref.js';
export type {
  ImageLocation,
  ClientFactory,
  OpenSourceOptions,
  ParseImageLocationOptions,
} from './image-ref.js';
export { getS3Object, loadS3Config, parseS3Url, signV4 } from './s3.js';
export type { S3Config, S3Location } from './s3.js';
export { RegistryStore } from './stores/registry-store.js';
export { LayoutStore } from './stores/layout-store.js';
export { packFolder } from './stores/archive-store.js';
export { appendLayer } from './append.js';
export type { AppendOptions } from './append.js';
export { pushArtifact, pullArtifact, titleFor, isMediaType, DEFAULT_ARTIFACT_TYPE } from './artifact.js';
export type { PushFile, PushArtifactOptions, PulledFile } from './artifact.js';
export { flattenImage, resolvePlatform } from './flatten.js';
export type { FlattenOptions, FlattenResult } from './flatten.js';
export { choosePlatform, formatPlatform, platformMatches } from './platforms.js';
export type { ChoosePlatformOptions } from './platforms.js';
export { cosignTags, describeTree, nestCosignTags, renderTree } from './tree.js';
export type { TreeNode } from './tree.js';
