import type { KubeClient } from '../kube/index.js';
import {
  REPO_SYNC,
  RESOURCE_GROUP,
  ROOT_SYNC,
  type ErrorSummary,
  type ObjectId,
  type SyncCondition,
  type SyncKind,
  type SyncStatus,
} from './api.js';
import type { SyncError, SyncErrorEntry } from './errors.js';
import type { ObjectStatus } from './kstatus.js';

/** Status keeps at most this many errors per stage (Config Sync truncates too). */
const MAX_ERRORS = 20;

export function summarize(errors: readonly SyncError[]): {
  errors: SyncErrorEntry[] | null;
  errorSummary: ErrorSummary | null;
} {
  if (errors.length === 0) return { errors: null, errorSummary: null };
  const kept = errors.slice(0, MAX_ERRORS).map((e) => e.toEntry());
  return {
    errors: kept,
    errorSummary: {
      totalCount: errors.length,
      truncated: errors.length > MAX_ERRORS,
      errorCountAfterTruncation: kept.length,
    },
  };
}

/** A stage (source, rendering, sync) as a merge patch: absent parts are removed with null. */
export function stagePatch(
  stage: {
    image: string;
    dir: string;
    commit?: string | undefined;
    errors?: readonly SyncError[];
    message?: string;
  },
  now: Date,
): Record<string, unknown> {
  const { errors, errorSummary } = summarize(stage.errors ?? []);
  return {
    ociStatus: { image: stage.image, dir: stage.dir },
    commit: stage.commit ?? null,
    lastUpdate: now.toISOString(),
    errors,
    errorSummary,
    ...(stage.message === undefined ? {} : { message: stage.message }),
  };
}

/** Sets a condition in a list, keeping lastTransitionTime when the status did not change. */
export function setCondition(
  list: readonly SyncCondition[] | undefined,
  next: Omit<SyncCondition, 'lastUpdateTime' | 'lastTransitionTime'>,
  now: Date,
): SyncCondition[] {
  const previous = list?.find((c) => c.type === next.type);
  const time = now.toISOString();
  const updated: SyncCondition = {
    ...next,
    lastUpdateTime: time,
    lastTransitionTime:
      previous && previous.status === next.status ? (previous.lastTransitionTime ?? time) : time,
  };
  return [...(list ?? []).filter((c) => c.type !== next.type), updated].sort((a, b) =>
    a.type.localeCompare(b.type),
  );
}

/** Writes a status merge patch to a RootSync/RepoSync's status subresource. */
export async function patchSyncStatus(
  kube: KubeClient,
  sync: { kind: SyncKind; namespace: string; name: string },
  status: Partial<Record<keyof SyncStatus, unknown>>,
): Promise<void> {
  const info = sync.kind === 'RootSync' ? ROOT_SYNC : REPO_SYNC;
  await kube.mergePatch(
    info,
    { namespace: sync.namespace, name: sync.name, subresource: 'status' },
    { status },
  );
}

export interface InventoryEntry extends ObjectId {
  readonly status: ObjectStatus;
  readonly sourceHash: string;
}

/** The inventory's object list as kept in the ResourceGroup's spec. */
export async function readInventory(
  kube: KubeClient,
  where: { namespace: string; name: string },
): Promise<ObjectId[] | undefined> {
  const group = await kube.get(RESOURCE_GROUP, where);
  if (!group) return undefined;
  const resources = (group.spec as { resources?: ObjectId[] } | undefined)?.resources ?? [];
  return resources.map((r) => ({
    group: r.group ?? '',
    kind: r.kind,
    namespace: r.namespace ?? '',
    name: r.name,
  }));
}

/**
 * Writes the inventory: a kpt.dev/v1alpha1 ResourceGroup named like the sync, in its namespace, with the
 * managed objects in spec.resources and their status and source hash in status.resourceStatuses.
 */
export async function writeInventory(
  kube: KubeClient,
  where: { namespace: string; name: string; fieldManager: string; inventory: string },
  entries: readonly InventoryEntry[],
): Promise<void> {
  const sorted = [...entries].sort((a, b) =>
    `${a.group}/${a.kind}/${a.namespace}/${a.name}`.localeCompare(
      `${b.group}/${b.kind}/${b.namespace}/${b.name}`,
    ),
  );
  const applied = await kube.apply(
    {
      apiVersion: 'kpt.dev/v1alpha1',
      kind: 'ResourceGroup',
      metadata: {
        name: where.name,
        namespace: where.namespace,
        labels: { 'applyset.kubernetes.io/id': where.inventory.replace(/[^A-Za-z0-9._-]/g, '-') },
        annotations: { 'config.k8s.io/owning-inventory': where.inventory },
      },
      spec: {
        resources: sorted.map(({ group, kind, namespace, name }) => ({ group, kind, namespace, name })),
      },
    },
    { fieldManager: where.fieldManager },
  );
  await kube.mergePatch(
    RESOURCE_GROUP,
    { namespace: where.namespace, name: where.name, subresource: 'status' },
    {
      status: {
        observedGeneration: applied.metadata.generation ?? 0,
        resourceStatuses: sorted.map((e) => ({
          group: e.group,
          kind: e.kind,
          namespace: e.namespace,
          name: e.name,
          status: e.status,
          sourceHash: e.sourceHash.slice(0, 7),
          strategy: 'Apply',
          actuation: 'Succeeded',
          reconcile: e.status === 'Current' ? 'Succeeded' : 'Pending',
        })),
      },
    },
  );
}
