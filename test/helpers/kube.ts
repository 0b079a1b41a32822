/**
 * A real Kubernetes control plane for end-to-end tests: etcd (Debian's etcd-server) and kube-apiserver,
 * optionally kube-controller-manager, built by scripts/install-kube.sh. Everything lives in one temp
 * folder that stop() removes; every port is a free one on 127.0.0.1.
 *
 * The apiserver serves a self-signed certificate it makes itself (--cert-dir), authenticates a static
 * admin token (--token-auth-file), authorizes with RBAC, and signs service-account tokens with an RSA
 * key made here with node:crypto. Its issuer is its own URL, so the issuer's OIDC discovery document
 * and JWKS are served by the apiserver itself at ISSUER/.well-known/openid-configuration and
 * ISSUER/openid/v1/jwks.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { generateKeyPairSync, randomBytes, X509Certificate } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { request as httpsRequest } from 'node:https';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { findPeer } from './peers.js';
import { freePort, killedAtExit, tempDir } from './processes.js';

export const KUBE_BINARIES = ['etcd', 'kube-apiserver', 'kube-controller-manager'] as const;
export type KubeBinary = (typeof KUBE_BINARIES)[number];

export interface KubeBinaryPaths {
  readonly etcd: string;
  readonly apiserver: string;
  /** Undefined when kube-controller-manager is not installed. */
  readonly controllerManager: string | undefined;
}

/** Paths of the control-plane programs (peers cache first, then PATH), or undefined when one is missing. */
export function findKubeBinaries(withControllerManager = true): KubeBinaryPaths | undefined {
  const etcd = findPeer('etcd');
  const apiserver = findPeer('kube-apiserver');
  const controllerManager = findPeer('kube-controller-manager');
  if (!etcd || !apiserver || (withControllerManager && !controllerManager)) return undefined;
  return { etcd, apiserver, controllerManager };
}

/**
 * The control-plane programs' paths. When one is missing the test fails under CI and is skipped
 * locally with a message saying how to install them (like requirePeer).
 */
export function requireKube(t: TestContext, withControllerManager = true): KubeBinaryPaths | undefined {
  const found = findKubeBinaries(withControllerManager);
  if (found) return found;
  const missing = KUBE_BINARIES.filter(
    (name) => (withControllerManager || name !== 'kube-controller-manager') && !findPeer(name),
  );
  const message = `${missing.join(', ')} not installed; run scripts/install-kube.sh`;
  if (process.env.CI) throw new Error(message);
  t.skip(message);
  return undefined;
}

export interface ControlPlaneOptions {
  /** Start kube-controller-manager too (namespace deletion, default service accounts). Default true. */
  readonly controllerManager?: boolean;
  /** Controllers kube-controller-manager runs. */
  readonly controllers?: readonly string[];
  /** Audiences the apiserver accepts (--api-audiences). Default: the issuer and "airlock". */
  readonly apiAudiences?: readonly string[];
  /**
   * Bind system:service-account-issuer-discovery to system:unauthenticated, so anyone (a registry
   * verifying service-account tokens, say) can read the OIDC discovery document and JWKS. Default true.
   */
  readonly publicIssuerDiscovery?: boolean;
  /** Extra kube-apiserver flags, appended last. */
  readonly apiserverArgs?: readonly string[];
  /** Extra kube-controller-manager flags, appended last. */
  readonly controllerManagerArgs?: readonly string[];
  /** How long to wait for etcd, then /readyz. Default 90 s. */
  readonly timeoutMs?: number;
  /**
   * Keep the temp folder (etcd's data above all) on /dev/shm when it exists, so etcd's fsyncs cost
   * nothing. Default false: on this project's machine it made no measurable difference (about 4 s to
   * /readyz either way); it may help on a slow disk.
   */
  readonly tmpfs?: boolean;
  /** Program paths; default findKubeBinaries(). */
  readonly binaries?: KubeBinaryPaths;
}

export interface KubeResponse<T = unknown> {
  readonly status: number;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly text: string;
  /** The body parsed as JSON, or undefined when it is not JSON. */
  readonly json: T;
}

export interface KubeRequestOptions {
  readonly body?: unknown;
  /** Bearer token; default the admin token. null sends no Authorization header (anonymous). */
  readonly token?: string | null;
  readonly headers?: Record<string, string>;
}

export interface ControlPlane {
  /** https://127.0.0.1:PORT */
  readonly server: string;
  readonly kubeconfig: string;
  /** Static token of user "airlock-admin" in group system:masters. */
  readonly adminToken: string;
  /** The CA that signed the apiserver's serving certificate (PEM). */
  readonly caPem: string;
  /** Service-account token issuer (--service-account-issuer); equal to `server`. */
  readonly issuer: string;
  readonly apiAudiences: readonly string[];
  /** Service-account signing key pair (PEM) the apiserver uses. */
  readonly serviceAccountPublicKeyPem: string;
  readonly dir: string;
  readonly controllerManager: boolean;
  readonly timings: { readonly etcdMs: number; readonly readyMs: number; readonly totalMs: number };
  /** HTTPS call to the apiserver, trusting its CA, as the admin unless told otherwise. */
  request<T = unknown>(method: string, path: string, options?: KubeRequestOptions): Promise<KubeResponse<T>>;
  /** Output of each program so far. */
  logs(): { etcd: string; apiserver: string; controllerManager: string };
  stop(): Promise<void>;
}

const DEFAULT_CONTROLLERS = [
  'namespace-controller', // deleted namespaces really terminate
  'garbage-collector-controller', // ownerReferences cascade
  'serviceaccount-controller', // every namespace gets its "default" service account
  'serviceaccount-token-controller', // kubernetes.io/service-account-token secrets are filled in
  'root-ca-certificate-publisher-controller', // the kube-root-ca.crt ConfigMap in every namespace
  'clusterrole-aggregation-controller', // fills the aggregated ClusterRoles admin, edit, view
] as const;

/** Keeps at most the last `limit` characters of a program's output. */
class Output {
  private text = '';
  constructor(private readonly limit = 256 * 1024) {}
  push(chunk: Buffer): void {
    this.text += chunk.toString();
    if (this.text.length > this.limit) this.text = this.text.slice(-this.limit);
  }
  toString(): string {
    return this.text;
  }
}

interface Child {
  readonly name: string;
  readonly child: ChildProcess;
  readonly output: Output;
  readonly exited: Promise<void>;
  exitedEarly(): boolean;
}

function startChild(name: string, command: string, args: readonly string[], cwd: string): Child {
  const child = spawn(command, args, { cwd, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env } });
  // Killed if the test process exits without stopping it.
  killedAtExit(child);
  const output = new Output();
  child.stdout?.on('data', (c: Buffer) => output.push(c));
  child.stderr?.on('data', (c: Buffer) => output.push(c));
  let exited = false;
  const done = new Promise<void>((resolveExit) => {
    child.once('exit', () => {
      exited = true;
      resolveExit();
    });
    child.once('error', (error) => {
      output.push(Buffer.from(`\n[spawn error] ${String(error)}\n`));
      exited = true;
      resolveExit();
    });
  });
  return { name, child, output, exited: done, exitedEarly: () => exited };
}

/** SIGTERM, then SIGKILL after `graceMs`; resolves when the process is gone. */
async function stopChild(c: Child | undefined, graceMs = 5_000): Promise<void> {
  if (!c) return;
  if (c.child.exitCode === null && c.child.signalCode === null && !c.exitedEarly()) {
    c.child.kill('SIGTERM');
    const timer = setTimeout(() => c.child.kill('SIGKILL'), graceMs);
    await c.exited;
    clearTimeout(timer);
  }
}

/** The control plane's temp folder: on tmpfs when asked and possible, else in the usual temp dir. */
async function controlPlaneDir(tmpfs: boolean): Promise<string> {
  if (tmpfs && existsSync('/dev/shm')) {
    try {
      return await mkdtemp(join('/dev/shm', 'airlock-kube-'));
    } catch {
      // not writable: fall through
    }
  }
  return tempDir('airlock-kube-');
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** One HTTPS request trusting `ca`. Never throws on an HTTP status. */
export function httpsCall<T = unknown>(
  url: string,
  method: string,
  ca: string,
  options: {
    token?: string | undefined;
    body?: unknown;
    headers?: Record<string, string>;
    timeoutMs?: number;
  } = {},
): Promise<KubeResponse<T>> {
  return new Promise((resolveCall, reject) => {
    const headers: Record<string, string> = { accept: 'application/json', ...options.headers };
    let payload: string | undefined;
    if (options.body !== undefined) {
      payload = typeof options.body === 'string' ? options.body : JSON.stringify(options.body);
      headers['content-type'] ??= 'application/json';
      headers['content-length'] = String(Buffer.byteLength(payload));
    }
    if (options.token) headers.authorization = `Bearer ${options.token}`;
    const req = httpsRequest(url, { method, ca, headers, timeout: options.timeoutMs ?? 30_000 }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', reject);
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let json: unknown;
        try {
          json = text ? JSON.parse(text) : undefined;
        } catch {
          json = undefined;
        }
        resolveCall({ status: res.statusCode ?? 0, headers: res.headers, text, json: json as T });
      });
    });
    req.on('timeout', () => req.destroy(new Error(`${method} ${url} timed out`)));
    req.on('error', reject);
    req.end(payload);
  });
}

function kubeconfigYaml(server: string, caPem: string, user: string, token: string): string {
  const ca = Buffer.from(caPem).toString('base64');
  return [
    'apiVersion: v1',
    'kind: Config',
    'clusters:',
    '- name: airlock-e2e',
    '  cluster:',
    `    server: ${server}`,
    `    certificate-authority-data: ${ca}`,
    'users:',
    `- name: ${user}`,
    '  user:',
    `    token: ${token}`,
    'contexts:',
    '- name: airlock-e2e',
    '  context:',
    '    cluster: airlock-e2e',
    `    user: ${user}`,
    'current-context: airlock-e2e',
    '',
  ].join('\n');
}

/** The last certificate of a PEM bundle that is a CA (the apiserver writes leaf + its self-signed CA). */
function caOfBundle(bundle: string): string {
  const blocks = bundle.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  for (const block of blocks.reverse()) {
    if (new X509Certificate(block).ca) return `${block}\n`;
  }
  // A single self-signed certificate is its own trust anchor.
  if (blocks.length === 1 && blocks[0]) return `${blocks[0]}\n`;
  throw new Error(`no CA certificate in the apiserver's certificate bundle (${blocks.length} certificates)`);
}

/** Starts etcd on fresh ports; retries with other ports when one was taken in between. */
async function startEtcd(
  binary: string,
  dir: string,
  deadline: number,
): Promise<{ etcd: Child; url: string }> {
  for (let attempt = 1; ; attempt++) {
    const clientPort = await freePort();
    const peerPort = await freePort();
    const client = `http://127.0.0.1:${clientPort}`;
    const peer = `http://127.0.0.1:${peerPort}`;
    const dataDir = join(dir, `etcd-${attempt}`);
    const etcd = startChild(
      'etcd',
      binary,
      [
        '--name=airlock-e2e',
        `--data-dir=${dataDir}`,
        `--listen-client-urls=${client}`,
        `--advertise-client-urls=${client}`,
        `--listen-peer-urls=${peer}`,
        `--initial-advertise-peer-urls=${peer}`,
        `--initial-cluster=airlock-e2e=${peer}`,
        '--initial-cluster-state=new',
        '--initial-cluster-token=airlock-e2e',
        '--logger=zap',
        '--log-level=warn',
        '--quota-backend-bytes=1073741824',
        '--snapshot-count=10000',
      ],
      dir,
    );
    while (Date.now() < deadline && !etcd.exitedEarly()) {
      try {
        const res = await fetch(`${client}/health`);
        const body = (await res.json()) as { health?: string };
        if (res.ok && body.health === 'true') return { etcd, url: client };
      } catch {
        // not up yet
      }
      await sleep(50);
    }
    await stopChild(etcd, 1_000);
    const why = etcd.output.toString();
    if (attempt < 3 && /address already in use/i.test(why) && Date.now() < deadline) continue;
    throw new Error(`etcd did not become healthy at ${client}:\n${why}`);
  }
}

/**
 * Starts etcd + kube-apiserver (+ kube-controller-manager) and waits until /readyz answers ok (and,
 * with the controller manager, until it has made the "default" service account, i.e. its controllers
 * run). Throws with the programs' output when anything fails; nothing is left running then.
 */
export async function startControlPlane(options: ControlPlaneOptions = {}): Promise<ControlPlane> {
  const withCm = options.controllerManager ?? true;
  const binaries = options.binaries ?? findKubeBinaries(withCm);
  if (!binaries || (withCm && !binaries.controllerManager)) {
    throw new Error(
      'etcd / kube-apiserver / kube-controller-manager not installed; run scripts/install-kube.sh',
    );
  }
  const timeoutMs = options.timeoutMs ?? 90_000;
  const started = Date.now();
  const deadline = started + timeoutMs;
  const dir = await controlPlaneDir(options.tmpfs ?? false);
  const children: Child[] = [];
  const stopAll = async (): Promise<void> => {
    for (const c of [...children].reverse()) await stopChild(c);
  };
  const logsOf = (name: string): string => children.find((c) => c.name === name)?.output.toString() ?? '';
  const allLogs = (): string =>
    children.map((c) => `----- ${c.name} -----\n${c.output.toString().slice(-20_000)}`).join('\n');

  try {
    // --- keys, tokens --------------------------------------------------------------------------------
    const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const saPublicPem = publicKey.export({ type: 'spki', format: 'pem' }).toString();
    const saPrivatePem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
    const saPub = join(dir, 'sa.pub');
    const saKey = join(dir, 'sa.key');
    await writeFile(saPub, saPublicPem);
    await writeFile(saKey, saPrivatePem, { mode: 0o600 });
    const adminToken = randomBytes(24).toString('hex');
    const cmToken = randomBytes(24).toString('hex');
    const tokenFile = join(dir, 'tokens.csv');
    await writeFile(
      tokenFile,
      [
        `${adminToken},airlock-admin,airlock-admin,"system:masters"`,
        `${cmToken},system:kube-controller-manager,system:kube-controller-manager`,
        '',
      ].join('\n'),
      { mode: 0o600 },
    );

    // --- etcd ----------------------------------------------------------------------------------------
    const { etcd, url: etcdUrl } = await startEtcd(binaries.etcd, dir, deadline);
    children.push(etcd);
    const etcdMs = Date.now() - started;

    // --- kube-apiserver ------------------------------------------------------------------------------
    let server = '';
    let issuer = '';
    let apiAudiences: readonly string[] = [];
    let caPem = '';
    let apiserver: Child | undefined;
    for (let attempt = 1; ; attempt++) {
      const port = await freePort();
      server = `https://127.0.0.1:${port}`;
      issuer = server;
      apiAudiences = options.apiAudiences ?? [issuer, 'airlock'];
      const certDir = join(dir, `apiserver-certs-${attempt}`);
      await mkdir(certDir, { recursive: true });
      const args = [
        `--etcd-servers=${etcdUrl}`,
        `--etcd-prefix=/registry`,
        '--bind-address=127.0.0.1',
        '--advertise-address=127.0.0.1',
        `--secure-port=${port}`,
        `--cert-dir=${certDir}`,
        '--authorization-mode=RBAC',
        `--token-auth-file=${tokenFile}`,
        '--anonymous-auth=true',
        `--service-account-key-file=${saPub}`,
        `--service-account-signing-key-file=${saKey}`,
        `--service-account-issuer=${issuer}`,
        `--service-account-jwks-uri=${issuer}/openid/v1/jwks`,
        `--api-audiences=${apiAudiences.join(',')}`,
        '--service-cluster-ip-range=10.96.0.0/24',
        '--allow-privileged=false',
        '--profiling=false',
        '--enable-priority-and-fairness=false',
        '--endpoint-reconciler-type=none',
        '--event-ttl=5m',
        '--v=1',
        ...(options.apiserverArgs ?? []),
      ];
      apiserver = startChild('kube-apiserver', binaries.apiserver, args, dir);
      children.push(apiserver);

      // The serving certificate appears in --cert-dir just before the apiserver listens.
      const bundlePath = join(certDir, 'apiserver.crt');
      let ready = false;
      let last = '';
      while (Date.now() < deadline && !apiserver.exitedEarly()) {
        if (!caPem) {
          if (existsSync(bundlePath)) {
            try {
              caPem = caOfBundle(await readFile(bundlePath, 'utf8'));
            } catch (error) {
              last = String(error); // partly written; try again
            }
          }
        } else {
          try {
            const res = await httpsCall(`${server}/readyz`, 'GET', caPem, {
              token: adminToken,
              timeoutMs: 5_000,
            });
            last = `${res.status} ${res.text}`;
            if (res.status === 200) {
              ready = true;
              break;
            }
          } catch (error) {
            last = String(error);
          }
        }
        await sleep(caPem ? 200 : 50);
      }
      if (ready) break;
      await stopChild(apiserver, 2_000);
      children.pop();
      const why = apiserver.output.toString();
      caPem = '';
      if (attempt < 3 && /address already in use/i.test(why) && Date.now() < deadline) continue;
      throw new Error(
        `kube-apiserver ${
          apiserver.exitedEarly()
            ? `exited (${apiserver.child.exitCode ?? apiserver.child.signalCode})`
            : `did not become ready within ${timeoutMs} ms (last: ${last})`
        } at ${server}:\n${allLogs()}\n----- kube-apiserver -----\n${why.slice(-20_000)}`,
      );
    }
    const readyMs = Date.now() - started;

    const kubeconfig = join(dir, 'kubeconfig');
    await writeFile(kubeconfig, kubeconfigYaml(server, caPem, 'airlock-admin', adminToken), { mode: 0o600 });
    const caFile = join(dir, 'ca.crt');
    await writeFile(caFile, caPem);

    const request = <T = unknown>(
      method: string,
      path: string,
      opts: KubeRequestOptions = {},
    ): Promise<KubeResponse<T>> =>
      httpsCall<T>(`${server}${path}`, method, caPem, {
        token: opts.token === null ? undefined : (opts.token ?? adminToken),
        body: opts.body,
        ...(opts.headers ? { headers: opts.headers } : {}),
      });

    if (options.publicIssuerDiscovery ?? true) {
      const res = await request('POST', '/apis/rbac.authorization.k8s.io/v1/clusterrolebindings', {
        body: {
          apiVersion: 'rbac.authorization.k8s.io/v1',
          kind: 'ClusterRoleBinding',
          metadata: { name: 'airlock-e2e:service-account-issuer-discovery:unauthenticated' },
          roleRef: {
            apiGroup: 'rbac.authorization.k8s.io',
            kind: 'ClusterRole',
            name: 'system:service-account-issuer-discovery',
          },
          subjects: [
            { apiGroup: 'rbac.authorization.k8s.io', kind: 'Group', name: 'system:unauthenticated' },
          ],
        },
      });
      if (res.status !== 201)
        throw new Error(`binding issuer discovery for anonymous users: ${res.status} ${res.text}`);
    }

    // --- kube-controller-manager ---------------------------------------------------------------------
    if (withCm && binaries.controllerManager) {
      const cmKubeconfig = join(dir, 'controller-manager.kubeconfig');
      await writeFile(
        cmKubeconfig,
        kubeconfigYaml(server, caPem, 'system:kube-controller-manager', cmToken),
        {
          mode: 0o600,
        },
      );
      const cm = startChild(
        'kube-controller-manager',
        binaries.controllerManager,
        [
          `--kubeconfig=${cmKubeconfig}`,
          `--service-account-private-key-file=${saKey}`,
          `--root-ca-file=${caFile}`,
          '--use-service-account-credentials=true',
          `--controllers=${(options.controllers ?? DEFAULT_CONTROLLERS).join(',')}`,
          '--leader-elect=false',
          '--secure-port=0',
          '--concurrent-namespace-syncs=4',
          '--namespace-sync-period=10s',
          '--profiling=false',
          '--v=1',
          ...(options.controllerManagerArgs ?? []),
        ],
        dir,
      );
      children.push(cm);
      // Its controllers run once the serviceaccount controller has made the "default" namespace's "default".
      let ok = false;
      let last = '';
      while (Date.now() < deadline && !cm.exitedEarly()) {
        try {
          const res = await request('GET', '/api/v1/namespaces/default/serviceaccounts/default');
          last = `${res.status}`;
          if (res.status === 200) {
            ok = true;
            break;
          }
        } catch (error) {
          last = String(error);
        }
        await sleep(200);
      }
      if (!ok) {
        throw new Error(
          `kube-controller-manager made no "default" service account within ${timeoutMs} ms (last: ${last}):\n${allLogs()}`,
        );
      }
    }
    const totalMs = Date.now() - started;

    let stopped: Promise<void> | undefined;
    return {
      server,
      kubeconfig,
      adminToken,
      caPem,
      issuer,
      apiAudiences,
      serviceAccountPublicKeyPem: saPublicPem,
      dir,
      controllerManager: withCm,
      timings: { etcdMs, readyMs, totalMs },
      request,
      logs: () => ({
        etcd: logsOf('etcd'),
        apiserver: logsOf('kube-apiserver'),
        controllerManager: logsOf('kube-controller-manager'),
      }),
      stop() {
        stopped ??= (async () => {
          await stopAll();
          await rm(dir, { recursive: true, force: true });
        })();
        return stopped;
      },
    };
  } catch (error) {
    await stopAll();
    await rm(dir, { recursive: true, force: true });
    throw error;
  }
}
