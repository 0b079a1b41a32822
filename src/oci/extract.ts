import { constants } from 'node:fs';
import { link, mkdir, open, readdir, rm, symlink, lstat, writeFile } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { dirname, posix, resolve, sep } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { extract as tarExtract, type Header } from 'tar-stream';
import { ArchiveError, decompressed } from './compression.js';
import { writeThroughTemp } from './temp-paths.js';

export interface ExtractLimits {
  /** Total bytes of file content across all layers. Default: 4 GiB. */
  readonly maxBytes?: number;
  /** Entries across all layers. Default: 1,000,000. */
  readonly maxEntries?: number;
}

export interface ExtractOptions extends ExtractLimits {
  /** Apply OCI whiteouts (`.wh.NAME`, `.wh..wh..opq`) as layers are stacked. Default: true. */
  readonly whiteouts?: boolean;
  readonly signal?: AbortSignal;
}

export interface ExtractResult {
  readonly files: number;
  readonly bytes: number;
}

/** The body of one tar entry (a streamx stream: async-iterable, resumable). */
type TarEntryStream = AsyncIterable<unknown> & { resume(): unknown };

const WHITEOUT = '.wh.';
const OPAQUE = '.wh..wh..opq';

/**
 * Normalises a tar entry name to a relative POSIX path, or throws for names that could escape the
 * target: absolute paths, `..` components, NUL bytes. Returns '' for the root itself.
 */
export function safeEntryPath(name: string): string {
  if (name.includes('\0'))
    throw new ArchiveError(`Tar entry name contains a NUL byte: ${JSON.stringify(name)}`);
  if (name.startsWith('/')) throw new ArchiveError(`Tar entry "${name}" has an absolute path`);
  const parts = name.split('/').filter((p) => p !== '' && p !== '.');
  if (parts.includes('..')) throw new ArchiveError(`Tar entry "${name}" climbs out of the target with ".."`);
  return parts.join('/');
}

/** Files up to this size are written with one call instead of a stream. */
const SMALL_FILE_BYTES = 1024 * 1024;

class Extractor {
  readonly #root: string;
  readonly #options: ExtractOptions;
  readonly #symlinks = new Set<string>();
  /**
   * Every path this extraction created (entries and the folders made for them). The root starts empty, so
   * a path not in here does not exist: it needs no removal and its folder no mkdir. Small layers of many
   * files (a folder of manifests) extract several times faster for it.
   */
  readonly #made = new Set<string>();
  /**
   * The paths the layer being read wrote (entries and the folders made for them). Its whiteouts hide only
   * what the layers below it left, never these, wherever in the layer the whiteout comes (image-spec).
   */
  readonly #layerMade = new Set<string>();
  /** For each path, how many paths of `#layerMade` are it or below it: a whiteout's check in O(depth). */
  readonly #layerBelow = new Map<string, number>();
  readonly #maxBytes: number;
  readonly #maxEntries: number;
  bytes = 0;
  entries = 0;
  files = 0;

  constructor(root: string, options: ExtractOptions) {
    this.#root = root;
    this.#options = options;
    this.#maxBytes = options.maxBytes ?? 4 * 1024 ** 3;
    this.#maxEntries = options.maxEntries ?? 1_000_000;
  }

  /** Throws when any parent of `rel` is a symlink this extraction made (writing through it could escape). */
  #checkParents(rel: string): void {
    const parts = rel.split('/');
    for (let i = 1; i < parts.length; i++) {
      const prefix = parts.slice(0, i).join('/');
      if (this.#symlinks.has(prefix))
        throw new ArchiveError(`Tar entry "${rel}" would be written through the symlink "${prefix}"`);
    }
  }

  #abs(rel: string): string {
    const abs = resolve(this.#root, rel);
    if (abs !== this.#root && !abs.startsWith(this.#root + sep))
      throw new ArchiveError(`Tar entry "${rel}" resolves outside the target`);
    return abs;
  }

  async #clear(rel: string): Promise<void> {
    if (!this.#made.has(rel)) return;
    const abs = this.#abs(rel);
    const folder = (await lstat(abs).catch(() => undefined))?.isDirectory() ?? false;
    await rm(abs, { recursive: true, force: true });
    // Only a folder has paths below it to forget (looked for among all paths made); a file is one path.
    const gone = folder ? [...this.#made].filter((path) => path.startsWith(`${rel}/`)) : [];
    for (const path of [rel, ...gone]) {
      this.#made.delete(path);
      this.#symlinks.delete(path);
      if (this.#layerMade.delete(path)) this.#countBelow(path, -1);
    }
  }

  /** Adds `change` to the count of layer-written paths of `rel` and of every folder above it. */
  #countBelow(rel: string, change: number): void {
    for (let path = rel; ; path = posix.dirname(path)) {
      const count = (this.#layerBelow.get(path) ?? 0) + change;
      if (count > 0) this.#layerBelow.set(path, count);
      else this.#layerBelow.delete(path);
      if (!path.includes('/')) return;
    }
  }

  /** Records a path an entry of the current layer wrote. */
  #wrote(rel: string): void {
    this.#made.add(rel);
    if (this.#layerMade.has(rel)) return;
    this.#layerMade.add(rel);
    this.#countBelow(rel, 1);
  }

  /**
   * A whiteout's work: removes what the layers below left at `rel`, and below it, but nothing the current
   * layer wrote there (an entry that came before the whiteout in the same layer stays).
   */
  async #clearLower(rel: string): Promise<void> {
    if (!this.#made.has(rel)) return;
    if (!this.#layerBelow.has(rel)) {
      await this.#clear(rel);
      return;
    }
    // This layer wrote `rel` itself or something inside it: only a folder can hold lower content too.
    const info = await lstat(this.#abs(rel)).catch(() => undefined);
    if (!info?.isDirectory()) return;
    for (const name of await readdir(this.#abs(rel))) await this.#clearLower(`${rel}/${name}`);
  }

  /** Makes the folders above `rel` (once per folder). */
  async #parents(rel: string, abs: string): Promise<void> {
    const parent = posix.dirname(rel);
    if (parent === '.' || this.#made.has(parent)) return;
    await mkdir(dirname(abs), { recursive: true });
    const parts = parent.split('/');
    for (let i = 1; i <= parts.length; i++) this.#wrote(parts.slice(0, i).join('/'));
  }

  /**
   * The error for an entry whose path runs through something that is not a folder (ENOTDIR): names the
   * file or symlink in the way, instead of the system's message about a temp path.
   */
  async #notAFolder(rel: string, error: NodeJS.ErrnoException): Promise<Error> {
    const parts = rel.split('/');
    for (let i = 1; i < parts.length; i++) {
      const prefix = parts.slice(0, i).join('/');
      const info = await lstat(this.#abs(prefix)).catch(() => undefined);
      if (info && !info.isDirectory()) {
        const what = info.isSymbolicLink() ? 'a symlink' : 'a file';
        return new ArchiveError(
          `Tar entry "${rel}" needs "${prefix}" to be a folder, but an earlier entry made it ${what}`,
        );
      }
    }
    return error;
  }

  async entry(header: Header, stream: TarEntryStream): Promise<void> {
    this.entries++;
    if (this.entries > this.#maxEntries)
      throw new ArchiveError(`Archive has more than ${this.#maxEntries} entries (limit)`);
    const rel = safeEntryPath(header.name);
    if (rel === '') {
      stream.resume();
      return;
    }
    this.#checkParents(rel);
    const base = posix.basename(rel);
    const parent = posix.dirname(rel) === '.' ? '' : posix.dirname(rel);
    if ((this.#options.whiteouts ?? true) && base.startsWith(WHITEOUT)) {
      stream.resume();
      if (base === OPAQUE) {
        const dir = this.#abs(parent);
        for (const name of await readdir(dir).catch(() => [] as string[]))
          await this.#clearLower(parent ? `${parent}/${name}` : name);
      } else {
        const victim = base.slice(WHITEOUT.length);
        await this.#clearLower(parent ? `${parent}/${victim}` : victim);
      }
      return;
    }
    try {
      await this.#write(rel, header, stream);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOTDIR')
        throw await this.#notAFolder(rel, error as NodeJS.ErrnoException);
      throw error;
    }
  }

  /** Writes one entry that is not a whiteout: a folder, file, symlink or hard link. */
  async #write(rel: string, header: Header, stream: TarEntryStream): Promise<void> {
    const parent = posix.dirname(rel) === '.' ? '' : posix.dirname(rel);
    const abs = this.#abs(rel);
    await this.#parents(rel, abs);
    switch (header.type) {
      case 'directory': {
        stream.resume();
        if (this.#made.has(rel)) {
          const existing = await lstat(abs).catch(() => undefined);
          if (existing && !existing.isDirectory()) await this.#clear(rel);
        }
        await mkdir(abs, { recursive: true, mode: 0o755 });
        this.#wrote(rel);
        return;
      }
      case 'file':
      case 'contiguous-file': {
        await this.#clear(rel);
        const size = header.size ?? 0;
        if (this.bytes + size > this.#maxBytes)
          throw new ArchiveError(`Archive content is larger than ${this.#maxBytes} bytes (limit)`);
        this.bytes += size;
        const mode = (header.mode ?? 0o644) & 0o755;
        if (size <= SMALL_FILE_BYTES) {
          // One write call; 'wx' is O_CREAT|O_EXCL, which also refuses to follow a symlink at the path.
          const chunks: Buffer[] = [];
          for await (const chunk of stream as AsyncIterable<Buffer>) chunks.push(chunk);
          await writeFile(abs, Buffer.concat(chunks), { flag: 'wx', mode });
        } else {
          const handle = await open(
            abs,
            constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW,
            mode,
          );
          await pipeline(Readable.from(stream as AsyncIterable<Buffer>), handle.createWriteStream());
        }
        this.#wrote(rel);
        this.files++;
        return;
      }
      case 'symlink': {
        stream.resume();
        const target = header.linkname ?? '';
        if (target.startsWith('/'))
          throw new ArchiveError(`Symlink "${rel}" points to the absolute path "${target}"`);
        const resolved = posix.normalize(posix.join(parent, target));
        if (resolved === '..' || resolved.startsWith('../'))
          throw new ArchiveError(`Symlink "${rel}" points outside the target ("${target}")`);
        await this.#clear(rel);
        await symlink(target, abs);
        this.#symlinks.add(rel);
        this.#wrote(rel);
        return;
      }
      case 'link': {
        stream.resume();
        const target = safeEntryPath(header.linkname ?? '');
        this.#checkParents(target);
        const source = this.#abs(target);
        const info = await lstat(source).catch(() => undefined);
        if (!info?.isFile())
          throw new ArchiveError(
            `Hard link "${rel}" points to "${target}", which is not a file extracted before it`,
          );
        await this.#clear(rel);
        await link(source, abs);
        this.#wrote(rel);
        return;
      }
      default:
        stream.resume();
        throw new ArchiveError(
          `Tar entry "${rel}" is a ${header.type ?? 'special file'}; devices, FIFOs and other special files are refused`,
        );
    }
  }

  /** Reads one (possibly compressed) tar stream into the root. */
  async layer(source: Readable): Promise<void> {
    this.#layerMade.clear();
    this.#layerBelow.clear();
    const plain = await decompressed(source, this.#maxBytes * 2 + 1024 * 1024);
    const tar = tarExtract();
    const done = new Promise<void>((resolveDone, reject) => {
      tar.on('entry', (header, stream, next) => {
        // The entry's own errors also reach the tar stream's 'error', which is what rejects.
        stream.on('error', () => undefined);
        this.entry(header, stream).then(
          () => next(),
          (error: unknown) => {
            stream.resume();
            tar.destroy(error as Error);
          },
        );
      });
      tar.on('finish', resolveDone);
      tar.on('error', reject);
      tar.on('close', () => reject(new ArchiveError('Tar stream ended early')));
    });
    plain.on('error', (error) => tar.destroy(error));
    plain.pipe(tar);
    try {
      await done;
    } catch (error) {
      plain.destroy();
      if (error instanceof ArchiveError) throw error;
      throw new ArchiveError(`Cannot read tar data: ${(error as Error).message}`);
    }
  }
}

/**
 * Extracts layers in order into `target`, which must not exist yet. Everything goes into a temp folder
 * beside it that is renamed into place only when all layers extracted cleanly, so a failure leaves
 * nothing behind and nothing is ever written outside `target`.
 */
export async function extractLayers(
  layers: Iterable<() => Promise<Readable>> | AsyncIterable<() => Promise<Readable>>,
  target: string,
  options: ExtractOptions = {},
): Promise<ExtractResult> {
  const final = resolve(target);
  if (await lstat(final).catch(() => undefined)) throw new ArchiveError(`Target "${target}" already exists`);
  await mkdir(dirname(final), { recursive: true });
  const temp = `${final}.partial-${randomBytes(6).toString('hex')}`;
  const extractor = new Extractor(temp, options);
  await writeThroughTemp(temp, final, async () => {
    await mkdir(temp, { mode: 0o755 });
    for await (const open of layers) {
      options.signal?.throwIfAborted();
      await extractor.layer(await open());
    }
  });
  return { files: extractor.files, bytes: extractor.bytes };
}
