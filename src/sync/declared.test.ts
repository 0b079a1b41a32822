import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { KubeObject } from '../kube/index.js';
import { declareObjects, type DeclareOptions, type DeclaredObject, type ScopeLookup } from './declared.js';
import { SyncErrors } from './errors.js';
import type { SourceObject } from './source.js';

/** A ScopeLookup that knows a few kinds by apiVersion and kind, as an API server's discovery would. */
const KNOWN: Record<string, 'Namespaced' | 'Cluster'> = {
  'v1 Namespace': 'Cluster',
  'v1 ConfigMap': 'Namespaced',
  'v1 Secret': 'Namespaced',
  'apps/v1 Deployment': 'Namespaced',
  'rbac.authorization.k8s.io/v1 ClusterRole': 'Cluster',
  'rbac.authorization.k8s.io/v1 RoleBinding': 'Namespaced',
  'apiextensions.k8s.io/v1 CustomResourceDefinition': 'Cluster',
};
const scopeOf: ScopeLookup = (apiVersion, kind) => Promise.resolve(KNOWN[`${apiVersion} ${kind}`]);

function obj(
  apiVersion: string,
  kind: string,
  metadata: Record<string, unknown>,
  rest: Record<string, unknown> = {},
): KubeObject {
  return { apiVersion, kind, metadata: metadata as KubeObject['metadata'], ...rest };
}

const at = (path: string, object: KubeObject): SourceObject => ({ path, object });
const cm = (name: string, namespace?: string): KubeObject =>
  obj('v1', 'ConfigMap', namespace === undefined ? { name } : { name, namespace });
const ns = (name: string): KubeObject => obj('v1', 'Namespace', { name });
const clusterRole = (name: string, namespace?: string): KubeObject =>
  obj(
    'rbac.authorization.k8s.io/v1',
    'ClusterRole',
    namespace === undefined ? { name } : { name, namespace },
  );

/** The SyncErrors declareObjects rejects with, as "CODE: message" lines. */
async function errorsOf(
  objects: readonly SourceObject[],
  options: Partial<DeclareOptions> = {},
): Promise<string[]> {
  try {
    await declareObjects(objects, { scopeOf, ...options });
  } catch (error) {
    assert.ok(error instanceof SyncErrors, `expected SyncErrors, got ${String(error)}`);
    return error.errors.map((e) => `${e.code}: ${e.message}`);
  }
  assert.fail('declareObjects did not reject');
}

/** "path ns/name" of each declared object (namespace "-" for cluster-scoped). */
const placement = (declared: readonly DeclaredObject[]): string[] =>
  declared.map((d) => `${d.path} ${d.object.kind} ${d.object.metadata.namespace ?? '-'}/${d.id.name}`);

describe('declareObjects (unstructured)', () => {
  it('puts a namespaced object without namespace in "default" for a RootSync', async () => {
    const [declared] = await declareObjects([at('cm.yaml', cm('app'))], { scopeOf });
    assert.deepEqual(declared?.id, { group: '', kind: 'ConfigMap', namespace: 'default', name: 'app' });
    assert.equal(declared?.object.metadata.namespace, 'default');
    assert.equal(declared?.namespaced, true);
    assert.equal(declared?.path, 'cm.yaml');
  });

  it('keeps a declared namespace and the group of the apiVersion', async () => {
    const [declared] = await declareObjects(
      [at('d.yaml', obj('apps/v1', 'Deployment', { name: 'web', namespace: 'shop' }))],
      { scopeOf },
    );
    assert.deepEqual(declared?.id, { group: 'apps', kind: 'Deployment', namespace: 'shop', name: 'web' });
  });

  it('leaves cluster-scoped objects without a namespace', async () => {
    const [declared] = await declareObjects([at('ns.yaml', ns('test'))], { scopeOf });
    assert.deepEqual(declared?.id, { group: '', kind: 'Namespace', namespace: '', name: 'test' });
    assert.equal(declared?.namespaced, false);
    assert.equal('namespace' in (declared?.object.metadata ?? {}), false);
  });

  it('treats an empty metadata.namespace of a cluster-scoped object as none', async () => {
    const [declared] = await declareObjects([at('cr.yaml', clusterRole('view', ''))], { scopeOf });
    assert.equal(declared?.id.namespace, '');
    assert.equal('namespace' in (declared?.object.metadata ?? {}), false);
  });

  it('does not change the objects it was given', async () => {
    const source = cm('app');
    await declareObjects([at('cm.yaml', source)], { scopeOf });
    assert.deepEqual(source, { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'app' } });
  });

  it('rejects a cluster-scoped object that declares a namespace with KNV1052', async () => {
    assert.deepEqual(await errorsOf([at('cr.yaml', clusterRole('view', 'shop'))]), [
      'KNV1052: cr.yaml: cluster-scoped ClusterRole "view" must not declare metadata.namespace "shop"',
    ]);
  });

  it('rejects a kind the cluster does not serve with KNV1021', async () => {
    assert.deepEqual(await errorsOf([at('w.yaml', obj('example.com/v1', 'Widget', { name: 'w' }))]), [
      'KNV1021: w.yaml: No CustomResourceDefinition is defined for the type "Widget.example.com" (example.com/v1) in the cluster',
    ]);
    assert.deepEqual(await errorsOf([at('x.yaml', obj('v1', 'Gadget', { name: 'g' }))]), [
      'KNV1021: x.yaml: No CustomResourceDefinition is defined for the type "Gadget.core" (v1) in the cluster',
    ]);
  });

  describe('with a CustomResourceDefinition in the source', () => {
    const crd = (scope: 'Namespaced' | 'Cluster'): KubeObject =>
      obj(
        'apiextensions.k8s.io/v1',
        'CustomResourceDefinition',
        { name: 'widgets.example.com' },
        {
          spec: {
            group: 'example.com',
            scope,
            names: { kind: 'Widget', plural: 'widgets' },
            versions: [{ name: 'v1' }, { name: 'v2' }],
          },
        },
      );

    it('knows the kind it defines, in each of its versions, without asking the cluster', async () => {
      const asked: string[] = [];
      const recording: ScopeLookup = (apiVersion, kind) => {
        asked.push(`${apiVersion} ${kind}`);
        return scopeOf(apiVersion, kind);
      };
      const declared = await declareObjects(
        [
          at('crd.yaml', crd('Namespaced')),
          at('w1.yaml', obj('example.com/v1', 'Widget', { name: 'a' })),
          at('w2.yaml', obj('example.com/v2', 'Widget', { name: 'b', namespace: 'shop' })),
        ],
        { scopeOf: recording },
      );
      assert.deepEqual(placement(declared), [
        'crd.yaml CustomResourceDefinition -/widgets.example.com',
        'w1.yaml Widget default/a',
        'w2.yaml Widget shop/b',
      ]);
      assert.deepEqual(asked, ['apiextensions.k8s.io/v1 CustomResourceDefinition']);
    });

    it('takes the scope from the CRD: a cluster-scoped custom object must not declare a namespace', async () => {
      assert.deepEqual(
        await errorsOf([
          at('crd.yaml', crd('Cluster')),
          at('w.yaml', obj('example.com/v1', 'Widget', { name: 'a', namespace: 'shop' })),
        ]),
        ['KNV1052: w.yaml: cluster-scoped Widget "a" must not declare metadata.namespace "shop"'],
      );
    });

    it('does not make a version the CRD does not list known', async () => {
      const errors = await errorsOf([
        at('crd.yaml', crd('Namespaced')),
        at('w.yaml', obj('example.com/v3', 'Widget', { name: 'a' })),
      ]);
      assert.equal(errors.length, 1);
      assert.match(errors[0]!, /^KNV1021: w\.yaml: /);
    });
  });

  it('rejects an object without metadata.name with KNV1031', async () => {
    assert.deepEqual(
      await errorsOf([
        at('a.yaml', obj('v1', 'ConfigMap', {})),
        at('b.yaml', obj('v1', 'ConfigMap', { name: '' })),
      ]),
      ['KNV1031: a.yaml: ConfigMap has no metadata.name', 'KNV1031: b.yaml: ConfigMap has no metadata.name'],
    );
  });

  it('rejects names that cannot be a path segment with KNV1036', async () => {
    for (const name of ['a/b', 'a b', '50%', '.', '..', 'x'.repeat(254)]) {
      assert.deepEqual(
        await errorsOf([at('cm.yaml', cm(name))]),
        [`KNV1036: cm.yaml: ConfigMap name "${name}" is not a valid object name`],
        name,
      );
    }
    assert.equal((await declareObjects([at('cm.yaml', cm('x'.repeat(253)))], { scopeOf })).length, 1);
  });

  it('rejects the same object declared twice with KNV1029, naming the first file', async () => {
    assert.deepEqual(
      await errorsOf([
        at('a.yaml', cm('app')),
        at('b.yaml', cm('app', 'default')),
        at('c.yaml', ns('test')),
        at('d.yaml', ns('test')),
      ]),
      [
        'KNV1029: b.yaml: ConfigMap "app" in namespace "default" is also declared in a.yaml',
        'KNV1029: d.yaml: Namespace "test" is also declared in c.yaml',
      ],
    );
  });

  it('accepts the same name in another namespace or of another kind', async () => {
    const declared = await declareObjects(
      [
        at('a.yaml', cm('app', 'one')),
        at('b.yaml', cm('app', 'two')),
        at('c.yaml', obj('v1', 'Secret', { name: 'app', namespace: 'one' })),
      ],
      { scopeOf },
    );
    assert.equal(declared.length, 3);
  });

  it('reports every problem together and returns nothing', async () => {
    const errors = await errorsOf([
      at('ok.yaml', cm('fine')),
      at('a.yaml', obj('v1', 'ConfigMap', {})),
      at('b.yaml', obj('example.com/v1', 'Widget', { name: 'w' })),
      at('c.yaml', clusterRole('r', 'x')),
    ]);
    assert.deepEqual(
      errors.map((e) => e.slice(0, 7)),
      ['KNV1031', 'KNV1021', 'KNV1052'],
    );
  });

  it('rejects a metadata.namespace that is not a string with KNV1006', async () => {
    assert.deepEqual(await errorsOf([at('cm.yaml', obj('v1', 'ConfigMap', { name: 'a', namespace: 7 }))]), [
      'KNV1006: cm.yaml: ConfigMap "a" has a metadata.namespace that is not a string',
    ]);
  });
});

describe('declareObjects for a RepoSync', () => {
  const repo = { repoNamespace: 'shop' };

  it("puts namespaced objects without namespace in the RepoSync's namespace", async () => {
    const declared = await declareObjects([at('cm.yaml', cm('app')), at('s.yaml', cm('b', 'shop'))], {
      scopeOf,
      ...repo,
    });
    assert.deepEqual(placement(declared), ['cm.yaml ConfigMap shop/app', 's.yaml ConfigMap shop/b']);
  });

  it('rejects an object of another namespace with KNV1009', async () => {
    assert.deepEqual(await errorsOf([at('cm.yaml', cm('app', 'other'))], repo), [
      'KNV1009: cm.yaml: ConfigMap "app" is in namespace "other"; a RepoSync in "shop" may only declare objects of its own namespace',
    ]);
  });

  it('rejects cluster-scoped objects, Namespaces among them, with KNV1058', async () => {
    assert.deepEqual(await errorsOf([at('ns.yaml', ns('shop')), at('cr.yaml', clusterRole('view'))], repo), [
      'KNV1058: ns.yaml: Namespace "shop" is cluster-scoped; a RepoSync may only declare namespaced objects of namespace "shop"',
      'KNV1058: cr.yaml: ClusterRole "view" is cluster-scoped; a RepoSync may only declare namespaced objects of namespace "shop"',
    ]);
  });

  it('ignores the hierarchy format: paths do not decide namespaces', async () => {
    const declared = await declareObjects([at('namespaces/other/cm.yaml', cm('app'))], {
      scopeOf,
      format: 'hierarchy',
      ...repo,
    });
    assert.deepEqual(placement(declared), ['namespaces/other/cm.yaml ConfigMap shop/app']);
  });
});

describe('declareObjects (hierarchy)', () => {
  const hierarchy = { format: 'hierarchy' as const };
  const declare = (objects: readonly SourceObject[]): Promise<DeclaredObject[]> =>
    declareObjects(objects, { scopeOf, ...hierarchy });

  it('takes cluster-scoped objects from cluster/ and namespaces from their namespace directory', async () => {
    const declared = await declare([
      at('cluster/role.yaml', clusterRole('view')),
      at('namespaces/shop/namespace.yaml', ns('shop')),
      at('namespaces/shop/cm.yaml', cm('app')),
    ]);
    assert.deepEqual(placement(declared), [
      'cluster/role.yaml ClusterRole -/view',
      'namespaces/shop/namespace.yaml Namespace -/shop',
      'namespaces/shop/cm.yaml ConfigMap shop/app',
    ]);
  });

  it('accepts an object that repeats its directory namespace and rejects another one with KNV1009', async () => {
    const objects = [
      at('namespaces/shop/ns.yaml', ns('shop')),
      at('namespaces/shop/cm.yaml', cm('app', 'shop')),
    ];
    assert.deepEqual(placement(await declare(objects)).at(-1), 'namespaces/shop/cm.yaml ConfigMap shop/app');
    assert.deepEqual(
      await errorsOf([objects[0]!, at('namespaces/shop/cm.yaml', cm('app', 'bank'))], hierarchy),
      [
        'KNV1009: namespaces/shop/cm.yaml: ConfigMap "app" declares namespace "bank" but its directory is namespace "shop"',
      ],
    );
  });

  it('copies objects of an abstract directory into every namespace below it', async () => {
    const declared = await declare([
      at(
        'namespaces/retail/policy.yaml',
        obj('rbac.authorization.k8s.io/v1', 'RoleBinding', { name: 'viewers' }),
      ),
      at('namespaces/retail/shop/ns.yaml', ns('shop')),
      at('namespaces/retail/bank/ns.yaml', ns('bank')),
      at('namespaces/other/ns.yaml', ns('other')),
      at('namespaces/root-cm.yaml', cm('everywhere')),
    ]);
    const namespaced = placement(declared).filter((p) => !p.includes(' Namespace '));
    assert.deepEqual(namespaced.sort(), [
      'namespaces/retail/policy.yaml RoleBinding bank/viewers',
      'namespaces/retail/policy.yaml RoleBinding shop/viewers',
      'namespaces/root-cm.yaml ConfigMap bank/everywhere',
      'namespaces/root-cm.yaml ConfigMap other/everywhere',
      'namespaces/root-cm.yaml ConfigMap shop/everywhere',
    ]);
  });

  it('rejects objects of an abstract directory with no namespace below it instead of dropping them', async () => {
    const errors = await errorsOf([at('namespaces/empty/cm.yaml', cm('lost'))], hierarchy);
    assert.equal(errors.length, 1);
    assert.match(errors[0]!, /namespaces\/empty\/cm\.yaml/);
  });

  it('rejects a Namespace in a directory of another name with KNV1020', async () => {
    assert.deepEqual(await errorsOf([at('namespaces/shop/ns.yaml', ns('bank'))], hierarchy), [
      'KNV1020: namespaces/shop/ns.yaml: Namespace "bank" must be declared in a directory named "bank", not "shop"',
    ]);
  });

  it('rejects a Namespace directly in namespaces/ with KNV1019', async () => {
    assert.deepEqual(await errorsOf([at('namespaces/ns.yaml', ns('shop'))], hierarchy), [
      'KNV1019: namespaces/ns.yaml: a Namespace must be in its own directory under namespaces/',
    ]);
  });

  it('rejects subdirectories of a namespace directory with KNV1003', async () => {
    const errors = await errorsOf(
      [at('namespaces/shop/ns.yaml', ns('shop')), at('namespaces/shop/extra/cm.yaml', cm('app'))],
      hierarchy,
    );
    assert.equal(
      errors[0],
      'KNV1003: namespaces/shop/extra/cm.yaml: namespace directory "namespaces/shop" declares a Namespace and must not have subdirectories',
    );
  });

  it('rejects a namespaced object under cluster/ with KNV1039', async () => {
    assert.deepEqual(await errorsOf([at('cluster/cm.yaml', cm('app'))], hierarchy), [
      'KNV1039: cluster/cm.yaml: namespaced ConfigMap "app" must not be under cluster/',
    ]);
  });

  it('rejects a cluster-scoped object other than a Namespace under namespaces/ with KNV1038', async () => {
    assert.deepEqual(
      await errorsOf(
        [at('namespaces/shop/ns.yaml', ns('shop')), at('namespaces/shop/role.yaml', clusterRole('view'))],
        hierarchy,
      ),
      [
        'KNV1038: namespaces/shop/role.yaml: cluster-scoped ClusterRole "view" must be under cluster/, not namespaces/',
      ],
    );
  });

  it('rejects anything outside cluster/, namespaces/ and system/ with KNV1019', async () => {
    const message = 'the hierarchy format allows only cluster/, namespaces/ and system/ at the top level';
    assert.deepEqual(
      await errorsOf(
        [at('cm.yaml', cm('top')), at('apps/cm.yaml', cm('apps')), at('namespaces', cm('n'))],
        hierarchy,
      ),
      [
        `KNV1019: cm.yaml: ${message}`,
        `KNV1019: apps/cm.yaml: ${message}`,
        `KNV1019: namespaces: ${message}`,
      ],
    );
  });

  it('ignores system/ and clusterregistry/, even kinds the cluster does not serve', async () => {
    const declared = await declare([
      at('system/repo.yaml', obj('configmanagement.gke.io/v1', 'Repo', { name: 'repo' })),
      at('system/hc.yaml', obj('configmanagement.gke.io/v1', 'HierarchyConfig', {})),
      at('clusterregistry/c.yaml', obj('clusterregistry.k8s.io/v1alpha1', 'Cluster', { name: 'c' })),
      at('cluster/role.yaml', clusterRole('view')),
    ]);
    assert.deepEqual(placement(declared), ['cluster/role.yaml ClusterRole -/view']);
  });

  it('still validates names and kinds before placing objects', async () => {
    assert.deepEqual(
      (
        await errorsOf(
          [
            at('cluster/a.yaml', obj('rbac.authorization.k8s.io/v1', 'ClusterRole', {})),
            at('cluster/b.yaml', obj('example.com/v1', 'Widget', { name: 'w' })),
          ],
          hierarchy,
        )
      ).map((e) => e.slice(0, 7)),
      ['KNV1031', 'KNV1021'],
    );
  });

  it('detects an object declared twice after inheritance with KNV1029', async () => {
    const errors = await errorsOf(
      [
        at('namespaces/cm.yaml', cm('app')),
        at('namespaces/shop/ns.yaml', ns('shop')),
        at('namespaces/shop/cm.yaml', cm('app')),
      ],
      hierarchy,
    );
    assert.deepEqual(errors, [
      'KNV1029: namespaces/shop/cm.yaml: ConfigMap "app" in namespace "shop" is also declared in namespaces/cm.yaml',
    ]);
  });
});
