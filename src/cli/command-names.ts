/**
 * The top-level command names (aliases too), by the group that registers them (src/cli/program.ts pairs
 * each group with its register function). Kept apart from the commands themselves so that the launcher
 * (src/cli/launcher.ts) can tell which group a command line runs without loading any of them.
 */
export const COMMAND_NAMES = {
  serve: ['serve'],
  auth: ['login', 'logout', 'auth'],
  registry: ['tags', 'catalog', 'manifest', 'digest', 'config', 'blob', 'referrers', 'tag', 'delete'],
  copy: ['copy', 'cp'],
  artifact: ['push', 'pull', 'append'],
  inspect: ['tree', 'extract'],
  admin: ['repo', 'iam', 'user', 'robot', 'cluster', 'gc', 'audit'],
  certs: ['certs'],
  sign: ['generate-key-pair', 'sign', 'verify', 'webhook'],
  sync: ['sync', 'status', 'vet'],
} as const satisfies Record<string, readonly string[]>;

export type CommandGroupName = keyof typeof COMMAND_NAMES;

/** The first word of `argv` that is not an option: the command asked for. */
export function requestedCommand(argv: readonly string[]): string | undefined {
  return argv.slice(2).find((word) => !word.startsWith('-'));
}

/** The group whose command `argv` asks for; undefined for no command, `help` or an unknown word. */
export function requestedGroup(argv: readonly string[]): CommandGroupName | undefined {
  const word = requestedCommand(argv);
  if (word === undefined) return undefined;
  for (const [group, names] of Object.entries(COMMAND_NAMES) as [CommandGroupName, readonly string[]][])
    if (names.includes(word)) return group;
  return undefined;
}
