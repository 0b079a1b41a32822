import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, mkdtemp, readdir, rename, rm, stat } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { pack } from 'tar-stream';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
import {
  ArchiveError,
  Digester,
  digestOf,
  extractLayers,
  MediaType,
  parseManifest,
  safeEntryPath,
  type Descriptor,
  type Digest,
} from '../oci/index.js';
import { ClientError } from './errors.js';
import type { ManifestResult, RegistryClient } from './registry-client.js';

export const TITLE = 'org.opencontainers.image.title';
export const CREATED = 'org.opencontainers.image.created';
const UNPACK = 'io.deis.oras.content.unpack';
const CONTENT_DIGEST = 'io.deis.oras.content.digest';
export const DEFAULT_ARTIFACT_TYPE = 'application/vnd.unknown.artifact.v1';
const EMPTY_CONFIG = Buffer.from('{}');

export interface PushFile {
  /** Path as given; its cleaned relative form becomes the layer title. */
  readonly path: string;
  /** Layer media type. Default: OCI tar (files) or OCI tar+gzip (folders). */
  readonly mediaType?: string;
}

export interface PushArtifactOptions {
  /** Manifest artifactType. Default: application/vnd.unknown.artifact.v1 (as oras). */
  readonly artifactType?: string;
  readonly annotations?: Readonly<Record<string, string>>;
  /** Stamp org.opencontainers.image.created (unless given in annotations). Default: true. */
  readonly created?: boolean;
  /** Time for the created stamp. Default: now. */
  readonly now?: Date;
  readonly signal?: AbortSignal;
}

interface PreparedLayer {
  readonly descriptor: Descriptor;
  readonly file: string;
}

async function digestFile(path: string): Promise<{ digest: Digest; size: number }> {
  const digester = new Digester();
  for await (const chunk of createReadStream(path, { highWaterMark: 1024 * 1024 }))
    digester.update(chunk as Buffer);
  return { digest: digester.digest(), size: digester.size };
}

/** Cleans a path given on the command line into a title; refuses absolute paths and `..` as oras does. */
export function titleFor(path: string): string {
  if (path.startsWith('/'))
    throw new ClientError(
      'INVALID_INPUT',
      `"${path}" is an absolute path; give a path relative to the current folder`,
    );
  try {
    const title = safeEntryPath(path.split(sep).join('/'));
    if (!title) throw new ClientError('INVALID_INPUT', `"${path}" names no file`);
    return title;
  } catch (error) {
    if (error instanceof ArchiveError)
      throw new ClientError('INVALID_INPUT', `"${path}" leaves the current folder; give a path inside it`);
    throw error;
  }
}

/** Packs a folder as tar+gzip (entries prefixed with the folder's title), returning the temp file. */
async function packDirectory(
  dir: string,
  title: string,
  work: string,
): Promise<{ file: string; tarDigest: Digest }> {
  const tar = pack();
  const file = join(work, `${title.replace(/\//g, '_')}-${Date.now()}.tar.gz`);
  const tarDigester = new Digester();
  const written = pipeline(
    tar as unknown as AsyncIterable<Buffer>,
    async function* (src: AsyncIterable<Buffer>) {
      for await (const chunk of src) {
        tarDigester.update(chunk);
        yield chunk;
      }
    },
    createGzip(),
    createWriteStream(file),
  );
  const add = (header: Parameters<typeof tar.entry>[0]): Promise<void> =>
    new Promise((resolveEntry, reject) => {
      tar.entry(header, (e) => (e ? reject(e) : resolveEntry()));
    });
  const walk = async (abs: string, name: string): Promise<void> => {
    await add({ name: `${name}/`, type: 'directory', mode: 0o755 });
    for (const entry of (await readdir(abs, { withFileTypes: true })).sort((a, b) =>
      a.name < b.name ? -1 : 1,
    )) {
      const child = join(abs, entry.name);
      if (entry.isDirectory()) await walk(child, `${name}/${entry.name}`);
      else if (entry.isFile()) {
        const info = await stat(child);
        await new Promise<void>((resolveEntry, reject) => {
          const sink = tar.entry(
            { name: `${name}/${entry.name}`, size: info.size, mode: info.mode & 0o777, mtime: info.mtime },
            (e) => (e ? reject(e) : resolveEntry()),
          );
          pipeline(createReadStream(child), sink as unknown as NodeJS.WritableStream).catch(reject);
        });
      }
    }
  };
  await walk(dir, title);
  tar.finalize();
  await written;
  return { file, tarDigest: tarDigester.digest() };
}

async function prepare(files: readonly PushFile[], work: string): Promise<PreparedLayer[]> {
  const layers: PreparedLayer[] = [];
  for (const entry of files) {
    const title = titleFor(entry.path);
    let info;
    try {
      info = await stat(entry.path);
    } catch (error) {
      throw new ClientError('INVALID_INPUT', `Cannot read "${entry.path}": ${(error as Error).message}`, {
        cause: error,
      });
    }
    if (info.isDirectory()) {
      const { file, tarDigest } = await packDirectory(entry.path, title, work);
      const { digest, size } = await digestFile(file);
      layers.push({
        file,
        descriptor: {
          mediaType: entry.mediaType ?? MediaType.OciLayerGzip,
          digest,
          size,
          annotations: { [CONTENT_DIGEST]: tarDigest, [UNPACK]: 'true', [TITLE]: title },
        },
      });
    } else if (info.isFile()) {
      const { digest, size } = await digestFile(entry.path);
      layers.push({
        file: entry.path,
        descriptor: {
          mediaType: entry.mediaType ?? MediaType.OciLayer,
          digest,
          size,
          annotations: { [TITLE]: title },
        },
      });
    } else {
      throw new ClientError('INVALID_INPUT', `"${entry.path}" is neither a file nor a folder`);
    }
  }
  return layers;
}

/** The manifest bytes oras writes for the same inputs (same field order, so digests agree). */
function artifactManifest(layers: readonly Descriptor[], options: PushArtifactOptions): ManifestResult {
  const annotations: Record<string, string> = { ...options.annotations };
  if ((options.created ?? true) && annotations[CREATED] === undefined) {
    annotations[CREATED] = (options.now ?? new Date()).toISOString().replace(/\.\d{3}Z$/, 'Z');
  }
  const sorted = Object.fromEntries(Object.entries(annotations).sort(([a], [b]) => (a < b ? -1 : 1)));
  const body = {
    schemaVersion: 2,
    mediaType: MediaType.OciManifest,
    artifactType: options.artifactType ?? DEFAULT_ARTIFACT_TYPE,
    config: {
      mediaType: MediaType.OciEmpty,
      digest: digestOf(EMPTY_CONFIG),
      size: 2,
      data: EMPTY_CONFIG.toString('base64'),
    },
    layers: layers.map((l) => ({
      mediaType: l.mediaType,
      digest: l.digest,
      size: l.size,
      ...(l.annotations
        ? {
            annotations: Object.fromEntries(
              Object.entries(l.annotations).sort(([a], [b]) => (a < b ? -1 : 1)),
            ),
          }
        : {}),
    })),
    ...(Object.keys(sorted).length > 0 ? { annotations: sorted } : {}),
  };
  const bytes = Buffer.from(JSON.stringify(body));
  return { bytes, digest: digestOf(bytes), mediaType: MediaType.OciManifest };
}

/** Pushes files and folders as an OCI artifact, the way `oras push` does. */
export async function pushArtifact(
  client: RegistryClient,
  target: { repository: string; reference: string; files: readonly PushFile[] },
  options: PushArtifactOptions = {},
): Promise<ManifestResult> {
  const { files } = target;
  if (files.length === 0)
    throw new ClientError('INVALID_INPUT', 'Nothing to push: name at least one file or folder');
  const work = await mkdtemp(join(tmpdir(), 'airlock-push-'));
  try {
    const layers = await prepare(files, work);
    const signal = options.signal ? { signal: options.signal } : {};
    await client.pushBlob(
      target.repository,
      { digest: digestOf(EMPTY_CONFIG), size: 2, open: () => Promise.resolve(Readable.from([EMPTY_CONFIG])) },
      signal,
    );
    for (const layer of layers) {
      await client.pushBlob(
        target.repository,
        {
          digest: layer.descriptor.digest,
          size: layer.descriptor.size,
          open: () => Promise.resolve(createReadStream(layer.file)),
        },
        signal,
      );
    }
    const manifest = artifactManifest(
      layers.map((l) => l.descriptor),
      options,
    );
    await client.putManifest(target.repository, target.reference, { ...manifest, signal: options.signal });
    return manifest;
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

export interface PulledFile {
  readonly title: string;
  readonly digest: Digest;
  readonly size: number;
  readonly unpacked: boolean;
}

/** Restores an artifact's titled layers into `outDir` as `oras pull` does; titles that escape it are refused. */
export async function pullArtifact(
  client: RegistryClient,
  source: { repository: string; reference: string; outDir: string },
  options: { signal?: AbortSignal } = {},
): Promise<PulledFile[]> {
  const { outDir } = source;
  const manifest = await client.getManifest(source.repository, source.reference, options.signal);
  let parsed;
  try {
    parsed = parseManifest(manifest.bytes, manifest.mediaType);
  } catch (error) {
    throw new ClientError(
      'INVALID_RESPONSE',
      `${source.repository}:${source.reference} is not a valid manifest: ${(error as Error).message}`,
    );
  }
  if (parsed.kind !== 'image')
    throw new ClientError(
      'INVALID_INPUT',
      `${source.repository}:${source.reference} is an index; pull one of its manifests by digest`,
    );
  const root = resolve(outDir);
  // Every title is checked before anything is downloaded, and layers land in a staging folder that is
  // moved into place only when all of them arrived intact, so a refused title or a corrupt blob leaves
  // nothing behind in outDir.
  const wanted: Array<{ layer: Descriptor; title: string; unpack: boolean }> = [];
  for (const layer of parsed.layers) {
    const rawTitle = layer.annotations?.[TITLE];
    if (!rawTitle) continue;
    let title: string;
    try {
      title = safeEntryPath(rawTitle);
    } catch {
      throw new ClientError(
        'INVALID_RESPONSE',
        `Layer title "${rawTitle}" would be written outside "${outDir}"; refusing it`,
      );
    }
    const target = resolve(root, title);
    if (!title || relative(root, target).startsWith('..'))
      throw new ClientError('INVALID_RESPONSE', `Layer title "${rawTitle}" is not a path inside "${outDir}"`);
    wanted.push({ layer, title, unpack: layer.annotations?.[UNPACK] === 'true' });
  }
  const created = await mkdir(root, { recursive: true });
  const staging = await mkdtemp(join(root, '.airlock-pull-'));
  const pulled: PulledFile[] = [];
  let ok = false;
  try {
    for (const [i, { layer, title, unpack }] of wanted.entries()) {
      const stream = await client.getBlob(source.repository, layer.digest, {
        size: layer.size,
        ...(options.signal ? { signal: options.signal } : {}),
      });
      const staged = join(staging, String(i));
      if (unpack) await extractLayers([() => Promise.resolve(stream)], staged, { whiteouts: false });
      else await pipeline(stream, createWriteStream(staged));
      pulled.push({ title, digest: layer.digest, size: layer.size, unpacked: unpack });
    }
    for (const [i, { title, unpack }] of wanted.entries()) {
      const target = resolve(root, title);
      await rm(target, { recursive: true, force: true });
      await mkdir(dirname(target), { recursive: true });
      await rename(unpack ? join(staging, String(i), title) : join(staging, String(i)), target);
    }
    ok = true;
  } finally {
    await rm(staging, { recursive: true, force: true });
    if (!ok && created !== undefined) await rm(created, { recursive: true, force: true });
  }
  return pulled;
}
