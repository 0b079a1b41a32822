import type { Binding, Role } from '../../storage/index.js';

/** What a request may do to a repository. */
export type Action = 'pull' | 'push' | 'delete' | 'manage';

export const ROLES: readonly Role[] = ['reader', 'writer', 'admin'];

const ROLE_ACTIONS: Record<Role, readonly Action[]> = {
  reader: ['pull'],
  writer: ['pull', 'push'],
  admin: ['pull', 'push', 'delete', 'manage'],
};

/** Who is calling: `user:NAME`, `robot:NAME`, `serviceAccount:NS/NAME@CLUSTER`, or anonymous. */
export interface Principal {
  readonly kind: 'user' | 'robot' | 'serviceAccount' | 'anonymous';
  /** The member string bindings name, e.g. `user:alice`. */
  readonly member: string;
}

export const ANONYMOUS: Principal = { kind: 'anonymous', member: 'anonymous' };

/** Why a binding scope is not valid, or undefined: `*`, `project/` (prefix) or `project/repo` (exact). */
export function scopeProblem(scope: string): string | undefined {
  if (scope === '*') return undefined;
  const name = scope.endsWith('/') ? scope.slice(0, -1) : scope;
  if (!/^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:\/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*$/.test(name)) {
    return 'use "*", a repository path "project/repo", or a prefix ending in "/" such as "project/"';
  }
  return undefined;
}

/** Whether a binding scope covers a repository (`*` everything; `a/` every repository under a/; `a/b` only a/b). */
export function scopeCovers(scope: string, repository: string): boolean {
  if (scope === '*') return true;
  if (scope.endsWith('/')) return repository.startsWith(scope);
  return repository === scope;
}

/** Actions the bindings grant on a repository (the union of every matching binding's role). */
export function grantedActions(
  bindings: readonly Binding[],
  repository: string,
  options: { publicRead?: boolean } = {},
): Set<Action> {
  const actions = new Set<Action>(options.publicRead ? ['pull'] : []);
  for (const binding of bindings) {
    if (scopeCovers(binding.scope, repository))
      for (const action of ROLE_ACTIONS[binding.role]) actions.add(action);
  }
  return actions;
}

/** Registry-wide actions (managing users, robots, clusters): only bindings on `*` count. */
export function registryActions(bindings: readonly Binding[]): Set<Action> {
  const actions = new Set<Action>();
  for (const binding of bindings)
    if (binding.scope === '*') for (const action of ROLE_ACTIONS[binding.role]) actions.add(action);
  return actions;
}
