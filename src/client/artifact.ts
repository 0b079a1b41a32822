import { createReadStream, createWriteStream, type Stats } from 'node:fs';
import { chmod, link, lstat, mkdir, readdir, readlink, rename, rm, stat } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { pack } from 'tar-stream';
import { tmpdir } from 'node:os';
import { basename, dirname, isAbsolute, join, posix, relative, resolve, sep } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
import {
  ArchiveError,
  Digester,
  digestOf,
  extractLayers,
  MediaType,
  makeTempDir,
  parseManifest,
  releaseTempPath,
  removeTempPath,
  safeEntryPath,
  trackTempPath,
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
  /** Manifest artifactType, a media type (TYPE/SUBTYPE). Default: application/vnd.unknown.artifact.v1 (as oras). */
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

/**
 * Cleans a path given on the command line into a title as oras does (`./dir//x.yaml` is `dir/x.yaml`, the
 * current folder is `.`); refuses absolute paths and paths that climb out with `..`.
 */
export function titleFor(path: string): string {
  if (path === '') throw new ClientError('INVALID_INPUT', `"${path}" names no file`);
  if (path.startsWith('/') || isAbsolute(path))
    throw new ClientError(
      'INVALID_INPUT',
      `"${path}" is an absolute path; give a path relative to the current folder`,
    );
  const title = posix.normalize(path.split(sep).join('/')).replace(/\/+$/, '') || '.';
  if (title === '..' || title.startsWith('../'))
    throw new ClientError('INVALID_INPUT', `"${path}" leaves the current folder; give a path inside it`);
  return title;
}

/** What a folder entry that is neither file, folder nor symlink is, for messages. */
function specialKind(entry: { isFIFO(): boolean; isSocket(): boolean; isBlockDevice(): boolean }): string {
  if (entry.isFIFO()) return 'a FIFO';
  if (entry.isSocket()) return 'a socket';
  if (entry.isBlockDevice()) return 'a block device';
  return 'a character device';
}

/**
 * Packs a folder as tar+gzip, returning the temp file. Entries are prefixed with the folder's title, except
 * for the title `.`, whose entries are named relative to the folder (as oras writes them). Symlinks are kept
 * as symlink entries with their target text, as oras and tar keep them. Every entry, folders included,
 * carries its own mode and modification time and owner 0:0, as oras writes them, so the same folder packs
 * to the same bytes however often it is pushed.
 */
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
  /** The entry name of `rel` (a path inside the folder; '' for the folder itself). */
  const nameOf = (rel: string): string => {
    if (title === '.') return rel || '.';
    return rel ? `${title}/${rel}` : title;
  };
  const walk = async (abs: string, rel: string): Promise<void> => {
    const folder = await stat(abs);
    await add({
      name: rel === '' && title === '.' ? '.' : `${nameOf(rel)}/`,
      type: 'directory',
      mode: folder.mode & 0o7777,
      // Without it the entry would be stamped with the time of the push (tar-stream's default).
      mtime: folder.mtime,
    });
    for (const entry of (await readdir(abs, { withFileTypes: true })).sort((a, b) =>
      a.name < b.name ? -1 : 1,
    )) {
      const child = join(abs, entry.name);
      const childRel = rel ? `${rel}/${entry.name}` : entry.name;
      if (entry.isDirectory()) await walk(child, childRel);
      else if (entry.isFile()) {
        const info = await stat(child);
        await new Promise<void>((resolveEntry, reject) => {
          const sink = tar.entry(
            { name: nameOf(childRel), size: info.size, mode: info.mode & 0o7777, mtime: info.mtime },
            (e) => (e ? reject(e) : resolveEntry()),
          );
          pipeline(createReadStream(child), sink as unknown as NodeJS.WritableStream).catch(reject);
        });
      } else if (entry.isSymbolicLink()) {
        const [target, info] = await Promise.all([readlink(child), lstat(child)]);
        await add({
          name: nameOf(childRel),
          type: 'symlink',
          linkname: target,
          mode: 0o777,
          mtime: info.mtime,
        });
      } else {
        // Refused rather than skipped: a skipped file would be missing from the artifact without a word (the
        // library has no one to warn), and Airlock's own pull refuses such entries anyway.
        throw new ClientError(
          'INVALID_INPUT',
          `Cannot push "${join(dir, childRel)}": it is ${specialKind(entry)}; a folder can hold only files, folders and symlinks`,
        );
      }
    }
  };
  try {
    await walk(dir, '');
    tar.finalize();
  } catch (error) {
    tar.destroy(error as Error);
    await written.catch(() => undefined);
    throw error;
  }
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

/** RFC 6838 (section 4.2) TYPE/SUBTYPE without parameters, the form the OCI image spec requires. */
const MEDIA_TYPE = /^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}\/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}$/;

/** Whether `text` is a media type an OCI manifest may carry as its `artifactType`. */
export function isMediaType(text: string): boolean {
  return MEDIA_TYPE.test(text);
}

/** Pushes files and folders as an OCI artifact, the way `oras push` does. */
export async function pushArtifact(
  client: RegistryClient,
  target: { repository: string; reference: string; files: readonly PushFile[] },
  options: PushArtifactOptions = {},
): Promise<ManifestResult> {
  const { files } = target;
  if (options.artifactType !== undefined && !isMediaType(options.artifactType))
    throw new ClientError(
      'INVALID_INPUT',
      `Artifact type "${options.artifactType}" is not a media type; give TYPE/SUBTYPE, such as application/vnd.acme.config`,
    );
  if (files.length === 0)
    throw new ClientError('INVALID_INPUT', 'Nothing to push: name at least one file or folder');
  const work = await makeTempDir(join(tmpdir(), 'airlock-push-'));
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
    await removeTempPath(work);
  }
}

export interface PulledFile {
  /** The layer's title, cleaned; `.` for a folder layer restored into the output folder itself. */
  readonly title: string;
  readonly digest: Digest;
  readonly size: number;
  readonly unpacked: boolean;
}

interface WantedLayer {
  readonly layer: Descriptor;
  /** Cleaned title; '' for a folder layer titled `.` (its entries go straight into the output folder). */
  readonly title: string;
  readonly unpack: boolean;
}

/** A staged file, symlink or folder and the path in the output folder it goes to. */
interface Move {
  readonly from: string;
  readonly to: string;
  /** Whether a file or symlink is at `to` already (it is replaced; folders are never replaced). */
  readonly replaces: boolean;
}

interface Destination {
  /** The output folder, resolved. */
  readonly root: string;
  /** The output folder as given, for messages. */
  readonly outDir: string;
}

async function lstatIfAny(path: string): Promise<Stats | undefined> {
  try {
    return await lstat(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
}

/** The error for something in the output folder that a layer would have to delete or write through. */
function conflict(title: string, shown: string, found: 'folder' | 'file' | 'symlink'): ClientError {
  const why = {
    folder: 'is a folder where the artifact has a file; pull does not delete folders, so move it away first',
    file: 'is a file where the artifact has a folder; move it away first',
    symlink: 'is a symlink where the artifact has a folder; pull does not write through symlinks',
  }[found];
  return new ClientError('INVALID_INPUT', `Cannot restore "${title || '.'}": "${shown}" ${why}`);
}

/**
 * Refuses a layer whose place in the output folder holds what pull must not touch: a folder where the
 * layer is a file, a file where it is a folder, or a symlink on the way (writing through it could land
 * outside the output folder). Cheap enough to run before the download and again before the move.
 */
async function checkDestination(wanted: WantedLayer, to: Destination): Promise<void> {
  const parts = wanted.title === '' ? [] : wanted.title.split('/');
  for (let i = 1; i <= parts.length; i++) {
    const rel = parts.slice(0, i).join('/');
    const found = await lstatIfAny(join(to.root, rel));
    if (!found) return;
    const shown = join(to.outDir, rel);
    if (i === parts.length && !wanted.unpack) {
      if (found.isDirectory()) throw conflict(wanted.title, shown, 'folder');
    } else if (found.isSymbolicLink()) throw conflict(wanted.title, shown, 'symlink');
    else if (!found.isDirectory()) throw conflict(wanted.title, shown, 'file');
  }
}

/**
 * Lists the moves that put the staged `from` at `rel` in the output folder: a folder merges into an
 * existing folder entry by entry (what the artifact holds replaces same-named files and symlinks, the rest
 * stays), anything else takes its path. Throws on a conflict before anything moves.
 */
async function planMoves(from: string, rel: string, plan: Destination & { moves: Move[] }): Promise<void> {
  const to = rel ? join(plan.root, rel) : plan.root;
  const found = await lstatIfAny(to);
  if (!found) {
    plan.moves.push({ from, to, replaces: false });
    return;
  }
  const shown = join(plan.outDir, rel);
  if ((await lstat(from)).isDirectory()) {
    if (found.isSymbolicLink()) throw conflict(rel, shown, 'symlink');
    if (!found.isDirectory()) throw conflict(rel, shown, 'file');
    for (const name of (await readdir(from)).sort())
      await planMoves(join(from, name), rel ? `${rel}/${name}` : name, plan);
    return;
  }
  if (found.isDirectory()) throw conflict(rel, shown, 'folder');
  plan.moves.push({ from, to, replaces: true });
}

/** Makes moves into the output folder, remembering how to undo each one. */
class Mover {
  readonly #backups: string;
  readonly #undo: Array<() => Promise<unknown>> = [];
  #count = 0;

  /** `backups` is a folder on the output folder's file system for the files that moves replace. */
  constructor(backups: string) {
    this.#backups = backups;
  }

  async move({ from, to, replaces }: Move): Promise<void> {
    if (replaces) {
      const backup = join(this.#backups, String(this.#count++));
      // A hard link keeps the old file for undo while rename swaps the new one in atomically. Where the file
      // system has no hard links, the old file is moved aside first (its path is briefly empty).
      const linked = await link(to, backup).then(
        () => true,
        () => false,
      );
      if (!linked) await rename(to, backup);
      this.#undo.push(() => rename(backup, to));
      await rename(from, to);
      return;
    }
    const made = await mkdir(dirname(to), { recursive: true });
    if (made !== undefined) this.#undo.push(() => rm(made, { recursive: true, force: true }));
    await rename(from, to);
    this.#undo.push(() => rm(to, { recursive: true, force: true }));
  }

  /** Undoes every move, newest first; returns how many undo steps failed. */
  async undo(): Promise<number> {
    let failed = 0;
    for (const step of this.#undo.reverse()) await step().catch(() => failed++);
    this.#undo.length = 0;
    return failed;
  }
}

/**
 * Restores an artifact's titled layers into `outDir` as `oras pull` does: files replace same-named files
 * (never folders), folder layers merge into existing folders, and a folder layer titled `.` merges into
 * `outDir` itself. Titles that escape `outDir` are refused.
 */
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
  const destination: Destination = { root, outDir };
  // Every title is checked before anything is downloaded, and layers land in a staging folder; they are
  // moved into place only when all of them arrived intact, so a refused title or a corrupt blob leaves
  // nothing behind in outDir.
  const wanted: WantedLayer[] = [];
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
    const unpack = layer.annotations?.[UNPACK] === 'true';
    const target = resolve(root, title);
    // Only a folder can be restored into outDir itself (oras titles `oras push REF .` as ".").
    if ((!title && !unpack) || relative(root, target).startsWith('..'))
      throw new ClientError('INVALID_RESPONSE', `Layer title "${rawTitle}" is not a path inside "${outDir}"`);
    wanted.push({ layer, title, unpack });
  }
  const rootInfo = await stat(root).catch(() => undefined);
  if (rootInfo && !rootInfo.isDirectory())
    throw new ClientError('INVALID_INPUT', `Cannot pull into "${outDir}": it is not a folder`);
  for (const layer of wanted) await checkDestination(layer, destination);
  const created = await mkdir(root, { recursive: true });
  // Both go if a signal ends the pull while it downloads; the staging folder stays once moves begin
  // (it then holds the only copies of the files being replaced).
  if (created !== undefined) trackTempPath(created);
  const staging = await makeTempDir(join(root, '.airlock-pull-'));
  const mover = new Mover(join(staging, 'replaced'));
  await mkdir(join(staging, 'replaced'));
  const pulled: PulledFile[] = [];
  let ok = false;
  let keepStaging = false;
  try {
    for (const [i, { layer, title, unpack }] of wanted.entries()) {
      const stream = await client.getBlob(source.repository, layer.digest, {
        size: layer.size,
        ...(options.signal ? { signal: options.signal } : {}),
      });
      const staged = join(staging, String(i));
      if (unpack) {
        try {
          await extractLayers([() => Promise.resolve(stream)], staged, { whiteouts: false });
        } catch (error) {
          if (!(error instanceof ArchiveError)) throw error;
          throw new ClientError(
            'INVALID_RESPONSE',
            `Cannot unpack layer "${title || '.'}": ${error.message}`,
            {
              cause: error,
            },
          );
        }
      } else await pipeline(stream, createWriteStream(staged));
      pulled.push({ title: title || '.', digest: layer.digest, size: layer.size, unpacked: unpack });
    }
    // Layers are placed one after another (a later one may land inside an earlier one); a conflict or
    // failure part way undoes the moves already made, so outDir is left as it was.
    releaseTempPath(staging);
    try {
      for (const [i, wantedLayer] of wanted.entries()) {
        const { title, unpack } = wantedLayer;
        await checkDestination(wantedLayer, destination);
        const staged = join(staging, String(i));
        const from = unpack && title ? join(staged, title) : staged;
        if (unpack && !(await lstatIfAny(from)))
          throw new ClientError(
            'INVALID_RESPONSE',
            `Folder layer "${title}" holds no entry named "${title}"`,
          );
        const existing = unpack ? undefined : await lstatIfAny(resolve(root, title));
        // A replaced file keeps its permissions (a 0600 secret stays 0600), as oras's in-place write keeps them.
        if (existing?.isFile()) await chmod(from, existing.mode & 0o777);
        const moves: Move[] = [];
        await planMoves(from, title, { ...destination, moves });
        for (const move of moves) await mover.move(move);
      }
    } catch (error) {
      if (created !== undefined) throw error;
      const failed = await mover.undo();
      if (failed === 0) throw error;
      keepStaging = true;
      throw new ClientError(
        'INVALID_INPUT',
        `${(error as Error).message}; ${failed} earlier changes to "${outDir}" could not be undone (the files they replaced are in "${join(outDir, basename(staging), 'replaced')}")`,
        { cause: error },
      );
    }
    ok = true;
    if (created !== undefined) releaseTempPath(created);
  } finally {
    if (!keepStaging) await removeTempPath(staging);
    if (!ok && created !== undefined) await removeTempPath(created);
  }
  return pulled;
}
