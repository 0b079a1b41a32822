import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mapLimit, stamp, type ApplyIdentity } from './applier.js';
import type { DeclaredObject } from './declared.js';

const IDENTITY: ApplyIdentity = {
  fieldManager: 'root-reconciler',
  manager: ':root_root-sync',
  inventory: 'config-management-system_root-sync',
};

const declared: DeclaredObject = {
  object: {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: {
      name: 'web',
      namespace: 'shop',
      annotations: { team: 'web', 'configsync.gke.io/manager': 'stale' },
      labels: { app: 'web' },
    },
    spec: { replicas: 2 },
  },
  path: 'apps/web.yaml',
  id: { group: 'apps', kind: 'Deployment', namespace: 'shop', name: 'web' },
  namespaced: true,
};

describe('stamp', () => {
  it("adds Config Sync's management annotations and labels, keeping the object's own", () => {
    const stamped = stamp(declared, IDENTITY, 'c0ffee');
    assert.deepEqual(stamped, {
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: {
        name: 'web',
        namespace: 'shop',
        annotations: {
          team: 'web',
          'configmanagement.gke.io/managed': 'enabled',
          'configsync.gke.io/manager': ':root_root-sync',
          'configsync.gke.io/resource-id': 'apps_deployment_shop_web',
          'config.k8s.io/owning-inventory': 'config-management-system_root-sync',
          'configmanagement.gke.io/token': 'c0ffee',
          'configmanagement.gke.io/source-path': 'apps/web.yaml',
        },
        labels: {
          app: 'web',
          'app.kubernetes.io/managed-by': 'configmanagement.gke.io',
          'configsync.gke.io/declared-version': 'v1',
        },
      },
      spec: { replicas: 2 },
    });
  });

  it('does not change the declared object', () => {
    const before = structuredClone(declared.object);
    stamp(declared, IDENTITY, 'c0ffee');
    assert.deepEqual(declared.object, before);
  });

  it('stamps an object without annotations or labels, with the version of a core apiVersion', () => {
    const stamped = stamp(
      {
        object: { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'test' } },
        path: 'ns.yaml',
        id: { group: '', kind: 'Namespace', namespace: '', name: 'test' },
        namespaced: false,
      },
      IDENTITY,
      'abc',
    );
    assert.equal(stamped.metadata.annotations?.['configsync.gke.io/resource-id'], '_namespace_test');
    assert.equal(stamped.metadata.labels?.['configsync.gke.io/declared-version'], 'v1');
  });
});

describe('mapLimit', () => {
  /** Work that finishes when released, recording how many run at once. */
  function gate(): {
    work: (n: number) => Promise<number>;
    running: () => number;
    peak: () => number;
    releaseAll: () => void;
  } {
    let running = 0;
    let peak = 0;
    const waiting: (() => void)[] = [];
    return {
      work: async (n) => {
        running++;
        peak = Math.max(peak, running);
        await new Promise<void>((resolve) => waiting.push(resolve));
        running--;
        return n * 10;
      },
      running: () => running,
      peak: () => peak,
      releaseAll: () => {
        for (const release of waiting.splice(0)) release();
      },
    };
  }

  const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

  it('runs at most `limit` at a time and returns results in input order', async () => {
    const g = gate();
    const done = mapLimit([1, 2, 3, 4, 5, 6, 7], 3, g.work);
    await tick();
    assert.equal(g.running(), 3);
    while (g.running() > 0) {
      g.releaseAll();
      await tick();
    }
    assert.deepEqual(await done, [10, 20, 30, 40, 50, 60, 70]);
    assert.equal(g.peak(), 3);
  });

  it('keeps results in input order when later items finish first', async () => {
    const delays = [30, 1, 15, 5];
    const result = await mapLimit(delays, 2, (ms) => new Promise<number>((r) => setTimeout(() => r(ms), ms)));
    assert.deepEqual(result, delays);
  });

  it('starts no more workers than items', async () => {
    const g = gate();
    const done = mapLimit([1, 2], 8, g.work);
    await tick();
    assert.equal(g.running(), 2);
    g.releaseAll();
    assert.deepEqual(await done, [10, 20]);
  });

  it('returns an empty list for no items without calling work', async () => {
    let calls = 0;
    assert.deepEqual(
      await mapLimit([], 4, () => {
        calls++;
        return Promise.resolve(0);
      }),
      [],
    );
    assert.equal(calls, 0);
  });

  it('rejects with the first failure', async () => {
    await assert.rejects(
      mapLimit([1, 2, 3], 2, (n) => (n === 2 ? Promise.reject(new Error('boom 2')) : Promise.resolve(n))),
      /boom 2/,
    );
  });
});
