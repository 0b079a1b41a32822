import { Command } from 'commander';
import { registerAdminCommands } from './admin-commands.js';
import { registerArtifactCommands } from './artifact-commands.js';
import { registerAuthCommands } from './auth-commands.js';
import { registerCerts } from './certs-command.js';
import { registerCopy } from './copy-command.js';
import { registerInspectCommands } from './inspect-commands.js';
import { registerRegistryCommands } from './registry-commands.js';
import { registerServe } from './serve.js';

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
  { names: ['serve'], register: registerServe },
  { names: ['login', 'logout', 'auth'], register: registerAuthCommands },
  {
    names: ['tags', 'catalog', 'manifest', 'digest', 'config', 'blob', 'referrers', 'tag', 'delete'],
    register: registerRegistryCommands,
  },
  { names: ['copy', 'cp'], register: registerCopy },
  { names: ['push', 'pull', 'append'], register: registerArtifactCommands },
  { names: ['tree', 'extract'], register: registerInspectCommands },
  {
    names: ['repo', 'iam', 'user', 'robot', 'cluster', 'gc', 'audit'],
    register: registerAdminCommands,
  },
  { names: ['certs'], register: registerCerts },
  {
    names: ['generate-key-pair', 'sign', 'verify', 'webhook'],
    register: async (program) => (await import('./sign-commands.js')).registerSignCommands(program),
  },
  {
    names: ['sync', 'status', 'vet'],
    register: async (program) => (await import('./sync-commands.js')).registerSyncCommands(program),
  },
];

/** The first word of `argv` that is not an option: the command asked for. */
export function requestedCommand(argv: readonly string[]): string | undefined {
  return argv.slice(2).find((word) => !word.startsWith('-'));
}

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
  const requested = requestedCommand(argv);
  const own = COMMAND_GROUPS.find((group) => requested !== undefined && group.names.includes(requested));
  for (const group of own ? [own] : COMMAND_GROUPS) await group.register(program);
  return program;
}
