#!/usr/bin/env node
import { CommanderError } from 'commander';
import { checkWriteSwitches, removeTempPathsSync } from '../oci/index.js';
import { UsageError } from './common.js';
import { createOutput } from './output.js';
import { buildProgram, requestedCommand } from './program.js';

/** Commands that run until stopped and shut down gracefully on SIGINT and SIGTERM themselves. */
const LONG_RUNNING_COMMANDS = new Set(['serve', 'sync', 'webhook']);

/**
 * For every other command, a signal (Ctrl-C) first removes what the command was writing (temp folders,
 * `.partial` files, unverified blobs, a layout it created: the `finally` blocks that would never run),
 * then ends the process by that same signal, as crane and oras end, so a calling shell sees why.
 */
function removeTempPathsOnSignals(): void {
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(signal, () => {
      removeTempPathsSync();
      process.kill(process.pid, signal); // this listener is gone: the default action ends the process
    });
  }
}

let stdoutClosed = false;
process.stdout.on('error', (error: NodeJS.ErrnoException) => {
  if (error.code === 'EPIPE') stdoutClosed = true;
});

/**
 * Threads in libuv's pool, which runs every asynchronous file operation, for `serve` (unless
 * UV_THREADPOOL_SIZE is set). With libuv's 4, the 2 MiB writes of concurrent uploads fill the pool and
 * every short operation (an upload's fsync and rename, a small blob's whole write) waits behind them: a
 * push of 8 layers, 4 at a time, took 17% longer (BENCHMARKS.md). libuv reads the variable when the pool
 * first starts, so it is set before any command runs.
 */
const SERVE_THREADPOOL_SIZE = 16;

async function main(): Promise<void> {
  const command = requestedCommand(process.argv) ?? '';
  if (command === 'serve') process.env.UV_THREADPOOL_SIZE ||= String(SERVE_THREADPOOL_SIZE);
  const out = createOutput();
  try {
    try {
      checkWriteSwitches();
    } catch (error) {
      throw new UsageError((error as Error).message);
    }
    if (!LONG_RUNNING_COMMANDS.has(command)) removeTempPathsOnSignals();
    await (await buildProgram(process.argv)).parseAsync(process.argv);
  } catch (error) {
    // A reader that stopped early (`airlock blob … | head`): nothing went wrong on our side. Only a closed
    // standard output counts; a registry connection that breaks is a failure like any other.
    if (stdoutClosed) return;
    if (error instanceof CommanderError) {
      process.exitCode = error.exitCode === 0 ? 0 : 2;
      return;
    }
    // ConfigError is matched by name so that the registry's modules load only for `serve`.
    if (error instanceof UsageError || (error instanceof Error && error.name === 'ConfigError')) {
      out.error(error.message);
      process.exitCode = 2;
      return;
    }
    out.error(error instanceof Error ? error.message : String(error));
    process.exitCode = 1;
  }
}

// Not awaited at the top: the bundled CLI runs this module as CommonJS (src/cli/launcher.ts), which has no
// top-level await; main() handles its own failures.
void main();
