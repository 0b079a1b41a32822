import {
  isIndexMediaType,
  parseManifest,
  type Digest,
  type ParsedManifest,
  type Platform,
} from '../oci/index.js';
import { ClientError } from './errors.js';
import { choosePlatform } from './platforms.js';
import type { ImageSource, ImageTarget, PutBlobResult } from './image-store.js';
import type { ManifestResult } from './registry-client.js';

export interface CopyProgress {
  readonly kind: 'blob' | 'manifest';
  readonly digest: Digest;
  readonly size: number;
  readonly result: PutBlobResult | 'written';
}

export interface CopyOptions {
  /** Copy only this platform of an index (it becomes the root). Default: every platform. */
  readonly platform?: Platform;
  /** Also copy referrers (signatures, SBOMs, attestations), recursively. Default: false. */
  readonly withReferrers?: boolean;
  /** Blobs in flight at once. Default: 4. */
  readonly concurrency?: number;
  readonly onProgress?: (event: CopyProgress) => void;
  readonly signal?: AbortSignal;
}

export interface CopyResult {
  readonly digest: Digest;
  readonly mediaType: string;
  /** Blobs handled, and how: uploaded (bytes moved), mounted from another repository, or already there. */
  readonly blobs: number;
  readonly uploaded: number;
  readonly mounted: number;
  readonly skipped: number;
  readonly bytes: number;
  readonly manifests: number;
}

function parse(manifest: ManifestResult, where: string): ParsedManifest {
  try {
    return parseManifest(manifest.bytes, manifest.mediaType);
  } catch (error) {
    throw new ClientError(
      'INVALID_RESPONSE',
      `Manifest ${manifest.digest} from ${where} is invalid: ${(error as Error).message}`,
      { cause: error },
    );
  }
}

/** Runs `tasks` with at most `limit` in flight; the first failure stops the rest. */
async function bounded<T>(
  items: readonly T[],
  limit: number,
  task: (item: T) => Promise<void>,
): Promise<void> {
  let next = 0;
  let failed: unknown;
  const worker = async (): Promise<void> => {
    while (failed === undefined && next < items.length) {
      const item = items[next++] as T;
      try {
        await task(item);
      } catch (error) {
        failed ??= error;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  if (failed !== undefined)
    throw failed instanceof Error ? failed : new Error('A blob transfer failed', { cause: failed });
}

/**
 * Copies an image, index or artifact from `source` to `target`: blobs first (in parallel, skipped or
 * mounted where the target allows), then child manifests, then the root under the target's tag.
 */
export async function copyImage(
  source: ImageSource,
  target: ImageTarget,
  options: CopyOptions = {},
): Promise<CopyResult> {
  const { signal } = options;
  const concurrency = options.concurrency ?? 4;
  let root = await source.root(signal);
  let parsedRoot = parse(root, source.name);
  const platform = options.platform ?? target.onePlatform;
  if (platform && isIndexMediaType(parsedRoot.mediaType)) {
    // The target's default platform gives way to an index's only entry; an asked-for one does not.
    const child = choosePlatform(parsedRoot.manifests, platform, {
      what: source.name,
      orOnlyEntry: options.platform === undefined,
    });
    root = await source.manifest(child.digest, signal);
    parsedRoot = parse(root, source.name);
  }
  const stats = { blobs: 0, uploaded: 0, mounted: 0, skipped: 0, bytes: 0, manifests: 0 };
  const done = new Set<string>();

  const copyManifest = async (
    manifest: ManifestResult,
    parsed: ParsedManifest,
    root = false,
  ): Promise<void> => {
    if (parsed.kind === 'index') {
      for (const child of parsed.manifests) {
        if (done.has(child.digest)) continue;
        const childManifest = await source.manifest(child.digest, signal);
        await copyManifest(childManifest, parse(childManifest, source.name));
      }
    } else {
      const blobs = [...(parsed.config ? [parsed.config] : []), ...parsed.layers].filter(
        (d) => !done.has(d.digest) && !d.urls?.length,
      );
      const unique = [...new Map(blobs.map((d) => [d.digest, d])).values()];
      await bounded(unique, concurrency, async (descriptor) => {
        // Every target checks the digest as it stores (registries, layouts, archives), so the
        // source does not hash the bytes a second time.
        const result = await target.putBlob(descriptor, () => source.blob(descriptor, signal, false), {
          source,
          ...(signal ? { signal } : {}),
        });
        done.add(descriptor.digest);
        stats.blobs++;
        if (result === 'uploaded') {
          stats.uploaded++;
          stats.bytes += descriptor.size;
        } else if (result === 'mounted') stats.mounted++;
        else stats.skipped++;
        options.onProgress?.({ kind: 'blob', digest: descriptor.digest, size: descriptor.size, result });
      });
    }
    await target.putManifest(manifest, {
      root,
      ...(root ? { tag: target.tag } : {}),
      ...(signal ? { signal } : {}),
    });
    done.add(manifest.digest);
    stats.manifests++;
    options.onProgress?.({
      kind: 'manifest',
      digest: manifest.digest,
      size: manifest.bytes.length,
      result: 'written',
    });
    if (options.withReferrers) {
      for (const referrer of await source.referrers(manifest.digest, signal)) {
        if (done.has(referrer.digest)) continue;
        const referrerManifest = await source.manifest(referrer.digest, signal);
        await copyManifest(referrerManifest, parse(referrerManifest, source.name));
      }
    }
  };

  await copyManifest(root, parsedRoot, true);
  return { digest: root.digest, mediaType: root.mediaType, ...stats };
}
