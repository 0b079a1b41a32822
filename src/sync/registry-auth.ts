import { RegistryClient, type Credentials } from '../client/index.js';
import type { KubeClient, KubeObject } from '../kube/index.js';
import type { Reference } from '../oci/index.js';
import { SECRET, SYSTEM_NAMESPACE, type OciSpec } from './api.js';
import { KNV, SyncError } from './errors.js';

export interface RegistryAccessOptions {
  /** Audience of service-account tokens for `auth: k8sserviceaccount`. Default "airlock". */
  readonly audience?: string;
  /** Namespace of the reconciler service accounts. Default config-management-system. */
  readonly serviceAccountNamespace?: string;
}

interface SecretObject extends KubeObject {
  type?: string;
  data?: Record<string, string>;
}

async function readSecret(
  kube: KubeClient,
  where: { namespace: string; name: string },
  field: string,
): Promise<SecretObject> {
  let secret: SecretObject | undefined;
  try {
    secret = await kube.get<SecretObject>(SECRET, where);
  } catch (error) {
    throw new SyncError(
      KNV.SOURCE,
      `cannot read Secret ${where.namespace}/${where.name} named by ${field}: ${(error as Error).message}`,
      { cause: error },
    );
  }
  if (!secret)
    throw new SyncError(
      KNV.SOURCE,
      `Secret ${where.namespace}/${where.name} named by ${field} does not exist`,
    );
  return secret;
}

function decode(value: string | undefined): string | undefined {
  return value === undefined ? undefined : Buffer.from(value, 'base64').toString('utf8');
}

/** Credentials for `host` from a kubernetes.io/dockerconfigjson (or dockercfg) Secret. */
export function credentialsFromDockerConfig(
  json: string,
  host: string,
  where: string,
): Credentials | undefined {
  let doc: unknown;
  try {
    doc = JSON.parse(json);
  } catch (error) {
    throw new SyncError(KNV.SOURCE, `${where} is not valid JSON: ${(error as Error).message}`);
  }
  const record = (doc && typeof doc === 'object' ? doc : {}) as Record<string, unknown>;
  const auths = (record.auths && typeof record.auths === 'object' ? record.auths : record) as Record<
    string,
    unknown
  >;
  const strip = (key: string): string => key.replace(/^https?:\/\//, '').replace(/\/.*$/, '');
  const entry = Object.entries(auths).find(([key]) => strip(key) === host)?.[1] as
    { auth?: string; username?: string; password?: string; identitytoken?: string } | undefined;
  if (!entry) return undefined;
  if (entry.identitytoken) return { identityToken: entry.identitytoken };
  if (entry.username !== undefined && entry.password !== undefined)
    return { username: entry.username, password: entry.password };
  if (entry.auth) {
    const decoded = Buffer.from(entry.auth, 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    if (colon > 0) return { username: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
  }
  throw new SyncError(KNV.SOURCE, `${where} has an entry for "${host}" without usable credentials`);
}

/**
 * A registry client for a sync's image, with the credentials and TLS its spec asks for:
 * `auth: none` (anonymous), `k8sserviceaccount` (a TokenRequest token for the reconciler's service
 * account, presented as the password of user "serviceaccount"), Airlock's `secretRef` (docker config
 * Secret), `caCertSecretRef` (key "cert") and `insecure`. Google-only auth types fail with KNV2004.
 */
export async function registryClientFor(
  kube: KubeClient,
  sync: { namespace: string; reconciler: string; oci: OciSpec; ref: Reference },
  options: RegistryAccessOptions = {},
): Promise<RegistryClient> {
  const { oci, ref } = sync;
  const auth = oci.auth ?? 'none';
  let credentials: Credentials | undefined;
  if (auth === 'gcpserviceaccount' || auth === 'gcenode')
    throw new SyncError(
      KNV.SOURCE,
      `spec.oci.auth "${auth}" needs Google Cloud (Workload Identity or the node's metadata server), which is not available here; use "k8sserviceaccount" or spec.oci.secretRef`,
    );
  if (auth === 'k8sserviceaccount') {
    try {
      const { token } = await kube.createToken(
        { namespace: options.serviceAccountNamespace ?? SYSTEM_NAMESPACE, serviceAccount: sync.reconciler },
        { audiences: [options.audience ?? 'airlock'], expirationSeconds: 3600 },
      );
      credentials = { username: 'serviceaccount', password: token };
    } catch (error) {
      throw new SyncError(
        KNV.SOURCE,
        `cannot get a token for service account ${options.serviceAccountNamespace ?? SYSTEM_NAMESPACE}/${sync.reconciler}: ${(error as Error).message}`,
        { cause: error },
      );
    }
  } else if (auth !== 'none') {
    throw new SyncError(
      KNV.INVALID_SYNC,
      `spec.oci.auth "${String(auth)}" is not one of none, k8sserviceaccount, gcpserviceaccount, gcenode`,
    );
  }
  if (oci.secretRef?.name) {
    const where = { namespace: sync.namespace, name: oci.secretRef.name };
    const secret = await readSecret(kube, where, 'spec.oci.secretRef');
    const json = decode(secret.data?.['.dockerconfigjson']) ?? decode(secret.data?.['.dockercfg']);
    if (!json)
      throw new SyncError(
        KNV.SOURCE,
        `Secret ${where.namespace}/${where.name} has no .dockerconfigjson (make it with kubectl create secret docker-registry)`,
      );
    credentials =
      credentialsFromDockerConfig(json, ref.registry, `Secret ${where.namespace}/${where.name}`) ??
      credentials;
  }
  let ca: Buffer | undefined;
  if (oci.caCertSecretRef?.name) {
    const where = { namespace: sync.namespace, name: oci.caCertSecretRef.name };
    const secret = await readSecret(kube, where, 'spec.oci.caCertSecretRef');
    const cert = secret.data?.cert;
    if (!cert)
      throw new SyncError(
        KNV.SOURCE,
        `Secret ${where.namespace}/${where.name} has no key "cert" (the CA certificate in PEM)`,
      );
    ca = Buffer.from(cert, 'base64');
  }
  return new RegistryClient(ref.registry, {
    ...(credentials ? { credentials } : {}),
    ...(oci.insecure ? { insecure: true } : {}),
    ...(ca ? { ca } : {}),
    // A reconcile does not sit out a long Retry-After: it fails, and the next interval tries again.
    retry: { retries: 2, maxDelayMs: 2_000, maxRetryAfterMs: 2_000 },
  });
}
