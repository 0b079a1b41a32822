#!/usr/bin/env node
import { Command, CommanderError } from 'commander';
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
import { registerSignCommands } from './sign-commands.js';
import { registerSyncCommands } from './sync-commands.js';

/** Builds the command tree; exported for tests. */
export function buildProgram(): Command {
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
  registerSignCommands(program);
  registerSyncCommands(program);
  return program;
}

async function main(): Promise<void> {
  const out = createOutput();
  try {
    await buildProgram().parseAsync(process.argv);
  } catch (error) {
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
