/**
 * How the bundled CLI starts. scripts/bundle-cli.mjs makes dist/bin/airlock.js and
 * docker-credential-airlock.js from this module plus one call of `launch`, and turns every chunk of the
 * bundle into a CommonJS function `(exports, require, module, __filename, __dirname, __airlockUrl)`.
 * `launch` compiles those chunks itself, with V8's code cache: the bytecode of every function a command
 * ran, saved when a run of that command ends well and handed back to V8 on the next run, so the next run
 * neither parses nor compiles what it runs again (about a third of a command's start-up, and the first
 * requests of a push: docs/cli.md). An ES module cannot be given a code cache in node 20; this is why the
 * bundle is CommonJS.
 *
 * Caches live in `$AIRLOCK_CODE_CACHE` (an absolute folder; `0` turns them off), by default
 * `$XDG_CACHE_HOME/airlock/code-cache` or `~/.cache/airlock/code-cache`, as
 * `BUILD-nodeVERSION-ARCH/GROUP/CHUNK.cache`: one set per build of the bundle (its content hash), node
 * version and command group. V8 checks a cache only against the source's length and its own version and
 * flags, and a damaged one can crash it, so the build's hash is in the path and every file carries a
 * CRC-32 that is checked before V8 sees it. A cache that cannot be read, is damaged or is refused is
 * ignored and written anew; one that cannot be written is left out. Neither changes what the command does.
 */
import { mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { homedir } from 'node:os';
import { isAbsolute, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Script } from 'node:vm';
import * as zlib from 'node:zlib';
import { requestedGroup } from './command-names.js';

export const CODE_CACHE_ENV = 'AIRLOCK_CODE_CACHE';

/**
 * The folder code caches go to, from the environment; undefined when they are off (`0`) or there is no
 * home folder to keep them in. Throws on a value that is neither `0` nor an absolute path.
 */
export function codeCacheRoot(env: NodeJS.ProcessEnv = process.env): string | undefined {
  const setting = env[CODE_CACHE_ENV];
  if (setting === '0') return undefined;
  if (setting !== undefined && setting !== '') {
    if (!isAbsolute(setting))
      throw new Error(
        `${CODE_CACHE_ENV} must be 0 (off) or an absolute folder, not "${setting.slice(0, 80)}"`,
      );
    return setting;
  }
  const xdg = env.XDG_CACHE_HOME;
  if (xdg && isAbsolute(xdg)) return join(xdg, 'airlock', 'code-cache');
  let home: string;
  try {
    home = homedir();
  } catch {
    return undefined;
  }
  return home ? join(home, '.cache', 'airlock', 'code-cache') : undefined;
}

/** The folder of one build's caches under the root: build hash, node version and CPU architecture. */
export function buildFolder(buildId: string): string {
  return `${buildId}-node${process.versions.node}-${process.arch}`;
}

const BUILD_FOLDER = /^[0-9a-f]{16}-node[0-9.]+-[a-z0-9]+$/;

/** Builds whose caches are kept; older folders are removed whenever caches are written. */
export const KEPT_BUILDS = 4;

// A cache file: 'ALC1', the payload's length and its CRC-32 (unsigned 32-bit little-endian each), then
// the payload, V8's cached data.
const MAGIC = 0x31434c41;
const HEADER_BYTES = 12;
/** zlib.crc32 came with node 20.15; on older ones caches are off (a damaged file would crash V8). */
const crc32 = (zlib as { crc32?: (data: Uint8Array) => number }).crc32;

export function encodeCache(data: Uint8Array): Buffer {
  if (!crc32) throw new Error('node has no zlib.crc32');
  const file = Buffer.allocUnsafe(HEADER_BYTES + data.byteLength);
  file.writeUInt32LE(MAGIC, 0);
  file.writeUInt32LE(data.byteLength, 4);
  file.writeUInt32LE(crc32(data), 8);
  file.set(data, HEADER_BYTES);
  return file;
}

/** The payload of a cache file, or undefined when it is not one or is damaged (length, CRC). */
export function decodeCache(file: Buffer): Buffer | undefined {
  if (!crc32 || file.byteLength < HEADER_BYTES || file.readUInt32LE(0) !== MAGIC) return undefined;
  if (file.readUInt32LE(4) !== file.byteLength - HEADER_BYTES) return undefined;
  const data = file.subarray(HEADER_BYTES);
  return crc32(data) === file.readUInt32LE(8) ? data : undefined;
}

/** Whether code caches can be used by this node at all. */
export const codeCacheSupported = crc32 !== undefined;

const CHUNK_NAME = /^[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*\.js$/;

/** A chunk: the parameters of scripts/bundle-cli.mjs's wrapper, in its order. */
type ChunkFunction = (
  ...parameters: [
    exports: unknown,
    require: (id: string) => unknown,
    module: { exports: unknown },
    filename: string,
    dirname: string,
    url: string,
  ]
) => void;

interface Chunk {
  readonly module: { exports: unknown };
  readonly script: Script;
  /** Compiled without a usable cache: one is written when the run ends well. */
  readonly save: boolean;
}

export interface ChunkLoaderOptions {
  /** The folder holding the chunks (dist/bin). */
  readonly dir: string;
  /** The folder of this build's caches for this command group; undefined: no code cache. */
  readonly cacheDir: string | undefined;
  /** Loads what is not a chunk: node's modules, better-sqlite3. */
  readonly externalRequire: (id: string) => unknown;
}

/** Loads the bundle's chunks (CommonJS functions, see above), each once, compiled with its code cache. */
export class ChunkLoader {
  readonly #options: ChunkLoaderOptions;
  readonly #chunks = new Map<string, Chunk>();
  /** Chunks compiled from a cache; compiled without one; whose cache was damaged or refused by V8. */
  readonly stats = { cached: 0, compiled: 0, rejected: 0 };

  constructor(options: ChunkLoaderOptions) {
    this.#options = options;
  }

  /** The exports of chunk `name` (a file name in the folder), evaluating it on first use. */
  load(name: string): unknown {
    const loaded = this.#chunks.get(name);
    if (loaded) return loaded.module.exports;
    if (!CHUNK_NAME.test(name)) throw new Error(`"${name}" is not the name of a chunk of the bundle`);
    const { dir, cacheDir } = this.#options;
    const filename = join(dir, name);
    const source = readFileSync(filename, 'utf8');
    const found = cacheDir === undefined ? undefined : readCache(join(cacheDir, `${name}.cache`));
    const cachedData = found && decodeCache(found);
    const script = new Script(source, { filename, ...(cachedData ? { cachedData } : {}) });
    const usable = cachedData !== undefined && !script.cachedDataRejected;
    if (usable) this.stats.cached++;
    else this.stats.compiled++;
    if (found && !usable) this.stats.rejected++;
    const module = { exports: {} as unknown };
    const chunk: Chunk = { module, script, save: !usable };
    const run: unknown = script.runInThisContext();
    if (typeof run !== 'function')
      throw new Error(`${filename} is not a chunk of the bundle (npm run build)`);
    this.#chunks.set(name, chunk);
    try {
      const require = (id: string): unknown =>
        id.startsWith('./') ? this.load(id.slice(2)) : this.#options.externalRequire(id);
      (run as ChunkFunction)(module.exports, require, module, filename, dir, pathToFileURL(filename).href);
    } catch (error) {
      this.#chunks.delete(name);
      throw error;
    }
    return module.exports;
  }

  /**
   * Writes a cache for each chunk compiled without one (through a temporary file, so a reader never sees
   * half of one); returns how many were written. Never throws: a cache is only ever a shortcut.
   */
  saveCaches(): number {
    const { cacheDir } = this.#options;
    if (cacheDir === undefined || !codeCacheSupported) return 0;
    try {
      mkdirSync(cacheDir, { recursive: true, mode: 0o700 });
    } catch {
      return 0;
    }
    let written = 0;
    for (const [name, chunk] of this.#chunks) {
      if (!chunk.save) continue;
      const file = join(cacheDir, `${name}.cache`);
      const temp = `${file}.${process.pid}.tmp`;
      try {
        writeFileSync(temp, encodeCache(chunk.script.createCachedData()), { mode: 0o600 });
        renameSync(temp, file);
        written++;
      } catch {
        rmSync(temp, { force: true });
      }
    }
    return written;
  }
}

function readCache(file: string): Buffer | undefined {
  try {
    return readFileSync(file);
  } catch {
    return undefined;
  }
}

/** Removes all but the `keep` most recently changed build folders under `root`; never throws. */
export function pruneBuilds(root: string, keep: number): void {
  try {
    const builds = readdirSync(root)
      .filter((name) => BUILD_FOLDER.test(name))
      .map((name) => ({ path: join(root, name), changed: statSync(join(root, name)).mtimeMs }))
      .sort((a, b) => b.changed - a.changed);
    for (const old of builds.slice(keep)) rmSync(old.path, { recursive: true, force: true });
  } catch {
    // another process pruning at the same time, or a folder we may not list: left as it is
  }
}

export interface LaunchOptions {
  /** The folder of the bin file and the chunks. */
  readonly dir: string;
  /** The chunk that is the program. */
  readonly entry: string;
  /** The bundle's content hash (16 hex digits), written into the bin file by the build. */
  readonly buildId: string;
  /** The cache set: by default the group of the command asked for, `all` for help or none. */
  readonly group?: string;
}

/** Runs the program chunk with code caches, saved when the process ends with exit code 0. */
export function launch(options: LaunchOptions): void {
  let root: string | undefined;
  try {
    root = codeCacheRoot();
  } catch (error) {
    process.stderr.write(`Error: ${(error as Error).message}\n`);
    process.exitCode = 2;
    return;
  }
  const group = options.group ?? requestedGroup(process.argv) ?? 'all';
  const cacheDir =
    root === undefined || !codeCacheSupported ? undefined : join(root, buildFolder(options.buildId), group);
  const loader = new ChunkLoader({
    dir: options.dir,
    cacheDir,
    externalRequire: createRequire(join(options.dir, options.entry)),
  });
  if (root !== undefined && cacheDir !== undefined) {
    process.once('exit', (code) => {
      // Caches written (a build's or a group's first good run): older builds' folders go, the newest few
      // stay (other installs of Airlock, other node versions).
      if (code === 0 && loader.saveCaches() > 0) pruneBuilds(root, KEPT_BUILDS);
    });
  }
  loader.load(options.entry);
}
