import { existsSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { KubeError } from './errors.js';

/** How to reach and authenticate to one API server: what a kubeconfig context or the in-cluster files say. */
export interface KubeConnection {
  /** https://HOST:PORT */
  readonly server: string;
  /** The context's name ("in-cluster" inside a pod). */
  readonly context: string;
  /** The context's default namespace. Default "default". */
  readonly namespace: string;
  readonly ca?: Buffer;
  readonly insecure?: boolean;
  readonly token?: string;
  /** Read on every request, so a rotated projected token is picked up. */
  readonly tokenFile?: string;
  readonly cert?: Buffer;
  readonly key?: Buffer;
}

export interface LoadKubeConfigOptions {
  /** A kubeconfig file. Default: $KUBECONFIG (first of its list), else ~/.kube/config, else in-cluster. */
  readonly kubeconfig?: string | undefined;
  /** A context name. Default: the file's current-context. */
  readonly context?: string | undefined;
}

const IN_CLUSTER_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';

type Named = { name?: unknown } & Record<string, unknown>;

interface RawKubeConfig {
  readonly path: string;
  readonly doc: Record<string, unknown>;
}

function kubeconfigPath(explicit: string | undefined): string | undefined {
  if (explicit) return explicit;
  const fromEnv = process.env.KUBECONFIG?.split(':').find((p) => p && existsSync(p));
  if (fromEnv) return fromEnv;
  const home = join(homedir(), '.kube', 'config');
  return existsSync(home) ? home : undefined;
}

function readRaw(path: string): RawKubeConfig {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new KubeError('CONFIG', `Cannot read kubeconfig "${path}": ${(error as Error).message}`, {
      cause: error,
    });
  }
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (error) {
    throw new KubeError('CONFIG', `Cannot parse kubeconfig "${path}": ${(error as Error).message}`, {
      cause: error,
    });
  }
  if (!doc || typeof doc !== 'object' || Array.isArray(doc))
    throw new KubeError('CONFIG', `Kubeconfig "${path}" is not a YAML map`);
  return { path, doc: doc as Record<string, unknown> };
}

function findNamed(raw: RawKubeConfig, list: string, name: string): Record<string, unknown> {
  const items = raw.doc[list];
  const found = Array.isArray(items)
    ? (items as Named[]).find((item) => item && item.name === name)
    : undefined;
  if (!found)
    throw new KubeError('CONFIG', `Kubeconfig "${raw.path}" has no ${list.replace(/s$/, '')} "${name}"`);
  const body = found[list.replace(/s$/, '')];
  return body && typeof body === 'object' ? (body as Record<string, unknown>) : {};
}

function str(value: unknown): string | undefined {
  return typeof value === 'string' && value !== '' ? value : undefined;
}

function fileOrData(raw: RawKubeConfig, entry: Record<string, unknown>, key: string): Buffer | undefined {
  const data = str(entry[`${key}-data`]);
  if (data) return Buffer.from(data, 'base64');
  const file = str(entry[key]);
  if (!file) return undefined;
  const path = isAbsolute(file) ? file : resolve(dirname(raw.path), file);
  try {
    return readFileSync(path);
  } catch (error) {
    throw new KubeError('CONFIG', `Cannot read "${path}" named by kubeconfig "${raw.path}"`, {
      cause: error,
    });
  }
}

/** Names of the contexts in a kubeconfig and which one is current. */
export function listContexts(options: { kubeconfig?: string | undefined } = {}): {
  contexts: string[];
  current: string | undefined;
} {
  const path = kubeconfigPath(options.kubeconfig);
  if (!path) return { contexts: [], current: undefined };
  const raw = readRaw(path);
  const contexts = Array.isArray(raw.doc.contexts)
    ? (raw.doc.contexts as Named[]).map((c) => str(c?.name)).filter((n): n is string => !!n)
    : [];
  return { contexts, current: str(raw.doc['current-context']) };
}

function inClusterConnection(): KubeConnection | undefined {
  const host = process.env.KUBERNETES_SERVICE_HOST;
  const port = process.env.KUBERNETES_SERVICE_PORT ?? '443';
  const tokenFile = join(IN_CLUSTER_DIR, 'token');
  if (!host || !existsSync(tokenFile)) return undefined;
  const namespaceFile = join(IN_CLUSTER_DIR, 'namespace');
  const caFile = join(IN_CLUSTER_DIR, 'ca.crt');
  return {
    server: `https://${host.includes(':') ? `[${host}]` : host}:${port}`,
    context: 'in-cluster',
    namespace: existsSync(namespaceFile) ? readFileSync(namespaceFile, 'utf8').trim() : 'default',
    tokenFile,
    ...(existsSync(caFile) ? { ca: readFileSync(caFile) } : {}),
  };
}

/**
 * The connection a kubeconfig context describes (token, token file, client certificate; CA or insecure),
 * or the in-cluster service account when there is no kubeconfig. Exec and auth-provider plugins are not
 * supported; their contexts fail with a message saying so.
 */
export function loadKubeConfig(options: LoadKubeConfigOptions = {}): KubeConnection {
  const path = kubeconfigPath(options.kubeconfig);
  if (!path) {
    const inCluster = inClusterConnection();
    if (inCluster) return inCluster;
    throw new KubeError(
      'CONFIG',
      'No kubeconfig found: pass --kubeconfig, set KUBECONFIG or run inside a cluster',
    );
  }
  const raw = readRaw(path);
  const contextName = options.context ?? str(raw.doc['current-context']);
  if (!contextName)
    throw new KubeError('CONFIG', `Kubeconfig "${path}" has no current-context; pass --context`);
  const context = findNamed(raw, 'contexts', contextName);
  const clusterName = str(context.cluster);
  if (!clusterName) throw new KubeError('CONFIG', `Context "${contextName}" in "${path}" names no cluster`);
  const cluster = findNamed(raw, 'clusters', clusterName);
  const server = str(cluster.server);
  if (!server) throw new KubeError('CONFIG', `Cluster "${clusterName}" in "${path}" has no server`);
  const userName = str(context.user);
  const user = userName ? findNamed(raw, 'users', userName) : {};
  if (user.exec || user['auth-provider'])
    throw new KubeError(
      'CONFIG',
      `User "${userName ?? ''}" in "${path}" uses an exec or auth-provider plugin, which airlock does not run; use a token or client certificate`,
    );
  const ca = fileOrData(raw, cluster, 'certificate-authority');
  const cert = fileOrData(raw, user, 'client-certificate');
  const key = fileOrData(raw, user, 'client-key');
  const token = str(user.token);
  const tokenFile = str(user.tokenFile);
  return {
    server: server.replace(/\/+$/, ''),
    context: contextName,
    namespace: str(context.namespace) ?? 'default',
    ...(ca ? { ca } : {}),
    ...(cluster['insecure-skip-tls-verify'] === true ? { insecure: true } : {}),
    ...(token ? { token } : {}),
    ...(tokenFile
      ? { tokenFile: isAbsolute(tokenFile) ? tokenFile : resolve(dirname(path), tokenFile) }
      : {}),
    ...(cert ? { cert } : {}),
    ...(key ? { key } : {}),
  };
}
