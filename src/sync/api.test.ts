import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { displayName, managerValue, objectKey, parseDuration, reconcilerName, resourceId } from './api.js';

describe('reconcilerName', () => {
  it('names the default RootSync root-reconciler and others root-reconciler-NAME', () => {
    assert.equal(
      reconcilerName('RootSync', { namespace: 'config-management-system', name: 'root-sync' }),
      'root-reconciler',
    );
    assert.equal(
      reconcilerName('RootSync', { namespace: 'config-management-system', name: 'platform' }),
      'root-reconciler-platform',
    );
  });

  it('names the default RepoSync ns-reconciler-NS and others ns-reconciler-NS-NAME-LENGTH', () => {
    assert.equal(reconcilerName('RepoSync', { namespace: 'shop', name: 'repo-sync' }), 'ns-reconciler-shop');
    assert.equal(reconcilerName('RepoSync', { namespace: 'shop', name: 'web' }), 'ns-reconciler-shop-web-3');
    assert.equal(
      reconcilerName('RepoSync', { namespace: 'bank', name: 'payments-config' }),
      'ns-reconciler-bank-payments-config-15',
    );
  });

  it('does not treat a RootSync named repo-sync or a RepoSync named root-sync as the default', () => {
    assert.equal(
      reconcilerName('RootSync', { namespace: 'x', name: 'repo-sync' }),
      'root-reconciler-repo-sync',
    );
    assert.equal(
      reconcilerName('RepoSync', { namespace: 'x', name: 'root-sync' }),
      'ns-reconciler-x-root-sync-9',
    );
  });
});

describe('managerValue', () => {
  it('is ":root_NAME" for a RootSync and "NAMESPACE_NAME" for a RepoSync', () => {
    assert.equal(
      managerValue('RootSync', { namespace: 'config-management-system', name: 'root-sync' }),
      ':root_root-sync',
    );
    assert.equal(managerValue('RepoSync', { namespace: 'shop', name: 'repo-sync' }), 'shop_repo-sync');
  });
});

describe('resourceId', () => {
  it('is GROUP_KIND_NAME for cluster-scoped objects, kind in lower case, group empty for core', () => {
    assert.equal(
      resourceId({ group: '', kind: 'Namespace', namespace: '', name: 'test' }),
      '_namespace_test',
    );
    assert.equal(
      resourceId({ group: 'rbac.authorization.k8s.io', kind: 'ClusterRole', namespace: '', name: 'view' }),
      'rbac.authorization.k8s.io_clusterrole_view',
    );
  });

  it('is GROUP_KIND_NAMESPACE_NAME for namespaced objects', () => {
    assert.equal(
      resourceId({ group: 'apps', kind: 'Deployment', namespace: 'shop', name: 'web' }),
      'apps_deployment_shop_web',
    );
    assert.equal(
      resourceId({ group: '', kind: 'ConfigMap', namespace: 'shop', name: 'app' }),
      '_configmap_shop_app',
    );
  });
});

describe('objectKey', () => {
  it('tells apart objects that differ only in group, kind, namespace or name', () => {
    const base = { group: 'apps', kind: 'Deployment', namespace: 'shop', name: 'web' };
    const keys = new Set([
      objectKey(base),
      objectKey({ ...base, group: 'extensions' }),
      objectKey({ ...base, kind: 'StatefulSet' }),
      objectKey({ ...base, namespace: '' }),
      objectKey({ ...base, name: 'api' }),
    ]);
    assert.equal(keys.size, 5);
  });
});

describe('displayName', () => {
  it('is kind/name for core kinds and kind.group/name otherwise, in lower case', () => {
    assert.equal(
      displayName({ group: '', kind: 'Namespace', namespace: '', name: 'test' }),
      'namespace/test',
    );
    assert.equal(
      displayName({ group: '', kind: 'ConfigMap', namespace: 'shop', name: 'App' }),
      'configmap/App',
    );
    assert.equal(
      displayName({ group: 'apps', kind: 'Deployment', namespace: 'shop', name: 'web' }),
      'deployment.apps/web',
    );
  });
});

describe('parseDuration', () => {
  it('reads Go durations in milliseconds', () => {
    assert.equal(parseDuration('15s'), 15_000);
    assert.equal(parseDuration('1m30s'), 90_000);
    assert.equal(parseDuration('500ms'), 500);
    assert.equal(parseDuration('1h'), 3_600_000);
    assert.equal(parseDuration('1h2m3s4ms'), 3_723_004);
    assert.equal(parseDuration('1.5s'), 1_500);
    assert.equal(parseDuration(' 2m '), 120_000);
  });

  it('is undefined for what is not a duration', () => {
    for (const text of ['', '15', 's', 'abc', '-1s', '1d', '1 m', '15s!', '1.s'])
      assert.equal(parseDuration(text), undefined, text);
  });
});
