import { parseManifest, type Digest, type ParsedManifest } from '../oci/index.js';
import type { BlobStore, ManifestRecord, MetadataStore } from '../storage/index.js';
import type { DigestGuard } from './digest-guard.js';

/** How long new content is kept by default whether or not anything refers to it yet: one hour. */
export const DEFAULT_GC_GRACE_MS = 60 * 60 * 1000;

export interface GarbageCollectionOptions {
  /**
   * Content younger than this is kept even when nothing refers to it: the layers of a push whose manifest
   * has not arrived yet, the children of an index being pushed. Default: one hour.
   */
  readonly graceMs?: number;
  /** Also delete manifests that no tag reaches (directly, as an index child or as a referrer). */
  readonly deleteUntagged?: boolean;
  /** Report what would be deleted and change nothing. */
  readonly dryRun?: boolean;
}

export interface GarbageCollectionReport {
  readonly dryRun: boolean;
  readonly repositories: number;
  /** Untagged manifests deleted (only with `deleteUntagged`). */
  readonly manifestsDeleted: readonly { readonly repository: string; readonly digest: Digest }[];
  /** Blob links removed from repositories whose manifests no longer refer to them. */
  readonly linksRemoved: number;
  /** Blob files deleted because no repository links them and no manifest is stored as them. */
  readonly blobsDeleted: number;
  readonly bytesFreed: number;
  /** Repositories left alone because a manifest in them could not be read (nothing is deleted there). */
  readonly problems: readonly string[];
}

/** The counts of a report, as the audit log records a real run. */
export function gcAuditDetail(report: GarbageCollectionReport): Record<string, number> {
  return {
    manifestsDeleted: report.manifestsDeleted.length,
    linksRemoved: report.linksRemoved,
    blobsDeleted: report.blobsDeleted,
    bytesFreed: report.bytesFreed,
  };
}

/** What the collector works on: the registry's stores, and what only the registry knows through callbacks. */
export interface CollectorContext {
  readonly meta: MetadataStore;
  readonly blobs: BlobStore;
  readonly guard: DigestGuard;
  readonly now: () => number;
  /** A manifest's bytes. */
  readManifest(digest: Digest): Promise<Uint8Array>;
  /**
   * How many manifests this process has stored in `repository` so far (bumped once the row is written,
   * while the write still pins its digests). A change since the collector listed the repository means a
   * manifest it did not see may name what it is about to remove.
   */
  manifestWrites(repository: string): number;
  /** `meta.deleteManifestIfUnchanged`, keeping the registry's caches right. */
  deleteUntaggedManifest(repository: string, digest: Digest, since: number): Promise<boolean>;
}

const PAGE = 1000;

async function allRepositories(meta: MetadataStore): Promise<string[]> {
  const names: string[] = [];
  for (;;) {
    const last = names.at(-1);
    const page = await meta.listRepositories({ n: PAGE, ...(last === undefined ? {} : { last }) });
    names.push(...page);
    if (page.length < PAGE) return names;
  }
}

async function taggedDigests(meta: MetadataStore, repository: string): Promise<Set<Digest>> {
  const digests = new Set<Digest>();
  let last: string | undefined;
  for (;;) {
    const page = await meta.listTags(repository, { n: PAGE, ...(last === undefined ? {} : { last }) });
    for (const tag of page) digests.add(tag.digest);
    last = page.at(-1)?.name;
    if (page.length < PAGE) return digests;
  }
}

/**
 * Manifests a tag reaches, with the roots given: tagged ones and those younger than the grace period;
 * then, until nothing changes, the children of reached indexes and the referrers of reached manifests.
 */
function reachable(
  manifests: readonly ManifestRecord[],
  parsed: ReadonlyMap<Digest, ParsedManifest>,
  roots: ReadonlySet<Digest>,
): Set<Digest> {
  const reached = new Set(roots);
  let grew = true;
  while (grew) {
    grew = false;
    for (const record of manifests) {
      const add = (digest: Digest): void => {
        if (reached.has(digest)) return;
        reached.add(digest);
        grew = true;
      };
      if (reached.has(record.digest)) {
        for (const child of parsed.get(record.digest)?.manifests ?? []) add(child.digest);
      } else if (record.subject !== undefined && reached.has(record.subject)) {
        add(record.digest);
      }
    }
  }
  return reached;
}

/**
 * One garbage collection, online: writes go on meanwhile. Per repository, untagged manifests (when
 * asked), then blob links no manifest of the repository refers to; then blob files nothing links or
 * stores as a manifest. Content younger than the grace period is kept. Each removal happens under a
 * claim on its digest, which a write relying on that digest blocks (see DigestGuard); under the claim,
 * such a write has either not begun or is done and visible, so the collector checks again there: a
 * manifest or link is removed only if the repository got no manifest since the collector listed it
 * (its verdict may rest on a list that misses one), a file only if no row names it at that moment.
 * A manifest delete also checks, in its transaction, that no push or tag happened since the run began.
 */
export async function collectGarbage(
  context: CollectorContext,
  options: GarbageCollectionOptions = {},
): Promise<GarbageCollectionReport> {
  const { meta, blobs, guard } = context;
  const dryRun = options.dryRun ?? false;
  const since = context.now();
  const cutoff = since - (options.graceMs ?? DEFAULT_GC_GRACE_MS);
  const removedManifests = new Set<string>();
  const removedLinks = new Set<string>();
  const manifestsDeleted: { repository: string; digest: Digest }[] = [];
  const problems: string[] = [];
  let linksRemoved = 0;

  // Removes something under a claim on `digest` (in a dry run, only asks `remove` whether it would);
  // false when a write holds the digest or `remove` removed nothing.
  const underClaim = async (digest: Digest, remove: () => Promise<boolean>): Promise<boolean> => {
    if (dryRun) return !guard.pinned(digest) && (await remove());
    const end = guard.claim(digest);
    if (!end) return false;
    try {
      return await remove();
    } finally {
      end();
    }
  };

  const repositories = await allRepositories(meta);
  for (const repository of repositories) {
    // Read before the listing: a manifest stored after this point makes every removal below wait.
    const writes = context.manifestWrites(repository);
    const unchanged = (): boolean => context.manifestWrites(repository) === writes;
    const manifests = await meta.listManifests(repository);
    const parsed = new Map<Digest, ParsedManifest>();
    try {
      for (const record of manifests) {
        parsed.set(record.digest, parseManifest(await context.readManifest(record.digest), record.mediaType));
      }
    } catch (error) {
      problems.push(`${repository}: ${(error as Error).message}`);
      continue;
    }
    let live = manifests;
    if (options.deleteUntagged) {
      const roots = await taggedDigests(meta, repository);
      for (const record of manifests) if (record.createdAt >= cutoff) roots.add(record.digest);
      const reached = reachable(manifests, parsed, roots);
      for (const record of manifests) {
        if (reached.has(record.digest)) continue;
        const deleted = await underClaim(record.digest, async () =>
          dryRun ? true : unchanged() && context.deleteUntaggedManifest(repository, record.digest, since),
        );
        if (!deleted) continue;
        removedManifests.add(`${repository}@${record.digest}`);
        manifestsDeleted.push({ repository, digest: record.digest });
      }
      live = manifests.filter((record) => !removedManifests.has(`${repository}@${record.digest}`));
    }
    const referenced = new Set<Digest>();
    for (const record of live) {
      const manifest = parsed.get(record.digest);
      if (manifest?.config) referenced.add(manifest.config.digest);
      for (const layer of manifest?.layers ?? []) referenced.add(layer.digest);
    }
    for (const link of await meta.listBlobLinks(repository)) {
      if (referenced.has(link.digest) || link.createdAt >= cutoff) continue;
      // Only if still old: a HEAD from a pushing client renews the link (Registry.statBlob).
      const unlink = async (): Promise<boolean> =>
        dryRun || (unchanged() && (await meta.unlinkBlob(repository, link.digest, cutoff)));
      if (!(await underClaim(link.digest, unlink))) continue;
      removedLinks.add(`${repository}@${link.digest}`);
      linksRemoved++;
    }
  }

  let blobsDeleted = 0;
  let bytesFreed = 0;
  for (const blob of await blobs.listBlobs()) {
    if (blob.modifiedAt >= cutoff) continue;
    const deleted = await underClaim(blob.digest, async () => {
      const users = await meta.blobUsers(blob.digest);
      // A real run reads the truth under the claim: a row removed above may have been made again since
      // (a re-upload, a push). Only a dry run, which removed nothing, leaves out what it would remove.
      const used = dryRun
        ? users.links.some((repository) => !removedLinks.has(`${repository}@${blob.digest}`)) ||
          users.manifests.some((repository) => !removedManifests.has(`${repository}@${blob.digest}`))
        : users.links.length > 0 || users.manifests.length > 0;
      if (used) return false;
      return dryRun || (await blobs.delete(blob.digest));
    });
    if (!deleted) continue;
    blobsDeleted++;
    bytesFreed += blob.size;
  }
  return {
    dryRun,
    repositories: repositories.length,
    manifestsDeleted,
    linksRemoved,
    blobsDeleted,
    bytesFreed,
    problems,
  };
}
