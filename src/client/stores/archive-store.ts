import { createReadStream, createWriteStream } from 'node:fs';
import { readFile, readdir, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, basename } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
import { pack } from 'tar-stream';
import {
  ArchiveError,
  detectCompression,
  Digester,
  digestOf,
  extractLayers,
  formatReference,
  makeTempDir,
  MediaType,
  OciLayout,
  parseReference,
  removeTempPath,
  safeEntryPath,
  writeThroughTemp,
  type Descriptor,
  type Digest,
} from '../../oci/index.js';
import { verifyingStream, type ManifestResult } from '../registry-client.js';
import type { ImageSource } from '../image-store.js';
import { LayoutStore } from './layout-store.js';

/** Limits for unpacking archives given to the CLI (they hold whole images). */
const ARCHIVE_LIMITS = { maxBytes: 256 * 1024 ** 3, maxEntries: 1_000_000, whiteouts: false } as const;

async function unpack(file: string): Promise<string> {
  const work = await makeTempDir(join(tmpdir(), 'airlock-archive-'));
  try {
    await extractLayers([() => Promise.resolve(createReadStream(file))], join(work, 'root'), ARCHIVE_LIMITS);
  } catch (error) {
    await removeTempPath(work);
    if ((error as NodeJS.ErrnoException).code === 'ENOENT')
      throw new ArchiveError(`Cannot read archive "${file}": no such file`);
    throw new ArchiveError(`Cannot read archive "${file}": ${(error as Error).message}`);
  }
  return work;
}

/**
 * The layout at `work`/root; when it cannot be opened, `work` is removed before the error is thrown, and
 * the error names `label` (the archive the user gave) rather than the temp folder.
 */
async function openLayoutIn(
  work: string,
  label: string,
  options: { create?: boolean } = {},
): Promise<OciLayout> {
  const root = join(work, 'root');
  try {
    return await OciLayout.open(root, options);
  } catch (error) {
    await removeTempPath(work);
    if (error instanceof Error) error.message = error.message.replaceAll(`"${root}"`, label);
    throw error;
  }
}

/** `oci-archive:FILE[:TAG]` as a source: the tarball is unpacked to a temp folder and read as a layout. */
export async function openOciArchiveSource(file: string, tag: string | undefined): Promise<ImageSource> {
  const work = await unpack(file);
  const layout = await openLayoutIn(work, `Archive "${file}"`);
  const store = new LayoutStore(layout, tag, `oci-archive:${file}${tag ? `:${tag}` : ''}`);
  const close = store.close.bind(store);
  return Object.assign(store, {
    async close() {
      await close();
      await removeTempPath(work);
    },
  });
}

/** `oci-archive:FILE[:TAG]` as a target: a layout is built in a temp folder and packed to FILE on success. */
export async function openOciArchiveTarget(file: string, tag: string | undefined): Promise<LayoutStore> {
  await checkArchiveDestination(file);
  const work = await makeTempDir(join(tmpdir(), 'airlock-archive-'));
  const layout = await openLayoutIn(work, `Archive "${file}"`, { create: true });
  const store = new LayoutStore(layout, tag, `oci-archive:${file}${tag ? `:${tag}` : ''}`);
  return Object.assign(store, {
    async close(ok: boolean) {
      try {
        if (ok) await packFolder(layout.dir, file);
      } finally {
        await removeTempPath(work);
      }
    },
  });
}

/**
 * Checks, before anything is copied, that an archive can be written at `file`: its folder exists and
 * `file` is not a folder (skopeo checks as early).
 */
export async function checkArchiveDestination(file: string): Promise<void> {
  const folder = await stat(dirname(file)).catch(() => undefined);
  if (!folder?.isDirectory())
    throw new ArchiveError(`Cannot write archive "${file}": folder "${dirname(file)}" does not exist`);
  if ((await stat(file).catch(() => undefined))?.isDirectory())
    throw new ArchiveError(`Cannot write archive "${file}": it is a folder`);
}

/** Packs a folder into a tar file (written to FILE.partial, then renamed). */
export async function packFolder(dir: string, file: string): Promise<void> {
  const temp = join(dirname(file), `.${basename(file)}.partial`);
  await writeThroughTemp(temp, file, () => packInto(dir, temp));
}

/** Writes the tar of folder `dir` to `file`. */
async function packInto(dir: string, file: string): Promise<void> {
  const tar = pack();
  const out = pipeline(tar as unknown as Readable, createWriteStream(file));
  // Settled below; until then a failing write (a full disk) must not surface as an unhandled rejection.
  out.catch(() => undefined);
  const walk = async (rel: string): Promise<void> => {
    for (const entry of (await readdir(join(dir, rel), { withFileTypes: true })).sort((a, b) =>
      a.name.localeCompare(b.name),
    )) {
      const path = rel ? `${rel}/${entry.name}` : entry.name;
      if (entry.isDirectory()) {
        await new Promise<void>((resolve, reject) =>
          tar.entry({ name: `${path}/`, type: 'directory', mode: 0o755, mtime: new Date(0) }, (e) =>
            e ? reject(e) : resolve(),
          ),
        );
        await walk(path);
      } else if (entry.isFile()) {
        const { size } = await stat(join(dir, path));
        await new Promise<void>((resolve, reject) => {
          const sink = tar.entry({ name: path, size, mode: 0o644, mtime: new Date(0) }, (e) =>
            e ? reject(e) : resolve(),
          );
          pipeline(createReadStream(join(dir, path)), sink as unknown as NodeJS.WritableStream).catch(reject);
        });
      }
    }
  };
  const entries = (async () => {
    await walk('');
    tar.finalize();
  })();
  entries.catch(() => undefined);
  try {
    // Whichever fails first: the walk, or the write (whose failure can leave the walk waiting).
    await Promise.all([entries, out]);
  } catch (error) {
    tar.destroy();
    throw error;
  }
}

interface DockerManifestEntry {
  Config: string;
  RepoTags?: string[] | null;
  Layers: string[];
}

/**
 * `docker-archive:FILE[:NAME:TAG]` (what `docker save`, `podman save` and skopeo write) as a source.
 * Layers are stored uncompressed in such archives; they are gzipped once into the temp folder so the
 * registry gets the compressed layers `docker push` would send.
 */
export async function openDockerArchiveSource(file: string, name: string | undefined): Promise<ImageSource> {
  return dockerArchiveFrom(await unpack(file), file, name);
}

/** Reads any image tarball: an OCI layout inside (oci-archive, and docker 25+ saves) or docker's manifest.json. */
export async function openArchiveSource(file: string, label: string, name?: string): Promise<ImageSource> {
  const work = await unpack(file);
  const root = join(work, 'root');
  try {
    const hasLayout = await stat(join(root, 'oci-layout')).then(
      () => true,
      () => false,
    );
    const hasDocker = await stat(join(root, 'manifest.json')).then(
      () => true,
      () => false,
    );
    if (hasLayout && !(hasDocker && name?.includes(':'))) {
      const store = new LayoutStore(await OciLayout.open(root), name, label);
      const close = store.close.bind(store);
      return Object.assign(store, {
        async close() {
          await close();
          await removeTempPath(work);
        },
      });
    }
    if (!hasDocker)
      throw new ArchiveError(
        `${label} is neither an OCI archive (no oci-layout) nor a docker archive (no manifest.json)`,
      );
  } catch (error) {
    await removeTempPath(work);
    throw error;
  }
  return dockerArchiveFrom(work, label, name);
}

/**
 * A RepoTags entry or a requested name as docker reads it (`app:v1`, `library/app:v1` and
 * `docker.io/library/app:v1` are one name; no tag means latest), or the text itself if it is no reference.
 */
function canonicalName(text: string): string {
  try {
    const ref = parseReference(text);
    return formatReference({ registry: ref.registry, repository: ref.repository, tag: ref.tag ?? 'latest' });
  } catch {
    return text;
  }
}

async function dockerArchiveFrom(work: string, file: string, name: string | undefined): Promise<ImageSource> {
  const root = join(work, 'root');
  try {
    let entries: DockerManifestEntry[];
    try {
      entries = JSON.parse(await readFile(join(root, 'manifest.json'), 'utf8')) as DockerManifestEntry[];
    } catch (error) {
      throw new ArchiveError(
        `"${file}" is not a docker archive (no readable manifest.json): ${(error as Error).message}`,
      );
    }
    if (!Array.isArray(entries) || entries.length === 0)
      throw new ArchiveError(`"${file}" has an empty manifest.json`);
    const wanted = name === undefined ? undefined : canonicalName(name);
    const entry =
      wanted === undefined
        ? entries[0]
        : entries.find((e) => e.RepoTags?.some((t) => canonicalName(t) === wanted));
    if (!entry)
      throw new ArchiveError(
        `"${file}" has no image tagged "${name}" (it has ${entries.flatMap((e) => e.RepoTags ?? []).join(', ') || 'untagged images'})`,
      );
    if (wanted === undefined && entries.length > 1)
      throw new ArchiveError(
        `"${file}" holds ${entries.length} images; name one as docker-archive:${file}:NAME:TAG`,
      );

    const blobs = new Map<Digest, string>();
    const configPath = join(root, safeEntryPath(entry.Config));
    const configBytes = await readFile(configPath);
    const configDigest = digestOf(configBytes);
    blobs.set(configDigest, configPath);
    const layers: Descriptor[] = [];
    for (const [i, layerName] of entry.Layers.entries()) {
      const path = join(root, safeEntryPath(layerName));
      const head = await readHead(path);
      let blobPath = path;
      if (detectCompression(head) === 'none') {
        blobPath = join(work, `layer-${i}.tar.gz`);
        await pipeline(createReadStream(path), createGzip({ level: 6 }), createWriteStream(blobPath));
      }
      const { digest, size } = await digestFile(blobPath);
      blobs.set(digest, blobPath);
      layers.push({ mediaType: MediaType.DockerLayerGzip, digest, size });
    }
    const manifestBytes = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: MediaType.DockerManifest,
        config: { mediaType: MediaType.DockerConfig, digest: configDigest, size: configBytes.length },
        layers,
      }),
    );
    const manifest: ManifestResult = {
      bytes: manifestBytes,
      digest: digestOf(manifestBytes),
      mediaType: MediaType.DockerManifest,
    };
    return {
      name: `docker-archive:${file}${name ? `:${name}` : ''}`,
      rootNames: entry.RepoTags ?? [],
      root: () => Promise.resolve(manifest),
      manifest: (digest) =>
        digest === manifest.digest
          ? Promise.resolve(manifest)
          : Promise.reject(new ArchiveError(`docker-archive has no manifest ${digest}`)),
      blob: (descriptor) => {
        const path = blobs.get(descriptor.digest);
        if (!path) return Promise.reject(new ArchiveError(`docker-archive has no blob ${descriptor.digest}`));
        return Promise.resolve(
          createReadStream(path).pipe(verifyingStream(descriptor.digest, descriptor.size)),
        );
      },
      referrers: () => Promise.resolve([]),
      close: () => removeTempPath(work),
    };
  } catch (error) {
    await removeTempPath(work);
    throw error;
  }
}

async function readHead(path: string): Promise<Buffer> {
  for await (const chunk of createReadStream(path, { start: 0, end: 3 })) return chunk as Buffer;
  return Buffer.alloc(0);
}

async function digestFile(path: string): Promise<{ digest: Digest; size: number }> {
  const digester = new Digester();
  for await (const chunk of createReadStream(path, { highWaterMark: 1024 * 1024 }))
    digester.update(chunk as Buffer);
  return { digest: digester.digest(), size: digester.size };
}
