import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseAllDocuments } from 'yaml';
import { webhookManifests } from './manifests.js';

const CA = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n';

/** The fields of the printed objects the tests look at. */
interface Doc {
  kind: string;
  metadata: { namespace?: string };
  spec: {
    template: {
      spec: {
        containers: Array<{ image: string; args: string[]; env?: unknown }>;
        volumes: Array<{ secret: { secretName: string } }>;
      };
    };
  };
  webhooks: Array<{
    clientConfig: { service: unknown; caBundle: string };
    rules: unknown;
    admissionReviewVersions: string[];
    sideEffects: string;
  }>;
}

function docs(yaml: string): Doc[] {
  return parseAllDocuments(yaml).map((d) => d.toJS() as Doc);
}

describe('webhookManifests', () => {
  it('prints a namespace-agnostic Deployment and Service and a webhook configuration with caBundle', () => {
    const printed = docs(webhookManifests({ caPem: CA, namespace: 'sv', image: 'reg.local/airlock:0.1.0' }));
    assert.deepEqual(
      printed.map((d) => d.kind),
      ['Deployment', 'Service', 'ValidatingWebhookConfiguration'],
    );
    const [deployment, service, config] = printed as [Doc, Doc, Doc];
    assert.equal(deployment.metadata.namespace, undefined);
    assert.equal(service.metadata.namespace, undefined);
    const container = deployment.spec.template.spec.containers[0]!;
    assert.equal(container.image, 'reg.local/airlock:0.1.0');
    assert.deepEqual(container.args.slice(0, 3), ['webhook', '--addr', '0.0.0.0:10250']);
    assert.deepEqual(
      deployment.spec.template.spec.volumes.map((v) => v.secret.secretName),
      ['webhook-tls', 'cosign-key'],
    );
    const webhook = config.webhooks[0]!;
    assert.deepEqual(webhook.clientConfig.service, {
      name: 'signature-verification-service',
      namespace: 'sv',
      path: '/validate',
      port: 10250,
    });
    assert.equal(Buffer.from(webhook.clientConfig.caBundle, 'base64').toString(), CA);
    assert.deepEqual(webhook.rules, [
      {
        apiGroups: ['configsync.gke.io'],
        apiVersions: ['v1beta1', 'v1alpha1'],
        operations: ['UPDATE'],
        resources: ['rootsyncs', 'reposyncs'],
        scope: '*',
      },
    ]);
    assert.deepEqual(webhook.admissionReviewVersions, ['v1', 'v1beta1']);
    assert.equal(webhook.sideEffects, 'None');
  });

  it('mounts registry credentials as DOCKER_CONFIG when a Secret is named', () => {
    const [deployment] = docs(webhookManifests({ caPem: CA, registrySecret: 'regcred' }));
    const spec = deployment!.spec.template.spec;
    assert.deepEqual(spec.containers[0]?.env, [{ name: 'DOCKER_CONFIG', value: '/docker-config' }]);
    assert.equal(spec.volumes[2]?.secret.secretName, 'regcred');
  });
});
