/**
 * The seeds' main workflow on a real control plane: package test-namespace.yaml, push it (airlock append,
 * airlock push, crane append, oras push), apply a RootSync written for Config Sync, and see SYNCED with
 * `namespace/test  Current` in `airlock status`.
 */
import assert from 'node:assert/strict';
import { after, describe, it, type TestContext } from 'node:test';
import { requirePeer } from '../helpers/peers.js';
import { runOk } from '../helpers/processes.js';
import {
  applySync,
  deleteSync,
  eventually,
  getObject,
  startSyncEnv,
  waitSynced,
  writeFiles,
  type SyncEnv,
} from '../helpers/sync.js';

const NAMESPACE_YAML = (name: string): string =>
  `apiVersion: v1\nkind: Namespace\nmetadata:\n  name: ${name}\n`;

let env: SyncEnv | undefined;

describe('seed workflow: package, push, RootSync, nomos-style status', { timeout: 600_000 }, () => {
  after(async () => {
    await env?.stop();
  });

  async function ready(t: TestContext): Promise<SyncEnv | undefined> {
    env ??= await startSyncEnv(t);
    return env;
  }

  it('syncs an image made with airlock append (crane semantics), auth k8sserviceaccount, and prints the nomos status layout', async (t) => {
    const e = await ready(t);
    if (!e) return;
    const dir = await writeFiles(e, 'seed-append', { 'test-namespace.yaml': NAMESPACE_YAML('test') });
    await runOk('tar', ['-cf', 'test-namespace.tar', 'test-namespace.yaml'], { cwd: dir });
    const image = `${e.registry.host}/project/repo/test-namespace:v1`;
    const pushed = await e.airlock(['append', '-f', `${dir}/test-namespace.tar`, '-t', image]);
    assert.equal(pushed.code, 0, pushed.stderr);

    await applySync(
      e.cp,
      'RootSync',
      { name: 'root-sync-test' },
      {
        sourceFormat: 'unstructured',
        sourceType: 'oci',
        oci: { image, dir: '.', auth: 'k8sserviceaccount' },
      },
    );
    const synced = await waitSynced(e, 'RootSync', { name: 'root-sync-test' });
    const commit = synced.status!.lastSyncedCommit!;
    assert.match(commit, /^[0-9a-f]{64}$/);
    assert.equal(
      synced.metadata.annotations?.['configsync.gke.io/image-to-sync'],
      `${e.registry.host}/project/repo/test-namespace@sha256:${commit}`,
    );

    const ns = await getObject(e.cp, '/api/v1/namespaces/test');
    assert.ok(ns, 'namespace test exists');
    assert.equal(ns.metadata.annotations?.['configsync.gke.io/manager'], ':root_root-sync-test');
    assert.equal(ns.metadata.annotations?.['configmanagement.gke.io/managed'], 'enabled');
    assert.equal(ns.metadata.annotations?.['configsync.gke.io/resource-id'], '_namespace_test');
    assert.equal(
      ns.metadata.annotations?.['config.k8s.io/owning-inventory'],
      'config-management-system_root-sync-test',
    );

    const status = await eventually(async () => {
      const res = await e.airlock(['status', '--name', 'root-sync-test']);
      return res.stdout.includes('Current') ? res : undefined;
    });
    assert.equal(status.code, 0, status.stderr);
    const lines = status.stdout.split('\n');
    assert.equal(lines[0], 'Connecting to clusters...');
    assert.equal(lines[2], '*airlock-e2e');
    assert.equal(lines[3], '   --------------------');
    assert.match(lines[4]!, new RegExp(`^   <root>:root-sync-test +${image.replace(/[.]/g, '\\.')}$`));
    assert.match(lines[5]!, new RegExp(`^   SYNCED +${commit}$`));
    assert.equal(lines[6], '   Managed resources:');
    assert.match(lines[7]!, /^ {6}NAMESPACE +NAME +STATUS +SOURCEHASH$/);
    assert.match(lines[8]!, new RegExp(`^ {6} +namespace/test +Current +${commit.slice(0, 7)}$`));
    // The columns line up under their headings.
    assert.equal(lines[8]!.indexOf('namespace/test'), lines[7]!.indexOf(' NAME ') + 1);
    assert.equal(lines[8]!.indexOf('Current'), lines[7]!.indexOf('STATUS'));

    const json = await e.airlock(['status', '--name', 'root-sync-test', '--output', 'json']);
    const parsed = JSON.parse(json.stdout) as { syncs: { state: string; commit: string }[] }[];
    assert.equal(parsed[0]!.syncs[0]!.state, 'SYNCED');
    assert.equal(parsed[0]!.syncs[0]!.commit, commit);
  });

  it('syncs an oras-style artifact made with airlock push (a single .tar.gz layer)', async (t) => {
    const e = await ready(t);
    if (!e) return;
    const dir = await writeFiles(e, 'seed-push', { 'test-namespace.yaml': NAMESPACE_YAML('test-push') });
    await runOk('tar', ['-czf', 'test-namespace.tar.gz', 'test-namespace.yaml'], { cwd: dir });
    const image = `${e.registry.host}/project/repo/test-namespace-push:v1`;
    const pushed = await e.airlock(['push', image, 'test-namespace.tar.gz'], { cwd: dir });
    assert.equal(pushed.code, 0, pushed.stderr);
    await applySync(
      e.cp,
      'RootSync',
      { name: 'root-sync-push' },
      {
        sourceFormat: 'unstructured',
        sourceType: 'oci',
        oci: { image, dir: '.', auth: 'none' },
      },
    );
    await waitSynced(e, 'RootSync', { name: 'root-sync-push' });
    assert.ok(await getObject(e.cp, '/api/v1/namespaces/test-push'));
    await deleteSync(e.cp, 'RootSync', { name: 'root-sync-push' });
  });

  it('syncs images pushed by real crane append and oras push', async (t) => {
    const e = await ready(t);
    if (!e) return;
    const crane = requirePeer(t, 'crane');
    const oras = requirePeer(t, 'oras');
    if (!crane || !oras) return;
    const dir = await writeFiles(e, 'seed-peers', {
      'crane/test-namespace.yaml': NAMESPACE_YAML('test-crane'),
      'oras/test-namespace.yaml': NAMESPACE_YAML('test-oras'),
    });
    await runOk('tar', ['-cf', '../test-namespace.tar', 'test-namespace.yaml'], { cwd: `${dir}/crane` });
    await runOk('tar', ['-czf', '../test-namespace.tar.gz', 'test-namespace.yaml'], { cwd: `${dir}/oras` });
    const craneImage = `${e.registry.host}/project/repo/test-namespace-crane:v1`;
    const orasImage = `${e.registry.host}/project/repo/test-namespace-oras:v1`;
    await runOk(crane, ['append', '--insecure', '-f', 'test-namespace.tar', '-t', craneImage], { cwd: dir });
    await runOk(oras, ['push', '--plain-http', orasImage, 'test-namespace.tar.gz'], { cwd: dir });
    for (const [name, image] of [
      ['root-sync-crane', craneImage],
      ['root-sync-oras', orasImage],
    ] as const) {
      await applySync(
        e.cp,
        'RootSync',
        { name },
        {
          sourceFormat: 'unstructured',
          sourceType: 'oci',
          oci: { image, dir: '.', auth: 'none' },
        },
      );
    }
    await waitSynced(e, 'RootSync', { name: 'root-sync-crane' });
    await waitSynced(e, 'RootSync', { name: 'root-sync-oras' });
    assert.ok(await getObject(e.cp, '/api/v1/namespaces/test-crane'));
    assert.ok(await getObject(e.cp, '/api/v1/namespaces/test-oras'));
    await deleteSync(e.cp, 'RootSync', { name: 'root-sync-crane' });
    await deleteSync(e.cp, 'RootSync', { name: 'root-sync-oras' });
  });
});
