import type { KubeObject, ResourceInfo } from '../kube/index.js';
import type { SyncErrorEntry } from './errors.js';

/** Go durations (RootSync's `period`) are parsed by oci/'s parser, shared with the CLI. */
export { parseDuration } from '../oci/index.js';

export const GROUP = 'configsync.gke.io';
export const API_VERSION = `${GROUP}/v1beta1`;
export const SYSTEM_NAMESPACE = 'config-management-system';
export const DEFAULT_ROOT_SYNC = 'root-sync';
export const DEFAULT_REPO_SYNC = 'repo-sync';

export const ROOT_SYNC: ResourceInfo = {
  group: GROUP,
  version: 'v1beta1',
  kind: 'RootSync',
  plural: 'rootsyncs',
  namespaced: true,
};
export const REPO_SYNC: ResourceInfo = {
  group: GROUP,
  version: 'v1beta1',
  kind: 'RepoSync',
  plural: 'reposyncs',
  namespaced: true,
};
export const RESOURCE_GROUP: ResourceInfo = {
  group: 'kpt.dev',
  version: 'v1alpha1',
  kind: 'ResourceGroup',
  plural: 'resourcegroups',
  namespaced: true,
};

export const CRD: ResourceInfo = {
  group: 'apiextensions.k8s.io',
  version: 'v1',
  kind: 'CustomResourceDefinition',
  plural: 'customresourcedefinitions',
  namespaced: false,
};
export const SECRET: ResourceInfo = {
  group: '',
  version: 'v1',
  kind: 'Secret',
  plural: 'secrets',
  namespaced: true,
};

/** Annotations and labels Config Sync stamps on what it manages; Airlock writes the same ones. */
export const ANNOTATIONS = {
  imageToSync: 'configsync.gke.io/image-to-sync',
  manager: 'configsync.gke.io/manager',
  managed: 'configmanagement.gke.io/managed',
  resourceId: 'configsync.gke.io/resource-id',
  owningInventory: 'config.k8s.io/owning-inventory',
  sourceHash: 'configmanagement.gke.io/token',
  sourcePath: 'configmanagement.gke.io/source-path',
  deletion: 'client.lifecycle.config.k8s.io/deletion',
  /** On a RootSync/RepoSync: "Foreground" deletes its managed objects when it is deleted. */
  deletionPropagation: 'configsync.gke.io/deletion-propagation-policy',
} as const;

/** Finalizer that holds a RootSync/RepoSync with Foreground deletion propagation until its objects are gone. */
export const RECONCILER_FINALIZER = 'configsync.gke.io/reconciler';
export const MANAGED_BY_LABEL = 'app.kubernetes.io/managed-by';
export const MANAGED_BY_VALUE = 'configmanagement.gke.io';
export const DECLARED_VERSION_LABEL = 'configsync.gke.io/declared-version';

export type SyncKind = 'RootSync' | 'RepoSync';

export interface OciSpec {
  image?: string;
  dir?: string;
  /** A Go duration ("15s", "1m30s"). Default 15s. */
  period?: string;
  auth?: 'none' | 'k8sserviceaccount' | 'gcpserviceaccount' | 'gcenode';
  gcpServiceAccountEmail?: string;
  caCertSecretRef?: { name?: string };
  /** Airlock extension: a kubernetes.io/dockerconfigjson Secret with registry credentials. */
  secretRef?: { name?: string };
  /** Airlock extension: skip TLS verification of the registry. */
  insecure?: boolean;
  /** Airlock extension: the platform of an index to sync ("linux/amd64"). */
  platform?: string;
  /** Airlock extension: cosign public keys the image must be signed with. */
  verify?: { secretRef?: { name?: string }; ignoreReference?: boolean };
}

export interface SyncCondition {
  type: 'Reconciling' | 'Stalled' | 'Syncing';
  status: 'True' | 'False' | 'Unknown';
  reason?: string;
  message?: string;
  commit?: string;
  lastUpdateTime?: string;
  lastTransitionTime?: string;
  errorSummary?: ErrorSummary;
}

export interface ErrorSummary {
  totalCount: number;
  truncated: boolean;
  errorCountAfterTruncation: number;
}

export interface StageStatus {
  ociStatus?: { image: string; dir: string };
  commit?: string;
  lastUpdate?: string;
  message?: string;
  errors?: SyncErrorEntry[];
  errorSummary?: ErrorSummary;
}

export interface SyncStatus {
  observedGeneration?: number;
  reconciler?: string;
  lastSyncedCommit?: string;
  source?: StageStatus;
  rendering?: StageStatus;
  sync?: StageStatus;
  conditions?: SyncCondition[];
}

/** A RootSync or RepoSync as read from the API server. */
export interface SyncObject extends KubeObject {
  kind: SyncKind;
  spec?: {
    sourceType?: string;
    sourceFormat?: string;
    oci?: OciSpec;
    [key: string]: unknown;
  };
  status?: SyncStatus;
}

/** The reconciler's name, as Config Sync names it (also its field manager and service account). */
export function reconcilerName(kind: SyncKind, where: { namespace: string; name: string }): string {
  if (kind === 'RootSync')
    return where.name === DEFAULT_ROOT_SYNC ? 'root-reconciler' : `root-reconciler-${where.name}`;
  return where.name === DEFAULT_REPO_SYNC
    ? `ns-reconciler-${where.namespace}`
    : `ns-reconciler-${where.namespace}-${where.name}-${where.name.length}`;
}

/** The value of configsync.gke.io/manager for objects a sync manages (":root_NAME" or "NS_NAME"). */
export function managerValue(kind: SyncKind, where: { namespace: string; name: string }): string {
  return kind === 'RootSync' ? `:root_${where.name}` : `${where.namespace}_${where.name}`;
}

/** The inventory id in config.k8s.io/owning-inventory ("NAMESPACE_NAME"). */
export function inventoryId(where: { namespace: string; name: string }): string {
  return `${where.namespace}_${where.name}`;
}

/** A sync's key for logs and maps: "RootSync config-management-system/root-sync". */
export function syncKey(kind: SyncKind, where: { namespace: string; name: string }): string {
  return `${kind} ${where.namespace}/${where.name}`;
}

/** Identity of one managed object. */
export interface ObjectId {
  readonly group: string;
  readonly kind: string;
  /** "" for cluster-scoped objects. */
  readonly namespace: string;
  readonly name: string;
}

/** configsync.gke.io/resource-id: GROUP_KIND_NAME or GROUP_KIND_NAMESPACE_NAME, kind in lower case. */
export function resourceId(id: ObjectId): string {
  const kind = id.kind.toLowerCase();
  return id.namespace ? `${id.group}_${kind}_${id.namespace}_${id.name}` : `${id.group}_${kind}_${id.name}`;
}

/** "kind.group/ns/name" for maps; stable and unique. */
export function objectKey(id: ObjectId): string {
  return `${id.kind}.${id.group}/${id.namespace}/${id.name}`;
}

/** "namespace/test" or "configmap/app" (nomos status' NAME column; group added when not core). */
export function displayName(id: ObjectId): string {
  const kind = id.kind.toLowerCase();
  return `${id.group ? `${kind}.${id.group}` : kind}/${id.name}`;
}
