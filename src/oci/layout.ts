import { mkdir, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { ArchiveError } from './compression.js';
import { Digester, digestOf, isDigest, parseDigest, type Digest } from './digest.js';
import { fileStream } from './file-source.js';
import { writeHashed } from './hashed-write.js';
import { MAX_MANIFEST_BYTES, type Descriptor } from './manifest.js';
import { MediaType } from './media-types.js';
import { releaseTempPath, removeTempPath, trackTempPath, writeThroughTemp } from './temp-paths.js';

/** The annotation an OCI layout uses to name a manifest (its "tag"). */
export const REF_NAME = 'org.opencontainers.image.ref.name';

export interface LayoutIndex {
  schemaVersion: 2;
  mediaType?: string;
  manifests: Descriptor[];
  annotations?: Record<string, string>;
}

/** An OCI image layout folder: `oci-layout`, `index.json`, `blobs/<alg>/<hex>`. */
export class OciLayout {
  private constructor(readonly dir: string) {}

  /** Opens an existing layout, or with `create` makes an empty one. */
  static async open(dir: string, options: { create?: boolean } = {}): Promise<OciLayout> {
    const marker = join(dir, 'oci-layout');
    let text: string | undefined;
    try {
      text = await readFile(marker, 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    }
    if (text === undefined) {
      if (!options.create) throw new ArchiveError(`"${dir}" is not an OCI layout (no oci-layout file)`);
      await mkdir(join(dir, 'blobs', 'sha256'), { recursive: true });
      // Each file only where it is missing: another process may be making the same layout right now,
      // and one interrupted while moving a layout into place may have left some of them.
      await createIfMissing(join(dir, 'index.json'), EMPTY_INDEX);
      await createIfMissing(marker, LAYOUT_MARKER);
      return new OciLayout(dir);
    }
    let version: unknown;
    try {
      version = (JSON.parse(text) as { imageLayoutVersion?: unknown }).imageLayoutVersion;
    } catch {
      version = undefined;
    }
    if (typeof version !== 'string') throw new ArchiveError(`"${marker}" is not a valid oci-layout file`);
    if (options.create) await createIfMissing(join(dir, 'index.json'), EMPTY_INDEX);
    return new OciLayout(dir);
  }

  /**
   * Moves the layout built in `staging` into `dir` (missing or without a layout of its own, or one that
   * another process finished there meanwhile): blobs first, then the index entries (under the index
   * lock: the staged index.json itself when `dir` has none, else added to it), then `oci-layout`, so
   * `dir` never lists a manifest whose blobs are not there yet. `staging` is left to the caller to remove.
   */
  static async publish(staging: OciLayout, dir: string): Promise<OciLayout> {
    await mkdir(dir, { recursive: true });
    await moveBlobs(join(staging.dir, 'blobs'), join(dir, 'blobs'));
    const into = new OciLayout(dir);
    const unlock = await lockIndex(dir);
    try {
      // Every change to an index's entries is made under the lock, so whether one exists is settled.
      const exists = await stat(join(dir, 'index.json')).then(
        () => true,
        () => false,
      );
      if (!exists) await rename(join(staging.dir, 'index.json'), join(dir, 'index.json'));
      else {
        for (const entry of (await staging.index()).manifests) {
          const { annotations: all, ...rest } = entry;
          const { [REF_NAME]: name, ...annotations } = all ?? {};
          const descriptor = Object.keys(annotations).length > 0 ? { ...rest, annotations } : rest;
          await into.#addManifest(descriptor, name);
        }
      }
    } finally {
      await unlock();
    }
    await createIfMissing(join(dir, 'oci-layout'), LAYOUT_MARKER);
    return into;
  }

  async index(): Promise<LayoutIndex> {
    const path = join(this.dir, 'index.json');
    let parsed: unknown;
    try {
      parsed = JSON.parse(await readFile(path, 'utf8'));
    } catch (error) {
      throw new ArchiveError(`Cannot read "${path}": ${(error as Error).message}`);
    }
    const index = parsed as Partial<LayoutIndex>;
    if (!Array.isArray(index.manifests)) throw new ArchiveError(`"${path}" has no "manifests" list`);
    return { schemaVersion: 2, ...index, manifests: index.manifests };
  }

  /**
   * The manifest named `tag` (or with that digest); without one, the only image in the layout: the one
   * entry, or else the one entry that is not a referrer (signature, SBOM…) of another entry in it.
   */
  async resolve(tag?: string): Promise<Descriptor> {
    const { manifests } = await this.index();
    if (tag !== undefined) {
      // A digest names an entry by content only, never by a tag that happens to read like one.
      const byDigest = isDigest(tag);
      const found = manifests.find((m) => (byDigest ? m.digest === tag : m.annotations?.[REF_NAME] === tag));
      if (!found) throw new ArchiveError(`Layout "${this.dir}" has no manifest named "${tag}"`);
      return found;
    }
    if (manifests.length === 1 && manifests[0]) return manifests[0];
    if (manifests.length === 0) throw new ArchiveError(`Layout "${this.dir}" is empty`);
    const listed = new Set(manifests.map((m) => m.digest));
    const roots: Descriptor[] = [];
    for (const entry of manifests) {
      const subject = await this.#subjectOf(entry);
      if (subject === undefined || !listed.has(subject as Digest)) roots.push(entry);
    }
    if (roots.length === 1 && roots[0]) return roots[0];
    const names = roots.map((m) => m.annotations?.[REF_NAME] ?? m.digest);
    throw new ArchiveError(
      `Layout "${this.dir}" holds ${roots.length} images; name one by tag or digest (${names.join(', ')})`,
    );
  }

  /** The digest a manifest entry's `subject` names, if it has one (an unreadable entry has none). */
  async #subjectOf(entry: Descriptor): Promise<string | undefined> {
    try {
      const body = JSON.parse((await this.readBlob(entry.digest, MAX_MANIFEST_BYTES)).toString('utf8')) as {
        subject?: { digest?: unknown };
      };
      return typeof body.subject?.digest === 'string' ? body.subject.digest : undefined;
    } catch {
      return undefined;
    }
  }

  blobPath(digest: Digest): string {
    const { algorithm, hex } = parseDigest(digest);
    return join(this.dir, 'blobs', algorithm, hex);
  }

  async blobSize(digest: Digest): Promise<number | undefined> {
    try {
      return (await stat(this.blobPath(digest))).size;
    } catch {
      return undefined;
    }
  }

  /** A stream of a blob's file (a `fileStream`: an uploader may send the file itself). */
  openBlob(digest: Digest): Readable {
    return fileStream(this.blobPath(digest));
  }

  async readBlob(digest: Digest, limit: number): Promise<Buffer> {
    const size = await this.blobSize(digest);
    if (size === undefined) throw new ArchiveError(`Layout "${this.dir}" has no blob ${digest}`);
    if (size > limit) throw new ArchiveError(`Blob ${digest} is ${size} bytes, more than ${limit}`);
    const bytes = await readFile(this.blobPath(digest));
    if (digestOf(bytes, parseDigest(digest).algorithm) !== digest)
      throw new ArchiveError(`Blob ${digest} in "${this.dir}" does not match its digest`);
    return bytes;
  }

  /** Writes a blob from a stream, verifying its digest before it becomes visible. */
  async writeBlob(
    digest: Digest,
    source: Readable | AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
  ): Promise<number> {
    const existing = await this.blobSize(digest);
    if (existing !== undefined) {
      if (typeof (source as Readable).destroy === 'function') (source as Readable).destroy();
      return existing;
    }
    const { algorithm } = parseDigest(digest);
    await mkdir(join(this.dir, 'blobs', algorithm), { recursive: true });
    const temp = join(this.dir, 'blobs', algorithm, `.tmp-${randomBytes(8).toString('hex')}`);
    const digester = new Digester(algorithm);
    await writeThroughTemp(temp, this.blobPath(digest), async () => {
      // Past the page cache while the disk keeps up (it costs far less CPU than growing the page cache),
      // through it, as crane and skopeo write a layout, on a disk slower than that (BENCHMARKS.md).
      await writeHashed(source, temp, { digester, direct: 'adaptive' });
      const actual = digester.digest();
      if (actual !== digest) throw new ArchiveError(`Blob ${digest} arrived with digest ${actual}`);
    });
    return digester.size;
  }

  async writeBytes(bytes: Buffer): Promise<Digest> {
    const digest = digestOf(bytes);
    if ((await this.blobSize(digest)) === undefined) await this.writeBlob(digest, [bytes]);
    return digest;
  }

  /**
   * Adds a manifest to index.json, written atomically: with a tag, replacing the entry of that name;
   * without one, unless an entry (named or not) already lists the digest, whose name then stays.
   */
  async addManifest(descriptor: Descriptor, tag?: string): Promise<void> {
    const unlock = await lockIndex(this.dir);
    try {
      await this.#addManifest(descriptor, tag);
    } finally {
      await unlock();
    }
  }

  async #addManifest(descriptor: Descriptor, tag?: string): Promise<void> {
    const index = await this.index();
    if (tag === undefined) {
      if (index.manifests.some((m) => m.digest === descriptor.digest)) return;
      index.manifests.push(descriptor);
    } else {
      // The tag moves here, and an untagged entry of the same image is now this one.
      index.manifests = index.manifests.filter(
        (m) =>
          m.annotations?.[REF_NAME] !== tag &&
          !(m.digest === descriptor.digest && m.annotations?.[REF_NAME] === undefined),
      );
      index.manifests.push({ ...descriptor, annotations: { ...descriptor.annotations, [REF_NAME]: tag } });
    }
    const path = join(this.dir, 'index.json');
    await writeThroughTemp(`${path}.${randomBytes(6).toString('hex')}.tmp`, path, (temp) =>
      writeFile(temp, `${JSON.stringify(index)}\n`),
    );
  }
}

const LAYOUT_MARKER = `${JSON.stringify({ imageLayoutVersion: '1.0.0' })}\n`;
const EMPTY_INDEX = `${JSON.stringify({ schemaVersion: 2, mediaType: MediaType.OciIndex, manifests: [] })}\n`;

/** Writes `path` unless it exists (never replacing what another process wrote there). */
async function createIfMissing(path: string, text: string): Promise<void> {
  try {
    await writeFile(path, text, { flag: 'wx' });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
  }
}

/** Moves the blobs under `from` to `to`: the whole folder when `to` has none, else file by file. */
async function moveBlobs(from: string, to: string): Promise<void> {
  try {
    await rename(from, to);
    return;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code !== 'ENOTEMPTY' && code !== 'EEXIST') throw error;
  }
  for (const algorithm of await readdir(from)) {
    await mkdir(join(to, algorithm), { recursive: true });
    for (const name of await readdir(join(from, algorithm))) {
      // Content-addressed: a blob already there is the same bytes. Temp files are not blobs.
      if (!name.startsWith('.')) await rename(join(from, algorithm, name), join(to, algorithm, name));
    }
  }
}

/** A lock file older than this was left by a process that died while it held it. */
const STALE_INDEX_LOCK_MS = 30_000;

/**
 * Takes `index.json.lock` in a layout, so that two processes adding manifests at once (two copies into
 * one folder) do not each write the index they read and lose the other's entry. Waits up to 30 s.
 */
async function lockIndex(dir: string): Promise<() => Promise<void>> {
  const path = join(dir, 'index.json.lock');
  const token = `${process.pid} ${randomBytes(8).toString('hex')}\n`;
  const deadline = Date.now() + STALE_INDEX_LOCK_MS;
  for (let wait = 5; ; wait = Math.min(wait * 2, 200)) {
    try {
      await writeFile(path, token, { flag: 'wx' });
      trackTempPath(path);
      // Removed only while it is still ours (a waiter that judged it stale may have taken it over).
      return async () => {
        const held = await readFile(path, 'utf8').catch(() => '');
        if (held === token) await removeTempPath(path);
        else releaseTempPath(path);
      };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
    const age = await stat(path).then(
      (info) => Date.now() - info.mtimeMs,
      () => 0,
    );
    if (age > STALE_INDEX_LOCK_MS) {
      // Renamed away, then removed: a waiter that judged the same file stale a moment later finds it gone
      // (the rename fails) rather than removing a lock just taken; the window left is between its stat and
      // its rename.
      const stale = `${path}.stale-${randomBytes(4).toString('hex')}`;
      if (
        await rename(path, stale).then(
          () => true,
          () => false,
        )
      )
        await rm(stale, { force: true });
    } else if (Date.now() > deadline)
      throw new ArchiveError(`"${path}" is held by another process; remove it if none is writing there`);
    await new Promise((resolve) => setTimeout(resolve, wait));
  }
}
