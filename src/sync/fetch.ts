import { ClientError, RegistryStore, flattenImage, type RegistryClient } from '../client/index.js';
import {
  ArchiveError,
  parsePlatform,
  parseReference,
  type Digest,
  type Platform,
  type Reference,
} from '../oci/index.js';
import { KNV, SyncError } from './errors.js';

export interface SourceLimits {
  /** Total bytes of files extracted from the image. Default 1 GiB (configurable, unlike a fixed cap). */
  readonly maxBytes?: number;
  /** Files and folders extracted. Default 100,000. */
  readonly maxEntries?: number;
}

export interface FetchSourceOptions extends SourceLimits {
  /** The folder of the image to sync ("." or empty: all). */
  readonly dir?: string | undefined;
  readonly platform?: Platform | undefined;
  readonly signal?: AbortSignal | undefined;
}

/** Parses spec.oci.image, as a KNV1061 error when it is not a reference. */
export function parseSourceImage(image: string | undefined): Reference {
  if (!image)
    throw new SyncError(KNV.INVALID_SYNC, 'spec.oci.image must be set when spec.sourceType is "oci"');
  try {
    return parseReference(image);
  } catch (error) {
    throw new SyncError(
      KNV.INVALID_SYNC,
      `spec.oci.image "${image}" is not an image reference: ${(error as Error).message}`,
    );
  }
}

/** Parses spec.oci.platform ("os/arch[/variant]"). */
export function parseSourcePlatform(text: string | undefined): Platform | undefined {
  if (!text) return undefined;
  const platform = parsePlatform(text);
  if (!platform)
    throw new SyncError(KNV.INVALID_SYNC, `spec.oci.platform "${text}" is not os/arch[/variant]`);
  return platform;
}

function sourceError(ref: Reference, error: unknown): SyncError {
  if (error instanceof SyncError) return error;
  const what = `${ref.registry}/${ref.repository}${ref.digest ? `@${ref.digest}` : `:${ref.tag ?? 'latest'}`}`;
  if (error instanceof ClientError) {
    const hint =
      error.code === 'UNAUTHORIZED' || error.code === 'DENIED'
        ? ' (check spec.oci.auth / spec.oci.secretRef and the registry role bindings)'
        : '';
    return new SyncError(KNV.SOURCE, `failed to pull image ${what}: ${error.message}${hint}`, {
      cause: error,
    });
  }
  if (error instanceof ArchiveError)
    return new SyncError(KNV.SOURCE, `image ${what} has an unsafe or invalid layer: ${error.message}`, {
      cause: error,
    });
  const message = error instanceof Error ? error.message : String(error);
  return new SyncError(KNV.SOURCE, `failed to pull image ${what}: ${message}`, { cause: error });
}

/**
 * The digest a reference names now: its own digest, else the tag resolved with HEAD (GET when the
 * registry answers HEAD without a digest).
 */
export async function resolveSourceDigest(
  client: RegistryClient,
  ref: Reference,
  signal?: AbortSignal,
): Promise<Digest> {
  if (ref.digest) return ref.digest;
  const tag = ref.tag ?? 'latest';
  try {
    const head = await client.headManifest(ref.repository, tag, signal);
    if (head) return head.digest;
    return (await client.getManifest(ref.repository, tag, signal)).digest;
  } catch (error) {
    throw sourceError(ref, error);
  }
}

/**
 * Pulls the image at `digest` and extracts it into `out` (which must not exist): an index resolved to
 * the platform, layers flattened in order with whiteouts, unsafe entries refused, size limits applied,
 * only `dir` kept. Failures are KNV2004 errors.
 */
export async function fetchSource(
  client: RegistryClient,
  where: { ref: Reference; digest: Digest; out: string },
  options: FetchSourceOptions = {},
): Promise<void> {
  const pinned: Reference = {
    registry: where.ref.registry,
    repository: where.ref.repository,
    digest: where.digest,
  };
  try {
    await flattenImage(new RegistryStore(client, pinned), where.out, {
      maxBytes: options.maxBytes ?? 1024 * 1024 * 1024,
      maxEntries: options.maxEntries ?? 100_000,
      ...(options.dir && options.dir !== '.' && options.dir !== '/' ? { dir: options.dir } : {}),
      ...(options.platform ? { platform: options.platform } : {}),
      ...(options.signal ? { signal: options.signal } : {}),
    });
  } catch (error) {
    if (error instanceof ClientError && error.code === 'NOT_FOUND' && /has no folder/.test(error.message))
      throw new SyncError(
        KNV.SOURCE,
        `image ${where.ref.repository}@${where.digest} has no folder "${options.dir ?? ''}" (spec.oci.dir)`,
      );
    throw sourceError(where.ref, error);
  }
}
