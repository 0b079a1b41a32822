import { spawn, type ChildProcess } from 'node:child_process';
import { constants, readFileSync } from 'node:fs';
import { open, rm } from 'node:fs/promises';
import { availableParallelism, totalmem } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { findPeer } from '../test/helpers/peers.js';
import { returnBufferSet, takeBufferSet } from '../src/oci/direct-io.js';

const MB = 1e6;

/** What the report says about the machine and the software under test. */
export interface MachineInfo {
  readonly date: string;
  readonly cpus: number;
  readonly cpuModel: string;
  readonly memoryGiB: number;
  readonly kernel: string;
  readonly tmpFilesystem: string;
  readonly node: string;
  readonly distribution: string;
  readonly wrk: string;
  /** The Airlock build under test: commit, and whether src/ differs from it. */
  readonly airlock: string;
}

export interface ExecResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/**
 * Runs a command with no standard input and collects its output. (The test helpers' `run` writes to the
 * child's stdin, which fails with an unhandled EPIPE when a command such as `sync` exits before reading it.)
 */
export async function exec(
  command: string,
  args: readonly string[],
  options: { timeoutMs?: number } = {},
): Promise<ExecResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 120_000);
    child.once('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** The first line a command prints (stdout, else stderr), e.g. its version; 'unknown' when it cannot run. */
export async function firstLine(command: string, args: readonly string[]): Promise<string> {
  try {
    const result = await exec(command, args, { timeoutMs: 10_000 });
    return (result.stdout + result.stderr).trim().split('\n')[0]?.trim() ?? '';
  } catch {
    return 'unknown';
  }
}

async function airlockVersion(root: string): Promise<string> {
  const head =
    (await exec('git', ['-C', root, 'rev-parse', '--short', 'HEAD'])).stdout.trim() || 'unknown commit';
  const status = (await exec('git', ['-C', root, 'status', '--porcelain', '--', 'src'])).stdout.trim();
  const changed = status === '' ? [] : status.split('\n').map((line) => line.slice(3));
  if (changed.length === 0) return `commit ${head}, src/ clean`;
  // Only these folders make up the server's request path; other changes (CLI, client) do not touch it.
  const serving = changed.filter((path) => /^src\/(registry|storage|oci|log)\//.test(path));
  return (
    `commit ${head} + ${changed.length} uncommitted file(s) in src/ ` +
    (serving.length === 0 ? '(none in registry/, storage/, oci/, log/)' : `(incl. ${serving.join(', ')})`)
  );
}

export async function machineInfo(tmp: string, options: { root: string }): Promise<MachineInfo> {
  const cpuinfo = readFileSync('/proc/cpuinfo', 'utf8');
  const model = /^model name\s*:\s*(.+)$/m.exec(cpuinfo)?.[1]?.trim() ?? 'unknown';
  const nproc = Number(await firstLine('nproc', [])) || availableParallelism();
  return {
    date: await firstLine('date', ['-u']),
    cpus: nproc,
    cpuModel: model,
    memoryGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    kernel: await firstLine('uname', ['-sr']),
    tmpFilesystem: `${tmp} (${await firstLine('stat', ['-f', '-c', '%T', tmp])})`,
    node: process.version,
    distribution: await firstLine(findPeer('docker-registry') ?? 'docker-registry', ['--version']),
    wrk: (await firstLine('wrk', ['-v'])).replace(/\s*Copyright.*$/, ''),
    airlock: await airlockVersion(options.root),
  };
}

/** The 1, 5 and 15 minute load averages: other work on the machine skews every number here. */
export function loadAverage(): string {
  return readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
}

/** Resident set size now and its high-water mark, in bytes, from /proc/PID/status. */
export function memoryOf(pid: number): { rss: number; hwm: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kib = (field: string): number =>
    Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN) * 1024;
  return { rss: kib('VmRSS'), hwm: kib('VmHWM') };
}

let clockTicks: number | undefined;

/** User + system CPU seconds a process (all its threads) has used so far, from /proc/PID/stat. */
export async function cpuSeconds(pid: number): Promise<number> {
  clockTicks ??= Number((await exec('getconf', ['CLK_TCK'])).stdout.trim()) || 100;
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name, which is in parentheses and may hold spaces: state is [0], utime [11], stime [12].
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / clockTicks;
}

/** Samples a process's RSS on a timer; `stop()` returns the largest sample. */
export function sampleRss(pid: number, intervalMs = 25): { stop(): number } {
  let max = memoryOf(pid).rss;
  const timer = setInterval(() => {
    try {
      max = Math.max(max, memoryOf(pid).rss);
    } catch {
      // the process went away; the report shows what was seen
    }
  }, intervalMs);
  return {
    stop() {
      clearInterval(timer);
      max = Math.max(max, memoryOf(pid).rss);
      return max;
    },
  };
}

/** Flushes every dirty page to disk so one measurement does not pay for the previous one's writeback. */
export async function syncDisks(): Promise<void> {
  const result = await exec('sync', []);
  if (result.code !== 0) throw new Error(`sync exited ${result.code}: ${result.stderr}`);
}

/**
 * Writes `data` to a new file in `dir`, fsyncs it, and returns MB/s: through the page cache in 1 MiB
 * writes, or with `direct` the way Airlock writes large blobs (O_DIRECT, 2 MiB at a time copied into an
 * aligned buffer from `takeBufferSet`). Undefined when the file system refuses O_DIRECT (tmpfs before
 * Linux 6.6); `data` is then a whole number of 64 KiB blocks (the benchmark's blob sizes are).
 */
export async function rawWriteMBps(dir: string, data: Buffer): Promise<number>;
export async function rawWriteMBps(
  dir: string,
  data: Buffer,
  options: { direct: true },
): Promise<number | undefined>;
export async function rawWriteMBps(
  dir: string,
  data: Buffer,
  options: { direct?: boolean } = {},
): Promise<number | undefined> {
  const direct = options.direct === true;
  if (direct && constants.O_DIRECT === undefined) return undefined;
  const path = join(dir, `raw-write-${process.hrtime.bigint()}`);
  const set = direct ? takeBufferSet() : undefined;
  const aligned = set?.buffers[0];
  const chunk = aligned?.byteLength ?? 1024 * 1024;
  const started = process.hrtime.bigint();
  let handle;
  try {
    handle = await open(path, direct ? constants.O_WRONLY | constants.O_CREAT | constants.O_DIRECT : 'w');
  } catch (error) {
    if (direct) return undefined;
    throw error;
  }
  try {
    for (let at = 0; at < data.byteLength; at += chunk) {
      const length = Math.min(chunk, data.byteLength - at);
      if (aligned) {
        data.copy(aligned, 0, at, at + length);
        await handle.write(aligned, 0, length, at);
      } else {
        await handle.write(data, at, length);
      }
    }
    await handle.sync();
  } finally {
    await handle.close();
    if (set) returnBufferSet(set);
  }
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  await rm(path, { force: true });
  return data.byteLength / MB / seconds;
}

/**
 * A bare node:http server in its own process (see baseline-server.ts): answers GETs with `body` (or streams
 * `options.file` for blob GETs) and drains uploads; the ceiling for a node server on this machine.
 */
export async function startBaselineServer(
  body: Buffer,
  options: { contentType: string; file?: string },
): Promise<{ url: string; child: ChildProcess; stop(): Promise<void> }> {
  const script = join(dirname(fileURLToPath(import.meta.url)), 'baseline-server.js');
  const args = [
    script,
    options.contentType,
    body.toString('base64'),
    ...(options.file ? [options.file] : []),
  ];
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise<number>((resolve, reject) => {
    let text = '';
    child.stdout?.on('data', (chunk: Buffer) => {
      text += chunk.toString();
      const line = /^(\d+)\n/.exec(text);
      if (line) resolve(Number(line[1]));
    });
    child.once('exit', (code) => reject(new Error(`baseline server exited ${code}`)));
  });
  const exited = new Promise<void>((done) => child.once('exit', () => done()));
  return {
    url: `http://127.0.0.1:${port}`,
    child,
    async stop() {
      child.kill('SIGTERM');
      await exited;
    },
  };
}
