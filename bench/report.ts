import { readFile, writeFile } from 'node:fs/promises';
import * as prettier from 'prettier';
import type { MachineInfo } from './system.js';
import type { WrkResult } from './wrk.js';

export const MB = 1e6;

/** One number per registry. */
export interface Pair<T> {
  readonly airlock: T;
  readonly distribution: T;
}

/** Repeated measurements; the report uses the median. */
export type Samples = readonly number[];

/** Repeated transfers: MB/s and the server's CPU seconds (user + system, all threads) per GB moved. */
export interface Series {
  readonly rate: Samples;
  readonly cpu: Samples;
}

/** A wrk run plus the server's CPU time per request during it. */
export type GetResult = WrkResult & { readonly cpuMicrosPerRequest: number };

export interface BenchResults {
  readonly machine: MachineInfo;
  readonly quick: boolean;
  readonly blobBytes: number;
  readonly chunkBytes: number;
  readonly repetitions: number;
  /** /proc/loadavg when the run started and ended. */
  readonly load: { readonly start: string; readonly end: string };
  readonly get?: { readonly seconds: number; readonly baseline: GetResult; readonly wrk: Pair<GetResult> };
  readonly rawWrite?: Samples;
  /** The same with O_DIRECT, where the file system allows it. */
  readonly rawDirectWrite?: Samples;
  readonly upload?: {
    readonly monolithic: Pair<Series>;
    readonly chunked: Pair<Series>;
    /** How each registry's monolithic upload was sent. */
    readonly monolithicMethod: Pair<string>;
    /** The same client sending the same bytes to a bare node:http server that discards them. */
    readonly ceiling: Series;
  };
  readonly download?: {
    readonly registries: Pair<Series>;
    /** How Airlock sent its downloads and the rates it chose by, from its /metrics. */
    readonly airlockSendWay: string;
    /** The same client reading the same file from a bare node:http server. */
    readonly ceiling: Series;
  };
  readonly memory: {
    readonly peak: Pair<number>;
    readonly flat?: {
      readonly smallBytes: number;
      readonly largeBytes: number;
      readonly small: Pair<number>;
      readonly large: Pair<number>;
    };
  };
}

/** RSS may grow by less than this from the small to the large upload and still count as flat. */
export const FLAT_TOLERANCE = 32 * MB;
export const RSS_TARGET = 200 * MB;

export function median(samples: Samples): number {
  const sorted = [...samples].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1
    ? (sorted[mid] ?? NaN)
    : ((sorted[mid - 1] ?? NaN) + (sorted[mid] ?? NaN)) / 2;
}

const int = (n: number): string => Math.round(n).toLocaleString('en-US');
const one = (n: number): string => n.toFixed(1);
const two = (n: number): string => n.toFixed(2);
const ratio = (a: number, b: number): string => `${(a / b).toFixed(2)}×`;
const pct = (n: number): string => `${Math.round(n * 100)}%`;
const mem = (bytes: number): string => `${int(bytes / MB)} MB`;
const ms = (n: number): string => (n < 10 ? n.toFixed(2) : n.toFixed(1));
const verdict = (met: boolean): string => (met ? '✅ met' : '❌ missed');
const size = (bytes: number): string =>
  bytes >= 2 ** 30 ? `${bytes / 2 ** 30} GiB` : `${bytes / 2 ** 20} MiB`;

interface Row {
  readonly metric: string;
  readonly airlock: string;
  readonly distribution: string;
  readonly ratio: string;
  readonly target: string;
  readonly met: string;
}

/** A target and whether it was met, for the summary under the table. */
interface Verdict {
  readonly target: string;
  readonly met: boolean;
  readonly detail: string;
}

function rowsAndVerdicts(r: BenchResults): { rows: Row[]; verdicts: Verdict[] } {
  const rows: Row[] = [];
  const verdicts: Verdict[] = [];
  const add = (row: Row): number => rows.push(row);

  if (r.get) {
    const { airlock, distribution } = r.get.wrk;
    const x = airlock.requestsPerSecond / distribution.requestsPerSecond;
    const errors = (w: WrkResult): string => (w.errors > 0 ? ` (${w.errors} failed)` : '');
    const met = x >= 10 && airlock.errors === 0;
    add({
      metric: `Manifest GET, req/s (wrk -t2 -c32 -d${r.get.seconds}s)`,
      airlock: int(airlock.requestsPerSecond) + errors(airlock),
      distribution: int(distribution.requestsPerSecond) + errors(distribution),
      ratio: ratio(airlock.requestsPerSecond, distribution.requestsPerSecond),
      target: '≥ 10×',
      met: verdict(met),
    });
    add({
      metric: 'Manifest GET latency p50 / p99 / max, ms',
      airlock: `${ms(airlock.latencyP50Ms)} / ${ms(airlock.latencyP99Ms)} / ${ms(airlock.latencyMaxMs)}`,
      distribution: `${ms(distribution.latencyP50Ms)} / ${ms(distribution.latencyP99Ms)} / ${ms(distribution.latencyMaxMs)}`,
      ratio: '',
      target: '',
      met: '',
    });
    add({
      metric: 'Server CPU per manifest GET, µs (lower is better)',
      airlock: one(airlock.cpuMicrosPerRequest),
      distribution: one(distribution.cpuMicrosPerRequest),
      ratio: ratio(airlock.cpuMicrosPerRequest, distribution.cpuMicrosPerRequest),
      target: '',
      met: '',
    });
    add({
      metric: 'Ceiling: bare node:http server, same wrk, req/s',
      airlock: int(r.get.baseline.requestsPerSecond),
      distribution: '',
      ratio: `Airlock = ${pct(airlock.requestsPerSecond / r.get.baseline.requestsPerSecond)} of it (${one(r.get.baseline.cpuMicrosPerRequest)} µs CPU/request)`,
      target: '',
      met: '',
    });
    verdicts.push({
      target: 'Manifest GET ≥ 10× distribution',
      met,
      detail: `${ratio(airlock.requestsPerSecond, distribution.requestsPerSecond)}; a bare node server reaches ${int(r.get.baseline.requestsPerSecond)} req/s here, ${ratio(r.get.baseline.requestsPerSecond, distribution.requestsPerSecond)} distribution`,
    });
  }

  const raw = r.rawWrite ? median(r.rawWrite) : undefined;
  const cpuRow = (metric: string, pair: Pair<Series>): void => {
    const a = median(pair.airlock.cpu);
    const d = median(pair.distribution.cpu);
    add({ metric, airlock: two(a), distribution: two(d), ratio: ratio(a, d), target: '', met: '' });
  };
  const ceilingRow = (metric: string, ceiling: Series, airlock: number): void => {
    const rate = median(ceiling.rate);
    add({
      metric,
      airlock: one(rate),
      distribution: '',
      ratio: `Airlock = ${pct(airlock / rate)} of it (${two(median(ceiling.cpu))} CPU s/GB)`,
      target: '',
      met: '',
    });
  };
  if (r.upload) {
    const label = size(r.blobBytes);
    for (const [kind, title] of [
      ['monolithic', `Upload ${label}, monolithic, MB/s`],
      ['chunked', `Upload ${label}, chunked ${size(r.chunkBytes)} PATCHes, MB/s`],
    ] as const) {
      const a = median(r.upload[kind].airlock.rate);
      const d = median(r.upload[kind].distribution.rate);
      const met = a / d >= 3;
      add({
        metric: title,
        airlock: one(a),
        distribution: one(d),
        ratio: ratio(a, d),
        target: '≥ 3×',
        met: verdict(met),
      });
      cpuRow(`… server CPU s per GB received (lower is better)`, r.upload[kind]);
      verdicts.push({ target: `Upload (${kind}) ≥ 3× distribution`, met, detail: ratio(a, d) });
    }
    ceilingRow(
      'Ceiling: same client → bare node:http that discards the body, MB/s',
      r.upload.ceiling,
      median(r.upload.monolithic.airlock.rate),
    );
  }
  if (raw !== undefined) {
    add({
      metric: `Raw write ${size(r.blobBytes)} + fsync (node fs), MB/s`,
      airlock: one(raw),
      distribution: '',
      ratio: r.upload ? `the ceiling above is ${pct(median(r.upload.ceiling.rate) / raw)} of it` : '',
      target: '',
      met: '',
    });
  }
  const rawDirect = r.rawDirectWrite ? median(r.rawDirectWrite) : undefined;
  if (rawDirect !== undefined) {
    add({
      metric: `Raw write ${size(r.blobBytes)} with O_DIRECT (2 MiB writes) + fsync, MB/s`,
      airlock: one(rawDirect),
      distribution: '',
      ratio: '',
      target: '',
      met: '',
    });
  }
  if (r.upload && raw !== undefined) {
    // Against the faster way of writing the same bytes on this machine.
    const fastest = Math.max(raw, rawDirect ?? 0);
    const share = (series: Series): number => median(series.rate) / fastest;
    const mono = share(r.upload.monolithic.airlock);
    const chunked = share(r.upload.chunked.airlock);
    const met = mono >= 0.7 && chunked >= 0.7;
    add({
      metric: 'Upload as % of raw write, the faster of the two (monolithic / chunked)',
      airlock: `${pct(mono)} / ${pct(chunked)}`,
      distribution: `${pct(share(r.upload.monolithic.distribution))} / ${pct(share(r.upload.chunked.distribution))}`,
      ratio: '',
      target: '≥ 70%',
      met: verdict(met),
    });
    verdicts.push({
      target: 'Upload ≥ 70% of raw write speed',
      met,
      detail: `monolithic ${pct(mono)}, chunked ${pct(chunked)}`,
    });
  }
  if (r.download) {
    const a = median(r.download.registries.airlock.rate);
    const d = median(r.download.registries.distribution.rate);
    const met = a / d >= 1;
    add({
      metric: `Download ${size(r.blobBytes)}, MB/s`,
      airlock: one(a),
      distribution: one(d),
      ratio: ratio(a, d),
      target: '≥ 1×',
      met: verdict(met),
    });
    cpuRow('… server CPU s per GB sent (lower is better)', r.download.registries);
    ceilingRow('Ceiling: same client ← bare node:http streaming the file, MB/s', r.download.ceiling, a);
    verdicts.push({ target: 'Download ≥ 1× distribution', met, detail: ratio(a, d) });
  }
  if (r.memory.flat) {
    const { small, large, smallBytes, largeBytes } = r.memory.flat;
    add({
      metric: `Max RSS during a ${size(smallBytes)} upload`,
      airlock: mem(small.airlock),
      distribution: mem(small.distribution),
      ratio: '',
      target: '',
      met: '',
    });
    const growth = large.airlock - small.airlock;
    const flat = growth < FLAT_TOLERANCE && large.airlock < RSS_TARGET;
    add({
      metric: `Max RSS during a ${size(largeBytes)} upload`,
      airlock: mem(large.airlock),
      distribution: mem(large.distribution),
      ratio: '',
      target: `flat (+< ${int(FLAT_TOLERANCE / MB)} MB), < 200 MB`,
      met: verdict(flat),
    });
    verdicts.push({
      target: 'RSS flat in blob size',
      met: flat,
      detail: `${mem(small.airlock)} during ${size(smallBytes)}, ${mem(large.airlock)} during ${size(largeBytes)} (${growth >= 0 ? '+' : ''}${int(growth / MB)} MB)`,
    });
  }
  const peakMet = r.memory.peak.airlock < RSS_TARGET;
  add({
    metric: 'Peak RSS over the whole run (VmHWM)',
    airlock: mem(r.memory.peak.airlock),
    distribution: mem(r.memory.peak.distribution),
    ratio: ratio(r.memory.peak.airlock, r.memory.peak.distribution),
    target: '< 200 MB',
    met: verdict(peakMet),
  });
  verdicts.push({ target: 'Peak RSS < 200 MB', met: peakMet, detail: mem(r.memory.peak.airlock) });
  return { rows, verdicts };
}

/** The results table in markdown. */
export function renderTable(r: BenchResults): string {
  const { rows } = rowsAndVerdicts(r);
  const lines = [
    '| Metric | Airlock | distribution 2.8 | Airlock / distribution | Target | Status |',
    '| --- | ---: | ---: | ---: | --- | --- |',
    ...rows.map(
      (row) =>
        `| ${row.metric} | ${row.airlock} | ${row.distribution} | ${row.ratio} | ${row.target} | ${row.met} |`,
    ),
  ];
  return lines.join('\n');
}

function renderSamples(r: BenchResults): string[] {
  const list = (samples: Samples, digits = 0): string => samples.map((n) => n.toFixed(digits)).join(', ');
  const pair = (p: Pair<Series>): string =>
    `Airlock ${list(p.airlock.rate)} (${list(p.airlock.cpu, 2)} CPU s/GB); ` +
    `distribution ${list(p.distribution.rate)} (${list(p.distribution.cpu, 2)} CPU s/GB)`;
  const ceiling = (c: Series): string => `${list(c.rate)} (${list(c.cpu, 2)} CPU s/GB)`;
  const out: string[] = [];
  if (r.upload) {
    out.push(
      `- Upload monolithic MB/s: ${pair(r.upload.monolithic)}`,
      `- Upload chunked MB/s: ${pair(r.upload.chunked)}`,
      `- Upload to the bare node:http sink MB/s: ${ceiling(r.upload.ceiling)}`,
    );
  }
  if (r.rawWrite) out.push(`- Raw write MB/s: ${list(r.rawWrite)}`);
  if (r.rawDirectWrite) out.push(`- Raw write with O_DIRECT MB/s: ${list(r.rawDirectWrite)}`);
  if (r.download) {
    out.push(
      `- Download MB/s: ${pair(r.download.registries)}`,
      `- Download from the bare node:http server MB/s: ${ceiling(r.download.ceiling)}`,
      `- Airlock's way of sending downloads: ${r.download.airlockSendWay}`,
    );
  }
  return out;
}

/** The full BENCHMARKS.md section: machine, table, targets, method. */
export function renderSection(r: BenchResults): string {
  const { verdicts } = rowsAndVerdicts(r);
  const m = r.machine;
  const met = verdicts.filter((v) => v.met).length;
  const upload = r.upload;
  return [
    '## Registry: Airlock vs distribution 2.8',
    '',
    `_Generated by \`npm run bench\`${r.quick ? ' --quick (smoke sizes, not comparable)' : ''}; rerunning overwrites this section._`,
    '',
    `- **Date**: ${m.date}`,
    `- **Machine**: ${m.cpus} CPUs (nproc), ${m.cpuModel}, ${m.memoryGiB} GiB RAM, ${m.kernel}; temp files on ${m.tmpFilesystem}`,
    `- **Software**: Airlock ${m.airlock}; node ${m.node}; ${m.distribution}; ${m.wrk}`,
    `- **Load average** (1/5/15 min) at start: ${r.load.start}; at end: ${r.load.end}` +
      (r.machine.cpus > 0 && Number(r.load.start.split(' ')[0]) > r.machine.cpus / 2
        ? ' — other work was running on this machine, so absolute numbers are noisy'
        : ''),
    `- **Sizes**: blob ${size(r.blobBytes)}, chunk ${size(r.chunkBytes)}, ${r.repetitions} repetitions (median reported); MB = 10^6 bytes`,
    '',
    renderTable(r),
    '',
    `**Targets: ${met} of ${verdicts.length} met.**`,
    '',
    ...verdicts.map((v) => `- ${v.met ? '✅' : '❌'} ${v.target}: ${v.detail}`),
    '',
    'Samples:',
    '',
    ...renderSamples(r),
    '',
    'Method:',
    '',
    '- Both registries run on 127.0.0.1 side by side and are measured one after the other with the same client ' +
      '(node:http with keep-alive; request bodies written from memory in 1 MiB pieces, so the client costs only ' +
      'its socket writes). Client, servers and wrk share the same CPUs.',
    '- "Ceiling" rows run the same client or wrk against a bare node:http server in its own process (a fixed ' +
      'answer, a body it discards, a file it streams): no routing, logging, metrics, hashing or fsync.',
    '- Server CPU is user + system time of the server process (all threads) from /proc/PID/stat, read before and ' +
      'after each measurement; it moves less than wall-clock rates when other work shares the machine, though ' +
      'contention still inflates it.',
    '- Manifest GET: a config, one small layer and an OCI manifest pushed to both; `wrk -t2 -c32 --latency ' +
      "-H 'Accept: application/vnd.oci.image.manifest.v1+json'` on `/v2/bench/app/manifests/v1`, after an " +
      'uncounted warm-up; wrk shares the CPUs with the server under test.',
    '- Uploads: every upload is new content (the random file plus a unique 16-byte suffix), so neither registry ' +
      'can skip a write; `sync` runs before each timed upload; the time is from the first request to the final 201; ' +
      'repetitions alternate which registry goes first.',
    ...(upload
      ? [
          `- Monolithic upload: Airlock ${upload.monolithicMethod.airlock}; distribution ${upload.monolithicMethod.distribution}.`,
        ]
      : []),
    '- Airlock fsyncs each blob (and its folder) before publishing it; distribution 2.8 does not fsync. The raw ' +
      'write figure is node writing the same bytes in 1 MiB writes, then fsync.',
    '- Airlock writes large blobs with O_DIRECT (past the page cache), distribution through it. Downloads ' +
      'read a blob just written, after one untimed download that checks its bytes and the untimed ones a ' +
      'fresh Airlock times to choose between sendfile and copying (docs/registry.md), so both serve the timed ' +
      "downloads from the page cache. The client reads response bodies into one reused 1 MiB buffer (Airlock's " +
      '`rawGet`, a connection per download), not through node:http, which allocates a buffer per read.',
    '- RSS: VmRSS sampled every 25 ms from /proc during one upload of each size; peak is VmHWM at the end of the run.',
  ]
    .filter((line, i, all) => !(line === '' && all[i - 1] === ''))
    .join('\n');
}

/**
 * Writes the section into BENCHMARKS.md between `<!-- NAME:begin -->` and `<!-- NAME:end -->` markers
 * (NAME is `registry-bench` unless `where.marker` says otherwise), replacing an earlier one; other text stays.
 */
export async function updateBenchmarksFile(
  path: string,
  section: string,
  where: { marker?: string } = {},
): Promise<void> {
  const marker = where.marker ?? 'registry-bench';
  const BEGIN = `<!-- ${marker}:begin -->`;
  const END = `<!-- ${marker}:end -->`;
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch {
    text =
      '# Benchmarks\n\nNumbers measured by the scripts in `bench/`. Sections between markers are generated.\n';
  }
  const block = `${BEGIN}\n${section}\n${END}`;
  const begin = text.indexOf(BEGIN);
  const end = text.indexOf(END);
  if (begin >= 0 && end > begin) {
    text = text.slice(0, begin) + block + text.slice(end + END.length);
  } else {
    text = `${text.trimEnd()}\n\n${block}\n`;
  }
  // Formatted as `npm run check` (prettier --check .) expects, so a rerun never fails the format check.
  const options = (await prettier.resolveConfig(path)) ?? {};
  await writeFile(path, await prettier.format(text, { ...options, filepath: path }));
}
