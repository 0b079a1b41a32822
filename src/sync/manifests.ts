import type { KubeObject } from '../kube/index.js';
import { GROUP, SYSTEM_NAMESPACE } from './api.js';

const str = { type: 'string' };
const secretRef = (description: string): Record<string, unknown> => ({
  type: 'object',
  description,
  properties: { name: str },
});

/** spec.oci: Config Sync's fields, then Airlock's extensions (each says so in its description). */
const OCI_SCHEMA = {
  type: 'object',
  description: 'The OCI image to sync from.',
  properties: {
    image: { type: 'string', description: 'The image, e.g. HOST/project/repo/name:tag or @sha256:digest.' },
    dir: { type: 'string', description: 'The folder of the image to sync. Default ".".' },
    period: { type: 'string', description: 'How often the tag is resolved again (a duration). Default 15s.' },
    auth: { type: 'string', enum: ['none', 'k8sserviceaccount', 'gcpserviceaccount', 'gcenode'] },
    gcpServiceAccountEmail: str,
    caCertSecretRef: secretRef(
      'A Secret in the sync\'s namespace with the registry\'s CA certificate under key "cert".',
    ),
    secretRef: secretRef(
      'Airlock extension (not in Config Sync): a kubernetes.io/dockerconfigjson Secret with the registry credentials.',
    ),
    insecure: {
      type: 'boolean',
      description: 'Airlock extension (not in Config Sync): skip TLS verification.',
    },
    platform: {
      type: 'string',
      pattern: '^[a-z0-9]+/[a-z0-9_]+(/[a-z0-9]+)?$',
      description: 'Airlock extension (not in Config Sync): the os/arch[/variant] of an index to sync.',
    },
    verify: {
      type: 'object',
      description:
        'Airlock extension (not in Config Sync): apply only images signed (cosign) by a key in this Secret.',
      properties: {
        secretRef: secretRef('A Secret whose values are PEM public keys; any may match.'),
        ignoreReference: { type: 'boolean', description: 'Do not compare the signed docker-reference.' },
      },
    },
  },
};

function syncCrd(kind: 'RootSync' | 'RepoSync', nameLimit: number | undefined): KubeObject {
  const plural = `${kind.toLowerCase()}s`;
  const schema = {
    openAPIV3Schema: {
      type: 'object',
      properties: {
        apiVersion: str,
        kind: str,
        metadata: {
          type: 'object',
          ...(nameLimit ? { properties: { name: { type: 'string', maxLength: nameLimit } } } : {}),
        },
        spec: {
          type: 'object',
          'x-kubernetes-preserve-unknown-fields': true,
          properties: {
            sourceType: { type: 'string', enum: ['git', 'oci', 'helm'] },
            sourceFormat: { type: 'string', enum: ['unstructured', 'hierarchy', ''] },
            oci: OCI_SCHEMA,
          },
        },
        status: { type: 'object', 'x-kubernetes-preserve-unknown-fields': true },
      },
    },
  };
  const version = (name: string, storage: boolean): Record<string, unknown> => ({
    name,
    served: true,
    storage,
    subresources: { status: {} },
    schema,
    additionalPrinterColumns: [
      { name: 'SourceCommit', type: 'string', jsonPath: '.status.source.commit' },
      { name: 'SyncCommit', type: 'string', jsonPath: '.status.sync.commit' },
      { name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp' },
    ],
  });
  return {
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: { name: `${plural}.${GROUP}`, labels: { 'app.kubernetes.io/part-of': 'airlock' } },
    spec: {
      group: GROUP,
      names: { kind, listKind: `${kind}List`, plural, singular: kind.toLowerCase() },
      scope: 'Namespaced',
      versions: [version('v1beta1', true), version('v1alpha1', false)],
    },
  };
}

function resourceGroupCrd(): KubeObject {
  return {
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: { name: 'resourcegroups.kpt.dev', labels: { 'app.kubernetes.io/part-of': 'airlock' } },
    spec: {
      group: 'kpt.dev',
      names: {
        kind: 'ResourceGroup',
        listKind: 'ResourceGroupList',
        plural: 'resourcegroups',
        singular: 'resourcegroup',
      },
      scope: 'Namespaced',
      versions: [
        {
          name: 'v1alpha1',
          served: true,
          storage: true,
          subresources: { status: {} },
          schema: {
            openAPIV3Schema: {
              type: 'object',
              properties: {
                spec: { type: 'object', 'x-kubernetes-preserve-unknown-fields': true },
                status: { type: 'object', 'x-kubernetes-preserve-unknown-fields': true },
              },
            },
          },
        },
      ],
    },
  };
}

/**
 * RepoSync's name and namespace together may have at most 45 characters. CRD schemas (CEL included) can
 * only see metadata.name, so a ValidatingAdmissionPolicy enforces it.
 */
function repoSyncNamePolicy(): KubeObject[] {
  const name = 'reposync-name-length.configsync.gke.io';
  return [
    {
      apiVersion: 'admissionregistration.k8s.io/v1',
      kind: 'ValidatingAdmissionPolicy',
      metadata: { name },
      spec: {
        failurePolicy: 'Fail',
        matchConstraints: {
          resourceRules: [
            {
              apiGroups: [GROUP],
              apiVersions: ['*'],
              operations: ['CREATE', 'UPDATE'],
              resources: ['reposyncs'],
            },
          ],
        },
        validations: [
          {
            expression: 'size(object.metadata.name) + size(object.metadata.namespace) <= 45',
            messageExpression:
              "'RepoSync name and namespace together must have at most 45 characters; \"' + object.metadata.namespace + '/' + object.metadata.name + '\" has ' + string(size(object.metadata.name) + size(object.metadata.namespace))",
          },
        ],
      },
    },
    {
      apiVersion: 'admissionregistration.k8s.io/v1',
      kind: 'ValidatingAdmissionPolicyBinding',
      metadata: { name },
      spec: { policyName: name, validationActions: ['Deny'] },
    },
  ];
}

/** The CRDs (RootSync, RepoSync, ResourceGroup) and the RepoSync name policy. */
export function syncApiObjects(): KubeObject[] {
  return [
    syncCrd('RootSync', 26),
    syncCrd('RepoSync', undefined),
    resourceGroupCrd(),
    ...repoSyncNamePolicy(),
  ];
}

export interface InstallManifestOptions {
  /** The controller's container image. Default "airlock:0.1.0" (build it from this repository). */
  readonly image?: string;
  /** Extra controller arguments. */
  readonly args?: readonly string[];
}

/** Everything `airlock sync manifests` prints: API objects, namespace, RBAC, the controller Deployment. */
export function installManifests(options: InstallManifestOptions = {}): KubeObject[] {
  const labels = { 'app.kubernetes.io/name': 'airlock-sync', 'app.kubernetes.io/part-of': 'airlock' };
  const sa = 'airlock-sync';
  return [
    { apiVersion: 'v1', kind: 'Namespace', metadata: { name: SYSTEM_NAMESPACE, labels } },
    ...syncApiObjects(),
    { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: sa, namespace: SYSTEM_NAMESPACE, labels } },
    {
      // Root reconcilers apply whatever their source declares (as Config Sync's do); RepoSync applies run
      // impersonating ns-reconciler-* service accounts, so RBAC given to those confines them.
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'ClusterRoleBinding',
      metadata: { name: 'airlock-sync-controller', labels },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'cluster-admin' },
      subjects: [{ kind: 'ServiceAccount', name: sa, namespace: SYSTEM_NAMESPACE }],
    },
    {
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name: 'airlock-sync-controller', namespace: SYSTEM_NAMESPACE, labels },
      spec: {
        replicas: 2,
        selector: { matchLabels: labels },
        template: {
          metadata: { labels },
          spec: {
            serviceAccountName: sa,
            containers: [
              {
                name: 'controller',
                image: options.image ?? 'airlock:0.1.0',
                args: ['sync', 'controller', '--leader-elect', ...(options.args ?? [])],
                resources: { requests: { cpu: '100m', memory: '128Mi' }, limits: { memory: '512Mi' } },
                securityContext: {
                  runAsNonRoot: true,
                  readOnlyRootFilesystem: true,
                  allowPrivilegeEscalation: false,
                },
                volumeMounts: [{ name: 'work', mountPath: '/tmp' }],
              },
            ],
            volumes: [{ name: 'work', emptyDir: {} }],
          },
        },
      },
    },
  ];
}
