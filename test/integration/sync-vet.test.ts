/**
 * `airlock vet` and `airlock sync manifests` as users run them (the real binary, no cluster): exit codes,
 * one KNV line per problem, JSON output, usage errors.
 */
import assert from 'node:assert/strict';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { parseAllDocuments } from 'yaml';
import { CLI, run, tempDir } from '../helpers/processes.js';

async function folder(files: Record<string, string>): Promise<string> {
  const dir = await tempDir('airlock-vet-');
  for (const [path, text] of Object.entries(files)) {
    await mkdir(join(dir, path, '..'), { recursive: true });
    await writeFile(join(dir, path), text);
  }
  return dir;
}

const vet = (args: string[]): ReturnType<typeof run> => run(process.execPath, [CLI, 'vet', ...args]);

describe('airlock vet', () => {
  it('accepts a valid folder and says how many objects it holds', async () => {
    const dir = await folder({
      'ns.yaml': 'apiVersion: v1\nkind: Namespace\nmetadata:\n  name: test\n',
      'apps/cm.yaml':
        'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n  namespace: test\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: b\n  namespace: test\n',
      'README.md': '# not a manifest',
    });
    const res = await vet([dir]);
    assert.equal(res.code, 0, res.stderr);
    assert.match(res.stdout, /3 objects are valid/);
  });

  it('reports every problem with its KNV code and file, exit 1', async () => {
    const dir = await folder({
      'bad.yaml': 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: [oops\n',
      'ok.yaml': 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: fine\n',
    });
    const res = await vet([dir]);
    assert.equal(res.code, 1);
    assert.match(res.stderr, /^KNV1006: bad\.yaml: invalid YAML at line \d+/m);

    const semantic = await folder({
      'widget.yaml': 'apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: w\n',
      'a.yaml': 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: dup\n',
      'b.yaml': 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: dup\n',
      'ns.yaml': 'apiVersion: v1\nkind: Namespace\nmetadata:\n  name: x\n  namespace: y\n',
    });
    const more = await vet([semantic, '--output', 'json']);
    assert.equal(more.code, 1);
    const parsed = JSON.parse(more.stdout) as {
      valid: boolean;
      errors: { code: string; errorMessage: string }[];
    };
    assert.equal(parsed.valid, false);
    assert.deepEqual(parsed.errors.map((e) => e.code).sort(), ['KNV1021', 'KNV1029', 'KNV1052']);
  });

  it('knows kinds from CRDs in the same folder', async () => {
    const dir = await folder({
      'crd.yaml': [
        'apiVersion: apiextensions.k8s.io/v1',
        'kind: CustomResourceDefinition',
        'metadata:',
        '  name: widgets.example.com',
        'spec:',
        '  group: example.com',
        '  scope: Namespaced',
        '  names: {kind: Widget, plural: widgets}',
        '  versions: [{name: v1, served: true, storage: true}]',
        '',
      ].join('\n'),
      'widget.yaml': 'apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: w\n',
    });
    const res = await vet([dir]);
    assert.equal(res.code, 0, res.stderr);
  });

  it('vets as a RepoSync with --namespace and as the hierarchy format', async () => {
    const dir = await folder({
      'cm.yaml': 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n  namespace: other\n',
      'role.yaml': 'apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: r\n',
    });
    const res = await vet([dir, '--namespace', 'team-a']);
    assert.equal(res.code, 1);
    assert.match(res.stderr, /KNV1009: cm\.yaml: ConfigMap "a" is in namespace "other"/);
    assert.match(res.stderr, /KNV1058: role\.yaml: ClusterRole "r" is cluster-scoped/);

    const hier = await folder({
      'namespaces/shop/namespace.yaml': 'apiVersion: v1\nkind: Namespace\nmetadata:\n  name: shop\n',
      'namespaces/shop/cm.yaml': 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n',
      'cluster/role.yaml':
        'apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: r\n',
      'stray.yaml': 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: stray\n',
    });
    const h = await vet([hier, '--source-format', 'hierarchy']);
    assert.equal(h.code, 1);
    assert.match(h.stderr, /KNV1019: stray\.yaml/);
  });

  it('refuses bad flags and a missing folder with exit 2', async () => {
    assert.equal((await vet(['/nonexistent-airlock-folder'])).code, 2);
    const bad = await vet(['.', '--source-format', 'tree']);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /--source-format must be "unstructured" or "hierarchy", not "tree"/);
  });
});

describe('airlock sync manifests', () => {
  it('prints the CRDs, namespace, RBAC and a leader-elected controller Deployment as YAML', async () => {
    const res = await run(process.execPath, [
      CLI,
      'sync',
      'manifests',
      '--image',
      'registry.example/airlock:1.2.3',
    ]);
    assert.equal(res.code, 0, res.stderr);
    const docs = parseAllDocuments(res.stdout).map(
      (d) => d.toJS() as { kind: string; metadata: { name: string }; spec?: unknown },
    );
    const kinds = docs.map((d) => `${d.kind}/${d.metadata.name}`);
    for (const want of [
      'Namespace/config-management-system',
      'CustomResourceDefinition/rootsyncs.configsync.gke.io',
      'CustomResourceDefinition/reposyncs.configsync.gke.io',
      'CustomResourceDefinition/resourcegroups.kpt.dev',
      'ValidatingAdmissionPolicy/reposync-name-length.configsync.gke.io',
      'ServiceAccount/airlock-sync',
      'ClusterRoleBinding/airlock-sync-controller',
      'Deployment/airlock-sync-controller',
    ])
      assert.ok(kinds.includes(want), `${want} in ${kinds.join(', ')}`);
    const deployment = JSON.stringify(docs.find((d) => d.kind === 'Deployment'));
    assert.match(deployment, /registry\.example\/airlock:1\.2\.3/);
    assert.match(deployment, /--leader-elect/);
  });
});
