// Sync benchmark: the RootSync reconciler (`airlock sync controller`) against one real control plane (etcd +
// kube-apiserver + kube-controller-manager from scripts/install-kube.sh) and one Airlock registry, all on
// 127.0.0.1, in one run:
//   1. push → SYNCED latency over N pushes of a changed ConfigMap to the same tag, with registry push events
//      (period 1h, so only the event can trigger) and polling only (--no-registry-events, period 1s);
//   2. one image of 1,000 ConfigMaps + their Namespace: RootSync created → SYNCED, against
//      `kubectl apply --server-side -f DIR` of the same files, alternating, 3 times each;
//   3. the controller's memory: RSS idle, during and after the 1,000-object syncs, and its VmHWM.
//
//   node dist/bench/sync-bench.js               full run (a few minutes); prints the report, rewrites the
//                                               sync-bench section of BENCHMARKS.md
//   node dist/bench/sync-bench.js --quick       smoke run: 5 pushes per mode, 100 ConfigMaps, 1 repetition
//   node dist/bench/sync-bench.js --no-write    never touch BENCHMARKS.md
import { existsSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { RegistryClient, RegistryStore, appendLayer } from '../src/client/index.js';
import { KubeClient, loadKubeConfig, type KubeList, type KubeObject } from '../src/kube/index.js';
import { parseReference } from '../src/oci/index.js';
import { findKubeBinaries, startControlPlane, type ControlPlane } from '../test/helpers/kube.js';
import { findPeer } from '../test/helpers/peers.js';
import { CLI, runOk, startAirlockProcess, tempDir, type RunningProcess } from '../test/helpers/processes.js';
import { applySync, deleteSync, startControllerProcess, type Controller } from '../test/helpers/sync.js';
import { MB, median, updateBenchmarksFile } from './report.js';
import {
  cpuSeconds,
  exec,
  firstLine,
  loadAverage,
  machineInfo,
  memoryOf,
  sampleRss,
  type MachineInfo,
} from './system.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const TIME = '/usr/bin/time';
const SYSTEM_NAMESPACE = 'config-management-system';
const ROOT_SYNCS = `/apis/configsync.gke.io/v1beta1/namespaces/${SYSTEM_NAMESPACE}/rootsyncs`;
const RESOURCE_GROUPS = `/apis/kpt.dev/v1alpha1/namespaces/${SYSTEM_NAMESPACE}/resourcegroups`;
/** Config Sync's default spec.oci.period, for the "what polling would imply" line. */
const CONFIG_SYNC_PERIOD_S = 15;
/** Polling-mode period: pushes are spread uniformly over one period so the wait for the next poll is sampled fairly. */
const POLL_PERIOD_MS = 1_000;
const LATENCY_TARGET_S = 2;

interface Sizes {
  readonly pushes: number;
  readonly objects: number;
  readonly repetitions: number;
}

const FULL: Sizes = { pushes: 20, objects: 1_000, repetitions: 3 };
const QUICK: Sizes = { pushes: 5, objects: 100, repetitions: 1 };

const progress = (message: string): void => {
  process.stderr.write(`[sync-bench ${(performance.now() / 1000).toFixed(0).padStart(3)}s] ${message}\n`);
};
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------------------------------------------------
// Watching one object: every event is timestamped when it arrives, so "when did the status say SYNCED" is
// known to the millisecond without polling.

interface Seen<T> {
  /** performance.now() when the event arrived (or when the wait began, if the state was already there). */
  readonly at: number;
  readonly object: T;
}

interface Waiter<T> {
  readonly test: (object: T) => boolean;
  readonly resolve: (seen: Seen<T>) => void;
}

class ObjectWatch<T extends KubeObject> {
  #latest: T | undefined;
  readonly #waiters = new Set<Waiter<T>>();
  readonly #abort = new AbortController();
  readonly #done: Promise<void>;

  constructor(kube: KubeClient, collection: string, name: string) {
    this.#done = this.#run(kube, collection, name);
  }

  async #run(kube: KubeClient, collection: string, name: string): Promise<void> {
    const signal = this.#abort.signal;
    const fieldSelector = `metadata.name=${name}`;
    let resourceVersion: string | undefined;
    while (!signal.aborted) {
      try {
        // List, then watch from the list's resourceVersion (this apiserver, on etcd 3.4, refuses a watch
        // without one: it lacks RequestWatchProgress).
        if (!resourceVersion) {
          const list = await kube.request<KubeList<T>>('GET', collection, {
            query: { fieldSelector },
            signal,
          });
          resourceVersion = list.metadata.resourceVersion;
          this.#seen(list.items[0], performance.now());
        }
        for await (const event of kube.watch(collection, {
          query: { fieldSelector, resourceVersion, timeoutSeconds: 600 },
          signal,
        })) {
          const at = performance.now();
          if (event.type === 'ERROR') {
            resourceVersion = undefined; // 410 Gone: list again
            break;
          }
          resourceVersion = event.object.metadata.resourceVersion ?? resourceVersion;
          if (event.type === 'BOOKMARK') continue;
          this.#seen(event.type === 'DELETED' ? undefined : (event.object as T), at);
        }
      } catch {
        if (signal.aborted) return;
        resourceVersion = undefined;
        await sleep(100);
      }
    }
  }

  #seen(object: T | undefined, at: number): void {
    this.#latest = object;
    if (!object) return;
    for (const waiter of this.#waiters) {
      if (!waiter.test(object)) continue;
      this.#waiters.delete(waiter);
      waiter.resolve({ at, object });
    }
  }

  /** Resolves when the object first satisfies `test` (at once when it already does). */
  until(test: (object: T) => boolean, what: string, timeoutMs: number): Promise<Seen<T>> {
    const latest = this.#latest;
    if (latest && test(latest)) return Promise.resolve({ at: performance.now(), object: latest });
    return new Promise((resolveSeen, reject) => {
      const waiter: Waiter<T> = {
        test,
        resolve: (seen) => {
          clearTimeout(timer);
          resolveSeen(seen);
        },
      };
      const timer = setTimeout(() => {
        this.#waiters.delete(waiter);
        reject(
          new Error(
            `Timed out after ${timeoutMs} ms waiting for ${what}; last seen: ${JSON.stringify(this.#latest?.status ?? this.#latest?.metadata)}`,
          ),
        );
      }, timeoutMs);
      this.#waiters.add(waiter);
    });
  }

  async stop(): Promise<void> {
    this.#abort.abort();
    await this.#done;
  }
}

interface RootSyncObject extends KubeObject {
  status?: {
    lastSyncedCommit?: string;
    source?: { commit?: string; errors?: unknown[] };
    sync?: { commit?: string; errors?: unknown[] };
  };
}

/** SYNCED at `commit`: the source and sync stages agree on it, no errors (what `nomos status` shows as SYNCED). */
function syncedAt(commit: (hex: string) => boolean): (sync: RootSyncObject) => boolean {
  return (sync) => {
    const status = sync.status;
    const synced = status?.lastSyncedCommit;
    return (
      synced !== undefined &&
      commit(synced) &&
      status?.source?.commit === synced &&
      status.sync?.commit === synced &&
      (status.source.errors?.length ?? 0) === 0 &&
      (status.sync.errors?.length ?? 0) === 0
    );
  };
}

// ---------------------------------------------------------------------------------------------------------
// Sources: files → tar → pushed with the client library's appendLayer (what `airlock append` runs), in this
// process, so "push complete" is the moment the manifest PUT was answered.

const namespaceYaml = (name: string): string =>
  `apiVersion: v1\nkind: Namespace\nmetadata:\n  name: ${name}\n`;

function configMapYaml(name: string, namespace: string, data: Record<string, string>): string {
  return [
    'apiVersion: v1',
    'kind: ConfigMap',
    'metadata:',
    `  name: ${name}`,
    `  namespace: ${namespace}`,
    '  labels:',
    '    app.kubernetes.io/part-of: sync-bench',
    'data:',
    ...Object.entries(data).map(([k, v]) => `  ${k}: "${v}"`),
    '',
  ].join('\n');
}

/** The bulk source: `000-namespace.yaml` (first, so kubectl creates it before the ConfigMaps) and cm-NNNN.yaml. */
async function writeBulkSource(dir: string, namespace: string, count: number): Promise<void> {
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, '000-namespace.yaml'), namespaceYaml(namespace));
  for (let i = 0; i < count; i++) {
    const name = `cm-${String(i).padStart(4, '0')}`;
    await writeFile(
      join(dir, `${name}.yaml`),
      configMapYaml(name, namespace, {
        index: String(i),
        'app.properties': `greeting=hello-${i}\\nreplicas=3\\ntimeout=30s\\nfeature.flag=true`,
        owner: 'platform-team',
      }),
    );
  }
}

async function tarFolder(dir: string, out: string): Promise<void> {
  const result = await exec('tar', ['-cf', out, '-C', dir, '.']);
  if (result.code !== 0) throw new Error(`tar -cf ${out} exited ${result.code}: ${result.stderr}`);
}

/** Pushes `tarFile` as a one-layer image to `image` (HOST/REPO:TAG); the digest's hex. */
async function pushTar(client: RegistryClient, image: string, tarFile: string): Promise<string> {
  const manifest = await appendLayer(new RegistryStore(client, parseReference(image)), tarFile);
  return manifest.digest.slice(manifest.digest.indexOf(':') + 1);
}

// ---------------------------------------------------------------------------------------------------------
// The controller's log (pino JSON lines on stderr; --log-level debug as in the e2e tests).

interface LogLine {
  readonly time: number;
  readonly msg: string;
  readonly sync?: string;
  readonly commit?: string;
  readonly digest?: string;
  readonly reason?: string;
}

function logLines(controller: Controller): LogLine[] {
  const lines: LogLine[] = [];
  for (const text of controller.output().split('\n')) {
    if (!text.startsWith('{')) continue;
    try {
      const line = JSON.parse(text) as Partial<LogLine>;
      if (typeof line.time === 'number' && typeof line.msg === 'string') lines.push(line as LogLine);
    } catch {
      // a line cut by the output buffer's limit
    }
  }
  return lines;
}

async function waitForLog(
  controller: Controller,
  test: (line: LogLine) => boolean,
  what: string,
  timeoutMs = 30_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!logLines(controller).some(test)) {
    if (Date.now() > deadline)
      throw new Error(
        `The controller logged no ${what} within ${timeoutMs} ms:\n${controller.output().slice(-4000)}`,
      );
    await sleep(50);
  }
}

/** Deletes a RootSync and waits until the controller has stopped its reconciler (managed objects stay). */
async function removeRootSync(cp: ControlPlane, controller: Controller, name: string): Promise<void> {
  await deleteSync(cp, 'RootSync', { name });
  await waitForLog(
    controller,
    (l) => l.msg.startsWith('reconciler stopped') && l.sync === `RootSync ${SYSTEM_NAMESPACE}/${name}`,
    `"reconciler stopped" for ${name}`,
  );
}

async function deleteNamespace(cp: ControlPlane, name: string): Promise<void> {
  const res = await cp.request('DELETE', `/api/v1/namespaces/${name}`);
  if (res.status !== 200 && res.status !== 202 && res.status !== 404)
    throw new Error(`deleting namespace ${name}: ${res.status} ${res.text}`);
  const deadline = Date.now() + 180_000;
  while ((await cp.request('GET', `/api/v1/namespaces/${name}`)).status !== 404) {
    if (Date.now() > deadline) throw new Error(`namespace ${name} still exists 180 s after deletion`);
    await sleep(250);
  }
}

/** Checks that the namespace holds the `count` bench ConfigMaps (and returns how many carry Airlock's marks). */
async function checkConfigMaps(cp: ControlPlane, namespace: string, count: number): Promise<number> {
  const res = await cp.request<{
    items: {
      metadata: { name: string; annotations?: Record<string, string> };
      data?: Record<string, string>;
    }[];
  }>(
    'GET',
    `/api/v1/namespaces/${namespace}/configmaps?labelSelector=app.kubernetes.io/part-of%3Dsync-bench`,
  );
  if (res.status !== 200) throw new Error(`listing ConfigMaps in ${namespace}: ${res.status} ${res.text}`);
  const items = res.json.items;
  const bad = items.filter((cm) => cm.data?.index !== String(Number(cm.metadata.name.slice(3))));
  if (items.length !== count || bad.length > 0)
    throw new Error(
      `${namespace} holds ${items.length} bench ConfigMaps (${bad.length} wrong), want ${count}`,
    );
  return items.filter((cm) => cm.metadata.annotations?.['configsync.gke.io/manager'] !== undefined).length;
}

/** The first process whose argument list satisfies `match`. */
function findProcess(match: (args: string[]) => boolean): number | undefined {
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (match(readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0'))) return Number(entry);
    } catch {
      // gone meanwhile
    }
  }
  return undefined;
}

/** PIDs of this control plane's kube-apiserver and etcd (to account their CPU per run). */
function controlPlanePids(cp: ControlPlane): { apiserver: number; etcd: number } {
  const port = new URL(cp.server).port;
  let etcdUrl: string | undefined;
  const apiserver = findProcess((args) => {
    if (!args[0]?.endsWith('kube-apiserver') || !args.includes(`--secure-port=${port}`)) return false;
    etcdUrl = args.find((a) => a.startsWith('--etcd-servers='))?.slice('--etcd-servers='.length);
    return true;
  });
  const etcd = findProcess(
    (args) => args[0]?.endsWith('etcd') === true && args.includes(`--listen-client-urls=${etcdUrl}`),
  );
  if (apiserver === undefined || etcd === undefined)
    throw new Error(
      `Cannot find the kube-apiserver (${apiserver}) and etcd (${etcd}) processes of ${cp.server}`,
    );
  return { apiserver, etcd };
}

/** CPU seconds the API server and etcd spend while `work` runs. */
async function serverCpu<T>(
  env: Env,
  work: () => Promise<T>,
): Promise<{ result: T; apiserver: number; etcd: number }> {
  const before = { apiserver: await cpuSeconds(env.pids.apiserver), etcd: await cpuSeconds(env.pids.etcd) };
  const result = await work();
  return {
    result,
    apiserver: (await cpuSeconds(env.pids.apiserver)) - before.apiserver,
    etcd: (await cpuSeconds(env.pids.etcd)) - before.etcd,
  };
}

// ---------------------------------------------------------------------------------------------------------
// 1. Push → SYNCED latency.

type Mode = 'events' | 'polling';

interface Push {
  /** From the manifest PUT's answer to both the RootSync SYNCED at the new digest and the ConfigMap updated, ms. */
  readonly latencyMs: number;
  /** From the push to the controller starting the reconcile that applied it (event or poll), ms (from its log). */
  readonly waitMs: number;
  /** That reconcile, from start to its "reconciled" log line, ms. */
  readonly reconcileMs: number;
}

interface LatencyResult {
  readonly mode: Mode;
  readonly period: string;
  readonly pushes: Push[];
}

interface Env {
  readonly cp: ControlPlane;
  readonly kube: KubeClient;
  readonly registry: RunningProcess;
  readonly client: RegistryClient;
  readonly work: string;
  readonly pids: { readonly apiserver: number; readonly etcd: number };
}

async function measureLatency(env: Env, mode: Mode, sizes: Sizes): Promise<LatencyResult> {
  const name = `latency-${mode}`;
  const period = mode === 'events' ? '1h' : `${POLL_PERIOD_MS / 1000}s`;
  const image = `${env.registry.host}/bench/${name}:live`;
  const controller = startControllerProcess(
    env.cp.kubeconfig,
    mode === 'polling' ? ['--no-registry-events'] : [],
  );
  const syncWatch = new ObjectWatch<RootSyncObject>(env.kube, ROOT_SYNCS, name);
  const cmWatch = new ObjectWatch<KubeObject & { data?: Record<string, string> }>(
    env.kube,
    `/api/v1/namespaces/${name}/configmaps`,
    'probe',
  );
  const source = join(env.work, name);
  const write = async (seq: number): Promise<string> => {
    await mkdir(join(source, 'files'), { recursive: true });
    await writeFile(join(source, 'files', 'namespace.yaml'), namespaceYaml(name));
    await writeFile(
      join(source, 'files', 'probe.yaml'),
      configMapYaml('probe', name, { seq: String(seq), pushed: `push number ${seq}` }),
    );
    const tar = join(source, `v${seq}.tar`);
    await tarFolder(join(source, 'files'), tar);
    return tar;
  };
  const pushes: Push[] = [];
  try {
    let previous = await pushTar(env.client, image, await write(0));
    await applySync(
      env.cp,
      'RootSync',
      { name },
      { sourceType: 'oci', sourceFormat: 'unstructured', oci: { image, dir: '.', auth: 'none', period } },
    );
    await syncWatch.until(
      syncedAt((c) => c === previous),
      `${name} SYNCED at the first push`,
      120_000,
    );
    await sleep(1_000);
    const pushedAt: { seq: number; hex: string; wall: number; latencyMs: number }[] = [];
    for (let seq = 1; seq <= sizes.pushes; seq++) {
      const tar = await write(seq);
      // Pushes land at a uniformly random point of the poll period (and of any timer in events mode).
      await sleep(Math.random() * POLL_PERIOD_MS);
      const before = previous;
      const synced = syncWatch.until(
        syncedAt((c) => c !== before),
        `${name} SYNCED after push ${seq}`,
        60_000,
      );
      const updated = cmWatch.until((cm) => cm.data?.seq === String(seq), `probe seq=${seq}`, 60_000);
      const hex = await pushTar(env.client, image, tar);
      const pushed = performance.now();
      const wall = Date.now();
      const [sync, cm] = await Promise.all([synced, updated]);
      if (sync.object.status?.lastSyncedCommit !== hex)
        throw new Error(`${name} synced ${sync.object.status?.lastSyncedCommit}, not the pushed ${hex}`);
      const latencyMs = Math.max(sync.at, cm.at) - pushed;
      pushedAt.push({ seq, hex, wall, latencyMs });
      previous = hex;
      progress(
        `${mode} push ${String(seq).padStart(2)}: SYNCED ${(latencyMs / 1000).toFixed(3)} s after the push`,
      );
    }
    // Where the time went, from the controller's log: wait for the trigger, then the reconcile itself.
    const log = logLines(controller).filter((l) => l.sync === `RootSync ${SYSTEM_NAMESPACE}/${name}`);
    for (const p of pushedAt) {
      const done = log.find((l) => l.msg === 'reconciled' && l.commit === p.hex);
      const started = done && log.filter((l) => l.msg === 'reconcile triggered' && l.time <= done.time).pop();
      pushes.push({
        latencyMs: p.latencyMs,
        waitMs: started ? started.time - p.wall : NaN,
        reconcileMs: done && started ? done.time - started.time : NaN,
      });
    }
    await removeRootSync(env.cp, controller, name);
  } finally {
    await syncWatch.stop();
    await cmWatch.stop();
    await controller.stop();
  }
  await deleteNamespace(env.cp, name);
  return { mode, period, pushes };
}

// ---------------------------------------------------------------------------------------------------------
// 2 and 3. One image of N ConfigMaps: Airlock vs kubectl, and the controller's memory.

/** CPU seconds (user + system) the API server and etcd spent during a run. */
interface ServerSide {
  readonly apiserverCpu: number;
  readonly etcdCpu: number;
}

interface AirlockBulkRun extends ServerSide {
  /** RootSync created → SYNCED (status seen through a watch), s. */
  readonly seconds: number;
  /** RootSync created → status.source.commit set (controller saw it, pulled, extracted, parsed, validated), s. */
  readonly fetchSeconds: number;
  /** → the inventory (ResourceGroup) written: image-to-sync annotation, LISTs, every apply, s. */
  readonly applySeconds: number;
  /** → SYNCED: inventory status, sync status, s. */
  readonly statusSeconds: number;
  /** Largest controller VmRSS sampled every 25 ms during the sync. */
  readonly peakRss: number;
  /** Controller VmRSS 3 s after SYNCED, while it keeps the objects under drift watch. */
  readonly settledRss: number;
  /** Controller CPU (user + system) from RootSync creation to SYNCED, s. */
  readonly cpu: number;
}

interface KubectlRun extends ServerSide {
  readonly seconds: number;
  /** kubectl's user + system CPU (NaN without /usr/bin/time). */
  readonly cpu: number;
  /** kubectl's max RSS (NaN without /usr/bin/time). */
  readonly rss: number;
}

interface BulkResult {
  readonly airlock: AirlockBulkRun[];
  readonly kubectl: KubectlRun[];
  /** Fresh controller, no sync, 5 s after start. */
  readonly idleRss: number;
  /** VmHWM of that controller at the end of all runs. */
  readonly hwm: number;
  /** Order of the runs, e.g. ["airlock", "kubectl", "kubectl", "airlock", …]. */
  readonly order: string[];
}

async function airlockBulk(
  env: Env,
  controller: Controller,
  where: { rep: number; namespace: string; image: string; hex: string; objects: number },
): Promise<AirlockBulkRun> {
  const name = `bulk-${where.rep}`;
  const pid = controller.child.pid ?? NaN;
  const syncWatch = new ObjectWatch<RootSyncObject>(env.kube, ROOT_SYNCS, name);
  const groupWatch = new ObjectWatch<KubeObject & { spec?: { resources?: unknown[] } }>(
    env.kube,
    RESOURCE_GROUPS,
    name,
  );
  try {
    await sleep(500); // let both watches open
    const timeout = 600_000;
    const fetched = syncWatch.until(
      (s) => s.status?.source?.commit === where.hex,
      `${name} source fetched`,
      timeout,
    );
    const inventory = groupWatch.until(
      (g) => (g.spec?.resources?.length ?? 0) === where.objects + 1,
      `${name} inventory with ${where.objects + 1} objects`,
      timeout,
    );
    const synced = syncWatch.until(
      syncedAt((c) => c === where.hex),
      `${name} SYNCED`,
      timeout,
    );
    const rss = sampleRss(pid, 25);
    const cpuBefore = await cpuSeconds(pid);
    const created = performance.now();
    const server = await serverCpu(env, async () => {
      await applySync(
        env.cp,
        'RootSync',
        { name },
        {
          sourceType: 'oci',
          sourceFormat: 'unstructured',
          oci: { image: where.image, dir: '.', auth: 'none', period: '1h' },
        },
      );
      return Promise.all([fetched, inventory, synced]);
    });
    const [f, i, s] = server.result;
    const cpu = (await cpuSeconds(pid)) - cpuBefore;
    const peakRss = rss.stop();
    await sleep(3_000);
    const settledRss = memoryOf(pid).rss;
    const managed = await checkConfigMaps(env.cp, where.namespace, where.objects);
    if (managed !== where.objects)
      throw new Error(`${managed} of ${where.objects} ConfigMaps carry configsync.gke.io/manager`);
    const run: AirlockBulkRun = {
      seconds: (s.at - created) / 1000,
      fetchSeconds: (f.at - created) / 1000,
      applySeconds: (i.at - f.at) / 1000,
      statusSeconds: (s.at - i.at) / 1000,
      peakRss,
      settledRss,
      cpu,
      apiserverCpu: server.apiserver,
      etcdCpu: server.etcd,
    };
    progress(
      `airlock ${where.objects} objects: ${run.seconds.toFixed(2)} s (fetch ${run.fetchSeconds.toFixed(2)}, apply ` +
        `${run.applySeconds.toFixed(2)}, status ${run.statusSeconds.toFixed(2)}), controller CPU ${cpu.toFixed(2)} s, ` +
        `peak RSS ${mem(peakRss)}, settled ${mem(settledRss)}; apiserver CPU ${server.apiserver.toFixed(2)} s, ` +
        `etcd ${server.etcd.toFixed(2)} s`,
    );
    await removeRootSync(env.cp, controller, name);
    return run;
  } finally {
    await syncWatch.stop();
    await groupWatch.stop();
  }
}

async function kubectlBulk(
  env: Env,
  kubectl: string,
  where: { rep: number; namespace: string; dir: string; objects: number },
): Promise<KubectlRun> {
  const useTime = existsSync(TIME);
  const report = join(env.work, `kubectl-time-${where.rep}.txt`);
  const command = [
    kubectl,
    '--kubeconfig',
    env.cp.kubeconfig,
    '--cache-dir',
    join(env.work, 'kubectl-cache'),
    'apply',
    '--server-side',
    '-f',
    where.dir,
  ];
  const [program, ...args] = useTime ? [TIME, '-f', '%U %S %M', '-o', report, ...command] : command;
  const started = performance.now();
  const server = await serverCpu(env, () => exec(program ?? kubectl, args, { timeoutMs: 600_000 }));
  const seconds = (performance.now() - started) / 1000;
  const result = server.result;
  if (result.code !== 0)
    throw new Error(`kubectl apply exited ${result.code}:\n${result.stderr.slice(-4000)}`);
  const applied = result.stdout.split('\n').filter((l) => l.includes('serverside-applied')).length;
  if (applied !== where.objects + 1)
    throw new Error(`kubectl reported ${applied} objects applied, want ${where.objects + 1}`);
  await checkConfigMaps(env.cp, where.namespace, where.objects);
  let cpu = NaN;
  let rss = NaN;
  if (useTime) {
    const [user, system, kib] = (await readFile(report, 'utf8'))
      .trim()
      .split('\n')
      .pop()!
      .split(' ')
      .map(Number);
    cpu = (user ?? NaN) + (system ?? NaN);
    rss = (kib ?? NaN) * 1024;
  }
  progress(
    `kubectl ${where.objects} objects: ${seconds.toFixed(2)} s, CPU ${cpu.toFixed(2)} s, RSS ${mem(rss)}; ` +
      `apiserver CPU ${server.apiserver.toFixed(2)} s, etcd ${server.etcd.toFixed(2)} s`,
  );
  return { seconds, cpu, rss, apiserverCpu: server.apiserver, etcdCpu: server.etcd };
}

async function measureBulk(env: Env, kubectl: string, sizes: Sizes): Promise<BulkResult> {
  // The sources, written and pushed before anything is timed.
  const reps = Array.from({ length: sizes.repetitions }, (_, i) => i + 1);
  const sources: {
    airlock: { namespace: string; image: string; hex: string };
    kubectl: { namespace: string; dir: string };
  }[] = [];
  for (const rep of reps) {
    const airlockNs = `bulk-airlock-${rep}`;
    const kubectlNs = `bulk-kubectl-${rep}`;
    const airlockDir = join(env.work, airlockNs);
    const kubectlDir = join(env.work, kubectlNs);
    await writeBulkSource(airlockDir, airlockNs, sizes.objects);
    await writeBulkSource(kubectlDir, kubectlNs, sizes.objects);
    const tar = join(env.work, `${airlockNs}.tar`);
    await tarFolder(airlockDir, tar);
    const image = `${env.registry.host}/bench/bulk:${rep}`;
    const hex = await pushTar(env.client, image, tar);
    sources.push({
      airlock: { namespace: airlockNs, image, hex },
      kubectl: { namespace: kubectlNs, dir: kubectlDir },
    });
  }
  progress(`wrote and pushed ${sizes.repetitions} × ${sizes.objects} ConfigMaps`);

  const controller = startControllerProcess(env.cp.kubeconfig);
  const pid = controller.child.pid ?? NaN;
  try {
    await waitForLog(controller, (l) => l.msg === 'sync controller starting', '"sync controller starting"');
    await sleep(5_000);
    const idleRss = memoryOf(pid).rss;
    progress(`controller idle (no sync): RSS ${mem(idleRss)}`);
    const airlock: AirlockBulkRun[] = [];
    const kubectlRuns: KubectlRun[] = [];
    const order: string[] = [];
    for (const rep of reps) {
      const source = sources[rep - 1]!;
      const tools = rep % 2 === 1 ? (['airlock', 'kubectl'] as const) : (['kubectl', 'airlock'] as const);
      for (const tool of tools) {
        order.push(tool);
        if (tool === 'airlock') {
          airlock.push(
            await airlockBulk(env, controller, { rep, ...source.airlock, objects: sizes.objects }),
          );
          await deleteNamespace(env.cp, source.airlock.namespace);
        } else {
          kubectlRuns.push(
            await kubectlBulk(env, kubectl, { rep, ...source.kubectl, objects: sizes.objects }),
          );
          await deleteNamespace(env.cp, source.kubectl.namespace);
        }
      }
    }
    return { airlock, kubectl: kubectlRuns, idleRss, hwm: memoryOf(pid).hwm, order };
  } finally {
    await controller.stop();
  }
}

// ---------------------------------------------------------------------------------------------------------
// The report.

interface Report {
  readonly machine: MachineInfo;
  /** The Airlock build under test, with the uncommitted files that matter to sync. */
  readonly build: string;
  readonly quick: boolean;
  readonly sizes: Sizes;
  readonly versions: { readonly kube: string; readonly kubectl: string; readonly etcd: string };
  readonly load: { readonly start: string; readonly end: string };
  readonly latency: Record<Mode, LatencyResult>;
  readonly bulk: BulkResult;
}

/** Nearest-rank percentile (p in 0..1). */
function percentile(samples: readonly number[], p: number): number {
  const sorted = [...samples].filter((n) => Number.isFinite(n)).sort((a, b) => a - b);
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))] ?? NaN;
}

const fixed = (digits: number) => (n: number) => (Number.isFinite(n) ? n.toFixed(digits) : 'n/a');
const two = fixed(2);
const three = fixed(3);
function mem(bytes: number): string {
  return Number.isFinite(bytes) ? `${Math.round(bytes / MB)} MB` : 'n/a';
}
const finiteMedian = (samples: readonly number[]): number =>
  median(samples.filter((n) => Number.isFinite(n)));
const seconds = (ms: readonly number[]): number[] => ms.map((n) => n / 1000);
const list = (samples: readonly number[], format: (n: number) => string): string =>
  samples.map(format).join(', ');

function renderSection(report: Report): string {
  const m = report.machine;
  const { sizes, bulk } = report;
  const events = seconds(report.latency.events.pushes.map((p) => p.latencyMs));
  const polling = seconds(report.latency.polling.pushes.map((p) => p.latencyMs));
  const pollReconcile = finiteMedian(seconds(report.latency.polling.pushes.map((p) => p.reconcileMs)));
  // From the poll that saw the new digest to SYNCED: what any period adds to half of itself on average.
  const pollAfterTrigger = finiteMedian(
    seconds(report.latency.polling.pushes.map((p) => p.latencyMs - p.waitMs)),
  );
  const eventsMet = median(events) < LATENCY_TARGET_S;
  // A push waits on average half a period for the next poll, then the reconcile runs.
  const implied = CONFIG_SYNC_PERIOD_S / 2 + pollAfterTrigger;
  const airlockSeconds = median(bulk.airlock.map((r) => r.seconds));
  const kubectlSeconds = median(bulk.kubectl.map((r) => r.seconds));
  const ratio = airlockSeconds / kubectlSeconds;
  const ratioMet = ratio <= 1;
  const n = sizes.objects.toLocaleString('en-US');
  const phase = (pick: (r: AirlockBulkRun) => number): string => two(median(bulk.airlock.map(pick)));
  const breakdown = (mode: Mode): string => {
    const pushes = report.latency[mode].pushes;
    return `${three(finiteMedian(seconds(pushes.map((p) => p.waitMs))))} / ${three(finiteMedian(seconds(pushes.map((p) => p.reconcileMs))))}`;
  };
  const rows = [
    '| Metric | Airlock | Reference | Airlock / reference | Target | Status |',
    '| --- | ---: | ---: | ---: | --- | --- |',
    `| Push → SYNCED, registry events (period 1h), median / p95 s | ${three(median(events))} / ${three(percentile(events, 0.95))} | | | median < ${LATENCY_TARGET_S} s | ${eventsMet ? '✅ met' : '❌ missed'} |`,
    `| … wait for the trigger / reconcile (controller log), median s | ${breakdown('events')} | | | | |`,
    `| Push → SYNCED, polling only (--no-registry-events, period 1s), median / p95 s | ${three(median(polling))} / ${three(percentile(polling, 0.95))} | | | | |`,
    `| … wait for the poll / reconcile (controller log), median s | ${breakdown('polling')} | | | | |`,
    `| Push → SYNCED implied by Config Sync's default ${CONFIG_SYNC_PERIOD_S} s poll, median s | | ≈ ${two(implied)} | | | |`,
    `| Apply ${n} ConfigMaps + Namespace (RootSync created → SYNCED vs \`kubectl apply --server-side\`), s | ${two(airlockSeconds)} | ${two(kubectlSeconds)} | ${two(ratio)}× | ≤ 1.00× | ${ratioMet ? '✅ met' : '❌ missed'} |`,
    `| … Airlock phases: fetch + parse / apply + inventory / status, s | ${phase((r) => r.fetchSeconds)} / ${phase((r) => r.applySeconds)} / ${phase((r) => r.statusSeconds)} | | | | |`,
    `| … CPU: controller vs kubectl (user + sys), s | ${two(median(bulk.airlock.map((r) => r.cpu)))} | ${two(median(bulk.kubectl.map((r) => r.cpu)))} | ${two(median(bulk.airlock.map((r) => r.cpu)) / median(bulk.kubectl.map((r) => r.cpu)))}× | | |`,
    `| … CPU: kube-apiserver + etcd during the run, s | ${two(median(bulk.airlock.map((r) => r.apiserverCpu)))} + ${two(median(bulk.airlock.map((r) => r.etcdCpu)))} | ${two(median(bulk.kubectl.map((r) => r.apiserverCpu)))} + ${two(median(bulk.kubectl.map((r) => r.etcdCpu)))} | ${two(median(bulk.airlock.map((r) => r.apiserverCpu + r.etcdCpu)) / median(bulk.kubectl.map((r) => r.apiserverCpu + r.etcdCpu)))}× | | |`,
    `| Controller RSS idle (fresh process, no sync) | ${mem(bulk.idleRss)} | | | | |`,
    `| Controller RSS during a ${n}-object sync (max VmRSS sampled every 25 ms), median | ${mem(median(bulk.airlock.map((r) => r.peakRss)))} | ${mem(median(bulk.kubectl.map((r) => r.rss)))} (kubectl max RSS) | | | |`,
    `| Controller RSS 3 s after SYNCED, watching the ${n} objects for drift, median | ${mem(median(bulk.airlock.map((r) => r.settledRss)))} | | | | |`,
    `| Controller peak RSS over all ${n}-object syncs (VmHWM) | ${mem(bulk.hwm)} | | | | |`,
  ];
  const verdicts = [
    `- ${eventsMet ? '✅' : '❌'} push → SYNCED with registry events: median ${three(median(events))} s, p95 ${three(percentile(events, 0.95))} s (target: median < ${LATENCY_TARGET_S} s)`,
    `- ${ratioMet ? '✅' : '❌'} ${n} objects: Airlock takes ${two(ratio)}× kubectl's time (${two(airlockSeconds)} s vs ${two(kubectlSeconds)} s; target ≤ 1.00×)`,
    `- ℹ️ polling only: median ${three(median(polling))} s with a 1 s period; with Config Sync's default ${CONFIG_SYNC_PERIOD_S} s period the same ` +
      `reconcile would give a median of ≈ ${two(implied)} s (half a period, ${two(CONFIG_SYNC_PERIOD_S / 2)} s, plus the ` +
      `${two(pollAfterTrigger)} s measured from the poll to SYNCED; the reconcile itself took ${three(pollReconcile)} s)`,
  ];
  const loaded = m.cpus > 0 && Number(report.load.start.split(' ')[0]) > m.cpus / 2;
  return [
    '## Sync: push → SYNCED latency, bulk apply vs kubectl, controller memory',
    '',
    `_Generated by \`npm run bench:sync\` (\`node dist/bench/sync-bench.js\`${report.quick ? ' --quick, smoke sizes, not comparable' : ''}); ` +
      'rerunning overwrites this section._',
    '',
    `- **Date**: ${m.date}`,
    `- **Machine**: ${m.cpus} CPUs (nproc), ${m.cpuModel}, ${m.memoryGiB} GiB RAM, ${m.kernel}; temp files on ${m.tmpFilesystem}`,
    `- **Software**: Airlock ${report.build}; node ${m.node}; ${report.versions.kube} (kube-apiserver, kube-controller-manager); ` +
      `kubectl ${report.versions.kubectl}; ${report.versions.etcd}`,
    `- **Load average** (1/5/15 min) at start: ${report.load.start}; at end: ${report.load.end}` +
      (loaded ? ' — other work was running on this machine, so absolute numbers are noisy' : ''),
    `- **Sizes**: ${sizes.pushes} pushes per latency mode; ${n} ConfigMaps + 1 Namespace per bulk image, ` +
      `${sizes.repetitions} repetition(s) per tool, alternating (${bulk.order.join(', ')}), median reported; MB = 10^6 bytes`,
    '',
    ...rows,
    '',
    ...verdicts,
    '',
    'Samples (in order):',
    '',
    `- events, push → SYNCED s: ${list(events, three)}`,
    `- polling, push → SYNCED s: ${list(polling, three)}`,
    `- airlock ${n} objects: ${list(
      bulk.airlock.map((r) => r.seconds),
      two,
    )} s (fetch ${list(
      bulk.airlock.map((r) => r.fetchSeconds),
      two,
    )}; apply ${list(
      bulk.airlock.map((r) => r.applySeconds),
      two,
    )}; status ${list(
      bulk.airlock.map((r) => r.statusSeconds),
      two,
    )}); controller CPU ${list(
      bulk.airlock.map((r) => r.cpu),
      two,
    )} s; RSS during ${list(
      bulk.airlock.map((r) => r.peakRss / MB),
      fixed(0),
    )} MB; after ${list(
      bulk.airlock.map((r) => r.settledRss / MB),
      fixed(0),
    )} MB; apiserver CPU ${list(
      bulk.airlock.map((r) => r.apiserverCpu),
      two,
    )} s; etcd CPU ${list(
      bulk.airlock.map((r) => r.etcdCpu),
      two,
    )} s`,
    `- kubectl ${n} objects: ${list(
      bulk.kubectl.map((r) => r.seconds),
      two,
    )} s; CPU ${list(
      bulk.kubectl.map((r) => r.cpu),
      two,
    )} s; max RSS ${list(
      bulk.kubectl.map((r) => r.rss / MB),
      fixed(0),
    )} MB; apiserver CPU ${list(
      bulk.kubectl.map((r) => r.apiserverCpu),
      two,
    )} s; etcd CPU ${list(
      bulk.kubectl.map((r) => r.etcdCpu),
      two,
    )} s`,
    '',
    'Method:',
    '',
    '- One control plane (etcd, kube-apiserver, kube-controller-manager built by `scripts/install-kube.sh`, as in ' +
      '`test/e2e`), one `airlock serve` (log level warn) and `airlock sync controller --log-level debug` as child ' +
      'processes; the sync CRDs come from `airlock sync install --crds-only`. Everything talks over 127.0.0.1 and ' +
      'shares the 2 CPUs with this script.',
    '- Pushes use the client library’s `appendLayer` (what `airlock append -f TAR -t IMAGE` runs) in this process, so ' +
      '"push complete" is when the manifest PUT was answered. Each push is a new tar of the same Namespace and a ' +
      'ConfigMap `probe` whose data changed, to the same tag. Before each push the script sleeps a uniformly random ' +
      '0–1 s, so polling-mode pushes land at random points of the 1 s period.',
    '- Latency = from the push to the later of: the RootSync status showing `lastSyncedCommit` = the new digest (with ' +
      '`source.commit` and `sync.commit` equal to it and no errors), and the ConfigMap showing the new data. Both are ' +
      'seen through kube watches (no polling), timestamped on arrival. The split into "wait for the trigger" and ' +
      '"reconcile" comes from the controller’s log: its "reconcile triggered" and "reconciled" lines (millisecond clock; ' +
      'with events the wait can be a few ms below zero: the registry announces the push before the client has read ' +
      'the answer to its manifest PUT).',
    '- Events mode: the controller as installed (it subscribes to the registry’s `/api/v1/events` stream) and ' +
      'spec.oci.period `1h`, so only the push event can start the reconcile. Polling mode: a new controller with ' +
      '`--no-registry-events` and period `1s`. The Config Sync figure is arithmetic, not a measurement: half its ' +
      `${CONFIG_SYNC_PERIOD_S} s default period plus what this run measured from the poll to SYNCED.`,
    `- Bulk: ${n} files \`cm-NNNN.yaml\` (one ConfigMap each, 3 data keys) plus \`000-namespace.yaml\`, written per ` +
      'run with its own namespace. Airlock: the folder as a tar pushed as `bench/bulk:N` beforehand; the time runs ' +
      'from the request creating the RootSync (period 1h) to SYNCED seen through a watch, so it includes the ' +
      'controller noticing the RootSync, pulling and extracting the image, parsing and validating, the ' +
      'image-to-sync annotation, applying (server-side apply, 8 requests in flight), the inventory ResourceGroup ' +
      'and the status. Phases come from watch events: `status.source.commit` set, the ResourceGroup listing every ' +
      'object, SYNCED. kubectl: `kubectl apply --server-side -f DIR` (a cache dir of its own, kept between runs), ' +
      'timed from spawn to exit, CPU and max RSS from `/usr/bin/time`. kube-apiserver and etcd CPU is read from ' +
      '/proc/PID/stat before and after each run (for Airlock: RootSync creation to SYNCED).',
    '- Runs alternate which tool goes first. After each run the RootSync is deleted (the controller stops its ' +
      'reconciler) and the namespace is deleted and waited for, so every run starts from the same cluster state. ' +
      'All bulk runs use one controller process: idle RSS is read 5 s after it started, RSS during a sync is the ' +
      'largest VmRSS sampled every 25 ms, and the peak is its VmHWM after the last run.',
  ]
    .filter((line, i, all) => !(line === '' && all[i - 1] === ''))
    .join('\n');
}

/** The commit under test, and which uncommitted src/ files the controller's path runs through. */
async function airlockBuild(): Promise<string> {
  const head = (await exec('git', ['-C', ROOT, 'rev-parse', '--short', 'HEAD'])).stdout.trim() || 'unknown';
  const status = (await exec('git', ['-C', ROOT, 'status', '--porcelain', '--', 'src'])).stdout.trim();
  const changed = status === '' ? [] : status.split('\n').map((line) => line.slice(3));
  if (changed.length === 0) return `commit ${head}, src/ clean`;
  const used = changed.filter(
    (path) => /^src\/(sync|kube|client|oci|log|cli|registry)\//.test(path) && !path.endsWith('.test.ts'),
  );
  return (
    `commit ${head} + ${changed.length} uncommitted file(s) in src/ ` +
    (used.length === 0 ? '(tests only, or none the controller runs)' : `(incl. ${used.join(', ')})`)
  );
}

// ---------------------------------------------------------------------------------------------------------

function usage(): never {
  process.stderr.write('Usage: sync-bench [--quick] [--no-write]\n');
  process.exit(2);
}

async function main(): Promise<void> {
  let args;
  try {
    args = parseArgs({
      options: {
        quick: { type: 'boolean', default: false },
        'no-write': { type: 'boolean', default: false },
        help: { type: 'boolean', default: false },
      },
    }).values;
  } catch (error) {
    process.stderr.write(`${(error as Error).message}\n`);
    usage();
  }
  if (args.help) usage();
  const sizes = args.quick ? QUICK : FULL;
  const binaries = findKubeBinaries(true);
  const kubectl = findPeer('kubectl');
  if (!binaries || !kubectl)
    throw new Error(
      'etcd, kube-apiserver, kube-controller-manager and kubectl are needed; run scripts/install-kube.sh',
    );

  const loadStart = loadAverage();
  const work = await tempDir('airlock-sync-bench-');
  const machine = await machineInfo(tmpdir(), { root: ROOT });
  const build = await airlockBuild();
  const versions = {
    kube: await firstLine(binaries.apiserver, ['--version']),
    kubectl: (await firstLine(kubectl, ['version', '--client'])).replace(/^Client Version:\s*/, ''),
    etcd: await firstLine(binaries.etcd, ['--version']),
  };
  progress(
    `work folder ${work}; ${machine.cpus} CPUs, node ${machine.node}, ${versions.kube}, ${versions.etcd}`,
  );

  let cp: ControlPlane | undefined;
  let registry: RunningProcess | undefined;
  let kube: KubeClient | undefined;
  let client: RegistryClient | undefined;
  const cleanup = (): void => {
    registry?.child.kill('SIGKILL');
    rmSync(work, { recursive: true, force: true });
  };
  process.once('SIGINT', () => {
    cleanup();
    void cp?.stop().finally(() => process.exit(130));
  });

  let report: Report;
  try {
    cp = await startControlPlane({ binaries });
    progress(`control plane ready at ${cp.server} in ${(cp.timings.totalMs / 1000).toFixed(1)} s`);
    registry = await startAirlockProcess({ dataDir: join(work, 'registry') });
    client = new RegistryClient(registry.host);
    const ns = await cp.request('POST', '/api/v1/namespaces', {
      body: { apiVersion: 'v1', kind: 'Namespace', metadata: { name: SYSTEM_NAMESPACE } },
    });
    if (ns.status !== 201) throw new Error(`creating ${SYSTEM_NAMESPACE}: ${ns.status} ${ns.text}`);
    await runOk(process.execPath, [CLI, 'sync', 'install', '--crds-only', '--kubeconfig', cp.kubeconfig]);
    kube = new KubeClient(loadKubeConfig({ kubeconfig: cp.kubeconfig }));
    const env: Env = { cp, kube, registry, client, work, pids: controlPlanePids(cp) };

    const events = await measureLatency(env, 'events', sizes);
    const polling = await measureLatency(env, 'polling', sizes);
    const bulk = await measureBulk(env, kubectl, sizes);
    report = {
      machine,
      build,
      quick: args.quick,
      sizes,
      versions,
      load: { start: loadStart, end: loadAverage() },
      latency: { events, polling },
      bulk,
    };
  } finally {
    client?.close();
    kube?.close();
    await registry?.stop();
    await cp?.stop();
    rmSync(work, { recursive: true, force: true });
  }

  const section = renderSection(report);
  process.stdout.write(`${section}\n`);
  if (!args.quick && !args['no-write']) {
    await updateBenchmarksFile(join(ROOT, 'BENCHMARKS.md'), section, { marker: 'sync-bench' });
    progress('wrote BENCHMARKS.md');
  } else if (!args['no-write']) {
    progress('BENCHMARKS.md left alone (only a full run without --quick writes it)');
  }
}

main().catch((error: unknown) => {
  process.stderr.write(
    `sync-bench failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
  );
  process.exit(1);
});
