import { stringify } from 'yaml';
import { IMAGE_TO_SYNC_ANNOTATION } from './admission.js';

export interface WebhookManifestOptions {
  /** PEM of the CA that signed the serving certificate (goes, base64, into caBundle). */
  readonly caPem: string;
  /** Namespace the Deployment and Service are applied in (the webhook configuration points there). Default: signature-verification. */
  readonly namespace?: string;
  /** Container image with the airlock binary. Default: airlock:latest. */
  readonly image?: string;
  /** Name of the Service (and the prefix of the others). Default: signature-verification-service. */
  readonly serviceName?: string;
  /** Deployment name. Default: signature-verification-server. */
  readonly deploymentName?: string;
  /** ServiceAccount the server runs as (for registry access). Default: signature-verification-sa. */
  readonly serviceAccount?: string;
  /** Name of the webhook in the ValidatingWebhookConfiguration (shown in denials). Default: imageverification.webhook.com. */
  readonly webhookName?: string;
  /** Secret (generic) holding cosign.pub. Default: cosign-key. */
  readonly keySecret?: string;
  /** Secret (kubernetes.io/tls) holding tls.crt and tls.key. Default: webhook-tls. */
  readonly tlsSecret?: string;
  /** A kubernetes.io/dockerconfigjson Secret with registry credentials, mounted as DOCKER_CONFIG. Default: none. */
  readonly registrySecret?: string;
  /** More `airlock webhook` flags (e.g. `--ca-file`). Default: none. */
  readonly extraArgs?: readonly string[];
  /** Port served. Default: 10250. */
  readonly port?: number;
}

/**
 * The Kubernetes objects that run the admission webhook: a namespace-agnostic Deployment and Service
 * (apply them with `-n NAMESPACE`) and a ValidatingWebhookConfiguration for RootSync/RepoSync updates.
 */
export function webhookManifests(options: WebhookManifestOptions): string {
  const namespace = options.namespace ?? 'signature-verification';
  const service = options.serviceName ?? 'signature-verification-service';
  const deployment = options.deploymentName ?? 'signature-verification-server';
  const port = options.port ?? 10250;
  const keySecret = options.keySecret ?? 'cosign-key';
  const tlsSecret = options.tlsSecret ?? 'webhook-tls';
  const labels = { app: deployment };
  const args = [
    'webhook',
    '--addr',
    `0.0.0.0:${port}`,
    '--tls-cert',
    '/tls/tls.crt',
    '--tls-key',
    '/tls/tls.key',
    '--key',
    '/cosign-key/cosign.pub',
    ...(options.extraArgs ?? []),
  ];
  const registry = options.registrySecret;
  const objects: unknown[] = [
    {
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name: deployment, labels },
      spec: {
        replicas: 1,
        selector: { matchLabels: labels },
        template: {
          metadata: { labels },
          spec: {
            serviceAccountName: options.serviceAccount ?? 'signature-verification-sa',
            containers: [
              {
                name: deployment,
                image: options.image ?? 'airlock:latest',
                command: ['airlock'],
                args,
                ports: [{ containerPort: port }],
                ...(registry ? { env: [{ name: 'DOCKER_CONFIG', value: '/docker-config' }] } : {}),
                readinessProbe: { httpGet: { path: '/healthz', port, scheme: 'HTTPS' } },
                volumeMounts: [
                  { name: 'tls-certs', mountPath: '/tls', readOnly: true },
                  { name: 'cosign-key', mountPath: '/cosign-key', readOnly: true },
                  ...(registry
                    ? [{ name: 'registry-auth', mountPath: '/docker-config', readOnly: true }]
                    : []),
                ],
              },
            ],
            volumes: [
              { name: 'tls-certs', secret: { secretName: tlsSecret } },
              { name: 'cosign-key', secret: { secretName: keySecret } },
              ...(registry
                ? [
                    {
                      name: 'registry-auth',
                      secret: {
                        secretName: registry,
                        items: [{ key: '.dockerconfigjson', path: 'config.json' }],
                      },
                    },
                  ]
                : []),
            ],
          },
        },
      },
    },
    {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: service },
      spec: { ports: [{ port, targetPort: port }], selector: labels },
    },
    {
      apiVersion: 'admissionregistration.k8s.io/v1',
      kind: 'ValidatingWebhookConfiguration',
      metadata: { name: 'image-verification-webhook' },
      webhooks: [
        {
          name: options.webhookName ?? 'imageverification.webhook.com',
          clientConfig: {
            service: { name: service, namespace, path: '/validate', port },
            caBundle: Buffer.from(options.caPem).toString('base64'),
          },
          rules: [
            {
              apiGroups: ['configsync.gke.io'],
              apiVersions: ['v1beta1', 'v1alpha1'],
              operations: ['UPDATE'],
              resources: ['rootsyncs', 'reposyncs'],
              scope: '*',
            },
          ],
          admissionReviewVersions: ['v1', 'v1beta1'],
          sideEffects: 'None',
          failurePolicy: 'Fail',
          timeoutSeconds: 30,
        },
      ],
    },
  ];
  const header = [
    `# Airlock image-verification webhook: denies RootSync/RepoSync updates whose ${IMAGE_TO_SYNC_ANNOTATION}`,
    '# image has no valid cosign signature. Secrets the Deployment reads (create them first):',
    `#   kubectl create namespace ${namespace}`,
    `#   kubectl create secret generic ${keySecret} --from-file=cosign.pub -n ${namespace}`,
    `#   kubectl create secret tls ${tlsSecret} --cert=server.pem --key=server-key.pem -n ${namespace}`,
    ...(registry
      ? [`#   kubectl create secret docker-registry ${registry} --docker-server=HOST ... -n ${namespace}`]
      : []),
    `# Apply: kubectl apply -n ${namespace} -f THIS_FILE`,
  ];
  return `${header.join('\n')}\n${objects.map((o) => `---\n${stringify(o, { aliasDuplicateObjects: false })}`).join('')}`;
}
