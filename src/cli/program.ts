import { Command } from 'commander';
import { registerAdminCommands } from './admin-commands.js';
import { registerArtifactCommands } from './artifact-commands.js';
import { registerAuthCommands } from './auth-commands.js';
import { registerCerts } from './certs-command.js';
import { registerCopy } from './copy-command.js';
import { registerInspectCommands } from './inspect-commands.js';
import { registerRegistryCommands } from './registry-commands.js';
import { COMMAND_NAMES, requestedGroup } from './command-names.js';
import { registerServe } from './serve.js';

export { requestedCommand } from './command-names.js';

/** Commands registered together, by one function, and the top-level names (aliases too) they add. */
export interface CommandGroup {
  readonly names: readonly string[];
  register(program: Command): void | Promise<void>;
}

/**
 * Every command, in the order `airlock --help` lists them. The sign and sync groups' modules (Kubernetes
 * client, reconciler, webhook, YAML) are imported only when one of their commands is run or every group
 * is needed. program.test.ts checks each group's names against what it registers.
 */
export const COMMAND_GROUPS: readonly CommandGroup[] = [
  { names: COMMAND_NAMES.serve, register: registerServe },
  { names: COMMAND_NAMES.auth, register: registerAuthCommands },
  { names: COMMAND_NAMES.registry, register: registerRegistryCommands },
  { names: COMMAND_NAMES.copy, register: registerCopy },
  { names: COMMAND_NAMES.artifact, register: registerArtifactCommands },
  { names: COMMAND_NAMES.inspect, register: registerInspectCommands },
  { names: COMMAND_NAMES.admin, register: registerAdminCommands },
  { names: COMMAND_NAMES.certs, register: registerCerts },
  {
    names: COMMAND_NAMES.sign,
    register: async (program) => (await import('./sign-commands.js')).registerSignCommands(program),
  },
  {
    names: COMMAND_NAMES.sync,
    register: async (program) => (await import('./sync-commands.js')).registerSyncCommands(program),
  },
];

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
  const own = requested && COMMAND_GROUPS.find((group) => group.names === COMMAND_NAMES[requested]);
  for (const group of own ? [own] : COMMAND_GROUPS) await group.register(program);
  return program;
}
