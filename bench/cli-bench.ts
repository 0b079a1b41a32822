// CLI benchmark: `airlock copy` against skopeo and crane, pushing a 1 GiB image from an OCI layout into one
// Airlock registry on 127.0.0.1 and pulling it back into a fresh layout.
//
//   node dist/bench/cli-bench.js                    full run (a few minutes); prints the table, rewrites the
//                                                   cli-bench section of BENCHMARKS.md
//   node dist/bench/cli-bench.js --quick            smoke run: 8 × 8 MiB layers, 1 repetition (file untouched)
//   node dist/bench/cli-bench.js --cpu-prof DIR     also write a V8 CPU profile of every `airlock copy` run
//   node dist/bench/cli-bench.js --jobs N           run `airlock copy -j N` instead of its default
//   node dist/bench/cli-bench.js --no-write         never touch BENCHMARKS.md
import { spawn } from 'node:child_process';
import { createHash, randomBytes, randomFillSync, type Hash } from 'node:crypto';
import { existsSync, rmSync } from 'node:fs';
import { appendFile, copyFile, mkdir, readFile, rm, stat, statfs, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { gzipSync } from 'node:zlib';
import { findPeer } from '../test/helpers/peers.js';
import { CLI, startAirlockProcess, tempDir, type RunningProcess } from '../test/helpers/processes.js';
import { OCI_MANIFEST, RegistryClient } from './client.js';
import { MB, median, updateBenchmarksFile, type Samples } from './report.js';
import {
  cpuSeconds,
  firstLine,
  loadAverage,
  machineInfo,
  memoryOf,
  syncDisks,
  type MachineInfo,
} from './system.js';

const MiB = 1024 * 1024;
const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const TIME = '/usr/bin/time';
const TOOLS = ['airlock', 'skopeo', 'crane'] as const;
type Tool = (typeof TOOLS)[number];
type Direction = 'push' | 'pull';
type PerTool<T> = Record<Tool, T>;

const MEDIA = {
  index: 'application/vnd.oci.image.index.v1+json',
  config: 'application/vnd.oci.image.config.v1+json',
  layer: 'application/vnd.oci.image.layer.v1.tar+gzip',
} as const;

interface Sizes {
  readonly layers: number;
  readonly layerBytes: number;
  readonly repetitions: number;
}

// Nine: a multiple of the three tools, so that each goes first, second and third equally often (the
// page cache one tool leaves behind moves the next one's time), and enough for a median that five noisy
// samples did not give.
const FULL: Sizes = { layers: 8, layerBytes: 128 * MiB, repetitions: 9 };
const QUICK: Sizes = { layers: 8, layerBytes: 8 * MiB, repetitions: 1 };

const progress = (message: string): void => {
  process.stderr.write(`[cli-bench ${(performance.now() / 1000).toFixed(0).padStart(3)}s] ${message}\n`);
};

/** Rotates which tool goes first, so none always runs on a warmer (or dirtier) machine. */
const order = (repetition: number): readonly Tool[] => {
  const shift = repetition % TOOLS.length;
  return [...TOOLS.slice(shift), ...TOOLS.slice(0, shift)];
};

// ---------------------------------------------------------------------------------------------------------
// The image: random layers stored as real gzip (deflate "stored" blocks, so the bytes stay incompressible and
// nothing is spent compressing), made unique per run by a tiny second gzip member at the end of each layer.

/** One layer's bulk: a gzip member of random bytes on disk, and SHA-256 states after it (compressed and not). */
interface LayerBase {
  readonly path: string;
  readonly size: number;
  readonly compressed: Hash;
  readonly uncompressed: Hash;
}

async function createLayerBases(dir: string, sizes: Sizes): Promise<LayerBase[]> {
  const bases: LayerBase[] = [];
  const raw = Buffer.allocUnsafe(sizes.layerBytes);
  for (let i = 0; i < sizes.layers; i++) {
    for (let at = 0; at < raw.byteLength; at += 4 * MiB)
      randomFillSync(raw, at, Math.min(4 * MiB, raw.byteLength - at));
    // Level 0: stored blocks, a valid gzip stream whose payload is the random bytes themselves.
    const gz = gzipSync(raw, { level: 0 });
    const path = join(dir, `layer-${i}.gz`);
    await writeFile(path, gz);
    bases.push({
      path,
      size: gz.byteLength,
      compressed: createHash('sha256').update(gz),
      uncompressed: createHash('sha256').update(raw),
    });
  }
  return bases;
}

interface Descriptor {
  readonly mediaType: string;
  readonly digest: string;
  readonly size: number;
}

/** An OCI layout holding one image tagged v1. */
interface Layout {
  readonly dir: string;
  readonly manifestDigest: string;
  readonly config: Descriptor;
  readonly layers: readonly Descriptor[];
  /** Config + layer bytes: what a copy moves. */
  readonly bytes: number;
}

const sha256 = (bytes: Buffer): string => `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
const blobPath = (dir: string, digest: string): string => join(dir, 'blobs', 'sha256', digest.slice(7));

/**
 * Writes `oci-layout`, `index.json` and the blobs directly: each layer is its base copied plus a fresh
 * 16-byte gzip member, so every layout has layer digests no registry has seen.
 */
async function writeLayout(dir: string, bases: readonly LayerBase[]): Promise<Layout> {
  await mkdir(join(dir, 'blobs', 'sha256'), { recursive: true });
  const layers: Descriptor[] = [];
  const diffIds: string[] = [];
  for (const base of bases) {
    const suffix = randomBytes(16);
    const member = gzipSync(suffix);
    const digest = `sha256:${base.compressed.copy().update(member).digest('hex')}`;
    diffIds.push(`sha256:${base.uncompressed.copy().update(suffix).digest('hex')}`);
    const path = blobPath(dir, digest);
    await copyFile(base.path, path);
    await appendFile(path, member);
    layers.push({ mediaType: MEDIA.layer, digest, size: base.size + member.byteLength });
  }
  const configBytes = Buffer.from(
    JSON.stringify({
      architecture: 'amd64',
      os: 'linux',
      config: {},
      rootfs: { type: 'layers', diff_ids: diffIds },
    }),
  );
  const config: Descriptor = {
    mediaType: MEDIA.config,
    digest: sha256(configBytes),
    size: configBytes.length,
  };
  await writeFile(blobPath(dir, config.digest), configBytes);
  const manifest = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, config, layers }));
  const manifestDigest = sha256(manifest);
  await writeFile(blobPath(dir, manifestDigest), manifest);
  await writeFile(join(dir, 'oci-layout'), `${JSON.stringify({ imageLayoutVersion: '1.0.0' })}\n`);
  await writeFile(
    join(dir, 'index.json'),
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MEDIA.index,
      manifests: [
        {
          mediaType: OCI_MANIFEST,
          digest: manifestDigest,
          size: manifest.length,
          annotations: { 'org.opencontainers.image.ref.name': 'v1' },
        },
      ],
    }),
  );
  const bytes = configBytes.length + layers.reduce((sum, l) => sum + l.size, 0);
  return { dir, manifestDigest, config, layers, bytes };
}

// ---------------------------------------------------------------------------------------------------------
// Running the tools.

interface Binaries {
  readonly skopeo: string;
  readonly crane: string;
}

interface CommandOptions {
  readonly binaries: Binaries;
  readonly jobs: number | undefined;
  readonly profileDir: string | undefined;
}

/** The client command line for one copy. `local` is a layout folder, `remote` is HOST/REPO:TAG. */
function commandFor(
  tool: Tool,
  direction: Direction,
  paths: { local: string; remote: string },
  options: CommandOptions,
): string[] {
  const { local, remote } = paths;
  switch (tool) {
    case 'airlock': {
      const node = [
        process.execPath,
        ...(options.profileDir ? ['--cpu-prof', `--cpu-prof-dir=${options.profileDir}`] : []),
        CLI,
        'copy',
        ...(options.jobs === undefined ? [] : ['-j', String(options.jobs)]),
      ];
      return direction === 'push'
        ? [...node, `oci:${local}:v1`, remote]
        : [...node, remote, `oci:${local}:v1`];
    }
    case 'skopeo': {
      // --insecure-policy: independent of the host's /etc/containers/policy.json (no effect on speed).
      const skopeo = [options.binaries.skopeo, '--insecure-policy', 'copy'];
      return direction === 'push'
        ? [...skopeo, '--dest-tls-verify=false', `oci:${local}:v1`, `docker://${remote}`]
        : [...skopeo, '--src-tls-verify=false', `docker://${remote}`, `oci:${local}:v1`];
    }
    case 'crane':
      return direction === 'push'
        ? [options.binaries.crane, 'push', local, remote, '--insecure']
        : [options.binaries.crane, 'pull', '--format', 'oci', remote, local, '--insecure'];
  }
}

/** One timed client run. */
interface Measured {
  readonly seconds: number;
  /** Max RSS of the client process, bytes. */
  readonly rss: number;
  /** User + system CPU seconds of the client (NaN when /usr/bin/time is missing). */
  readonly cpu: number;
}

/** Parses the report of `/usr/bin/time -v`. */
function parseTimeReport(text: string): { rss: number; cpu: number } {
  const field = (name: string): number => {
    const match = new RegExp(`^\\s*${name}: ([\\d.]+)$`, 'm').exec(text);
    if (!match) throw new Error(`No "${name}" in /usr/bin/time output:\n${text}`);
    return Number(match[1]);
  };
  return {
    rss: field('Maximum resident set size \\(kbytes\\)') * 1024,
    cpu: field('User time \\(seconds\\)') + field('System time \\(seconds\\)'),
  };
}

/**
 * Runs a command to completion and measures wall-clock time (spawn to exit), peak RSS and CPU: with
 * `/usr/bin/time -v` when it is installed, else by polling VmHWM in /proc/PID/status (CPU then unknown).
 */
async function measure(
  command: readonly string[],
  reportFile: string,
  env: NodeJS.ProcessEnv,
): Promise<Measured> {
  const useTime = existsSync(TIME);
  const [program, ...args] = useTime ? [TIME, '-v', '-o', reportFile, ...command] : command;
  if (!program) throw new Error('empty command');
  const started = process.hrtime.bigint();
  const child = spawn(program, args, { stdio: ['ignore', 'pipe', 'pipe'], env });
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
  let peak = 0;
  const poll = (): void => {
    try {
      if (child.pid !== undefined) peak = Math.max(peak, memoryOf(child.pid).hwm);
    } catch {
      // not started yet, or gone: the samples so far stand
    }
  };
  const poller = useTime ? undefined : setInterval(poll, 20);
  const killer = setTimeout(() => child.kill('SIGKILL'), 600_000);
  try {
    const code = await new Promise<number | null>((done, reject) => {
      child.once('error', reject);
      child.once('exit', done);
    });
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    if (code !== 0) throw new Error(`${command.join(' ')} exited ${code}\n${output.slice(-4000)}`);
    if (!useTime) return { seconds, rss: peak, cpu: NaN };
    return { seconds, ...parseTimeReport(await readFile(reportFile, 'utf8')) };
  } finally {
    clearInterval(poller);
    clearTimeout(killer);
  }
}

// ---------------------------------------------------------------------------------------------------------
// Checks: a timed copy only counts when it produced the image.

async function checkPushed(client: RegistryClient, repo: string, tag: string, layout: Layout): Promise<void> {
  const manifest = JSON.parse((await client.getManifest(repo, tag)).toString('utf8')) as {
    config?: { digest?: string };
    layers?: Array<{ digest?: string }>;
  };
  const layers = (manifest.layers ?? []).map((l) => l.digest).join(',');
  if (
    manifest.config?.digest !== layout.config.digest ||
    layers !== layout.layers.map((l) => l.digest).join(',')
  )
    throw new Error(`${repo}:${tag} does not hold the pushed image's config and layers`);
}

async function checkPulled(dir: string, layout: Layout): Promise<void> {
  for (const blob of [layout.config, ...layout.layers]) {
    const size = (await stat(blobPath(dir, blob.digest)).catch(() => undefined))?.size;
    if (size !== blob.size)
      throw new Error(`${dir} lacks blob ${blob.digest} (size ${size}, want ${blob.size})`);
  }
}

// ---------------------------------------------------------------------------------------------------------
// Results and the report.

/** One repetition of one tool in one direction. */
interface Run extends Measured {
  readonly mbPerSecond: number;
  /** CPU seconds the Airlock server spent during the run. */
  readonly serverCpu: number;
}

type Results = Record<Direction, PerTool<Run[]>>;

/**
 * This machine's NODE_EXTRA_CA_CERTS, if set: node parses that file (here the whole system CA bundle) while
 * it starts, before any code runs, even for a plain-HTTP copy. The timed clients run without it; each
 * repetition also pushes once with it, to show what it costs.
 */
interface ExtraCa {
  readonly file: string;
  readonly push: Run[];
}

interface Report {
  readonly machine: MachineInfo;
  readonly quick: boolean;
  readonly sizes: Sizes;
  readonly imageBytes: number;
  readonly jobs: number | undefined;
  readonly profiled: boolean;
  readonly versions: PerTool<string> & { readonly time: string };
  readonly load: { readonly start: string; readonly end: string };
  readonly results: Results;
  readonly extraCa: ExtraCa | undefined;
}

const fixed = (digits: number) => (n: number) => (Number.isFinite(n) ? n.toFixed(digits) : 'n/a');
const one = fixed(1);
const two = fixed(2);
const ratio = (a: number, b: number): string => `${(a / b).toFixed(2)}×`;
const mem = (bytes: number): string => `${Math.round(bytes / MB)} MB`;
const size = (bytes: number): string =>
  bytes >= 2 ** 30 ? `${(bytes / 2 ** 30).toFixed(2)} GiB` : `${(bytes / 2 ** 20).toFixed(0)} MiB`;
const medianOf = (runs: readonly Run[], pick: (run: Run) => number): number => median(runs.map(pick));
const list = (samples: Samples, format: (n: number) => string): string => samples.map(format).join(', ');

function renderTable(report: Report): { table: string; verdicts: string[] } {
  const rows: string[] = [];
  const verdicts: string[] = [];
  const row = (
    metric: string,
    cells: PerTool<string>,
    ratios: [string, string],
    target = '',
    met = '',
  ): void => {
    rows.push(
      `| ${metric} | ${cells.airlock} | ${cells.skopeo} | ${cells.crane} | ${ratios[0]} | ${ratios[1]} | ${target} | ${met} |`,
    );
  };
  for (const direction of ['push', 'pull'] as const) {
    const runs = report.results[direction];
    const med = (pick: (run: Run) => number): PerTool<number> => ({
      airlock: medianOf(runs.airlock, pick),
      skopeo: medianOf(runs.skopeo, pick),
      crane: medianOf(runs.crane, pick),
    });
    const cells = (values: PerTool<number>, format: (n: number) => string): PerTool<string> => ({
      airlock: format(values.airlock),
      skopeo: format(values.skopeo),
      crane: format(values.crane),
    });
    const ratios = (values: PerTool<number>): [string, string] => [
      ratio(values.airlock, values.skopeo),
      ratio(values.airlock, values.crane),
    ];
    const title = direction === 'push' ? 'Push layout → registry' : 'Pull registry → layout';
    const seconds = med((r) => r.seconds);
    const vsSkopeo = seconds.airlock / seconds.skopeo;
    const vsCrane = seconds.airlock / seconds.crane;
    const met = vsSkopeo <= 1 && vsCrane <= 1;
    row(
      `${title}, wall-clock s`,
      cells(seconds, two),
      ratios(seconds),
      'time ratio ≤ 1.00',
      met ? '✅ met' : '❌ missed',
    );
    verdicts.push(
      `- ${met ? '✅' : '❌'} ${direction}: Airlock takes ${ratio(seconds.airlock, seconds.skopeo)} skopeo's time and ` +
        `${ratio(seconds.airlock, seconds.crane)} crane's (target ≤ 1.00×: as fast or faster)`,
    );
    // The ratio of medians hides how often each one won; per repetition (the two ran back to back) shows it.
    const paired = runs.airlock.map((run, i) => run.seconds / (runs.crane[i]?.seconds ?? Number.NaN));
    verdicts.push(
      `  - per repetition, Airlock's time / crane's: ${paired.map(two).join(', ')}; ` +
        `Airlock the faster in ${paired.filter((r) => r < 1).length} of ${paired.length}`,
    );
    row(
      `… throughput, MB/s`,
      cells(
        med((r) => r.mbPerSecond),
        one,
      ),
      ratios(med((r) => r.mbPerSecond)),
    );
    row(
      `… client peak RSS`,
      cells(
        med((r) => r.rss),
        mem,
      ),
      ratios(med((r) => r.rss)),
    );
    row(
      `… client CPU (user + sys), s`,
      cells(
        med((r) => r.cpu),
        two,
      ),
      ratios(med((r) => r.cpu)),
    );
    row(
      `… Airlock server CPU, s`,
      cells(
        med((r) => r.serverCpu),
        two,
      ),
      ratios(med((r) => r.serverCpu)),
    );
    if (direction === 'push' && report.extraCa) {
      const withCa = medianOf(report.extraCa.push, (r) => r.seconds);
      row(
        '… Airlock with NODE_EXTRA_CA_CERTS as this machine sets it, wall-clock s',
        { airlock: two(withCa), skopeo: '', crane: '' },
        [ratio(withCa, seconds.skopeo), ratio(withCa, seconds.crane)],
      );
    }
  }
  const table = [
    '| Metric (median) | Airlock | skopeo | crane | Airlock / skopeo | Airlock / crane | Target | Status |',
    '| --- | ---: | ---: | ---: | ---: | ---: | --- | --- |',
    ...rows,
  ].join('\n');
  return { table, verdicts };
}

function renderSection(report: Report): string {
  const m = report.machine;
  const { sizes } = report;
  const { table, verdicts } = renderTable(report);
  const samples: string[] = [];
  for (const direction of ['push', 'pull'] as const) {
    for (const tool of TOOLS) {
      const runs = report.results[direction][tool];
      samples.push(
        `- ${direction} ${tool}: ${list(
          runs.map((r) => r.seconds),
          two,
        )} s; ${list(
          runs.map((r) => r.rss / MB),
          fixed(0),
        )} MB RSS; ${list(
          runs.map((r) => r.cpu),
          two,
        )} client CPU s; ${list(
          runs.map((r) => r.serverCpu),
          two,
        )} server CPU s`,
      );
    }
  }
  if (report.extraCa) {
    samples.push(
      `- push airlock with NODE_EXTRA_CA_CERTS: ${list(
        report.extraCa.push.map((r) => r.seconds),
        two,
      )} s; ${list(
        report.extraCa.push.map((r) => r.cpu),
        two,
      )} client CPU s`,
    );
  }
  const loaded = m.cpus > 0 && Number(report.load.start.split(' ')[0]) > m.cpus / 2;
  return [
    '## CLI: `airlock copy` vs skopeo and crane',
    '',
    `_Generated by \`node dist/bench/cli-bench.js\`${report.quick ? ' --quick (smoke sizes, not comparable)' : ''}` +
      `${report.jobs === undefined ? '' : ` --jobs ${report.jobs}`}${report.profiled ? ' --cpu-prof (Airlock runs profiled)' : ''}` +
      '; rerunning overwrites this section._',
    '',
    `- **Date**: ${m.date}`,
    `- **Machine**: ${m.cpus} CPUs (nproc), ${m.cpuModel}, ${m.memoryGiB} GiB RAM, ${m.kernel}; temp files on ${m.tmpFilesystem}`,
    `- **Software**: Airlock ${m.airlock}; node ${m.node}; ${report.versions.skopeo}; crane ${report.versions.crane}; ${report.versions.time}`,
    `- **Load average** (1/5/15 min) at start: ${report.load.start}; at end: ${report.load.end}` +
      (loaded ? ' — other work was running on this machine, so absolute numbers are noisy' : ''),
    `- **Image**: ${sizes.layers} layers of ${size(sizes.layerBytes)} random bytes each (gzip, stored blocks) + config = ` +
      `${size(report.imageBytes)} (${one(report.imageBytes / MB)} MB) moved per copy; ${sizes.repetitions} ` +
      'repetitions, median reported; MB = 10^6 bytes',
    '',
    table,
    '',
    ...verdicts,
    '',
    'Samples (in repetition order):',
    '',
    ...samples,
    '',
    'Method:',
    '',
    '- One `airlock serve` (a fresh data folder, log level warn) on 127.0.0.1; the clients run one after the other ' +
      'on the same 2-CPU machine, so client and server compete for the same cores. Each repetition rotates which ' +
      'tool goes first.',
    '- Commands, exactly: ' +
      '`node dist/bin/airlock.js copy oci:LAYOUT:v1 127.0.0.1:PORT/bench/airlock-N:v1` ' +
      `(default \`-j 4\`${report.jobs === undefined ? '' : `, here \`-j ${report.jobs}\``}), ` +
      '`skopeo --insecure-policy copy --dest-tls-verify=false oci:LAYOUT:v1 docker://127.0.0.1:PORT/bench/skopeo-N:v1`, ' +
      '`crane push LAYOUT 127.0.0.1:PORT/bench/crane-N:v1 --insecure`; pulls: `airlock copy REF oci:DIR:v1`, ' +
      '`skopeo copy --src-tls-verify=false docker://REF oci:DIR:v1`, `crane pull --format oci REF DIR --insecure`, ' +
      'each into a folder that does not exist yet.',
    '- Fresh content for every push: the layouts are written per tool per repetition, each layer being the ' +
      'same random gzip member followed by a new 16-byte gzip member, so every push has 8 layer digests (and a ' +
      'config) the registry has never seen and no tool can skip or mount a blob. Layers are valid gzip (deflate ' +
      'stored blocks of random bytes) so no tool recompresses them; diff_ids in the config are correct.',
    '- Every pull in a repetition reads the same image (the one Airlock pushed in that repetition). Airlock ' +
      'writes large blobs past the page cache, so the registry reads them from disk for whichever client pulls ' +
      'first (the order rotates) and from the page cache for the other two.',
    '- `sync` runs before each timed copy. Time is wall-clock from spawning the client to its exit (process start-up ' +
      'included); MB/s is image bytes / that time. Peak RSS and client CPU come from `/usr/bin/time -v` (maximum ' +
      'resident set size; user + system time). Server CPU is the Airlock process user + system time from ' +
      '/proc/PID/stat around each copy.',
    "- Airlock's code cache (docs/cli.md) is kept in this run's temp folder: the first Airlock copy (the first " +
      "repetition's push) compiles the CLI's code and saves V8's cache of it, as a first run anywhere does; the " +
      'other copies start from that cache.',
    ...(report.extraCa
      ? [
          `- The clients run without NODE_EXTRA_CA_CERTS, which this machine sets (to ${report.extraCa.file}): ` +
            'node parses that file as it starts, before any code runs, even for a plain-HTTP copy (skopeo and ' +
            'crane do not read it; Airlock reads the system store and that file itself on its first TLS ' +
            'connection). The row "with NODE_EXTRA_CA_CERTS" is one more Airlock push per ' +
            'repetition, after the other three, with the variable as set here.',
        ]
      : []),
    '- Each push is checked afterwards (the tag serves a manifest with the expected config and layer digests) and ' +
      'each pull (every blob is in the layout with the right size). The registry checks the digest of every ' +
      'upload; on push skopeo also hashes what it reads from the layout, while Airlock and crane send the files ' +
      'unhashed and leave the check to the registry; on pull all three verify what they receive.',
    '- Profile the Airlock runs with `node dist/bench/cli-bench.js --cpu-prof DIR` (not written to this file); ' +
      '`--jobs N` runs `airlock copy -j N`.',
  ]
    .filter((line, i, all) => !(line === '' && all[i - 1] === ''))
    .join('\n');
}

// ---------------------------------------------------------------------------------------------------------

function usage(): never {
  process.stderr.write('Usage: cli-bench [--quick] [--jobs N] [--cpu-prof DIR] [--no-write]\n');
  process.exit(2);
}

async function main(): Promise<void> {
  let args;
  try {
    args = parseArgs({
      options: {
        quick: { type: 'boolean', default: false },
        jobs: { type: 'string' },
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
  const jobs = args.jobs === undefined ? undefined : Number(args.jobs);
  if (jobs !== undefined && !(Number.isInteger(jobs) && jobs > 0)) usage();
  const sizes = args.quick ? QUICK : FULL;
  const profileDir = args['cpu-prof'] === undefined ? undefined : resolve(args['cpu-prof']);
  if (profileDir) await mkdir(profileDir, { recursive: true });
  const skopeo = findPeer('skopeo');
  const crane = findPeer('crane');
  if (!skopeo || !crane) throw new Error('skopeo and crane are needed; run scripts/install-peers.sh');
  if (!existsSync(TIME))
    progress(`${TIME} is missing (apt-get install -y time): RSS polled from /proc, no CPU`);
  const commandOptions: CommandOptions = { binaries: { skopeo, crane }, jobs, profileDir };
  const extraCaFile = process.env.NODE_EXTRA_CA_CERTS || undefined;
  const clientEnv: NodeJS.ProcessEnv = { ...process.env };
  delete clientEnv.NODE_EXTRA_CA_CERTS;

  const loadStart = loadAverage();
  const work = await tempDir('airlock-cli-bench-');
  // Airlock's code cache (src/cli/launcher.ts) in this run's folder: the first Airlock copy of each group
  // (push, pull) compiles and writes it, as a first run on any machine does; the later ones use it.
  clientEnv.AIRLOCK_CODE_CACHE = join(work, 'code-cache');
  // The registry keeps every pushed image (3 or 4 per repetition); a copy that runs out of disk answers 500.
  const image = sizes.layers * sizes.layerBytes;
  // At most: the layer bases, two layouts and every pushed image, plus a tenth for the database and the rest.
  const needed = 1.1 * image * (sizes.repetitions * (extraCaFile ? 4 : 3) + 3);
  const free = await statfs(work).then((s) => s.bavail * s.bsize);
  if (free < needed) {
    rmSync(work, { recursive: true, force: true });
    throw new Error(
      `cli-bench needs about ${(needed / 1e9).toFixed(0)} GB free in ${tmpdir()}; only ${(free / 1e9).toFixed(0)} GB are`,
    );
  }
  const machine = await machineInfo(tmpdir(), { root: ROOT });
  const versions = {
    airlock: machine.airlock,
    skopeo: await firstLine(skopeo, ['--version']),
    crane: await firstLine(crane, ['version']),
    // GNU time reports its version as UNKNOWN on Debian; the package knows it.
    time: existsSync(TIME)
      ? `GNU time ${await firstLine('dpkg-query', ['-W', '-f=${Version}', 'time'])}`
      : 'no /usr/bin/time',
  };
  progress(
    `work folder ${work}; ${machine.cpus} CPUs, node ${machine.node}, ${versions.skopeo}, crane ${versions.crane}`,
  );

  let airlock: RunningProcess | undefined;
  const cleanup = (): void => {
    airlock?.child.kill('SIGKILL');
    rmSync(work, { recursive: true, force: true });
  };
  process.once('SIGINT', () => {
    cleanup();
    process.exit(130);
  });
  process.once('exit', cleanup);

  let report: Report;
  let client: RegistryClient | undefined;
  try {
    airlock = await startAirlockProcess({ dataDir: join(work, 'registry') });
    const pid = airlock.child.pid ?? NaN;
    client = new RegistryClient('Airlock', airlock.url);
    progress(`Airlock at ${airlock.url} (pid ${pid})`);

    let started = process.hrtime.bigint();
    const bases = await createLayerBases(work, sizes);
    progress(
      `made ${sizes.layers} random gzip layers of ${size(sizes.layerBytes)} in ${(Number(process.hrtime.bigint() - started) / 1e9).toFixed(1)} s`,
    );

    const empty = (): PerTool<Run[]> => ({ airlock: [], skopeo: [], crane: [] });
    const results: Results = { push: empty(), pull: empty() };
    const extraCa: ExtraCa | undefined = extraCaFile ? { file: extraCaFile, push: [] } : undefined;
    let imageBytes = 0;
    let counter = 0;
    /** Times one copy and adds it to `into`; `label` names it in the progress lines. */
    const timed = async (
      into: Run[],
      label: string,
      copy: { command: string[]; bytes: number; env?: NodeJS.ProcessEnv },
    ): Promise<void> => {
      await syncDisks();
      const cpuBefore = await cpuSeconds(pid);
      const measured = await measure(
        copy.command,
        join(work, `time-${counter++}.txt`),
        copy.env ?? clientEnv,
      );
      const serverCpu = (await cpuSeconds(pid)) - cpuBefore;
      const run: Run = { ...measured, mbPerSecond: copy.bytes / MB / measured.seconds, serverCpu };
      into.push(run);
      progress(
        `${label} ${two(run.seconds)} s, ${one(run.mbPerSecond)} MB/s, ` +
          `RSS ${mem(run.rss)}, client CPU ${two(run.cpu)} s, server CPU ${two(run.serverCpu)} s`,
      );
    };

    for (let rep = 1; rep <= sizes.repetitions; rep++) {
      const tools = order(rep - 1);
      const layouts = {} as PerTool<Layout>;
      started = process.hrtime.bigint();
      for (const tool of tools) layouts[tool] = await writeLayout(join(work, `src-${tool}-${rep}`), bases);
      imageBytes = layouts.airlock.bytes;
      progress(
        `repetition ${rep}: wrote 3 layouts in ${(Number(process.hrtime.bigint() - started) / 1e9).toFixed(1)} s`,
      );
      for (const tool of tools) {
        const layout = layouts[tool];
        const repo = `bench/${tool}-${rep}`;
        await timed(results.push[tool], `push ${tool.padEnd(7)}`, {
          command: commandFor(
            tool,
            'push',
            { local: layout.dir, remote: `${airlock.host}/${repo}:v1` },
            commandOptions,
          ),
          bytes: layout.bytes,
        });
        await checkPushed(client, repo, 'v1', layout);
      }
      // The pulls read what Airlock pushed: the other layouts can go (before the extra push's own).
      for (const tool of tools) {
        if (tool !== 'airlock') await rm(layouts[tool].dir, { recursive: true, force: true });
      }
      if (extraCa) {
        const layout = await writeLayout(join(work, `src-airlock-ca-${rep}`), bases);
        const repo = `bench/airlock-ca-${rep}`;
        const command = commandFor(
          'airlock',
          'push',
          { local: layout.dir, remote: `${airlock.host}/${repo}:v1` },
          commandOptions,
        );
        await timed(extraCa.push, 'push airlock  (NODE_EXTRA_CA_CERTS)', {
          command,
          bytes: layout.bytes,
          env: process.env,
        });
        await checkPushed(client, repo, 'v1', layout);
        await rm(layout.dir, { recursive: true, force: true });
      }

      const pulled = layouts.airlock;
      for (const tool of tools) {
        const dir = join(work, `pull-${tool}-${rep}`);
        await timed(results.pull[tool], `pull ${tool.padEnd(7)}`, {
          command: commandFor(
            tool,
            'pull',
            { local: dir, remote: `${airlock.host}/bench/airlock-${rep}:v1` },
            commandOptions,
          ),
          bytes: pulled.bytes,
        });
        await checkPulled(dir, pulled);
        await rm(dir, { recursive: true, force: true });
      }
      await rm(pulled.dir, { recursive: true, force: true });
    }
    report = {
      machine,
      quick: args.quick,
      sizes,
      imageBytes,
      jobs,
      profiled: profileDir !== undefined,
      versions,
      load: { start: loadStart, end: loadAverage() },
      results,
      extraCa,
    };
  } catch (error) {
    // The registry's own account of a failed copy (a 500 says only "see the registry log").
    if (airlock)
      process.stderr.write(
        `airlock serve output (last 8,000 characters):\n${airlock.output().slice(-8000)}\n`,
      );
    throw error;
  } finally {
    client?.close();
    await airlock?.stop();
    await rm(work, { recursive: true, force: true });
  }

  const section = renderSection(report);
  process.stdout.write(`${section}\n`);
  const comparable = !args.quick && jobs === undefined && profileDir === undefined;
  if (comparable && !args['no-write']) {
    await updateBenchmarksFile(join(ROOT, 'BENCHMARKS.md'), section, { marker: 'cli-bench' });
    progress('wrote BENCHMARKS.md');
  } else if (!args['no-write']) {
    progress('BENCHMARKS.md left alone (only a full run without --quick, --jobs or --cpu-prof writes it)');
  }
  if (profileDir) progress(`CPU profiles of the Airlock CLI runs written to ${profileDir}`);
}

main().catch((error: unknown) => {
  process.stderr.write(
    `cli-bench failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
  );
  process.exit(1);
});
