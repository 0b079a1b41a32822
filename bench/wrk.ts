import { exec } from './system.js';

/** What one wrk run measured. Latencies in milliseconds. */
export interface WrkResult {
  readonly requestsPerSecond: number;
  readonly requests: number;
  readonly latencyAvgMs: number;
  readonly latencyMaxMs: number;
  readonly latencyP50Ms: number;
  readonly latencyP99Ms: number;
  /** Non-2xx/3xx answers plus socket errors (the report flags a run that had any). */
  readonly errors: number;
}

export interface WrkOptions {
  /** Threads. Default: 2. */
  readonly threads?: number;
  /** Connections. Default: 32. */
  readonly connections?: number;
  /** Seconds. Default: 10. */
  readonly seconds?: number;
  /** Extra request headers, "Name: value". Default: none. */
  readonly headers?: readonly string[];
}

const UNIT_MS: Record<string, number> = { us: 0.001, ms: 1, s: 1000, m: 60_000 };

function durationMs(text: string): number {
  const match = /^([\d.]+)(us|ms|s|m)$/.exec(text);
  if (!match) throw new Error(`Cannot parse wrk duration "${text}"`);
  return Number(match[1]) * (UNIT_MS[match[2] ?? ''] ?? NaN);
}

/** Parses wrk's text report (run with --latency). */
export function parseWrk(output: string): WrkResult {
  const rps = /Requests\/sec:\s+([\d.]+)/.exec(output);
  const total = /(\d+) requests in/.exec(output);
  const latency = /Latency\s+(\S+)\s+\S+\s+(\S+)/.exec(output);
  const p50 = /^\s+50%\s+(\S+)/m.exec(output);
  const p99 = /^\s+99%\s+(\S+)/m.exec(output);
  if (!rps || !total || !latency || !p50 || !p99) throw new Error(`Cannot parse wrk output:\n${output}`);
  const non2xx = /Non-2xx or 3xx responses:\s+(\d+)/.exec(output);
  const socket = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(output);
  const socketErrors = socket ? socket.slice(1).reduce((sum, n) => sum + Number(n), 0) : 0;
  return {
    requestsPerSecond: Number(rps[1]),
    requests: Number(total[1]),
    latencyAvgMs: durationMs(latency[1] ?? ''),
    latencyMaxMs: durationMs(latency[2] ?? ''),
    latencyP50Ms: durationMs(p50[1] ?? ''),
    latencyP99Ms: durationMs(p99[1] ?? ''),
    errors: Number(non2xx?.[1] ?? 0) + socketErrors,
  };
}

/** Runs wrk against `url` and parses its report; throws when wrk itself fails. */
export async function runWrk(url: string, options: WrkOptions = {}): Promise<WrkResult> {
  const seconds = options.seconds ?? 10;
  const args = [
    `-t${options.threads ?? 2}`,
    `-c${options.connections ?? 32}`,
    `-d${seconds}s`,
    '--latency',
    ...(options.headers ?? []).flatMap((h) => ['-H', h]),
    url,
  ];
  const result = await exec('wrk', args, { timeoutMs: (seconds + 30) * 1000 });
  if (result.code !== 0)
    throw new Error(`wrk ${args.join(' ')} exited ${result.code}\n${result.stdout}\n${result.stderr}`);
  return parseWrk(result.stdout);
}
