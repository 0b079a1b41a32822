import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { findPeer } from './peers.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

/**
 * `bundle` when it is at least as new as every compiled module it is made from; else throws. `tsc` alone
 * rewrites dist/src and leaves dist/bin as it was, and tests would then run the old CLI against the new
 * library without a word.
 */
function freshBundle(bundle: string): string {
  const built = statSync(bundle, { throwIfNoEntry: false })?.mtimeMs;
  if (built === undefined) throw new Error(`${bundle} is missing: run \`npm run build\``);
  const newest = (dir: string): number => {
    let latest = 0;
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) latest = Math.max(latest, newest(path));
      else if (entry.name.endsWith('.js') && !/\.(test|contract)\.js$/.test(entry.name))
        latest = Math.max(latest, statSync(path).mtimeMs);
    }
    return latest;
  };
  if (newest(join(ROOT, 'dist', 'src')) > built)
    throw new Error(
      `${bundle} is older than dist/src: run \`npm run build\` (tsc alone does not bundle the CLI)`,
    );
  return bundle;
}

/** The bundled CLI (scripts/bundle-cli.mjs), as `npm install` puts it on PATH. */
export const CLI = freshBundle(join(ROOT, 'dist', 'bin', 'airlock.js'));

/** Folders made by `tempDir`, removed when the test process exits unless kept (`keepTempDir`). */
const madeTempDirs = new Set<string>();

/**
 * A new folder under the system's temp folder, removed when the test process exits (not earlier: a test
 * may restart a server on the same data folder), so a test that fails leaves nothing behind either.
 */
export async function tempDir(prefix = 'airlock-test-'): Promise<string> {
  return removedAtExit(await mkdtemp(join(tmpdir(), prefix)));
}

/** `tempDir` for code that cannot wait. */
export function tempDirSync(prefix = 'airlock-test-'): string {
  return removedAtExit(mkdtempSync(join(tmpdir(), prefix)));
}

function removedAtExit(dir: string): string {
  if (madeTempDirs.size === 0) {
    process.once('exit', () => {
      for (const made of madeTempDirs) rmSync(made, { recursive: true, force: true });
    });
  }
  madeTempDirs.add(dir);
  return dir;
}

/** Keeps a folder made by `tempDir` after the test process exits (data kept for a replay). */
export function keepTempDir(dir: string): void {
  madeTempDirs.delete(dir);
}

/** A free TCP port on 127.0.0.1 (for programs that cannot be told to use port 0). */
export async function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolvePort(port));
    });
  });
}

/** Polls `url` until it answers (any status below 500) or the time runs out. */
export async function waitForHttp(url: string, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  while (Date.now() < deadline) {
    try {
      const res = await fetch(url);
      await res.arrayBuffer();
      if (res.status < 500) return;
    } catch (error) {
      lastError = error;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`Nothing answered at ${url} within ${timeoutMs} ms: ${String(lastError)}`);
}

export interface RunningProcess {
  readonly url: string;
  /** host:port, as clients write it in references. */
  readonly host: string;
  readonly child: ChildProcess;
  readonly dataDir: string;
  /** Output collected so far (stdout + stderr). */
  output(): string;
  /** SIGTERM (or the given signal) and wait for exit. */
  stop(signal?: NodeJS.Signals): Promise<void>;
}

/** Long-running children the test helpers started that have not exited yet. */
const runningChildren = new Set<ChildProcess>();
let exitHookSet = false;

/**
 * SIGKILLs `child` when the test process exits, should it still run then. For servers and daemons a
 * helper starts: a test that failed or timed out before stopping one must not leave it running (the
 * runner force-exits test files, which would otherwise orphan it).
 */
export function killedAtExit(child: ChildProcess): void {
  if (!exitHookSet) {
    exitHookSet = true;
    process.once('exit', () => {
      for (const running of runningChildren) running.kill('SIGKILL');
    });
  }
  runningChildren.add(child);
  child.once('exit', () => runningChildren.delete(child));
}

function track(child: ChildProcess): { output: () => string; exited: Promise<void> } {
  killedAtExit(child);
  let text = '';
  child.stdout?.on('data', (chunk: Buffer) => (text += chunk.toString()));
  child.stderr?.on('data', (chunk: Buffer) => (text += chunk.toString()));
  const exited = new Promise<void>((done) => child.once('exit', () => done()));
  return { output: () => text, exited };
}

export interface StartAirlockOptions {
  /** Data folder; default a new temp folder. */
  readonly dataDir?: string;
  /** Port; default a free one. */
  readonly port?: number;
  readonly extraArgs?: readonly string[];
  readonly env?: NodeJS.ProcessEnv;
}

/** Waits for the "listening on URL" line a starting `airlock serve` prints, or for it to exit. */
function waitForListening(child: ChildProcess, output: () => string, timeoutMs = 20_000): Promise<string> {
  return new Promise((resolveUrl, reject) => {
    const timer = setTimeout(
      () => finish(new Error(`airlock serve printed no listening line within ${timeoutMs} ms`)),
      timeoutMs,
    );
    const check = (): void => {
      const match = /listening on (https?:\/\/\S+)/.exec(output());
      if (match?.[1]) finish(undefined, match[1]);
    };
    const onExit = (): void =>
      finish(new Error(`airlock serve exited (${child.exitCode ?? child.signalCode})`));
    function finish(error?: Error, url?: string): void {
      clearTimeout(timer);
      child.stderr?.off('data', check);
      child.off('exit', onExit);
      if (error) reject(error);
      else resolveUrl(url ?? '');
    }
    child.stderr?.on('data', check);
    child.once('exit', onExit);
    check();
  });
}

/**
 * Runs `airlock serve` as a child process (the real binary, as users run it). Without a port it listens
 * on port 0 and reports the port it got, so two tests can never race for the same port.
 */
export async function startAirlockProcess(options: StartAirlockOptions = {}): Promise<RunningProcess> {
  const dataDir = options.dataDir ?? (await tempDir('airlock-data-'));
  const port = options.port ?? 0;
  const child = spawn(
    process.execPath,
    [
      CLI,
      'serve',
      '--addr',
      `127.0.0.1:${port}`,
      '--data',
      dataDir,
      '--log-level',
      'warn',
      ...(options.extraArgs ?? []),
    ],
    { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...options.env } },
  );
  const { output, exited } = track(child);
  let url: string;
  try {
    url = await waitForListening(child, output);
    // An HTTPS registry with a private CA cannot be probed with fetch; its listening line is enough.
    if (url.startsWith('http:')) await waitForHttp(`${url}/v2/`);
  } catch (error) {
    child.kill('SIGKILL');
    throw new Error(`airlock serve did not start: ${String(error)}\n${output()}`);
  }
  return {
    url,
    host: new URL(url).host,
    child,
    dataDir,
    output,
    async stop(signal: NodeJS.Signals = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      await exited;
    },
  };
}

/**
 * Runs Debian's docker-registry (CNCF distribution 2.8) on a free port with a throwaway folder. It cannot
 * listen on port 0, so a port taken between probing and binding is retried with another one.
 */
export async function startDistribution(binary = findPeer('docker-registry')): Promise<RunningProcess> {
  if (!binary) throw new Error('docker-registry is not installed; run scripts/install-peers.sh');
  const dataDir = await tempDir('distribution-data-');
  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    const config = join(dataDir, 'config.yml');
    await writeFile(
      config,
      [
        'version: 0.1',
        'log:',
        '  level: warn',
        '  accesslog:',
        '    disabled: true',
        'storage:',
        '  filesystem:',
        `    rootdirectory: ${join(dataDir, 'store')}`,
        '  delete:',
        '    enabled: true',
        'http:',
        `  addr: 127.0.0.1:${port}`,
        '',
      ].join('\n'),
    );
    const child = spawn(binary, ['serve', config], { stdio: ['ignore', 'pipe', 'pipe'] });
    const { output, exited } = track(child);
    const url = `http://127.0.0.1:${port}`;
    try {
      await waitForHttp(`${url}/v2/`);
      await new Promise((r) => setTimeout(r, 100));
      if (child.exitCode !== null) throw new Error(`docker-registry exited: ${output()}`);
    } catch (error) {
      child.kill('SIGKILL');
      if (attempt < 3) continue;
      throw new Error(`docker-registry did not start: ${String(error)}\n${output()}`);
    }
    return {
      url,
      host: `127.0.0.1:${port}`,
      child,
      dataDir,
      output,
      async stop(signal: NodeJS.Signals = 'SIGTERM') {
        if (child.exitCode === null && child.signalCode === null) child.kill(signal);
        await exited;
        await rm(dataDir, { recursive: true, force: true });
      },
    };
  }
}

export interface CommandResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs a command to completion, capturing output; never throws on a non-zero exit. */
export async function run(
  command: string,
  args: readonly string[],
  options: { env?: NodeJS.ProcessEnv; cwd?: string; input?: string; timeoutMs?: number } = {},
): Promise<CommandResult> {
  return new Promise((done, reject) => {
    const child = spawn(command, args, {
      cwd: options.cwd,
      env: { ...process.env, ...options.env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 300_000);
    child.once('error', reject);
    child.once('close', (code) => {
      clearTimeout(timer);
      done({ code, stdout, stderr });
    });
    // A program that exits without reading its input must not crash the test with EPIPE.
    child.stdin.on('error', () => undefined);
    child.stdin.end(options.input ?? '');
  });
}

/** Like {@link run}, but throws with the command's output when it exits non-zero. */
export async function runOk(
  command: string,
  args: readonly string[],
  options: { env?: NodeJS.ProcessEnv; cwd?: string; input?: string; timeoutMs?: number } = {},
): Promise<CommandResult> {
  const result = await run(command, args, options);
  if (result.code !== 0) {
    throw new Error(`${command} ${args.join(' ')} exited ${result.code}\n${result.stdout}\n${result.stderr}`);
  }
  return result;
}
