import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { open, rm } from 'node:fs/promises';
import { availableParallelism, totalmem } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { findPeer } from '../test/helpers/peers.js';
import { run } from '../test/helpers/processes.js';

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
}

async function firstLine(command: string, args: readonly string[]): Promise<string> {
  try {
    const result = await run(command, args, { timeoutMs: 10_000 });
    return (result.stdout + result.stderr).trim().split('\n')[0]?.trim() ?? '';
  } catch {
    return 'unknown';
  }
}

export async function machineInfo(tmp: string): Promise<MachineInfo> {
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
  };
}

/** Resident set size now and its high-water mark, in bytes, from /proc/PID/status. */
export function memoryOf(pid: number): { rss: number; hwm: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kib = (field: string): number => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN) * 1024;
  return { rss: kib('VmRSS'), hwm: kib('VmHWM') };
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
  await run('sync', []);
}

/** Writes `data` to a new file in `dir` in 1 MiB writes, fsyncs it, and returns MB/s. */
export async function rawWriteMBps(dir: string, data: Buffer): Promise<number> {
  const path = join(dir, `raw-write-${process.hrtime.bigint()}`);
  const chunk = 1024 * 1024;
  const started = process.hrtime.bigint();
  const handle = await open(path, 'w');
  try {
    for (let at = 0; at < data.byteLength; at += chunk) {
      await handle.write(data, at, Math.min(chunk, data.byteLength - at));
    }
    await handle.sync();
  } finally {
    await handle.close();
  }
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  await rm(path, { force: true });
  return data.byteLength / MB / seconds;
}

/** A bare node:http server in its own process answering every request with `body`: the ceiling for a node server here. */
export async function startBaselineServer(body: Buffer, contentType: string): Promise<{ url: string; child: ChildProcess; stop(): Promise<void> }> {
  const script = join(dirname(fileURLToPath(import.meta.url)), 'baseline-server.js');
  const child = spawn(process.execPath, [script, contentType, body.toString('base64')], { stdio: ['ignore', 'pipe', 'inherit'] });
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
