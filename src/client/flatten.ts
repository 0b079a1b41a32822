import { lstat, mkdir, readdir, rename } from 'node:fs/promises';
import { dirname, join, resolve, relative } from 'node:path';
import {
  extractLayers,
  isIndexMediaType,
  makeTempDir,
  parseManifest,
  removeTempPath,
  safeEntryPath,
  type ExtractLimits,
  type ExtractResult,
  type Platform,
} from '../oci/index.js';
import { ClientError } from './errors.js';
import { choosePlatform } from './platforms.js';
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
  const match = choosePlatform(parsed.manifests, want, { what: source.name, orOnlyEntry: !platform });
  return source.manifest(match.digest, signal);
}

/** Regular files under `dir` and their bytes (symlinks are not followed). */
async function countFiles(dir: string): Promise<ExtractResult> {
  let files = 0;
  let bytes = 0;
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) {
      const inner = await countFiles(path);
      files += inner.files;
      bytes += inner.bytes;
    } else if (entry.isFile()) {
      files++;
      bytes += (await lstat(path)).size;
    }
  }
  return { files, bytes };
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
  // `/etc` and `etc` are the same folder of the image.
  const dirText = options.dir?.replace(/^\/+/, '') ?? '';
  let sub: string;
  try {
    sub = safeEntryPath(dirText);
  } catch {
    throw new ClientError('INVALID_INPUT', `--dir "${options.dir}" leaves the image`);
  }
  if (sub === '') return { ...(await extractLayers(layers, target, limits)), digest: manifest.digest };
  await mkdir(dirname(target), { recursive: true });
  const work = await makeTempDir(join(dirname(target), '.airlock-extract-'));
  try {
    await extractLayers(layers, join(work, 'root'), limits);
    const chosen = join(work, 'root', sub);
    const info = await lstat(chosen).catch(() => undefined);
    if (!info?.isDirectory()) throw new ClientError('NOT_FOUND', `The image has no folder "${options.dir}"`);
    if (relative(join(work, 'root'), chosen).startsWith('..'))
      throw new ClientError('INVALID_INPUT', `--dir "${options.dir}" leaves the image`);
    // What ends up in `out` is the folder, so the counts are the folder's.
    const counted = await countFiles(chosen);
    await rename(chosen, target);
    return { ...counted, digest: manifest.digest };
  } finally {
    await removeTempPath(work);
  }
}
