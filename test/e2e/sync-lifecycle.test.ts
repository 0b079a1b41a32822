/**
 * What happens over a sync's life on a real control plane: new digests add, change and prune objects;
 * RepoSyncs are confined to their namespace; the hierarchy format; drift repair; two syncs declaring the
 * same object; bad sources leave the cluster as it was; a stopped registry and a killed controller recover.
 */
import assert from 'node:assert/strict';
import { readdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { after, describe, it, type TestContext } from 'node:test';
import { runOk, startAirlockProcess } from '../helpers/processes.js';
import { tarArchive } from '../helpers/interop.js';
import {
  applySync,
  deleteSync,
  eventually,
  getObject,
  readSync,
  startSyncEnv,
  statusErrors,
  waitError,
  waitSynced,
  writeFiles,
  type SyncEnv,
} from '../helpers/sync.js';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';

let env: SyncEnv | undefined;
let counter = 0;

async function ready(t: TestContext): Promise<SyncEnv | undefined> {
  env ??= await startSyncEnv(t);
  return env;
}

/** Packs `files` with tar and pushes them with `airlock append` as IMAGE; returns the digest. */
async function pushFiles(e: SyncEnv, image: string, files: Record<string, string>): Promise<string> {
  const dir = await writeFiles(e, `src-${++counter}`, files);
  await runOk('tar', ['-cf', '../layer.tar', '.'], { cwd: dir });
  const res = await e.airlock(['append', '-f', `${dir}/../layer.tar`, '-t', image]);
  assert.equal(res.code, 0, res.stderr);
  const digest = await e.airlock(['digest', image]);
  assert.equal(digest.code, 0, digest.stderr);
  return digest.stdout.trim().replace(/^sha256:/, '');
}

function configMap(
  name: string,
  namespace: string | undefined,
  data: Record<string, string>,
  annotations?: Record<string, string>,
): string {
  return [
    'apiVersion: v1',
    'kind: ConfigMap',
    'metadata:',
    `  name: ${name}`,
    ...(namespace ? [`  namespace: ${namespace}`] : []),
    ...(annotations
      ? ['  annotations:', ...Object.entries(annotations).map(([k, v]) => `    ${k}: "${v}"`)]
      : []),
    'data:',
    ...Object.entries(data).map(([k, v]) => `  ${k}: "${v}"`),
    '',
  ].join('\n');
}

/** The RoleBinding Config Sync's docs ask for: the namespace's ns-reconciler may administer it. */
async function grantReconciler(e: SyncEnv, namespace: string): Promise<void> {
  const res = await e.cp.request(
    'POST',
    `/apis/rbac.authorization.k8s.io/v1/namespaces/${namespace}/rolebindings`,
    {
      body: {
        metadata: { name: 'syncs-repo' },
        roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'admin' },
        subjects: [
          {
            kind: 'ServiceAccount',
            name: `ns-reconciler-${namespace}`,
            namespace: 'config-management-system',
          },
        ],
      },
    },
  );
  assert.equal(res.status, 201, res.text);
}

const ns = (name: string): string => `apiVersion: v1\nkind: Namespace\nmetadata:\n  name: ${name}\n`;
const cmPath = (namespace: string, name: string): string =>
  `/api/v1/namespaces/${namespace}/configmaps/${name}`;

describe('sync lifecycle on a real control plane', { timeout: 900_000 }, () => {
  after(async () => {
    await env?.stop();
  });

  it('adds, changes and prunes objects as new digests arrive, and honours deletion: detach', async (t) => {
    const e = await ready(t);
    if (!e) return;
    const image = `${e.registry.host}/apps/lifecycle:live`;
    const first = await pushFiles(e, image, {
      'ns.yaml': ns('life'),
      'a.yaml': configMap('a', 'life', { v: '1' }),
      'b.yaml': configMap('b', 'life', { v: '1' }),
      'keep.yaml': configMap(
        'keep',
        'life',
        { v: '1' },
        { 'client.lifecycle.config.k8s.io/deletion': 'detach' },
      ),
    });
    await applySync(
      e.cp,
      'RootSync',
      { name: 'life' },
      { sourceType: 'oci', sourceFormat: 'unstructured', oci: { image, period: '1h' } },
    );
    await waitSynced(e, 'RootSync', { name: 'life' }, { commit: first });
    assert.equal((await getObject(e.cp, cmPath('life', 'a')))?.data?.v, '1');

    // v2: a changes, b leaves, c arrives, keep leaves (detached: stays, without the management marks)
    const second = await pushFiles(e, image, {
      'ns.yaml': ns('life'),
      'a.yaml': configMap('a', 'life', { v: '2' }),
      'c.yaml': configMap('c', 'life', { v: '1' }),
    });
    assert.notEqual(second, first);
    // period is 1h: only the registry's push event can make this fast
    await waitSynced(e, 'RootSync', { name: 'life' }, { commit: second, timeoutMs: 20_000 });
    assert.equal((await getObject(e.cp, cmPath('life', 'a')))?.data?.v, '2');
    assert.equal(await getObject(e.cp, cmPath('life', 'b')), undefined, 'b was pruned');
    assert.ok(await getObject(e.cp, cmPath('life', 'c')));
    const kept = await getObject(e.cp, cmPath('life', 'keep'));
    assert.ok(kept, 'the detached ConfigMap stays');
    assert.equal(kept.metadata.annotations?.['configsync.gke.io/manager'], undefined);
    assert.equal(kept.metadata.annotations?.['configmanagement.gke.io/managed'], undefined);

    const group = await getObject<{ spec: { resources: { kind: string; name: string }[] } }>(
      e.cp,
      '/apis/kpt.dev/v1alpha1/namespaces/config-management-system/resourcegroups/life',
    );
    assert.deepEqual(group?.spec.resources.map((r) => `${r.kind}/${r.name}`).sort(), [
      'ConfigMap/a',
      'ConfigMap/c',
      'Namespace/life',
    ]);
  });

  it('applies a CRD first, waits until it is Established, then the custom resources that use it', async (t) => {
    const e = await ready(t);
    if (!e) return;
    const image = `${e.registry.host}/apps/crd:v1`;
    const crd = [
      'apiVersion: apiextensions.k8s.io/v1',
      'kind: CustomResourceDefinition',
      'metadata:',
      '  name: widgets.example.com',
      'spec:',
      '  group: example.com',
      '  scope: Namespaced',
      '  names: {kind: Widget, listKind: WidgetList, plural: widgets, singular: widget}',
      '  versions:',
      '  - name: v1',
      '    served: true',
      '    storage: true',
      '    schema:',
      '      openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}',
      '',
    ].join('\n');
    const commit = await pushFiles(e, image, {
      'a-widget.yaml':
        'apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: gear\n  namespace: crd-test\nsize: 3\n',
      'crd.yaml': crd,
      'ns.yaml': ns('crd-test'),
    });
    await applySync(e.cp, 'RootSync', { name: 'crd' }, { sourceType: 'oci', oci: { image, period: '1h' } });
    await waitSynced(e, 'RootSync', { name: 'crd' }, { commit });
    const widget = await getObject<{ size?: number }>(
      e.cp,
      '/apis/example.com/v1/namespaces/crd-test/widgets/gear',
    );
    assert.equal(widget?.size, 3);
  });

  it('deletes the managed objects with the sync when it says deletion-propagation-policy: Foreground', async (t) => {
    const e = await ready(t);
    if (!e) return;
    const image = `${e.registry.host}/apps/propagate:v1`;
    const commit = await pushFiles(e, image, {
      'ns.yaml': ns('propagate'),
      'cm.yaml': configMap('cm', 'propagate', { v: '1' }),
    });
    const path = '/apis/configsync.gke.io/v1beta1/namespaces/config-management-system/rootsyncs/propagate';
    const created = await e.cp.request(
      'POST',
      '/apis/configsync.gke.io/v1beta1/namespaces/config-management-system/rootsyncs',
      {
        body: {
          apiVersion: 'configsync.gke.io/v1beta1',
          kind: 'RootSync',
          metadata: {
            name: 'propagate',
            annotations: { 'configsync.gke.io/deletion-propagation-policy': 'Foreground' },
          },
          spec: { sourceType: 'oci', oci: { image, period: '1h' } },
        },
      },
    );
    assert.equal(created.status, 201, created.text);
    await waitSynced(e, 'RootSync', { name: 'propagate' }, { commit });
    await eventually(async () =>
      (await getObject<{ metadata: { finalizers?: string[] } }>(e.cp, path))?.metadata.finalizers?.includes(
        'configsync.gke.io/reconciler',
      )
        ? true
        : undefined,
    );
    assert.equal((await e.cp.request('DELETE', path)).status, 200);
    await eventually(async () => ((await getObject(e.cp, path)) ? undefined : true), {
      timeoutMs: 30_000,
      describe: () => e.controller.output().slice(-3000),
    });
    assert.equal(await getObject(e.cp, cmPath('propagate', 'cm')), undefined, 'the ConfigMap went with it');
    await eventually(async () => {
      const gone = await getObject(e.cp, '/api/v1/namespaces/propagate');
      return !gone || gone.status?.phase === 'Terminating' ? true : undefined;
    });
  });

  it('repairs drift: an edited object is reverted and a deleted one re-created', async (t) => {
    const e = await ready(t);
    if (!e) return;
    const image = `${e.registry.host}/apps/drift:v1`;
    const commit = await pushFiles(e, image, {
      'ns.yaml': ns('drift'),
      'cm.yaml': configMap('cm', 'drift', { v: 'declared' }),
    });
    await applySync(e.cp, 'RootSync', { name: 'drift' }, { sourceType: 'oci', oci: { image, period: '1h' } });
    await waitSynced(e, 'RootSync', { name: 'drift' }, { commit });

    const edit = await e.cp.request('PATCH', cmPath('drift', 'cm'), {
      body: { data: { v: 'edited by hand' } },
      headers: { 'content-type': 'application/merge-patch+json' },
    });
    assert.equal(edit.status, 200, edit.text);
    await eventually(
      async () => ((await getObject(e.cp, cmPath('drift', 'cm')))?.data?.v === 'declared' ? true : undefined),
      {
        timeoutMs: 15_000,
        describe: () => e.controller.output().slice(-3000),
      },
    );

    const del = await e.cp.request('DELETE', cmPath('drift', 'cm'));
    assert.equal(del.status, 200, del.text);
    await eventually(
      async () => ((await getObject(e.cp, cmPath('drift', 'cm')))?.data?.v === 'declared' ? true : undefined),
      {
        timeoutMs: 15_000,
        describe: () => e.controller.output().slice(-3000),
      },
    );
  });

  it('confines a RepoSync to its namespace (KNV1009, KNV1058) and applies nothing when it is violated', async (t) => {
    const e = await ready(t);
    if (!e) return;
    const created = await e.cp.request('POST', '/api/v1/namespaces', {
      body: { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'team-a' } },
    });
    assert.equal(created.status, 201, created.text);
    await grantReconciler(e, 'team-a');
    const image = `${e.registry.host}/team-a/config:v1`;
    const bad = await pushFiles(e, image, {
      'mine.yaml': configMap('mine', undefined, { v: '1' }),
      'other.yaml': configMap('elsewhere', 'default', { v: '1' }),
      'ns.yaml': ns('sneaky'),
    });
    await applySync(
      e.cp,
      'RepoSync',
      { namespace: 'team-a', name: 'repo-sync' },
      { sourceType: 'oci', oci: { image, period: '1h' } },
    );
    const errors = await waitError(e, 'RepoSync', { namespace: 'team-a', name: 'repo-sync' }, 'KNV1009');
    assert.ok(
      errors.some((m) => m.startsWith('KNV1009: other.yaml')),
      errors.join('\n'),
    );
    assert.ok(
      errors.some((m) => m.startsWith('KNV1058: ns.yaml')),
      errors.join('\n'),
    );
    assert.equal(await getObject(e.cp, cmPath('team-a', 'mine')), undefined, 'nothing applied');
    assert.equal(await getObject(e.cp, '/api/v1/namespaces/sneaky'), undefined);
    void bad;

    const good = await pushFiles(e, image, { 'mine.yaml': configMap('mine', undefined, { v: '1' }) });
    await waitSynced(
      e,
      'RepoSync',
      { namespace: 'team-a', name: 'repo-sync' },
      { commit: good, timeoutMs: 20_000 },
    );
    const mine = await getObject(e.cp, cmPath('team-a', 'mine'));
    assert.equal(mine?.metadata.annotations?.['configsync.gke.io/manager'], 'team-a_repo-sync');
  });

  it('applies a RepoSync as its ns-reconciler service account: without a RoleBinding the API server refuses (KNV2009)', async (t) => {
    const e = await ready(t);
    if (!e) return;
    assert.equal(
      (await e.cp.request('POST', '/api/v1/namespaces', { body: { metadata: { name: 'team-b' } } })).status,
      201,
    );
    const image = `${e.registry.host}/team-b/config:v1`;
    const commit = await pushFiles(e, image, { 'cm.yaml': configMap('b-config', undefined, { v: '1' }) });
    await applySync(
      e.cp,
      'RepoSync',
      { namespace: 'team-b', name: 'repo-sync' },
      { sourceType: 'oci', oci: { image, period: '2s' } },
    );
    const errors = await waitError(e, 'RepoSync', { namespace: 'team-b', name: 'repo-sync' }, 'KNV2009');
    assert.match(
      errors.join('\n'),
      /KNV2009: failed to apply ConfigMap team-b\/b-config .*forbidden.*system:serviceaccount:config-management-system:ns-reconciler-team-b/,
    );
    assert.equal(await getObject(e.cp, cmPath('team-b', 'b-config')), undefined);

    // Grant it, as Config Sync's docs tell users to: then the next attempt succeeds.
    await grantReconciler(e, 'team-b');
    await waitSynced(
      e,
      'RepoSync',
      { namespace: 'team-b', name: 'repo-sync' },
      { commit, timeoutMs: 30_000 },
    );
    assert.ok(await getObject(e.cp, cmPath('team-b', 'b-config')));
  });

  it('syncs a hierarchy-format RootSync: cluster/, namespaces/ with inheritance from abstract namespaces', async (t) => {
    const e = await ready(t);
    if (!e) return;
    const image = `${e.registry.host}/platform/hierarchy:v1`;
    const commit = await pushFiles(e, image, {
      'system/repo.yaml':
        'apiVersion: configmanagement.gke.io/v1\nkind: Repo\nmetadata:\n  name: repo\nspec:\n  version: "1.0.0"\n',
      'cluster/reader.yaml':
        'apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: hier-reader\nrules:\n- apiGroups: [""]\n  resources: ["configmaps"]\n  verbs: ["get"]\n',
      'namespaces/teams/shared.yaml': configMap('shared', undefined, { inherited: 'yes' }),
      'namespaces/teams/blue/namespace.yaml': ns('blue'),
      'namespaces/teams/green/namespace.yaml': ns('green'),
      'namespaces/teams/green/own.yaml': configMap('own', undefined, { v: 'green' }),
    });
    await applySync(
      e.cp,
      'RootSync',
      { name: 'hier' },
      { sourceType: 'oci', sourceFormat: 'hierarchy', oci: { image, period: '1h' } },
    );
    await waitSynced(e, 'RootSync', { name: 'hier' }, { commit });
    assert.equal((await getObject(e.cp, cmPath('blue', 'shared')))?.data?.inherited, 'yes');
    assert.equal((await getObject(e.cp, cmPath('green', 'shared')))?.data?.inherited, 'yes');
    assert.equal((await getObject(e.cp, cmPath('green', 'own')))?.data?.v, 'green');
    assert.ok(await getObject(e.cp, '/apis/rbac.authorization.k8s.io/v1/clusterroles/hier-reader'));
  });

  it('reports KNV1060 when two RootSyncs declare the same object, without a fight', async (t) => {
    const e = await ready(t);
    if (!e) return;
    const one = `${e.registry.host}/conflict/one:v1`;
    const two = `${e.registry.host}/conflict/two:v1`;
    const c1 = await pushFiles(e, one, {
      'ns.yaml': ns('contested'),
      'cm.yaml': configMap('owner', 'contested', { by: 'one' }),
    });
    await pushFiles(e, two, { 'cm.yaml': configMap('owner', 'contested', { by: 'two' }) });
    await applySync(
      e.cp,
      'RootSync',
      { name: 'conflict-one' },
      { sourceType: 'oci', oci: { image: one, period: '1h' } },
    );
    await waitSynced(e, 'RootSync', { name: 'conflict-one' }, { commit: c1 });
    await applySync(
      e.cp,
      'RootSync',
      { name: 'conflict-two' },
      { sourceType: 'oci', oci: { image: two, period: '1h' } },
    );
    const errors = await waitError(e, 'RootSync', { name: 'conflict-two' }, 'KNV1060');
    assert.match(errors.join('\n'), /ConfigMap contested\/owner .* already managed by ":root_conflict-one"/);
    assert.equal((await getObject(e.cp, cmPath('contested', 'owner')))?.data?.by, 'one');
    await deleteSync(e.cp, 'RootSync', { name: 'conflict-two' });
  });

  it('rejects bad sources with their KNV codes, all errors at once, leaving the cluster as last synced', async (t) => {
    const e = await ready(t);
    if (!e) return;
    const image = `${e.registry.host}/apps/badinput:live`;
    const good = await pushFiles(e, image, {
      'ns.yaml': ns('bad-input'),
      'cm.yaml': configMap('cm', 'bad-input', { v: 'good' }),
    });
    await applySync(
      e.cp,
      'RootSync',
      { name: 'bad-input' },
      { sourceType: 'oci', oci: { image, period: '1h' } },
    );
    await waitSynced(e, 'RootSync', { name: 'bad-input' }, { commit: good });

    await pushFiles(e, image, {
      'ns.yaml': ns('bad-input'),
      'cm.yaml': configMap('cm', 'bad-input', { v: 'should not apply' }),
      'broken.yaml': 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: [unclosed\n',
      'unknown.yaml':
        'apiVersion: unknown.example.org/v1\nkind: Gadget\nmetadata:\n  name: w\n  namespace: bad-input\n',
      'noname.yaml': 'apiVersion: v1\nkind: ConfigMap\nmetadata: {}\n',
    });
    const errors = await waitError(e, 'RootSync', { name: 'bad-input' }, 'KNV1006');
    const text = errors.join('\n');
    assert.match(text, /KNV1006: broken\.yaml: invalid YAML/);
    // parse errors stop the run before the other checks; fix them and the next layer is reported
    assert.equal((await getObject(e.cp, cmPath('bad-input', 'cm')))?.data?.v, 'good', 'nothing applied');

    await pushFiles(e, image, {
      'cm.yaml': configMap('cm', 'bad-input', { v: 'should not apply' }),
      'unknown.yaml':
        'apiVersion: unknown.example.org/v1\nkind: Gadget\nmetadata:\n  name: w\n  namespace: bad-input\n',
      'noname.yaml': 'apiVersion: v1\nkind: ConfigMap\nmetadata: {}\n',
      'dup.yaml': configMap('cm', 'bad-input', { v: 'duplicate' }),
    });
    const later = await waitError(e, 'RootSync', { name: 'bad-input' }, 'KNV1021');
    const all = later.join('\n');
    assert.match(
      all,
      /KNV1021: unknown\.yaml: No CustomResourceDefinition is defined for the type "Gadget\.unknown\.example\.org"/,
    );
    assert.match(all, /KNV1031: noname\.yaml: ConfigMap has no metadata\.name/);
    assert.match(
      all,
      /KNV1029: (dup|cm)\.yaml: ConfigMap "cm" in namespace "bad-input" is also declared in (cm|dup)\.yaml/,
    );
    assert.equal((await getObject(e.cp, cmPath('bad-input', 'cm')))?.data?.v, 'good', 'nothing applied');
    assert.ok(await getObject(e.cp, '/api/v1/namespaces/bad-input'), 'nothing pruned');

    // An image whose layer climbs out with ../ is refused; nothing is written outside the work folder.
    const before = new Set(await readdir(tmpdir()));
    const evil = join(e.work, 'evil.tar');
    await writeFile(
      evil,
      tarArchive([
        { path: 'ok.yaml', content: configMap('cm', 'bad-input', { v: 'evil' }) },
        { path: '../../escaped-airlock.yaml', content: 'x: 1\n' },
      ]),
    );
    const res = await e.airlock(['append', '-f', evil, '-t', image]);
    assert.equal(res.code, 0, res.stderr);
    const unsafe = await waitError(
      e,
      'RootSync',
      { name: 'bad-input' },
      /KNV2004: .*unsafe or invalid layer.*\.\./,
    );
    assert.ok(unsafe.length > 0);
    assert.equal((await getObject(e.cp, cmPath('bad-input', 'cm')))?.data?.v, 'good');
    const leaked = (await readdir(tmpdir())).filter((n) => !before.has(n) && n.includes('escaped'));
    assert.deepEqual(leaked, []);
    await deleteSync(e.cp, 'RootSync', { name: 'bad-input' });
  });

  it('reports KNV2004 while the registry is down, keeps what was applied, and recovers by itself', async (t) => {
    const e = await ready(t);
    if (!e) return;
    // A registry of its own, so stopping it does not disturb the other tests.
    const registry = await startAirlockProcess();
    t.after(() => registry.stop());
    const image = `${registry.host}/apps/outage:v1`;
    const commit = await pushFiles(e, image, {
      'ns.yaml': ns('outage'),
      'cm.yaml': configMap('cm', 'outage', { v: '1' }),
    });
    await applySync(
      e.cp,
      'RootSync',
      { name: 'outage' },
      { sourceType: 'oci', oci: { image, period: '2s' } },
    );
    await waitSynced(e, 'RootSync', { name: 'outage' }, { commit });

    await registry.stop();
    const errors = await waitError(e, 'RootSync', { name: 'outage' }, 'KNV2004', 30_000);
    assert.match(errors.join('\n'), /KNV2004: failed to pull image .*outage/);
    assert.ok(await getObject(e.cp, cmPath('outage', 'cm')), 'the last synced state stays applied');

    const again = await startAirlockProcess({
      dataDir: registry.dataDir,
      port: Number(registry.host.split(':')[1]),
    });
    t.after(() => again.stop());
    const recovered = await waitSynced(e, 'RootSync', { name: 'outage' }, { commit, timeoutMs: 30_000 });
    assert.deepEqual(statusErrors(recovered), []);
    await deleteSync(e.cp, 'RootSync', { name: 'outage' });
  });

  it('converges after the controller is killed mid-apply', async (t) => {
    const e = await ready(t);
    if (!e) return;
    const image = `${e.registry.host}/apps/many:v1`;
    const files: Record<string, string> = { 'ns.yaml': ns('many') };
    for (let i = 0; i < 300; i++) files[`cm-${i}.yaml`] = configMap(`cm-${i}`, 'many', { i: String(i) });
    const commit = await pushFiles(e, image, files);
    await applySync(e.cp, 'RootSync', { name: 'many' }, { sourceType: 'oci', oci: { image, period: '1h' } });
    // Kill as soon as the first objects land.
    await eventually(async () => ((await getObject(e.cp, cmPath('many', 'cm-0'))) ? true : undefined), {
      timeoutMs: 30_000,
    });
    await e.controller.stop('SIGKILL');
    const partial = (await readSync(e.cp, 'RootSync', { name: 'many' }))?.status?.lastSyncedCommit;
    await e.startController();
    await waitSynced(e, 'RootSync', { name: 'many' }, { commit, timeoutMs: 90_000 });
    const list = await e.cp.request<{ items: unknown[] }>(
      'GET',
      '/api/v1/namespaces/many/configmaps?labelSelector=app.kubernetes.io/managed-by%3Dconfigmanagement.gke.io',
    );
    assert.equal(list.json.items.length, 300);
    void partial;
    await deleteSync(e.cp, 'RootSync', { name: 'many' });
  });
});
