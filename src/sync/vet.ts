import { splitApiVersion } from '../kube/index.js';
import {
  declareObjects,
  type DeclaredObject,
  type Scope,
  type ScopeLookup,
  type SourceFormat,
} from './declared.js';
import { readSource } from './source.js';

const CLUSTER = 'Cluster';
const NS = 'Namespaced';

/** Scopes of the kinds every Kubernetes API server serves (by group; versions do not matter here). */
const BUILT_IN: Record<string, Record<string, Scope>> = {
  '': {
    Namespace: CLUSTER,
    Node: CLUSTER,
    PersistentVolume: CLUSTER,
    ConfigMap: NS,
    Secret: NS,
    Service: NS,
    ServiceAccount: NS,
    Pod: NS,
    PodTemplate: NS,
    PersistentVolumeClaim: NS,
    Endpoints: NS,
    LimitRange: NS,
    ResourceQuota: NS,
    Event: NS,
    ReplicationController: NS,
  },
  apps: { Deployment: NS, StatefulSet: NS, DaemonSet: NS, ReplicaSet: NS, ControllerRevision: NS },
  batch: { Job: NS, CronJob: NS },
  autoscaling: { HorizontalPodAutoscaler: NS },
  policy: { PodDisruptionBudget: NS },
  'rbac.authorization.k8s.io': {
    ClusterRole: CLUSTER,
    ClusterRoleBinding: CLUSTER,
    Role: NS,
    RoleBinding: NS,
  },
  'networking.k8s.io': { NetworkPolicy: NS, Ingress: NS, IngressClass: CLUSTER },
  'discovery.k8s.io': { EndpointSlice: NS },
  'coordination.k8s.io': { Lease: NS },
  'storage.k8s.io': { StorageClass: CLUSTER, CSIDriver: CLUSTER, VolumeAttachment: CLUSTER },
  'scheduling.k8s.io': { PriorityClass: CLUSTER },
  'node.k8s.io': { RuntimeClass: CLUSTER },
  'certificates.k8s.io': { CertificateSigningRequest: CLUSTER },
  'apiextensions.k8s.io': { CustomResourceDefinition: CLUSTER },
  'apiregistration.k8s.io': { APIService: CLUSTER },
  'admissionregistration.k8s.io': {
    ValidatingWebhookConfiguration: CLUSTER,
    MutatingWebhookConfiguration: CLUSTER,
    ValidatingAdmissionPolicy: CLUSTER,
    ValidatingAdmissionPolicyBinding: CLUSTER,
  },
  'configsync.gke.io': { RootSync: NS, RepoSync: NS },
  'kpt.dev': { ResourceGroup: NS },
};

/** The scope of a built-in kind, without an API server. */
export const builtInScope: ScopeLookup = (apiVersion, kind) =>
  Promise.resolve(BUILT_IN[splitApiVersion(apiVersion).group]?.[kind]);

export interface VetOptions {
  readonly format?: SourceFormat;
  /** Vet as a RepoSync of this namespace would sync it. */
  readonly namespace?: string | undefined;
  /** Where kinds' scopes come from. Default: the built-in kinds plus CRDs in the folder. */
  readonly scopeOf?: ScopeLookup;
}

/**
 * Validates a folder of manifests offline the way the reconciler would before applying (`nomos vet`):
 * parse errors, names, unknown kinds, scopes, RepoSync confinement, duplicates. Throws SyncErrors.
 */
export async function vetFolder(dir: string, options: VetOptions = {}): Promise<DeclaredObject[]> {
  const objects = await readSource(dir);
  return declareObjects(objects, {
    format: options.format ?? 'unstructured',
    scopeOf: options.scopeOf ?? builtInScope,
    repoNamespace: options.namespace,
  });
}
