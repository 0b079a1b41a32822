import type { Logger } from '../log/index.js';
import type { AuditEntry, AuthStore } from '../storage/index.js';

/** Who did what to which target; `writeAudit` adds the time. */
export type AuditLine = Omit<AuditEntry, 'id' | 'at'>;

/** Appends an entry to the audit log and writes it to the log stream as `"msg":"audit"`. */
export async function writeAudit(
  store: Pick<AuthStore, 'appendAudit'>,
  log: Logger,
  entry: AuditLine,
): Promise<void> {
  const line = { at: Date.now(), ...entry };
  await store.appendAudit(line);
  log.info({ audit: line }, 'audit');
}
