import { spawn } from 'node:child_process';
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { runForBytes, runTool, runToolOk } from './interop.js';
import { killedAtExit, tempDir, type CommandResult } from './processes.js';

/** `ctr` bound to a private containerd's socket and a test namespace. */
export interface Ctr {
  (args: readonly string[]): Promise<CommandResult>;
  /** Raw bytes of a blob in containerd's content store. */
  content(digest: string): Promise<Buffer>;
}

export interface ContainerdOptions {
  /** containerd namespace for images. Default: 'airlock-test'. */
  readonly namespace?: string;
  /** Throw when a ctr command exits non-zero (else return its result). Default: true. */
  readonly failOnError?: boolean;
}

/**
 * Starts a private containerd (own root, state, sockets; no CRI plugin) for one test and stops it
 * when the test ends.
 */
export async function startContainerd(
  t: TestContext,
  binaries: { containerd: string; ctr: string },
  options: ContainerdOptions = {},
): Promise<Ctr> {
  const dir = await tempDir('ctrd-');
  const socket = join(dir, 'containerd.sock');
  const config = join(dir, 'config.toml');
  await writeFile(
    config,
    [
      'version = 2',
      `root = "${join(dir, 'root')}"`,
      `state = "${join(dir, 'state')}"`,
      'disabled_plugins = ["io.containerd.grpc.v1.cri"]',
      '[grpc]',
      `  address = "${socket}"`,
      '[ttrpc]',
      `  address = "${join(dir, 'containerd-ttrpc.sock')}"`,
      '[debug]',
      '  address = ""',
      '[metrics]',
      '  address = ""',
      '[plugins."io.containerd.internal.v1.opt"]',
      `  path = "${join(dir, 'opt')}"`,
      '',
    ].join('\n'),
  );
  const child = spawn(binaries.containerd, ['--config', config], { stdio: ['ignore', 'pipe', 'pipe'] });
  killedAtExit(child);
  let log = '';
  child.stdout.on('data', (chunk: Buffer) => (log += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (log += chunk.toString()));
  const exited = new Promise<void>((done) => child.once('exit', () => done()));
  t.after(async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(timer);
    await rm(dir, { recursive: true, force: true });
  });
  const base = ['--address', socket, '--namespace', options.namespace ?? 'airlock-test'];
  const runner = (options.failOnError ?? true) ? runToolOk : runTool;
  const ctr: Ctr = Object.assign((args: readonly string[]) => runner(binaries.ctr, [...base, ...args]), {
    content: (digest: string) => runForBytes(binaries.ctr, [...base, 'content', 'get', digest]),
  });
  const deadline = Date.now() + 15_000;
  for (;;) {
    const probe = await runTool(binaries.ctr, ['--address', socket, 'version'], { timeoutMs: 5_000 });
    if (probe.code === 0) return ctr;
    if (child.exitCode !== null || Date.now() > deadline)
      throw new Error(`containerd did not start\n${log}\n${probe.stderr}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
