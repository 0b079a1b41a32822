import { rm } from 'node:fs/promises';
import { silentLogger } from '../../src/log/index.js';
import {
  DEFAULT_CONFIG,
  startRegistry,
  type RunningRegistry,
  type ServeConfig,
  type StartRegistryOptions,
} from '../../src/registry/index.js';
import { tempDir } from './processes.js';

export interface TestRegistry extends RunningRegistry {
  readonly dataDir: string;
  /** Closes the server and deletes its data folder. */
  dispose(): Promise<void>;
}

/** Starts a registry in this process on 127.0.0.1 port 0 with a fresh data folder. */
export async function startTestRegistry(
  overrides: Partial<ServeConfig> = {},
  options: Omit<StartRegistryOptions, 'log'> = {},
): Promise<TestRegistry> {
  const dataDir = overrides.data ?? (await tempDir('airlock-it-'));
  const running = await startRegistry(
    { ...DEFAULT_CONFIG, addr: '127.0.0.1:0', shutdownGraceSeconds: 2, ...overrides, data: dataDir },
    { ...options, log: silentLogger() },
  );
  return {
    ...running,
    dataDir,
    async dispose() {
      await running.close();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}
