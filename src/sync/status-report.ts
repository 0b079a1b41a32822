import type { KubeClient } from '../kube/index.js';
import {
  REPO_SYNC,
  RESOURCE_GROUP,
  ROOT_SYNC,
  SYSTEM_NAMESPACE,
  displayName,
  type SyncKind,
  type SyncObject,
} from './api.js';

export type SyncState = 'SYNCED' | 'PENDING' | 'ERROR' | 'STALLED' | 'RECONCILING' | 'NOT CONFIGURED';

export interface ResourceReport {
  readonly namespace: string;
  /** "namespace/test", "configmap/app", "deployment.apps/web". */
  readonly name: string;
  readonly status: string;
  readonly sourceHash: string;
}

/** One RootSync or RepoSync as `airlock status` shows it. */
export interface SyncReport {
  readonly kind: SyncKind;
  readonly namespace: string;
  readonly name: string;
  /** IMAGE, or IMAGE/dir when dir is not ".". */
  readonly source: string;
  readonly state: SyncState;
  /** The source commit (image digest hex), or "" before the first fetch. */
  readonly commit: string;
  readonly lastSyncedCommit: string;
  readonly errors: readonly string[];
  readonly resources: readonly ResourceReport[];
}

/** The state nomos status shows for a sync object. */
export function syncState(sync: SyncObject): { state: SyncState; errors: string[] } {
  const status = sync.status ?? {};
  const errors = [status.source, status.rendering, status.sync].flatMap((s) =>
    (s?.errors ?? []).map((e) => e.errorMessage),
  );
  const condition = (type: string): string | undefined =>
    status.conditions?.find((c) => c.type === type)?.status;
  if (condition('Stalled') === 'True') return { state: 'STALLED', errors };
  if (errors.length > 0) return { state: 'ERROR', errors };
  if (condition('Reconciling') === 'True') return { state: 'RECONCILING', errors };
  if (condition('Syncing') === 'True') return { state: 'PENDING', errors };
  const commit = status.source?.commit;
  if (commit && status.lastSyncedCommit === commit && status.sync?.commit === commit)
    return { state: 'SYNCED', errors };
  return { state: 'PENDING', errors };
}

export interface CollectOptions {
  /** Only syncs of this namespace (RepoSyncs there; RootSyncs when it is config-management-system). */
  readonly namespace?: string | undefined;
  /** Only syncs with this name. */
  readonly name?: string | undefined;
}

/** Reads every RootSync and RepoSync (and their inventories) of a cluster. */
export async function collectStatus(kube: KubeClient, options: CollectOptions = {}): Promise<SyncReport[]> {
  const reports: SyncReport[] = [];
  const kinds: { kind: SyncKind; list: SyncObject[] }[] = [];
  for (const [kind, info] of [
    ['RootSync', ROOT_SYNC],
    ['RepoSync', REPO_SYNC],
  ] as const) {
    const namespace = kind === 'RootSync' ? SYSTEM_NAMESPACE : options.namespace;
    if (kind === 'RootSync' && options.namespace && options.namespace !== SYSTEM_NAMESPACE) continue;
    const list = await kube.list<SyncObject>(info, { namespace });
    kinds.push({ kind, list: list.items });
  }
  for (const { kind, list } of kinds) {
    for (const sync of list.sort((a, b) =>
      `${a.metadata.namespace}/${a.metadata.name}`.localeCompare(
        `${b.metadata.namespace}/${b.metadata.name}`,
      ),
    )) {
      if (options.name && sync.metadata.name !== options.name) continue;
      const namespace = sync.metadata.namespace ?? '';
      const oci = sync.spec?.oci ?? {};
      const dir = oci.dir ?? '.';
      const { state, errors } = syncState(sync);
      const group = await kube
        .get(RESOURCE_GROUP, { namespace, name: sync.metadata.name })
        .catch(() => undefined);
      const statuses =
        (
          group?.status as
            | {
                resourceStatuses?: {
                  group?: string;
                  kind: string;
                  namespace?: string;
                  name: string;
                  status?: string;
                  sourceHash?: string;
                }[];
              }
            | undefined
        )?.resourceStatuses ?? [];
      reports.push({
        kind,
        namespace,
        name: sync.metadata.name,
        source: `${oci.image ?? ''}${dir && dir !== '.' && dir !== '/' ? `/${dir.replace(/^\.?\//, '')}` : ''}`,
        state,
        commit: sync.status?.source?.commit ?? '',
        lastSyncedCommit: sync.status?.lastSyncedCommit ?? '',
        errors,
        resources: statuses.map((r) => ({
          namespace: r.namespace ?? '',
          name: displayName({
            group: r.group ?? '',
            kind: r.kind,
            namespace: r.namespace ?? '',
            name: r.name,
          }),
          status: r.status ?? 'Unknown',
          sourceHash: (r.sourceHash ?? '').slice(0, 7),
        })),
      });
    }
  }
  return reports;
}

/** One cluster's part of `airlock status`. */
export interface ClusterReport {
  readonly context: string;
  readonly current: boolean;
  readonly syncs?: readonly SyncReport[];
  /** Why the cluster could not be read. */
  readonly error?: string;
}

function table(rows: readonly (readonly string[])[], indent: string): string[] {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows.map((r) =>
    `${indent}${r.map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i]! + 3))).join('')}`.trimEnd(),
  );
}

/** The nomos status layout: a block per cluster, a block per sync, managed resources, errors. */
export function renderStatus(
  clusters: readonly ClusterReport[],
  options: { resources?: boolean } = {},
): string {
  const lines: string[] = ['Connecting to clusters...', ''];
  for (const cluster of clusters) {
    lines.push(`${cluster.current ? '*' : ''}${cluster.context}`);
    lines.push(`   ${'-'.repeat(20)}`);
    if (cluster.error) {
      lines.push(`   Error: ${cluster.error}`, '');
      continue;
    }
    if (!cluster.syncs || cluster.syncs.length === 0) {
      lines.push('   NOT CONFIGURED: no RootSync or RepoSync found', '');
      continue;
    }
    for (const sync of cluster.syncs) {
      const label = `${sync.kind === 'RootSync' ? '<root>' : sync.namespace}:${sync.name}`;
      const width = Math.max(label.length, sync.state.length) + 3;
      lines.push(`   ${label.padEnd(width)}${sync.source}`);
      lines.push(`   ${sync.state.padEnd(width)}${sync.commit}`.trimEnd());
      if (options.resources !== false && sync.resources.length > 0) {
        lines.push('   Managed resources:');
        lines.push(
          ...table(
            [
              ['NAMESPACE', 'NAME', 'STATUS', 'SOURCEHASH'],
              ...sync.resources.map((r) => [r.namespace, r.name, r.status, r.sourceHash]),
            ],
            '      ',
          ),
        );
      }
      for (const error of sync.errors) lines.push(`   Error:   ${error}`);
      lines.push('');
    }
  }
  return lines.join('\n');
}
