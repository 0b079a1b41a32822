import {
  isIndexMediaType,
  parseManifest,
  type Descriptor,
  type Digest,
  type ParsedManifest,
  type Platform,
} from '../oci/index.js';
import type { Readable } from 'node:stream';
import { ClientError } from './errors.js';
import { choosePlatform } from './platforms.js';
import type { ImageSource, ImageTarget, PutBlobResult } from './image-store.js';
import { isRetryableFailure, type ManifestResult } from './registry-client.js';
import { defaultSleep } from './retry.js';

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

/** Times a blob is read again after its source broke off (a reset, a cut-off body). */
const SOURCE_RETRIES = 4;

/**
 * Stores one blob in the target. Every target checks the digest as it stores (registries, layouts,
 * archives), so the source does not hash the bytes a second time; a mismatch the target finds is then
 * reported as the source's. A source that breaks off is read again from the start.
 */
async function copyBlob(
  ends: { source: ImageSource; target: ImageTarget },
  descriptor: Descriptor,
  signal: AbortSignal | undefined,
): Promise<PutBlobResult> {
  const { source, target } = ends;
  for (let attempt = 0; ; attempt++) {
    let sourceError: unknown;
    const open = async (): Promise<Readable> => {
      try {
        const stream = await source.blob(descriptor, signal, false);
        stream.once('error', (error) => (sourceError ??= error));
        return stream;
      } catch (error) {
        sourceError ??= error;
        throw error;
      }
    };
    try {
      return await target.putBlob(descriptor, open, { source, ...(signal ? { signal } : {}) });
    } catch (error) {
      if (signal?.aborted) throw error;
      if (sourceError === undefined) {
        if (!(error instanceof ClientError)) throw error;
        if (error.code !== 'DIGEST_MISMATCH' && error.registryCode !== 'DIGEST_INVALID') throw error;
        throw new ClientError(
          'DIGEST_MISMATCH',
          `Blob ${descriptor.digest} from ${source.name} does not match its digest (${error.message})`,
          { cause: error },
        );
      }
      if (attempt < SOURCE_RETRIES && isRetryableFailure(sourceError)) {
        await defaultSleep(200 * 2 ** attempt, signal);
        continue;
      }
      const reason = sourceError instanceof Error ? sourceError.message : 'the read failed';
      if (sourceError instanceof ClientError && reason.includes(descriptor.digest)) throw sourceError;
      throw new ClientError(
        sourceError instanceof ClientError ? sourceError.code : 'NETWORK',
        `Cannot read blob ${descriptor.digest} from ${source.name}: ${reason}`,
        { cause: sourceError },
      );
    }
  }
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
      // Largest first: with `concurrency` transfers at a time the last one to start is then a small one
      // (the config, usually), not a layer that would run on alone after the others ended.
      const unique = [...new Map(blobs.map((d) => [d.digest, d])).values()].sort((a, b) => b.size - a.size);
      await bounded(unique, concurrency, async (descriptor) => {
        const result = await copyBlob({ source, target }, descriptor, signal);
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
