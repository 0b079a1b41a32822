import { mkdtemp, rename, rm, lstat, mkdir } from 'node:fs/promises';
import { dirname, join, resolve, relative } from 'node:path';
import {
  extractLayers,
  isIndexMediaType,
  parseManifest,
  safeEntryPath,
  type ExtractLimits,
  type ExtractResult,
  type Platform,
} from '../oci/index.js';
import { ClientError } from './errors.js';
import type { ImageSource } from './image-store.js';
import type { ManifestResult } from './registry-client.js';

export interface FlattenOptions extends ExtractLimits {
  /** Keep only this folder of the image's file system. Default: everything. */
  readonly dir?: string;
  /** Platform of an index to extract. Default: linux/amd64, or the only entry. */
  readonly platform?: Platform;
  readonly signal?: AbortSignal;
}

export interface FlattenResult extends ExtractResult {
  readonly digest: string;
}

/** The image manifest for a platform when `root` is an index. */
export async function resolvePlatform(
  source: ImageSource,
  root: ManifestResult,
  options: { platform?: Platform | undefined; signal?: AbortSignal | undefined } = {},
): Promise<ManifestResult> {
  const { platform, signal } = options;
  const parsed = parseManifest(root.bytes, root.mediaType);
  if (!isIndexMediaType(parsed.mediaType)) return root;
  const want = platform ?? { os: 'linux', architecture: 'amd64' };
  const match =
    parsed.manifests.find(
      (d) =>
        d.platform?.os === want.os &&
        d.platform.architecture === want.architecture &&
        (want.variant === undefined || d.platform.variant === want.variant),
    ) ?? (platform === undefined && parsed.manifests.length === 1 ? parsed.manifests[0] : undefined);
  if (!match)
    throw new ClientError('NOT_FOUND', `${source.name} has no manifest for ${want.os}/${want.architecture}`);
  return source.manifest(match.digest, signal);
}

/**
 * Extracts an image's layers in order (whiteouts applied, unsafe entries refused) into `out`, which must
 * not exist. With `dir`, only that folder of the image ends up in `out`.
 */
export async function flattenImage(
  source: ImageSource,
  out: string,
  options: FlattenOptions = {},
): Promise<FlattenResult> {
  const { signal } = options;
  const manifest = await resolvePlatform(source, await source.root(signal), {
    platform: options.platform,
    signal,
  });
  const parsed = parseManifest(manifest.bytes, manifest.mediaType);
  const target = resolve(out);
  if (await lstat(target).catch(() => undefined))
    throw new ClientError('INVALID_INPUT', `"${out}" already exists; extract into a new folder`);
  const layers = parsed.layers.map((layer) => () => source.blob(layer, signal));
  const limits = {
    ...(options.maxBytes === undefined ? {} : { maxBytes: options.maxBytes }),
    ...(options.maxEntries === undefined ? {} : { maxEntries: options.maxEntries }),
    ...(signal ? { signal } : {}),
  };
  if (!options.dir || safeEntryPath(options.dir) === '') {
    return { ...(await extractLayers(layers, target, limits)), digest: manifest.digest };
  }
  const sub = safeEntryPath(options.dir);
  await mkdir(dirname(target), { recursive: true });
  const work = await mkdtemp(join(dirname(target), '.airlock-extract-'));
  try {
    const result = await extractLayers(layers, join(work, 'root'), limits);
    const chosen = join(work, 'root', sub);
    const info = await lstat(chosen).catch(() => undefined);
    if (!info?.isDirectory()) throw new ClientError('NOT_FOUND', `The image has no folder "${options.dir}"`);
    if (relative(join(work, 'root'), chosen).startsWith('..'))
      throw new ClientError('INVALID_INPUT', `--dir "${options.dir}" leaves the image`);
    await rename(chosen, target);
    return { ...result, digest: manifest.digest };
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}
