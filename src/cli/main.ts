#!/usr/bin/env node
import { Command, CommanderError } from 'commander';
import { checkWriteSwitches, removeTempPathsSync } from '../oci/index.js';
import { registerAdminCommands } from './admin-commands.js';
import { registerArtifactCommands } from './artifact-commands.js';
import { registerAuthCommands } from './auth-commands.js';
import { registerCerts } from './certs-command.js';
import { registerCopy } from './copy-command.js';
import { registerInspectCommands } from './inspect-commands.js';
import { UsageError } from './common.js';
import { createOutput } from './output.js';
import { registerRegistryCommands } from './registry-commands.js';
import { registerServe } from './serve.js';

/**
 * The commands of sign-commands.ts and sync-commands.ts. Their modules (Kubernetes client, reconciler,
 * webhook, YAML) load only when one of them, or no known command (help), is asked for, so that `copy`,
 * `pull` and the other client commands start faster.
 */
const SIGN_AND_SYNC_COMMANDS = new Set([
  'generate-key-pair',
  'sign',
  'verify',
  'webhook',
  'sync',
  'status',
  'vet',
]);

/** The first word of `argv` that is not an option: the command asked for. */
function requestedCommand(argv: readonly string[]): string | undefined {
  return argv.slice(2).find((word) => !word.startsWith('-'));
}

/** Builds the command tree; the sign and sync commands only when `argv` may need them. */
export async function buildProgram(argv: readonly string[] = process.argv): Promise<Command> {
  const program = new Command();
  program
    .name('airlock')
    .description('OCI registry, artifact client, GitOps reconciler and signing for your own data centre')
    .version('0.1.0')
    .exitOverride()
    .showSuggestionAfterError();
  registerServe(program);
  registerAuthCommands(program);
  registerRegistryCommands(program);
  registerCopy(program);
  registerArtifactCommands(program);
  registerInspectCommands(program);
  registerAdminCommands(program);
  registerCerts(program);
  const requested = requestedCommand(argv) ?? '';
  const known = program.commands.some(
    (command) => command.name() === requested || command.aliases().includes(requested),
  );
  if (!known || SIGN_AND_SYNC_COMMANDS.has(requested)) {
    const [{ registerSignCommands }, { registerSyncCommands }] = await Promise.all([
      import('./sign-commands.js'),
      import('./sync-commands.js'),
    ]);
    registerSignCommands(program);
    registerSyncCommands(program);
  }
  return program;
}

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

async function main(): Promise<void> {
  const out = createOutput();
  try {
    try {
      checkWriteSwitches();
    } catch (error) {
      throw new UsageError((error as Error).message);
    }
    if (!LONG_RUNNING_COMMANDS.has(requestedCommand(process.argv) ?? '')) removeTempPathsOnSignals();
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

await main();
