import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { KubeObject } from '../kube/index.js';
import { computeStatus } from './kstatus.js';

function live(
  kind: string,
  parts: { spec?: unknown; status?: unknown; metadata?: Record<string, unknown>; apiVersion?: string } = {},
): KubeObject {
  return {
    apiVersion: parts.apiVersion ?? 'v1',
    kind,
    metadata: { name: 'x', ...parts.metadata },
    ...(parts.spec === undefined ? {} : { spec: parts.spec }),
    ...(parts.status === undefined ? {} : { status: parts.status }),
  };
}

const cond = (type: string, status: string, reason?: string): Record<string, string> => ({
  type,
  status,
  ...(reason ? { reason } : {}),
});

describe('computeStatus', () => {
  it('is NotFound for an object that does not exist', () => {
    assert.equal(computeStatus(undefined), 'NotFound');
  });

  it('is Terminating for an object being deleted, whatever its kind says', () => {
    const ready = { conditions: [cond('Ready', 'True')], phase: 'Bound' };
    assert.equal(
      computeStatus(live('ConfigMap', { metadata: { deletionTimestamp: '2024-01-01T00:00:00Z' } })),
      'Terminating',
    );
    assert.equal(
      computeStatus(
        live('PersistentVolumeClaim', {
          metadata: { deletionTimestamp: '2024-01-01T00:00:00Z' },
          status: ready,
        }),
      ),
      'Terminating',
    );
  });

  it('is InProgress while observedGeneration lags generation, even for a ready Deployment', () => {
    const status = { observedGeneration: 1, readyReplicas: 1, updatedReplicas: 1 };
    assert.equal(
      computeStatus(live('Deployment', { metadata: { generation: 2 }, spec: { replicas: 1 }, status })),
      'InProgress',
    );
    assert.equal(
      computeStatus(
        live('Deployment', {
          metadata: { generation: 2 },
          spec: { replicas: 1 },
          status: { ...status, observedGeneration: 2 },
        }),
      ),
      'Current',
    );
  });

  it('ignores the generation when the status has no observedGeneration', () => {
    assert.equal(computeStatus(live('ConfigMap', { metadata: { generation: 5 } })), 'Current');
  });

  describe('Namespace', () => {
    it('is Current when active and Terminating in phase Terminating', () => {
      assert.equal(computeStatus(live('Namespace', { status: { phase: 'Active' } })), 'Current');
      assert.equal(computeStatus(live('Namespace')), 'Current');
      assert.equal(computeStatus(live('Namespace', { status: { phase: 'Terminating' } })), 'Terminating');
    });
  });

  describe('CustomResourceDefinition', () => {
    const crd = (...conditions: Record<string, string>[]): KubeObject =>
      live('CustomResourceDefinition', { apiVersion: 'apiextensions.k8s.io/v1', status: { conditions } });

    it('is Current once Established', () => {
      assert.equal(computeStatus(crd(cond('NamesAccepted', 'True'), cond('Established', 'True'))), 'Current');
    });

    it('is InProgress until Established', () => {
      assert.equal(computeStatus(crd()), 'InProgress');
      assert.equal(computeStatus(crd(cond('Established', 'False'))), 'InProgress');
    });

    it('is Failed when its names are not accepted', () => {
      assert.equal(computeStatus(crd(cond('NamesAccepted', 'False'), cond('Established', 'True'))), 'Failed');
    });
  });

  describe('Deployment', () => {
    const deployment = (spec: unknown, status: unknown): KubeObject =>
      live('Deployment', { apiVersion: 'apps/v1', spec, status });

    it('is Current when all wanted replicas are updated and ready', () => {
      assert.equal(
        computeStatus(deployment({ replicas: 3 }, { readyReplicas: 3, updatedReplicas: 3 })),
        'Current',
      );
    });

    it('is InProgress while replicas are not ready or not updated', () => {
      assert.equal(
        computeStatus(deployment({ replicas: 3 }, { readyReplicas: 2, updatedReplicas: 3 })),
        'InProgress',
      );
      assert.equal(
        computeStatus(deployment({ replicas: 3 }, { readyReplicas: 3, updatedReplicas: 1 })),
        'InProgress',
      );
    });

    it('wants one replica when spec.replicas is absent and none when it is 0', () => {
      assert.equal(computeStatus(deployment({}, {})), 'InProgress');
      assert.equal(computeStatus(deployment({}, { readyReplicas: 1, updatedReplicas: 1 })), 'Current');
      assert.equal(computeStatus(deployment({ replicas: 0 }, {})), 'Current');
    });

    it('is Failed when its progress deadline is exceeded', () => {
      assert.equal(
        computeStatus(
          deployment(
            { replicas: 1 },
            { conditions: [cond('Progressing', 'False', 'ProgressDeadlineExceeded')], readyReplicas: 0 },
          ),
        ),
        'Failed',
      );
    });

    it('counts only ready replicas for a ReplicaSet and updated ones for a StatefulSet', () => {
      assert.equal(
        computeStatus(live('ReplicaSet', { spec: { replicas: 2 }, status: { readyReplicas: 2 } })),
        'Current',
      );
      assert.equal(
        computeStatus(live('StatefulSet', { spec: { replicas: 2 }, status: { readyReplicas: 2 } })),
        'InProgress',
      );
    });
  });

  describe('DaemonSet', () => {
    it('is Current when every scheduled pod is available', () => {
      assert.equal(
        computeStatus(live('DaemonSet', { status: { desiredNumberScheduled: 2, numberAvailable: 2 } })),
        'Current',
      );
      assert.equal(
        computeStatus(live('DaemonSet', { status: { desiredNumberScheduled: 2, numberAvailable: 1 } })),
        'InProgress',
      );
      assert.equal(computeStatus(live('DaemonSet', { status: {} })), 'InProgress');
    });
  });

  describe('Job', () => {
    it('is Current when complete or running, Failed when failed, InProgress before it starts', () => {
      assert.equal(
        computeStatus(live('Job', { status: { conditions: [cond('Complete', 'True')] } })),
        'Current',
      );
      assert.equal(computeStatus(live('Job', { status: { active: 1 } })), 'Current');
      assert.equal(computeStatus(live('Job', { status: { succeeded: 1 } })), 'Current');
      assert.equal(
        computeStatus(live('Job', { status: { active: 1, conditions: [cond('Failed', 'True')] } })),
        'Failed',
      );
      assert.equal(computeStatus(live('Job', { status: {} })), 'InProgress');
    });
  });

  describe('Pod', () => {
    it('follows its phase and Ready condition', () => {
      assert.equal(computeStatus(live('Pod', { status: { phase: 'Succeeded' } })), 'Current');
      assert.equal(computeStatus(live('Pod', { status: { phase: 'Failed' } })), 'Failed');
      assert.equal(
        computeStatus(live('Pod', { status: { phase: 'Running', conditions: [cond('Ready', 'True')] } })),
        'Current',
      );
      assert.equal(
        computeStatus(live('Pod', { status: { phase: 'Running', conditions: [cond('Ready', 'False')] } })),
        'InProgress',
      );
      assert.equal(computeStatus(live('Pod', { status: { phase: 'Pending' } })), 'InProgress');
    });
  });

  describe('PersistentVolumeClaim', () => {
    it('is Current once Bound', () => {
      assert.equal(computeStatus(live('PersistentVolumeClaim', { status: { phase: 'Bound' } })), 'Current');
      assert.equal(
        computeStatus(live('PersistentVolumeClaim', { status: { phase: 'Pending' } })),
        'InProgress',
      );
    });
  });

  describe('Service', () => {
    it('is Current unless it is a LoadBalancer without ingress', () => {
      assert.equal(computeStatus(live('Service', { spec: { type: 'ClusterIP' } })), 'Current');
      assert.equal(computeStatus(live('Service', { spec: {} })), 'Current');
      assert.equal(
        computeStatus(live('Service', { spec: { type: 'LoadBalancer' }, status: { loadBalancer: {} } })),
        'InProgress',
      );
      assert.equal(
        computeStatus(
          live('Service', {
            spec: { type: 'LoadBalancer' },
            status: { loadBalancer: { ingress: [{ ip: '10.0.0.1' }] } },
          }),
        ),
        'Current',
      );
    });
  });

  describe('other kinds', () => {
    const custom = (...conditions: Record<string, string>[]): KubeObject =>
      live('Widget', { apiVersion: 'example.com/v1', status: { conditions } });

    it('are Current when they exist', () => {
      assert.equal(computeStatus(live('ConfigMap')), 'Current');
      assert.equal(computeStatus(custom()), 'Current');
      assert.equal(computeStatus(custom(cond('Ready', 'True'))), 'Current');
    });

    it('are Failed when Stalled', () => {
      assert.equal(computeStatus(custom(cond('Stalled', 'True'), cond('Ready', 'True'))), 'Failed');
      assert.equal(computeStatus(custom(cond('Stalled', 'False'))), 'Current');
    });

    it('are InProgress while Reconciling or not Ready', () => {
      assert.equal(computeStatus(custom(cond('Reconciling', 'True'))), 'InProgress');
      assert.equal(computeStatus(custom(cond('Ready', 'False'))), 'InProgress');
    });

    it('ignore conditions that are not a list', () => {
      assert.equal(
        computeStatus(live('Widget', { status: { conditions: { type: 'Ready', status: 'False' } } })),
        'Current',
      );
    });
  });
});
