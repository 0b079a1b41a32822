import type { KubeObject } from '../kube/index.js';

/** Per-object status as kstatus (cli-utils) computes it and nomos status prints it. */
export type ObjectStatus = 'Current' | 'InProgress' | 'Failed' | 'Terminating' | 'NotFound' | 'Unknown';

interface Condition {
  type?: string;
  status?: string;
  reason?: string;
}

function conditions(object: KubeObject): Condition[] {
  const list = (object.status as { conditions?: unknown } | undefined)?.conditions;
  return Array.isArray(list) ? (list as Condition[]) : [];
}

function condition(object: KubeObject, type: string): Condition | undefined {
  return conditions(object).find((c) => c.type === type);
}

function num(value: unknown): number {
  return typeof value === 'number' ? value : 0;
}

/** Rules for the built-in kinds whose readiness is more than "exists". */
function kindStatus(object: KubeObject): ObjectStatus | undefined {
  const status = (object.status ?? {}) as Record<string, unknown>;
  const spec = (object.spec ?? {}) as Record<string, unknown>;
  switch (object.kind) {
    case 'Namespace':
      return status.phase === 'Terminating' ? 'Terminating' : 'Current';
    case 'CustomResourceDefinition':
      if (condition(object, 'NamesAccepted')?.status === 'False') return 'Failed';
      return condition(object, 'Established')?.status === 'True' ? 'Current' : 'InProgress';
    case 'Deployment':
    case 'StatefulSet':
    case 'ReplicaSet': {
      const want = spec.replicas === undefined ? 1 : num(spec.replicas);
      const ready = num(status.readyReplicas);
      const updated = object.kind === 'ReplicaSet' ? ready : num(status.updatedReplicas);
      if (
        object.kind === 'Deployment' &&
        condition(object, 'Progressing')?.reason === 'ProgressDeadlineExceeded'
      )
        return 'Failed';
      return ready >= want && updated >= want ? 'Current' : 'InProgress';
    }
    case 'DaemonSet': {
      const want = num(status.desiredNumberScheduled);
      return status.desiredNumberScheduled !== undefined && num(status.numberAvailable) >= want
        ? 'Current'
        : 'InProgress';
    }
    case 'Pod':
      if (status.phase === 'Failed') return 'Failed';
      if (status.phase === 'Succeeded') return 'Current';
      return condition(object, 'Ready')?.status === 'True' ? 'Current' : 'InProgress';
    case 'Job':
      if (condition(object, 'Failed')?.status === 'True') return 'Failed';
      return condition(object, 'Complete')?.status === 'True' ||
        num(status.active) + num(status.succeeded) > 0
        ? 'Current'
        : 'InProgress';
    case 'PersistentVolumeClaim':
      return status.phase === 'Bound' ? 'Current' : 'InProgress';
    case 'Service':
      if (spec.type !== 'LoadBalancer') return 'Current';
      return ((status.loadBalancer as { ingress?: unknown[] } | undefined)?.ingress?.length ?? 0) > 0
        ? 'Current'
        : 'InProgress';
    default:
      return undefined;
  }
}

/**
 * The status of a live object (undefined: it does not exist). Generic rules first (being deleted,
 * generation not yet observed, a Stalled or Ready=False condition), then kind-specific ones; anything
 * else that exists is Current.
 */
export function computeStatus(object: KubeObject | undefined): ObjectStatus {
  if (!object) return 'NotFound';
  if (object.metadata.deletionTimestamp) return 'Terminating';
  const status = (object.status ?? {}) as Record<string, unknown>;
  const generation = object.metadata.generation;
  if (typeof generation === 'number' && typeof status.observedGeneration === 'number')
    if (status.observedGeneration < generation) return 'InProgress';
  const specific = kindStatus(object);
  if (specific) return specific;
  if (condition(object, 'Stalled')?.status === 'True') return 'Failed';
  if (condition(object, 'Reconciling')?.status === 'True') return 'InProgress';
  const ready = condition(object, 'Ready');
  if (ready?.status === 'False') return 'InProgress';
  return 'Current';
}
