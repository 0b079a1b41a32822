export {
  API_VERSION,
  ANNOTATIONS,
  GROUP,
  REPO_SYNC,
  RESOURCE_GROUP,
  ROOT_SYNC,
  SYSTEM_NAMESPACE,
  managerValue,
  parseDuration,
  reconcilerName,
  resourceId,
} from './api.js';
export type { ObjectId, OciSpec, SyncKind, SyncObject, SyncStatus } from './api.js';
export { Applier, stamp, waitEstablished } from './applier.js';
export type { ApplyIdentity, ApplyRunOptions, ApplyRunResult, AppliedObject } from './applier.js';
export { declareObjects } from './declared.js';
export type { DeclaredObject, DeclareOptions, Scope, ScopeLookup, SourceFormat } from './declared.js';
export { KNV, SyncError, SyncErrors, toSyncErrors } from './errors.js';
export type { KnvCode, SyncErrorEntry } from './errors.js';
export { fetchSource, resolveSourceDigest } from './fetch.js';
export type { SourceLimits } from './fetch.js';
export { computeStatus } from './kstatus.js';
export type { ObjectStatus } from './kstatus.js';
export { installManifests, syncApiObjects } from './manifests.js';
export type { InstallManifestOptions } from './manifests.js';
export { Reconciler } from './reconciler.js';
export type { ReconcilerOptions, SignatureVerifier } from './reconciler.js';
export { SyncController } from './controller.js';
export type { ControllerOptions } from './controller.js';
export { readSource, parseManifestText } from './source.js';
export type { SourceObject } from './source.js';
export { collectStatus, renderStatus, syncState } from './status-report.js';
export type { ClusterReport, SyncReport, SyncState } from './status-report.js';
export { vetFolder, builtInScope } from './vet.js';
export type { VetOptions } from './vet.js';
