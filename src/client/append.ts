import { createReadStream, createWriteStream } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGzip, createGunzip } from 'node:zlib';
import { extract } from 'tar-stream';
import {
  decompressed,
  detectCompression,
  Digester,
  digestOf,
  isIndexMediaType,
  makeTempDir,
  MediaType,
  parseManifest,
  removeTempPath,
  type Descriptor,
  type Digest,
  type Platform,
} from '../oci/index.js';
import { ClientError } from './errors.js';
import { choosePlatform } from './platforms.js';
import type { ImageSource, ImageTarget } from './image-store.js';
import type { ManifestResult } from './registry-client.js';

/** go-containerregistry's zero time, which crane stamps on configs and history it creates. */
const ZERO_TIME = '0001-01-01T00:00:00Z';
/** Field order of a config as crane writes it (Go struct order), so identical inputs give identical bytes. */
const CONFIG_ORDER = [
  'architecture',
  'author',
  'container',
  'created',
  'docker_version',
  'history',
  'os',
  'rootfs',
  'config',
  'os.version',
  'variant',
  'os.features',
];
const DESCRIPTOR_ORDER = [
  'mediaType',
  'size',
  'digest',
  'data',
  'urls',
  'annotations',
  'platform',
  'artifactType',
];
const MANIFEST_ORDER = ['schemaVersion', 'mediaType', 'config', 'layers', 'annotations', 'subject'];
const CONFIG_READ_LIMIT = 64 * 1024 * 1024;

function ordered(value: Record<string, unknown>, order: readonly string[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const key of order) if (value[key] !== undefined) out[key] = value[key];
  for (const [key, item] of Object.entries(value)) if (!(key in out) && item !== undefined) out[key] = item;
  return out;
}

function descriptorJson(d: Descriptor): Record<string, unknown> {
  return ordered(d as unknown as Record<string, unknown>, DESCRIPTOR_ORDER);
}

export interface AppendOptions {
  /** The image to add the layer to. Default: an empty image. */
  readonly base?: ImageSource;
  /** For an empty base: OCI media types instead of Docker's (crane --oci-empty-base). Default: false. */
  readonly ociEmptyBase?: boolean;
  /** Platform to pick when the base is an index. Default: linux/amd64. */
  readonly platform?: Platform;
  readonly signal?: AbortSignal;
}

interface PreparedLayer {
  readonly file: string;
  readonly digest: Digest;
  readonly size: number;
  readonly diffId: Digest;
}

async function hashStream(source: Readable): Promise<{ digest: Digest; size: number }> {
  const digester = new Digester();
  for await (const chunk of source) digester.update(chunk as Buffer);
  return { digest: digester.digest(), size: digester.size };
}

/** Reads the layer once as a tar, so a broken or truncated file is refused before anything is pushed. */
async function checkTar(file: string): Promise<void> {
  try {
    const tar = extract();
    const done = new Promise<void>((resolveDone, reject) => {
      tar.on('entry', (_header, stream, next) => {
        // A truncated entry's error also reaches the tar stream's 'error', which is what rejects.
        stream.on('error', () => undefined);
        stream.on('end', next);
        stream.resume();
      });
      tar.on('finish', resolveDone);
      tar.on('error', reject);
      tar.on('close', () => reject(new Error('Tar stream ended early')));
    });
    const plain = await decompressed(createReadStream(file));
    plain.on('error', (error) => tar.destroy(error));
    plain.pipe(tar);
    await done;
  } catch (error) {
    throw new ClientError(
      'INVALID_INPUT',
      `Layer "${file}" is not a readable tar: ${(error as Error).message}`,
      {
        cause: error,
      },
    );
  }
}

/** A gzip layer from a tar (gzipped once into `work` when it is plain); `diffId` is the tar's digest. */
async function prepareLayer(file: string, work: string): Promise<PreparedLayer> {
  let head: Buffer = Buffer.alloc(0);
  try {
    for await (const chunk of createReadStream(file, { start: 0, end: 3 })) head = chunk as Buffer;
  } catch (error) {
    throw new ClientError('INVALID_INPUT', `Cannot read layer "${file}": ${(error as Error).message}`, {
      cause: error,
    });
  }
  const kind = detectCompression(head);
  if (kind === 'zstd')
    throw new ClientError('INVALID_INPUT', `Layer "${file}" is zstd-compressed; give a plain or gzip tar`);
  await checkTar(file);
  if (kind === 'gzip') {
    const { digest, size } = await hashStream(createReadStream(file));
    const diffId = (await hashStream(createReadStream(file).pipe(createGunzip()))).digest;
    return { file, digest, size, diffId };
  }
  const gz = join(work, 'layer.tar.gz');
  const diffDigester = new Digester();
  await pipeline(
    createReadStream(file),
    async function* (src: AsyncIterable<Buffer>) {
      for await (const chunk of src) {
        diffDigester.update(chunk);
        yield chunk;
      }
    },
    createGzip(),
    createWriteStream(gz),
  );
  const { digest, size } = await hashStream(createReadStream(gz));
  return { file: gz, digest, size, diffId: diffDigester.digest() };
}

async function readAll(stream: Readable, limit: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of stream) {
    size += (chunk as Buffer).length;
    if (size > limit) throw new ClientError('TOO_LARGE', `Config is larger than ${limit} bytes`);
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}

/**
 * Adds a tar as a new top layer to a base image (or an empty one) and writes the result to `target`,
 * with the manifest and config crane append would write: media types follow the base, the layer is
 * gzip, the config gains a `diff_ids` entry and a history entry.
 */
export async function appendLayer(
  target: ImageTarget,
  layerFile: string,
  options: AppendOptions = {},
): Promise<ManifestResult> {
  const work = await makeTempDir(join(tmpdir(), 'airlock-append-'));
  const signal = options.signal;
  try {
    const layer = await prepareLayer(layerFile, work);
    let manifestBody: Record<string, unknown>;
    let config: Record<string, unknown>;
    let baseLayers: Descriptor[] = [];
    let docker: boolean;
    if (options.base) {
      const base = options.base;
      let root = await base.root(signal);
      let parsed = parseManifest(root.bytes, root.mediaType);
      if (isIndexMediaType(parsed.mediaType)) {
        const want = options.platform ?? { os: 'linux', architecture: 'amd64' };
        const child = choosePlatform(parsed.manifests, want, { what: `Base ${base.name}` });
        root = await base.manifest(child.digest, signal);
        parsed = parseManifest(root.bytes, root.mediaType);
      }
      if (!parsed.config) throw new ClientError('INVALID_INPUT', `Base ${base.name} is not an image`);
      const baseConfig = parsed.config;
      docker = parsed.mediaType === MediaType.DockerManifest;
      manifestBody = JSON.parse(root.bytes.toString('utf8')) as Record<string, unknown>;
      config = JSON.parse(
        (await readAll(await base.blob(baseConfig, signal), CONFIG_READ_LIMIT)).toString('utf8'),
      ) as Record<string, unknown>;
      baseLayers = [...parsed.layers];
      for (const d of baseLayers) {
        if (d.urls?.length) continue;
        await target.putBlob(d, () => base.blob(d, signal), { source: base, ...(signal ? { signal } : {}) });
      }
    } else {
      docker = !(options.ociEmptyBase ?? false);
      manifestBody = {
        schemaVersion: 2,
        mediaType: docker ? MediaType.DockerManifest : MediaType.OciManifest,
      };
      config = {
        architecture: '',
        created: ZERO_TIME,
        os: '',
        rootfs: { type: 'layers', diff_ids: [] },
        config: {},
      };
    }
    const rootfs = (config.rootfs ?? { type: 'layers', diff_ids: [] }) as {
      type?: string;
      diff_ids?: string[];
    };
    config.rootfs = { type: rootfs.type ?? 'layers', diff_ids: [...(rootfs.diff_ids ?? []), layer.diffId] };
    config.history = [...((config.history as unknown[] | undefined) ?? []), { created: ZERO_TIME }];
    const configBytes = Buffer.from(JSON.stringify(ordered(config, CONFIG_ORDER)));
    const configDescriptor: Descriptor = {
      mediaType: docker ? MediaType.DockerConfig : MediaType.OciConfig,
      size: configBytes.length,
      digest: digestOf(configBytes),
    };
    const layerDescriptor: Descriptor = {
      mediaType: docker ? MediaType.DockerLayerGzip : MediaType.OciLayerGzip,
      size: layer.size,
      digest: layer.digest,
    };
    await target.putBlob(
      configDescriptor,
      () => Promise.resolve(Readable.from([configBytes])),
      signal ? { signal } : {},
    );
    await target.putBlob(
      layerDescriptor,
      () => Promise.resolve(createReadStream(layer.file)),
      signal ? { signal } : {},
    );
    const existingConfig = manifestBody.config as Record<string, unknown> | undefined;
    const body = ordered(
      {
        ...manifestBody,
        config: descriptorJson({ ...(existingConfig as unknown as Descriptor), ...configDescriptor }),
        layers: [...baseLayers, layerDescriptor].map(descriptorJson),
      },
      MANIFEST_ORDER,
    );
    const bytes = Buffer.from(JSON.stringify(body));
    const manifest: ManifestResult = { bytes, digest: digestOf(bytes), mediaType: String(body.mediaType) };
    await target.putManifest(manifest, { root: true, tag: target.tag, ...(signal ? { signal } : {}) });
    return manifest;
  } finally {
    await removeTempPath(work);
  }
}
