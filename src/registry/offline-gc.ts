import { access } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { explainFsError, lockDataFolder, openDataFolder } from '../storage/index.js';
import { ConfigError } from './config.js';
import { gcAuditDetail, type GarbageCollectionOptions, type GarbageCollectionReport } from './gc.js';
import { Registry } from './registry.js';

/**
 * One garbage collection straight on a data folder whose registry is stopped (`airlock gc --data DIR`),
 * as distribution's `garbage-collect` works: the folder is locked like `serve` locks it, so a running
 * registry makes this fail (and a registry started meanwhile is refused). A real run is audited.
 */
export async function collectGarbageInFolder(
  data: string,
  options: GarbageCollectionOptions = {},
): Promise<GarbageCollectionReport> {
  const dataDir = resolve(data);
  const database = join(dataDir, 'airlock.db');
  try {
    await access(database);
  } catch {
    throw new ConfigError(`"${data}" is not an Airlock data folder (it has no airlock.db)`);
  }
  const lock = await lockDataFolder(dataDir);
  try {
    const { blobs, metadata, auth } = await openDataFolder(dataDir);
    try {
      const report = await new Registry({ blobs, metadata }).collectGarbage(options);
      if (!report.dryRun) {
        await auth.appendAudit({
          at: Date.now(),
          actor: 'airlock gc --data',
          action: 'gc',
          target: '*',
          detail: gcAuditDetail(report),
        });
      }
      return report;
    } catch (error) {
      throw await explainFsError(error, { action: 'collect garbage', dir: dataDir });
    } finally {
      await metadata.close();
    }
  } finally {
    await lock.release();
  }
}
