import { Command } from 'commander';
import { registerAdminCommands } from './admin-commands.js';
import { registerArtifactCommands } from './artifact-commands.js';
import { registerAuthCommands } from './auth-commands.js';
import { registerCerts } from './certs-command.js';
import { registerCopy } from './copy-command.js';
import { registerInspectCommands } from './inspect-commands.js';
import { registerRegistryCommands } from './registry-commands.js';
import { COMMAND_NAMES, type CommandGroupName, requestedGroup } from './command-names.js';
import { registerServe } from './serve.js';

export { requestedCommand } from './command-names.js';

/** Commands registered together, by one function, and the top-level names (aliases too) they add. */
export interface CommandGroup {
  readonly names: readonly string[];
  register(program: Command): void | Promise<void>;
}

/**
 * Each group's register function. The sign and sync groups' modules (Kubernetes client, reconciler,
 * webhook, YAML) are imported only when one of their commands is run or every group is needed.
 */
const REGISTER: Record<CommandGroupName, CommandGroup['register']> = {
  serve: registerServe,
  auth: registerAuthCommands,
  registry: registerRegistryCommands,
  copy: registerCopy,
  artifact: registerArtifactCommands,
  inspect: registerInspectCommands,
  admin: registerAdminCommands,
  certs: registerCerts,
  sign: async (program) => (await import('./sign-commands.js')).registerSignCommands(program),
  sync: async (program) => (await import('./sync-commands.js')).registerSyncCommands(program),
};

/**
 * Every command group, in the order `airlock --help` lists them (COMMAND_NAMES's). program.test.ts checks
 * each group's names against what it registers.
 */
export const COMMAND_GROUPS: readonly CommandGroup[] = (Object.keys(COMMAND_NAMES) as CommandGroupName[]).map(
  (group) => ({ names: COMMAND_NAMES[group], register: REGISTER[group] }),
);

/**
 * Builds the command tree. A known command gets its own group only: the others' options and help texts
 * are not built (a few milliseconds of every run). Anything else (no command, `help`, a misspelt one)
 * gets every group, for the full help and suggestions.
 */
export async function buildProgram(argv: readonly string[] = process.argv): Promise<Command> {
  const program = new Command();
  program
    .name('airlock')
    .description('OCI registry, artifact client, GitOps reconciler and signing for your own data centre')
    .version('0.1.0')
    .exitOverride()
    .showSuggestionAfterError();
  const requested = requestedGroup(argv);
  for (const register of requested ? [REGISTER[requested]] : Object.values(REGISTER)) await register(program);
  return program;
}
