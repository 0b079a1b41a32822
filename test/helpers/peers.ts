import { accessSync, constants } from 'node:fs';
import { homedir } from 'node:os';
import { delimiter, join } from 'node:path';
import type { TestContext } from 'node:test';

/** Folder the project's scripts/install-peers.sh builds Go peers into. */
export const PEERS_BIN = join(process.env.AIRLOCK_PEERS ?? join(homedir(), '.cache', 'airlock-peers'), 'bin');

/** Absolute path of a peer tool (the peers cache first, then PATH), or undefined. */
export function findPeer(name: string): string | undefined {
  const dirs = [PEERS_BIN, ...(process.env.PATH ?? '').split(delimiter), '/usr/sbin', '/usr/bin'];
  for (const dir of dirs) {
    if (!dir) continue;
    const candidate = join(dir, name);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // keep looking
    }
  }
  return undefined;
}

/**
 * The peer's path. When it is missing the test fails under CI (where .ci/run installs every peer)
 * and is skipped locally with a message saying how to install it.
 */
export function requirePeer(t: TestContext, name: string): string | undefined {
  const path = findPeer(name);
  if (path) return path;
  const message = `peer "${name}" is not installed; run scripts/install-peers.sh`;
  if (process.env.CI) throw new Error(message);
  t.skip(message);
  return undefined;
}
