/**
 * The install manifests on a real API server (applied with real kubectl --server-side) and leader
 * election between two controller replicas: only the Lease holder reconciles; when it dies the other
 * takes over.
 */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { startControlPlane, requireKube, type ControlPlane } from '../helpers/kube.js';
import { requirePeer } from '../helpers/peers.js';
import { CLI, run, runOk, startAirlockProcess, tempDir, type RunningProcess } from '../helpers/processes.js';
import {
  applySync,
  eventually,
  getObject,
  startControllerProcess,
  type Controller,
} from '../helpers/sync.js';

describe('install manifests and leader election', { timeout: 600_000 }, () => {
  let cp: ControlPlane | undefined;
  let registry: RunningProcess | undefined;
  const controllers: Controller[] = [];
  after(async () => {
    for (const c of controllers) await c.stop('SIGKILL');
    await registry?.stop();
    await cp?.stop();
  });

  it('applies cleanly with kubectl apply --server-side, and two --leader-elect replicas hand over the Lease', async (t) => {
    const binaries = requireKube(t);
    const kubectl = requirePeer(t, 'kubectl');
    if (!binaries || !kubectl) return;
    cp = await startControlPlane({ binaries });
    registry = await startAirlockProcess();
    const manifests = await run(process.execPath, [CLI, 'sync', 'manifests', '--image', 'airlock:e2e']);
    assert.equal(manifests.code, 0, manifests.stderr);
    const applied = await run(kubectl, ['--kubeconfig', cp.kubeconfig, 'apply', '--server-side', '-f', '-'], {
      input: manifests.stdout,
    });
    // CRDs must be established before nothing else needs them here, so one pass applies everything.
    assert.equal(applied.code, 0, `${applied.stdout}\n${applied.stderr}`);
    assert.match(
      applied.stdout,
      /customresourcedefinition\.apiextensions\.k8s\.io\/rootsyncs\.configsync\.gke\.io serverside-applied/,
    );
    assert.match(applied.stdout, /deployment\.apps\/airlock-sync-controller serverside-applied/);
    await eventually(async () => {
      const crd = await getObject<{ status?: { conditions?: { type: string; status: string }[] } }>(
        cp!,
        '/apis/apiextensions.k8s.io/v1/customresourcedefinitions/rootsyncs.configsync.gke.io',
      );
      return crd?.status?.conditions?.some((c) => c.type === 'Established' && c.status === 'True')
        ? true
        : undefined;
    });

    const first = startControllerProcess(cp.kubeconfig, ['--leader-elect']);
    controllers.push(first);
    const lease = (): Promise<
      { spec?: { holderIdentity?: string; leaseTransitions?: number } } | undefined
    > =>
      getObject(
        cp!,
        '/apis/coordination.k8s.io/v1/namespaces/config-management-system/leases/airlock-sync-controller',
      );
    const holder = await eventually(async () => (await lease())?.spec?.holderIdentity, {
      describe: () => first.output(),
    });
    assert.match(holder, new RegExp(`_${first.child.pid}$`));
    const second = startControllerProcess(cp.kubeconfig, ['--leader-elect']);
    controllers.push(second);

    // Only the leader reconciles.
    const work = await tempDir('airlock-lease-');
    await runOk(
      'sh',
      [
        '-c',
        `printf 'apiVersion: v1\\nkind: Namespace\\nmetadata:\\n  name: leased\\n' > ns.yaml && tar -cf ns.tar ns.yaml`,
      ],
      { cwd: work },
    );
    const image = `${registry.host}/apps/leased:v1`;
    await runOk(process.execPath, [CLI, 'append', '-f', `${work}/ns.tar`, '-t', image]);
    await applySync(cp, 'RootSync', { name: 'leased' }, { sourceType: 'oci', oci: { image } });
    await eventually(async () => (await getObject(cp!, '/api/v1/namespaces/leased')) ?? undefined, {
      describe: () => first.output(),
    });
    assert.match(first.output(), /reconciler started/);
    assert.doesNotMatch(second.output(), /reconciler started/);

    // The leader dies without releasing: after the lease expires (15 s) the other one takes over.
    await first.stop('SIGKILL');
    const next = await eventually(
      async () => {
        const h = (await lease())?.spec?.holderIdentity;
        return h && h !== holder ? h : undefined;
      },
      { timeoutMs: 40_000, describe: () => second.output() },
    );
    assert.match(next, new RegExp(`_${second.child.pid}$`));
    await eventually(() => Promise.resolve(/reconciler started/.test(second.output()) ? true : undefined), {
      describe: () => second.output(),
    });
    assert.ok(((await lease())?.spec?.leaseTransitions ?? 0) >= 1);
  });
});
