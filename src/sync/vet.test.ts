import { describe, it, beforeEach, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { SyncErrors } from './errors.js';
import { builtInScope, vetFolder } from './vet.js';

const NAMESPACE = 'apiVersion: v1\nkind: Namespace\nmetadata:\n  name: shop\n';
const CONFIG_MAP = 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: app\n';
const DEPLOYMENT = 'apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  namespace: shop\n';
const CLUSTER_ROLE = 'apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: view\n';
const WIDGET_CRD = `apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
spec:
  group: example.com
  scope: Namespaced
  names: {kind: Widget, plural: widgets}
  versions: [{name: v1, served: true, storage: true}]
`;
const WIDGET = 'apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: w\n';

describe('builtInScope', () => {
  it('knows the scope of built-in kinds whatever their version, and nothing else', async () => {
    assert.equal(await builtInScope('v1', 'Namespace'), 'Cluster');
    assert.equal(await builtInScope('v1', 'ConfigMap'), 'Namespaced');
    assert.equal(await builtInScope('apps/v1beta2', 'Deployment'), 'Namespaced');
    assert.equal(await builtInScope('rbac.authorization.k8s.io/v1', 'ClusterRoleBinding'), 'Cluster');
    assert.equal(await builtInScope('configsync.gke.io/v1beta1', 'RepoSync'), 'Namespaced');
    assert.equal(await builtInScope('apps/v1', 'ConfigMap'), undefined);
    assert.equal(await builtInScope('example.com/v1', 'Widget'), undefined);
  });
});

describe('vetFolder', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'airlock-vet-'));
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  async function put(files: Record<string, string>): Promise<void> {
    for (const [path, text] of Object.entries(files)) {
      await mkdir(dirname(join(dir, path)), { recursive: true });
      await writeFile(join(dir, path), text);
    }
  }

  async function codesOf(promise: Promise<unknown>): Promise<string[]> {
    try {
      await promise;
    } catch (error) {
      assert.ok(error instanceof SyncErrors, `expected SyncErrors, got ${String(error)}`);
      return error.errors.map((e) => e.code);
    }
    assert.fail('vetFolder did not reject');
  }

  it('returns the declared objects of a valid folder, CRDs in it making their kinds known', async () => {
    await put({
      'ns.yaml': NAMESPACE,
      'apps/cm.yaml': CONFIG_MAP,
      'apps/web.yaml': DEPLOYMENT,
      'crd.yaml': WIDGET_CRD,
      'widget.yaml': WIDGET,
    });
    const declared = await vetFolder(dir);
    assert.deepEqual(
      declared.map((d) => `${d.path} ${d.id.kind} ${d.id.namespace}/${d.id.name}`),
      [
        'apps/cm.yaml ConfigMap default/app',
        'apps/web.yaml Deployment shop/web',
        'crd.yaml CustomResourceDefinition /widgets.example.com',
        'ns.yaml Namespace /shop',
        'widget.yaml Widget default/w',
      ],
    );
  });

  it('reports parse errors before validating', async () => {
    await put({ 'bad.yaml': 'kind: [', 'unknown.yaml': WIDGET });
    assert.deepEqual(await codesOf(vetFolder(dir)), ['KNV1006']);
  });

  it('reports every validation error of the folder together', async () => {
    await put({
      'a.yaml': WIDGET,
      'b.yaml': CONFIG_MAP,
      'c.yaml': CONFIG_MAP,
      'd.yaml': CLUSTER_ROLE.replace('name: view', 'name: view\n  namespace: shop'),
    });
    assert.deepEqual(await codesOf(vetFolder(dir)), ['KNV1021', 'KNV1029', 'KNV1052']);
  });

  it('asks the given scope lookup instead of the built-in kinds', async () => {
    await put({ 'widget.yaml': WIDGET });
    const declared = await vetFolder(dir, {
      scopeOf: (apiVersion, kind) =>
        Promise.resolve(apiVersion === 'example.com/v1' && kind === 'Widget' ? 'Cluster' : undefined),
    });
    assert.deepEqual(declared[0]?.id, { group: 'example.com', kind: 'Widget', namespace: '', name: 'w' });
  });

  describe('with --namespace (as a RepoSync)', () => {
    it('puts objects in the namespace and accepts those already in it', async () => {
      await put({ 'cm.yaml': CONFIG_MAP, 'web.yaml': DEPLOYMENT });
      const declared = await vetFolder(dir, { namespace: 'shop' });
      assert.deepEqual(
        declared.map((d) => d.id.namespace),
        ['shop', 'shop'],
      );
    });

    it('rejects cluster-scoped objects and other namespaces', async () => {
      await put({ 'ns.yaml': NAMESPACE, 'role.yaml': CLUSTER_ROLE, 'web.yaml': DEPLOYMENT });
      assert.deepEqual(await codesOf(vetFolder(dir, { namespace: 'bank' })), [
        'KNV1058',
        'KNV1058',
        'KNV1009',
      ]);
    });
  });

  describe('with the hierarchy format', () => {
    it('places objects by directory', async () => {
      await put({
        'system/repo.yaml': 'apiVersion: configmanagement.gke.io/v1\nkind: Repo\nmetadata:\n  name: repo\n',
        'cluster/role.yaml': CLUSTER_ROLE,
        'namespaces/shop/ns.yaml': NAMESPACE,
        'namespaces/shop/cm.yaml': CONFIG_MAP,
      });
      const declared = await vetFolder(dir, { format: 'hierarchy' });
      assert.deepEqual(
        declared.map((d) => `${d.path} ${d.id.namespace}/${d.id.name}`),
        ['cluster/role.yaml /view', 'namespaces/shop/cm.yaml shop/app', 'namespaces/shop/ns.yaml /shop'],
      );
    });

    it('rejects a folder laid out for the unstructured format', async () => {
      await put({ 'cm.yaml': CONFIG_MAP, 'cluster/cm.yaml': CONFIG_MAP.replace('app', 'other') });
      assert.deepEqual(await codesOf(vetFolder(dir, { format: 'hierarchy' })), ['KNV1039', 'KNV1019']);
    });
  });
});
