// Registry benchmark: Airlock and distribution 2.8 side by side on loopback, driven by the same client.
//
//   npm run bench                         full run (about 2 minutes); prints the table, rewrites BENCHMARKS.md
//   npm run bench -- --quick              smoke run with small sizes and short wrk runs (BENCHMARKS.md untouched)
//   npm run bench -- --only get|upload|download
//   npm run bench -- --cpu-prof DIR       also write a V8 CPU profile of the Airlock process into DIR
//   npm run bench -- --no-write           never touch BENCHMARKS.md
import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import {
  startAirlockProcess,
  startDistribution,
  tempDir,
  type RunningProcess,
} from '../test/helpers/processes.js';
import { SAMPLES_PER_WAY } from '../src/oci/kernel-send.js';
import { OCI_MANIFEST, RegistryClient } from './client.js';
import { startProfiledAirlock } from './profiled-airlock.js';
import { BlobSource, createRandomFile, SUFFIX_BYTES, type RandomFile } from './payload.js';
import { MB, renderSection, updateBenchmarksFile, type BenchResults, type Pair } from './report.js';
import {
  cpuSeconds,
  loadAverage,
  machineInfo,
  memoryOf,
  rawWriteMBps,
  sampleRss,
  startBaselineServer,
  syncDisks,
} from './system.js';
import { runWrk, type WrkResult } from './wrk.js';

const MiB = 1024 * 1024;
const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const REGISTRIES = ['airlock', 'distribution'] as const;
type Name = (typeof REGISTRIES)[number];
type Phase = 'get' | 'upload' | 'download';

interface Sizes {
  readonly blobBytes: number;
  readonly chunkBytes: number;
  readonly repetitions: number;
  readonly wrkSeconds: number;
  readonly warmupSeconds: number;
  /** The small upload of the RSS test: this many bytes of the random file. */
  readonly rssSmallBytes: number;
  /** The large upload of the RSS test: the random file this many times over. */
  readonly rssLargeRepeat: number;
}

// Seven repetitions: on the 2-vCPU VMs the bench runs on, with 4-13% of the time stolen by the host,
// three gave medians that one slow sample could set (a download at 944 MB/s among 2,524 and 959).
const FULL: Sizes = {
  blobBytes: 256 * MiB,
  chunkBytes: 16 * MiB,
  repetitions: 7,
  wrkSeconds: 10,
  warmupSeconds: 2,
  rssSmallBytes: 64 * MiB,
  rssLargeRepeat: 4,
};
const QUICK: Sizes = {
  blobBytes: 64 * MiB,
  chunkBytes: 16 * MiB,
  repetitions: 3,
  wrkSeconds: 3,
  warmupSeconds: 1,
  rssSmallBytes: 16 * MiB,
  rssLargeRepeat: 2,
};

const progress = (message: string): void => {
  process.stderr.write(`[bench ${(performance.now() / 1000).toFixed(0).padStart(3)}s] ${message}\n`);
};

/** Alternates which registry goes first, so neither always runs on a warmer (or dirtier) machine. */
const order = (repetition: number): readonly Name[] =>
  repetition % 2 === 0 ? REGISTRIES : [...REGISTRIES].reverse();

function seconds(since: bigint): number {
  return Number(process.hrtime.bigint() - since) / 1e9;
}

/** Pushes the same config + 1 KiB layer + OCI manifest to `repo:tag` on every registry; returns the manifest bytes. */
async function pushSmallImage(clients: Pair<RegistryClient>, repo: string): Promise<Buffer> {
  const layer = BlobSource.fromBytes(randomBytes(1024));
  const config = BlobSource.fromBytes(
    Buffer.from(
      JSON.stringify({
        architecture: 'amd64',
        os: 'linux',
        rootfs: { type: 'layers', diff_ids: [layer.digest] },
      }),
    ),
  );
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      config: {
        mediaType: 'application/vnd.oci.image.config.v1+json',
        digest: config.digest,
        size: config.size,
      },
      layers: [
        { mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: layer.digest, size: layer.size },
      ],
    }),
  );
  for (const name of REGISTRIES) {
    const client = clients[name];
    await client.uploadMonolithic(repo, config);
    await client.uploadMonolithic(repo, layer);
    await client.putManifest(repo, 'v1', manifest);
    const served = await client.getManifest(repo, 'v1');
    if (!served.equals(manifest))
      throw new Error(`${client.label} serves different manifest bytes than were pushed`);
  }
  return manifest;
}

/** A wrk result plus the server's CPU time per request during it (independent of other load on the machine). */
type GetResult = WrkResult & { readonly cpuMicrosPerRequest: number };

async function benchGet(
  clients: Pair<RegistryClient>,
  pids: Pair<number>,
  options: { manifest: Buffer; sizes: Sizes },
): Promise<{ seconds: number; baseline: GetResult; wrk: Pair<GetResult> }> {
  const { manifest, sizes } = options;
  const path = '/v2/bench/app/manifests/v1';
  const headers = [`Accept: ${OCI_MANIFEST}`];
  const measure = async (label: string, target: { url: string; pid: number }): Promise<GetResult> => {
    if (sizes.warmupSeconds > 0) await runWrk(target.url, { seconds: sizes.warmupSeconds, headers });
    const cpuBefore = await cpuSeconds(target.pid);
    const result = await runWrk(target.url, { seconds: sizes.wrkSeconds, headers });
    const cpuMicrosPerRequest = (((await cpuSeconds(target.pid)) - cpuBefore) * 1e6) / result.requests;
    progress(
      `GET ${label}: ${Math.round(result.requestsPerSecond)} req/s, p50 ${result.latencyP50Ms} ms, ` +
        `p99 ${result.latencyP99Ms} ms, ${cpuMicrosPerRequest.toFixed(0)} µs CPU/request` +
        (result.errors > 0 ? `, ${result.errors} FAILED` : ''),
    );
    return { ...result, cpuMicrosPerRequest };
  };
  const baselineServer = await startBaselineServer(manifest, { contentType: OCI_MANIFEST });
  let baseline: GetResult;
  try {
    baseline = await measure('bare node:http', {
      url: `${baselineServer.url}${path}`,
      pid: baselineServer.child.pid ?? NaN,
    });
  } finally {
    await baselineServer.stop();
  }
  const airlock = await measure('Airlock', { url: `${clients.airlock.base}${path}`, pid: pids.airlock });
  const distribution = await measure('distribution', {
    url: `${clients.distribution.base}${path}`,
    pid: pids.distribution,
  });
  return { seconds: sizes.wrkSeconds, baseline, wrk: { airlock, distribution } };
}

async function benchRawWrite(
  dir: string,
  file: RandomFile,
  sizes: Sizes,
): Promise<{ buffered: number[]; direct: number[] }> {
  const buffered: number[] = [];
  const direct: number[] = [];
  for (let i = 0; i < sizes.repetitions; i++) {
    await syncDisks();
    buffered.push(await rawWriteMBps(dir, file.data));
    await syncDisks();
    const rate = await rawWriteMBps(dir, file.data, { direct: true });
    if (rate !== undefined) direct.push(rate);
  }
  const list = (samples: number[]): string => samples.map((s) => s.toFixed(0)).join(', ');
  progress(`raw write + fsync: ${list(buffered)} MB/s; with O_DIRECT: ${list(direct) || 'refused'} MB/s`);
  return { buffered, direct };
}

/** A server under test: how to talk to it and which process to account CPU to. */
interface Endpoint {
  readonly client: RegistryClient;
  readonly pid: number;
}

/** Throughput and server CPU of one transfer. */
interface Transfer {
  readonly mbPerSecond: number;
  readonly cpuSecondsPerGB: number;
}

/** Runs one transfer of `bytes`, timing it and charging the server's CPU time to it. */
async function timed(pid: number, bytes: number, transfer: () => Promise<void>): Promise<Transfer> {
  const cpuBefore = await cpuSeconds(pid);
  const started = process.hrtime.bigint();
  await transfer();
  const elapsed = seconds(started);
  const cpu = (await cpuSeconds(pid)) - cpuBefore;
  return { mbPerSecond: bytes / MB / elapsed, cpuSecondsPerGB: cpu / (bytes / 1e9) };
}

/** Transfers per registry (and for the bare node:http ceiling): MB/s and server CPU s/GB, one per repetition. */
interface Series {
  readonly rate: number[];
  readonly cpu: number[];
}

const series = (): Series => ({ rate: [], cpu: [] });
const record = (into: Series, t: Transfer): void => {
  into.rate.push(t.mbPerSecond);
  into.cpu.push(t.cpuSecondsPerGB);
};
const describe = (t: Transfer): string =>
  `${t.mbPerSecond.toFixed(0)} MB/s, ${t.cpuSecondsPerGB.toFixed(2)} CPU s/GB`;

interface UploadResults {
  readonly ceiling: Series;
  readonly monolithic: Pair<Series>;
  readonly chunked: Pair<Series>;
  /** A blob each registry now holds in repository `bench/blob`, for the download test. */
  readonly stored: Pair<BlobSource>;
}

async function benchUpload(
  endpoints: Pair<Endpoint>,
  baseline: Endpoint,
  options: { file: RandomFile; sizes: Sizes },
): Promise<UploadResults> {
  const { file, sizes } = options;
  const ceiling = series();
  const monolithic: Pair<Series> = { airlock: series(), distribution: series() };
  const chunked: Pair<Series> = { airlock: series(), distribution: series() };
  const stored: Partial<Record<Name, BlobSource>> = {};
  for (let rep = 0; rep < sizes.repetitions; rep++) {
    const sink = BlobSource.of(file);
    const t = await timed(baseline.pid, sink.size, () =>
      baseline.client.uploadMonolithic('bench/blob', sink),
    );
    record(ceiling, t);
    progress(`upload to a bare node:http sink #${rep + 1}: ${describe(t)}`);
    for (const name of order(rep)) {
      const { client, pid } = endpoints[name];
      for (const kind of ['monolithic', 'chunked'] as const) {
        const blob = BlobSource.of(file);
        await syncDisks();
        const result = await timed(pid, blob.size, () =>
          kind === 'monolithic'
            ? client.uploadMonolithic('bench/blob', blob)
            : client.uploadChunked('bench/blob', blob, { chunkBytes: sizes.chunkBytes }),
        );
        record((kind === 'monolithic' ? monolithic : chunked)[name], result);
        stored[name] = blob;
        progress(`upload ${kind} ${client.label} #${rep + 1}: ${describe(result)}`);
      }
    }
  }
  const { airlock, distribution } = stored;
  if (!airlock || !distribution) throw new Error('No upload ran');
  return { ceiling, monolithic, chunked, stored: { airlock, distribution } };
}

/** Untimed downloads per registry before the timed ones: as many as Airlock's send-way meter times. */
const WARM_DOWNLOADS = 2 * SAMPLES_PER_WAY;

interface DownloadResults {
  readonly ceiling: Series;
  readonly registries: Pair<Series>;
  readonly airlockSendWay: string;
}

/** The way Airlock chose for sending blob downloads and the median rates it chose by (its /metrics). */
async function sendWayOf(base: string): Promise<string> {
  const text = await (await fetch(`${base}/metrics`)).text();
  const chosen = /^airlock_blob_send_way\{way="(\w+)"\} 1$/m.exec(text)?.[1];
  const rate = (way: string): string => {
    const value = new RegExp(`^airlock_blob_send_rate_bytes_per_second\\{way="${way}"\\} (\\d+)$`, 'm').exec(
      text,
    )?.[1];
    return value === undefined
      ? 'not timed'
      : `${Math.round(Number(value) / 1e6).toLocaleString('en-US')} MB/s`;
  };
  const timed = `sendfile ${rate('sendfile')}, copying ${rate('copy')}`;
  return chosen
    ? `${chosen}, chosen on the median rates of its timed sends (${timed})`
    : `not chosen yet (${timed})`;
}

async function benchDownload(
  endpoints: Pair<Endpoint>,
  baseline: Endpoint,
  options: { stored: Pair<BlobSource>; sizes: Sizes },
): Promise<DownloadResults> {
  const { stored, sizes } = options;
  const ceiling = series();
  const registries: Pair<Series> = { airlock: series(), distribution: series() };
  for (const name of REGISTRIES) {
    // Untimed: the bytes that come back are the bytes that went in.
    await endpoints[name].client.download('bench/blob', stored[name].digest, { verify: true });
    // Also untimed, for both registries alike: the downloads a fresh Airlock times to choose how it sends
    // (SendMeter, docs/registry.md), which a registry that has been up a while has long done.
    for (let warm = 0; warm < WARM_DOWNLOADS; warm++) {
      await endpoints[name].client.download('bench/blob', stored[name].digest);
    }
  }
  const get = async (endpoint: Endpoint, blob: BlobSource): Promise<Transfer> => {
    let bytes = 0;
    // The bare server streams the random file itself, without the suffix the stored blobs end with.
    const expected = endpoint === baseline ? blob.size - SUFFIX_BYTES : blob.size;
    const t = await timed(endpoint.pid, expected, async () => {
      bytes = await endpoint.client.download('bench/blob', blob.digest);
    });
    if (bytes !== expected)
      throw new Error(`${endpoint.client.label} sent ${bytes} bytes, expected ${expected}`);
    return t;
  };
  for (let rep = 0; rep < sizes.repetitions; rep++) {
    const t = await get(baseline, stored.airlock);
    record(ceiling, t);
    progress(`download from a bare node:http server #${rep + 1}: ${describe(t)}`);
    for (const name of order(rep)) {
      const result = await get(endpoints[name], stored[name]);
      record(registries[name], result);
      progress(`download ${endpoints[name].client.label} #${rep + 1}: ${describe(result)}`);
    }
  }
  return { ceiling, registries, airlockSendWay: await sendWayOf(endpoints.airlock.client.base) };
}

/** Max RSS of each registry during one small and one large monolithic upload. */
async function benchFlatMemory(
  endpoints: Pair<Endpoint>,
  options: { file: RandomFile; sizes: Sizes },
): Promise<NonNullable<BenchResults['memory']['flat']>> {
  const { file, sizes } = options;
  const small: Partial<Record<Name, number>> = {};
  const large: Partial<Record<Name, number>> = {};
  let smallBytes = 0;
  let largeBytes = 0;
  for (const name of REGISTRIES) {
    for (const [which, blob] of [
      ['small', BlobSource.of(file, { bytes: sizes.rssSmallBytes })],
      ['large', BlobSource.of(file, { repeat: sizes.rssLargeRepeat })],
    ] as const) {
      await syncDisks();
      const { client, pid } = endpoints[name];
      const sampler = sampleRss(pid);
      await client.uploadMonolithic('bench/rss', blob);
      const max = sampler.stop();
      if (which === 'small') {
        small[name] = max;
        smallBytes = blob.size - SUFFIX_BYTES;
      } else {
        large[name] = max;
        largeBytes = blob.size - SUFFIX_BYTES;
      }
      progress(
        `RSS ${client.label} during ${(blob.size / MiB).toFixed(0)} MiB upload: ${(max / MB).toFixed(0)} MB`,
      );
    }
  }
  if (
    small.airlock === undefined ||
    small.distribution === undefined ||
    large.airlock === undefined ||
    large.distribution === undefined
  ) {
    throw new Error('RSS test did not run for both registries');
  }
  return {
    smallBytes,
    largeBytes,
    small: { airlock: small.airlock, distribution: small.distribution },
    large: { airlock: large.airlock, distribution: large.distribution },
  };
}

function usage(): never {
  process.stderr.write(
    'Usage: registry-bench [--quick] [--only get|upload|download] [--cpu-prof DIR] [--no-write]\n',
  );
  process.exit(2);
}

async function main(): Promise<void> {
  let args;
  try {
    args = parseArgs({
      options: {
        quick: { type: 'boolean', default: false },
        only: { type: 'string' },
        'cpu-prof': { type: 'string' },
        'no-write': { type: 'boolean', default: false },
        help: { type: 'boolean', default: false },
      },
    }).values;
  } catch (error) {
    process.stderr.write(`${(error as Error).message}\n`);
    usage();
  }
  if (args.help) usage();
  const only = args.only;
  if (only !== undefined && only !== 'get' && only !== 'upload' && only !== 'download') {
    process.stderr.write(`Unknown --only "${only}": expected get, upload or download\n`);
    usage();
  }
  const runs = (phase: Phase): boolean => only === undefined || only === phase;
  const sizes = args.quick ? QUICK : FULL;
  const profileDir = args['cpu-prof'] === undefined ? undefined : resolve(args['cpu-prof']);
  if (profileDir) await mkdir(profileDir, { recursive: true });

  const loadStart = loadAverage();
  const work = await tempDir('airlock-bench-');
  const machine = await machineInfo(tmpdir(), { root: ROOT });
  progress(
    `work folder ${work}; ${machine.cpus} CPUs, ${machine.cpuModel}, node ${machine.node}, ${machine.distribution}`,
  );
  const processes: RunningProcess[] = [];
  const stopAll = async (): Promise<void> => {
    await Promise.allSettled(processes.map((p) => p.stop()));
    await rm(work, { recursive: true, force: true });
  };
  process.once('SIGINT', () => {
    void stopAll().finally(() => process.exit(130));
  });
  // Last resort when the run dies on an uncaught error: no registry outlives the benchmark.
  process.once('exit', () => {
    for (const p of processes) p.child.kill('SIGKILL');
    for (const dir of [work, ...processes.map((p) => p.dataDir)])
      rmSync(dir, { recursive: true, force: true });
  });

  let results: BenchResults;
  let clients: Pair<RegistryClient> | undefined;
  let baseline: (Endpoint & { stop(): Promise<void> }) | undefined;
  try {
    const airlockData = join(work, 'airlock');
    const airlockProcess = profileDir
      ? await startProfiledAirlock(airlockData, { profileDir })
      : await startAirlockProcess({ dataDir: airlockData });
    processes.push(airlockProcess);
    const distributionProcess = await startDistribution();
    processes.push(distributionProcess);
    const pids: Pair<number> = {
      airlock: airlockProcess.child.pid ?? NaN,
      distribution: distributionProcess.child.pid ?? NaN,
    };
    clients = {
      airlock: new RegistryClient('Airlock', airlockProcess.url),
      distribution: new RegistryClient('distribution', distributionProcess.url),
    };
    const endpoints: Pair<Endpoint> = {
      airlock: { client: clients.airlock, pid: pids.airlock },
      distribution: { client: clients.distribution, pid: pids.distribution },
    };
    progress(
      `Airlock at ${airlockProcess.url} (pid ${pids.airlock}); distribution at ${distributionProcess.url} (pid ${pids.distribution})`,
    );

    const monolithicMethod: Partial<Record<Name, string>> = {};
    for (const name of REGISTRIES) {
      const supported = await clients[name].probeMonolithicPost(
        'bench/probe',
        BlobSource.fromBytes(randomBytes(64)),
      );
      monolithicMethod[name] = supported
        ? 'one `POST ?digest=` with the body'
        : 'POST (answered 202 even with `?digest=` and a body), then `PUT ?digest=` with the whole body';
    }
    const manifest = await pushSmallImage(clients, 'bench/app');
    progress(`pushed a ${manifest.byteLength}-byte manifest to both`);

    const get = runs('get') ? await benchGet(clients, pids, { manifest, sizes }) : undefined;

    let file: RandomFile | undefined;
    let rawWrite: { buffered: number[]; direct: number[] } | undefined;
    let upload: UploadResults | undefined;
    let flat: BenchResults['memory']['flat'];
    if (runs('upload') || runs('download')) {
      const started = process.hrtime.bigint();
      file = await createRandomFile(join(work, 'random.bin'), sizes.blobBytes);
      progress(`wrote ${sizes.blobBytes / MiB} MiB of random data in ${seconds(started).toFixed(1)} s`);
      const server = await startBaselineServer(manifest, { contentType: OCI_MANIFEST, file: file.path });
      baseline = {
        client: new RegistryClient('bare node:http', server.url),
        pid: server.child.pid ?? NaN,
        stop: () => server.stop(),
      };
    }
    if (file && baseline && runs('upload')) {
      rawWrite = await benchRawWrite(work, file, sizes);
      upload = await benchUpload(endpoints, baseline, { file, sizes });
    }
    let download: DownloadResults | undefined;
    if (file && baseline && runs('download')) {
      let stored = upload?.stored;
      if (!stored) {
        const airlock = BlobSource.of(file);
        const distribution = BlobSource.of(file);
        await clients.airlock.uploadMonolithic('bench/blob', airlock);
        await clients.distribution.uploadMonolithic('bench/blob', distribution);
        stored = { airlock, distribution };
      }
      download = await benchDownload(endpoints, baseline, { stored, sizes });
    }
    if (file && runs('upload')) flat = await benchFlatMemory(endpoints, { file, sizes });

    const peak: Pair<number> = {
      airlock: memoryOf(pids.airlock).hwm,
      distribution: memoryOf(pids.distribution).hwm,
    };
    results = {
      machine,
      quick: args.quick,
      blobBytes: sizes.blobBytes,
      chunkBytes: sizes.chunkBytes,
      repetitions: sizes.repetitions,
      load: { start: loadStart, end: loadAverage() },
      ...(get ? { get } : {}),
      ...(rawWrite ? { rawWrite: rawWrite.buffered } : {}),
      ...(rawWrite && rawWrite.direct.length > 0 ? { rawDirectWrite: rawWrite.direct } : {}),
      ...(upload
        ? {
            upload: {
              monolithic: upload.monolithic,
              chunked: upload.chunked,
              monolithicMethod: {
                airlock: monolithicMethod.airlock ?? '?',
                distribution: monolithicMethod.distribution ?? '?',
              },
              ceiling: upload.ceiling,
            },
          }
        : {}),
      ...(download ? { download } : {}),
      memory: { peak, ...(flat ? { flat } : {}) },
    };
  } finally {
    clients?.airlock.close();
    clients?.distribution.close();
    baseline?.client.close();
    await baseline?.stop();
    await stopAll();
  }

  const section = renderSection(results);
  process.stdout.write(`${section}\n`);
  const complete = only === undefined && !args.quick;
  if (complete && !args['no-write']) {
    await updateBenchmarksFile(join(ROOT, 'BENCHMARKS.md'), section);
    progress('wrote BENCHMARKS.md');
  } else if (!args['no-write']) {
    progress('BENCHMARKS.md left alone (only a full run without --quick or --only writes it)');
  }
  if (profileDir) progress(`Airlock CPU profile written to ${profileDir}`);
}

main().catch((error: unknown) => {
  process.stderr.write(
    `registry-bench failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
  );
  process.exit(1);
});
