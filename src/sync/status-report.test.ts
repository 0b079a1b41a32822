import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { SyncCondition, SyncObject, SyncStatus } from './api.js';
import { renderStatus, syncState, type SyncReport } from './status-report.js';

const COMMIT = 'a'.repeat(64);

function sync(status: SyncStatus | undefined): SyncObject {
  return {
    apiVersion: 'configsync.gke.io/v1beta1',
    kind: 'RootSync',
    metadata: { name: 'root-sync', namespace: 'config-management-system' },
    ...(status ? { status } : {}),
  };
}

const condition = (type: SyncCondition['type'], status: SyncCondition['status']): SyncCondition => ({
  type,
  status,
});

const synced: SyncStatus = {
  lastSyncedCommit: COMMIT,
  source: { commit: COMMIT },
  sync: { commit: COMMIT },
  conditions: [
    condition('Reconciling', 'False'),
    condition('Stalled', 'False'),
    condition('Syncing', 'False'),
  ],
};

describe('syncState', () => {
  it('is SYNCED when source, sync and lastSyncedCommit agree and nothing is in progress', () => {
    assert.deepEqual(syncState(sync(synced)), { state: 'SYNCED', errors: [] });
  });

  it('is STALLED when the Stalled condition is True, even with errors', () => {
    const status: SyncStatus = {
      ...synced,
      source: { commit: COMMIT, errors: [{ code: 'KNV1061', errorMessage: 'KNV1061: bad spec' }] },
      conditions: [condition('Stalled', 'True')],
    };
    assert.deepEqual(syncState(sync(status)), { state: 'STALLED', errors: ['KNV1061: bad spec'] });
  });

  it('is ERROR when any stage has errors, listing them source, rendering, sync', () => {
    const status: SyncStatus = {
      ...synced,
      source: { commit: COMMIT, errors: [{ code: 'KNV2004', errorMessage: 'KNV2004: no registry' }] },
      rendering: { errors: [{ code: 'KNV1006', errorMessage: 'KNV1006: broken' }] },
      sync: {
        commit: COMMIT,
        errors: [
          { code: 'KNV2009', errorMessage: 'KNV2009: apply failed' },
          { code: 'KNV1060', errorMessage: 'KNV1060: conflict' },
        ],
      },
      conditions: [condition('Reconciling', 'True')],
    };
    assert.deepEqual(syncState(sync(status)), {
      state: 'ERROR',
      errors: ['KNV2004: no registry', 'KNV1006: broken', 'KNV2009: apply failed', 'KNV1060: conflict'],
    });
  });

  it('is RECONCILING while the Reconciling condition is True', () => {
    const status = {
      ...synced,
      conditions: [condition('Reconciling', 'True'), condition('Syncing', 'True')],
    };
    assert.equal(syncState(sync(status)).state, 'RECONCILING');
  });

  it('is PENDING while the Syncing condition is True', () => {
    const status = { ...synced, conditions: [condition('Syncing', 'True')] };
    assert.equal(syncState(sync(status)).state, 'PENDING');
  });

  it('is PENDING before the first status and while the applied commit lags the source', () => {
    assert.deepEqual(syncState(sync(undefined)), { state: 'PENDING', errors: [] });
    const newer = 'b'.repeat(64);
    assert.equal(syncState(sync({ ...synced, source: { commit: newer } })).state, 'PENDING');
    assert.equal(syncState(sync({ ...synced, lastSyncedCommit: newer })).state, 'PENDING');
    assert.equal(syncState(sync({ ...synced, sync: {} })).state, 'PENDING');
  });
});

const rootReport: SyncReport = {
  kind: 'RootSync',
  namespace: 'config-management-system',
  name: 'root-sync',
  source: '127.0.0.1:5000/project/repo/test-namespace:v1',
  state: 'SYNCED',
  commit: 'c0ffee',
  lastSyncedCommit: 'c0ffee',
  errors: [],
  resources: [
    { namespace: '', name: 'namespace/test', status: 'Current', sourceHash: 'c0ffee1' },
    { namespace: 'test', name: 'deployment.apps/web', status: 'InProgress', sourceHash: 'c0ffee1' },
  ],
};

describe('renderStatus', () => {
  it('lays out a cluster with a synced RootSync like nomos status', () => {
    assert.equal(
      renderStatus([{ context: 'kind-a', current: true, syncs: [rootReport] }]),
      [
        'Connecting to clusters...',
        '',
        '*kind-a',
        '   --------------------',
        '   <root>:root-sync   127.0.0.1:5000/project/repo/test-namespace:v1',
        '   SYNCED             c0ffee',
        '   Managed resources:',
        '      NAMESPACE   NAME                  STATUS       SOURCEHASH',
        '                  namespace/test        Current      c0ffee1',
        '      test        deployment.apps/web   InProgress   c0ffee1',
        '',
      ].join('\n'),
    );
  });

  it('shows a RepoSync as NAMESPACE:NAME, its errors, and no table without resources', () => {
    const repo: SyncReport = {
      kind: 'RepoSync',
      namespace: 'shop',
      name: 'repo-sync',
      source: 'registry.local/shop/config:v2',
      state: 'ERROR',
      commit: '',
      lastSyncedCommit: '',
      errors: ['KNV1009: cm.yaml: ConfigMap "a" is in namespace "other"', 'KNV2004: no registry'],
      resources: [],
    };
    assert.equal(
      renderStatus([{ context: 'prod', current: false, syncs: [repo] }]),
      [
        'Connecting to clusters...',
        '',
        'prod',
        '   --------------------',
        '   shop:repo-sync   registry.local/shop/config:v2',
        '   ERROR',
        '   Error:   KNV1009: cm.yaml: ConfigMap "a" is in namespace "other"',
        '   Error:   KNV2004: no registry',
        '',
      ].join('\n'),
    );
  });

  it('widens the label column to the state when the state is longer', () => {
    const report: SyncReport = { ...rootReport, name: 'r', state: 'RECONCILING', resources: [] };
    const lines = renderStatus([{ context: 'c', current: true, syncs: [report] }]).split('\n');
    assert.deepEqual(lines.slice(4, 6), [
      '   <root>:r      127.0.0.1:5000/project/repo/test-namespace:v1',
      '   RECONCILING   c0ffee',
    ]);
  });

  it('leaves out managed resources when asked to', () => {
    const text = renderStatus([{ context: 'c', current: true, syncs: [rootReport] }], { resources: false });
    assert.doesNotMatch(text, /Managed resources|NAMESPACE/);
    assert.match(text, /SYNCED {13}c0ffee/);
  });

  it('shows an unreachable cluster, an unconfigured one and a configured one in order', () => {
    assert.equal(
      renderStatus([
        {
          context: 'down',
          current: false,
          error: 'Cannot reach the API server https://10.0.0.1:6443: ECONNREFUSED',
        },
        { context: 'empty', current: false, syncs: [] },
        { context: 'kind-a', current: true, syncs: [{ ...rootReport, resources: [] }] },
      ]),
      [
        'Connecting to clusters...',
        '',
        'down',
        '   --------------------',
        '   Error: Cannot reach the API server https://10.0.0.1:6443: ECONNREFUSED',
        '',
        'empty',
        '   --------------------',
        '   NOT CONFIGURED: no RootSync or RepoSync found',
        '',
        '*kind-a',
        '   --------------------',
        '   <root>:root-sync   127.0.0.1:5000/project/repo/test-namespace:v1',
        '   SYNCED             c0ffee',
        '',
      ].join('\n'),
    );
  });

  it('shows a cluster without a syncs list as NOT CONFIGURED', () => {
    assert.match(
      renderStatus([{ context: 'c', current: false }]),
      /^c\n {3}-{20}\n {3}NOT CONFIGURED: no RootSync or RepoSync found$/m,
    );
  });
});
