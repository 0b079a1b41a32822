/**
 * The sync e2e environment: a real control plane (etcd + kube-apiserver + kube-controller-manager), an
 * Airlock registry process, the sync CRDs installed with `airlock sync install --crds-only`, and the
 * controller run as `airlock sync controller` (a real process, so tests can kill it).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { startControlPlane, requireKube, type ControlPlane } from './kube.js';
import {
  CLI,
  killedAtExit,
  run,
  runOk,
  startAirlockProcess,
  tempDir,
  tempDirSync,
  type RunningProcess,
} from './processes.js';

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export interface Controller {
  readonly child: ChildProcess;
  output(): string;
  stop(signal?: NodeJS.Signals): Promise<void>;
}

export interface SyncEnv {
  readonly cp: ControlPlane;
  readonly registry: RunningProcess;
  readonly work: string;
  controller: Controller;
  /** Runs the airlock CLI with the cluster's kubeconfig. */
  airlock(args: readonly string[], options?: { input?: string; cwd?: string }): ReturnType<typeof run>;
  startController(extraArgs?: readonly string[]): Promise<Controller>;
  stop(): Promise<void>;
}

export function startControllerProcess(kubeconfig: string, extraArgs: readonly string[] = []): Controller {
  const child = spawn(
    process.execPath,
    [CLI, 'sync', 'controller', '--kubeconfig', kubeconfig, '--log-level', 'debug', ...extraArgs],
    // Its own TMPDIR: a controller killed mid-reconcile leaves its work folder there, not in /tmp.
    {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, TMPDIR: tempDirSync('airlock-controller-') },
    },
  );
  killedAtExit(child);
  let text = '';
  child.stdout.on('data', (c: Buffer) => (text = (text + c.toString()).slice(-2_000_000)));
  child.stderr.on('data', (c: Buffer) => (text = (text + c.toString()).slice(-2_000_000)));
  const exited = new Promise<void>((done) => child.once('exit', () => done()));
  return {
    child,
    output: () => text,
    async stop(signal: NodeJS.Signals = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** Starts everything, or returns undefined (skipped) when the control plane is not installed locally. */
export async function startSyncEnv(
  t: TestContext,
  options: {
    controllerArgs?: readonly string[];
    registryArgs?: readonly string[];
    registryEnv?: NodeJS.ProcessEnv;
  } = {},
): Promise<SyncEnv | undefined> {
  const binaries = requireKube(t);
  if (!binaries) return undefined;
  const cp = await startControlPlane({ binaries });
  const registry = await startAirlockProcess({
    extraArgs: options.registryArgs ?? [],
    ...(options.registryEnv ? { env: options.registryEnv } : {}),
  });
  const work = await tempDir('airlock-sync-e2e-');
  const airlock = (
    args: readonly string[],
    opts: { input?: string; cwd?: string } = {},
  ): ReturnType<typeof run> =>
    run(process.execPath, [CLI, ...args], {
      env: { KUBECONFIG: cp.kubeconfig, DOCKER_CONFIG: join(work, 'docker') },
      cwd: opts.cwd ?? work,
      ...(opts.input === undefined ? {} : { input: opts.input }),
    });
  await mkdir(join(work, 'docker'), { recursive: true });
  const ns = await cp.request('POST', '/api/v1/namespaces', {
    body: { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'config-management-system' } },
  });
  if (ns.status !== 201) throw new Error(`creating config-management-system: ${ns.status} ${ns.text}`);
  await runOk(process.execPath, [CLI, 'sync', 'install', '--crds-only', '--kubeconfig', cp.kubeconfig]);
  const env: SyncEnv = {
    cp,
    registry,
    work,
    controller: startControllerProcess(cp.kubeconfig, options.controllerArgs),
    airlock,
    startController(extraArgs = options.controllerArgs ?? []) {
      env.controller = startControllerProcess(cp.kubeconfig, extraArgs);
      return Promise.resolve(env.controller);
    },
    async stop() {
      await env.controller.stop();
      await registry.stop();
      await cp.stop();
    },
  };
  return env;
}

/** Polls `check` until it returns a value (not undefined) or the time is up; then fails with `describe()`. */
export async function eventually<T>(
  check: () => Promise<T | undefined>,
  options: { timeoutMs?: number; describe?: () => string | Promise<string> } = {},
): Promise<T> {
  const deadline = Date.now() + (options.timeoutMs ?? 60_000);
  let lastError: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value !== undefined) return value;
    } catch (error) {
      lastError = error;
    }
    if (Date.now() > deadline) {
      const detail = options.describe ? await options.describe() : '';
      throw new Error(
        `Timed out${lastError ? ` (last error: ${lastError instanceof Error ? lastError.message : JSON.stringify(lastError)})` : ''}\n${detail}`,
      );
    }
    await sleep(250);
  }
}

export interface SyncStatusJson {
  metadata: { annotations?: Record<string, string>; generation?: number };
  status?: {
    lastSyncedCommit?: string;
    source?: { commit?: string; errors?: { code: string; errorMessage: string }[] };
    sync?: { commit?: string; errors?: { code: string; errorMessage: string }[] };
    conditions?: { type: string; status: string; message?: string }[];
  };
}

/** Reads a RootSync (namespace config-management-system) or RepoSync. */
export async function readSync(
  cp: ControlPlane,
  kind: 'RootSync' | 'RepoSync',
  where: { namespace?: string; name: string },
): Promise<SyncStatusJson | undefined> {
  const ns = where.namespace ?? 'config-management-system';
  const res = await cp.request<SyncStatusJson>(
    'GET',
    `/apis/configsync.gke.io/v1beta1/namespaces/${ns}/${kind.toLowerCase()}s/${where.name}`,
  );
  return res.status === 200 ? res.json : undefined;
}

/** All errors in a sync's status, as "KNVxxxx: message" lines. */
export function statusErrors(sync: SyncStatusJson | undefined): string[] {
  return [...(sync?.status?.source?.errors ?? []), ...(sync?.status?.sync?.errors ?? [])].map(
    (e) => e.errorMessage,
  );
}

/** Creates or replaces a RootSync/RepoSync from a spec (server-side apply as the test). */
export async function applySync(
  cp: ControlPlane,
  kind: 'RootSync' | 'RepoSync',
  where: { namespace?: string; name: string },
  spec: Record<string, unknown>,
): Promise<void> {
  const ns = where.namespace ?? 'config-management-system';
  const res = await cp.request(
    'PATCH',
    `/apis/configsync.gke.io/v1beta1/namespaces/${ns}/${kind.toLowerCase()}s/${where.name}?fieldManager=e2e&force=true`,
    {
      body: {
        apiVersion: 'configsync.gke.io/v1beta1',
        kind,
        metadata: { name: where.name, namespace: ns },
        spec,
      },
      headers: { 'content-type': 'application/apply-patch+yaml' },
    },
  );
  if (res.status !== 200 && res.status !== 201)
    throw new Error(`applying ${kind} ${where.name}: ${res.status} ${res.text}`);
}

export async function deleteSync(
  cp: ControlPlane,
  kind: 'RootSync' | 'RepoSync',
  where: { namespace?: string; name: string },
): Promise<void> {
  const ns = where.namespace ?? 'config-management-system';
  await cp.request(
    'DELETE',
    `/apis/configsync.gke.io/v1beta1/namespaces/${ns}/${kind.toLowerCase()}s/${where.name}`,
  );
}

/** Waits until a sync is SYNCED at some commit (source commit == lastSyncedCommit, no errors). */
export async function waitSynced(
  env: SyncEnv,
  kind: 'RootSync' | 'RepoSync',
  where: { namespace?: string; name: string },
  options: { commit?: string; timeoutMs?: number } = {},
): Promise<SyncStatusJson> {
  return eventually(
    async () => {
      const sync = await readSync(env.cp, kind, where);
      const status = sync?.status;
      if (!status?.lastSyncedCommit || statusErrors(sync).length > 0) return undefined;
      if (status.source?.commit !== status.lastSyncedCommit) return undefined;
      if (options.commit && status.lastSyncedCommit !== options.commit) return undefined;
      return sync;
    },
    {
      timeoutMs: options.timeoutMs ?? 60_000,
      describe: async () =>
        `${kind} ${where.name} not synced: ${JSON.stringify((await readSync(env.cp, kind, where))?.status)}\n--- controller ---\n${env.controller.output().slice(-6000)}`,
    },
  );
}

/** Waits until a sync reports an error containing `text`. */
export async function waitError(
  env: SyncEnv,
  kind: 'RootSync' | 'RepoSync',
  where: { namespace?: string; name: string },
  text: string | RegExp,
  timeoutMs = 60_000,
): Promise<string[]> {
  return eventually(
    async () => {
      const errors = statusErrors(await readSync(env.cp, kind, where));
      return errors.some((e) => (typeof text === 'string' ? e.includes(text) : text.test(e)))
        ? errors
        : undefined;
    },
    {
      timeoutMs,
      describe: async () =>
        `${kind} ${where.name} has no error ${String(text)}: ${JSON.stringify((await readSync(env.cp, kind, where))?.status)}\n--- controller ---\n${env.controller.output().slice(-6000)}`,
    },
  );
}

/** Writes files into a fresh folder under the env's work folder; returns its path. */
export async function writeFiles(env: SyncEnv, name: string, files: Record<string, string>): Promise<string> {
  const dir = join(env.work, name);
  for (const [path, text] of Object.entries(files)) {
    await mkdir(join(dir, path, '..'), { recursive: true });
    await writeFile(join(dir, path), text);
  }
  return dir;
}

/** GET an object from the cluster; undefined when it does not exist. */
export async function getObject<
  T = {
    metadata: { annotations?: Record<string, string>; resourceVersion?: string };
    data?: Record<string, string>;
    status?: { phase?: string };
  },
>(cp: ControlPlane, path: string): Promise<T | undefined> {
  const res = await cp.request<T>('GET', path);
  return res.status === 200 ? res.json : undefined;
}

export { tempDir };
