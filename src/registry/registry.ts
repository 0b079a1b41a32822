import { EventEmitter } from 'node:events';
import { randomBytes } from 'node:crypto';
import {
  digestOf,
  isForeignLayer,
  ManifestError,
  parseDigest,
  parseManifest,
  repositoryNameProblem,
  isValidTag,
  MAX_MANIFEST_BYTES,
  type Digest,
  type ParsedManifest,
  type Descriptor,
} from '../oci/index.js';
import {
  StorageError,
  type BlobStore,
  type ByteRange,
  type ByteSink,
  type ManifestRecord,
  type MetadataStore,
  type TagRecord,
  type Page,
} from '../storage/index.js';
import { RegistryError } from './errors.js';
import { LruCache } from './cache.js';
import { DigestGuard } from './digest-guard.js';
import { collectGarbage, type GarbageCollectionOptions, type GarbageCollectionReport } from './gc.js';

/**
 * A HEAD on a blob renews its link in the repository when the link is older than this, so a push that
 * skips the blob is safe from garbage collection with a longer grace period (at most one write a minute).
 */
export const LINK_RENEW_MS = 60_000;

/** What the registry announces after a change; the reconciler and webhooks subscribe to it. */
export interface RegistryEvent {
  readonly action: 'push' | 'delete';
  readonly repository: string;
  readonly digest: Digest;
  readonly tag?: string;
  readonly mediaType?: string;
}

export interface RegistryOptions {
  readonly blobs: BlobStore;
  readonly metadata: MetadataStore;
  /** Bytes of manifest content kept in memory. Default: 64 MiB. */
  readonly manifestCacheBytes?: number;
  /** Largest blob accepted, in bytes. Default: unlimited. */
  readonly maxBlobBytes?: number;
  /** Current time, injectable for tests. Default: Date.now. */
  readonly now?: () => number;
  /** Whether a push may create a repository. Default: true. */
  readonly createRepositoryOnPush?: boolean;
}

export interface StoredManifest {
  readonly digest: Digest;
  readonly mediaType: string;
  readonly bytes: Buffer;
}

export interface PutManifestResult {
  readonly digest: Digest;
  readonly subject?: Digest;
}

export interface ArtifactSummary extends ManifestRecord {
  readonly kind: 'image' | 'index';
  readonly configMediaType?: string;
  readonly tags: readonly TagRecord[];
  readonly children: readonly Descriptor[];
}

export interface UploadChunk {
  readonly body: AsyncIterable<Uint8Array>;
  /** Where the client says the chunk starts (Content-Range); checked against the upload's size. */
  readonly offset?: number | undefined;
}

export interface ManifestContent {
  readonly body: Buffer;
  /** The request's Content-Type, checked against the manifest's own mediaType. */
  readonly contentType?: string | undefined;
}

function parseDigestOrThrow(value: string): ReturnType<typeof parseDigest> {
  try {
    return parseDigest(value);
  } catch (error) {
    throw new RegistryError('DIGEST_INVALID', (error as Error).message, { detail: { digest: value } });
  }
}

function digestOrThrow(value: string): Digest {
  return parseDigestOrThrow(value).digest;
}

/**
 * Cached bytes with the media type the repository's own push gave them: the byte cache is shared by
 * digest, and a manifest without a `mediaType` field takes its type from each push's Content-Type.
 */
function asPushed(stored: StoredManifest, record: ManifestRecord): StoredManifest {
  return stored.mediaType === record.mediaType ? stored : { ...stored, mediaType: record.mediaType };
}

/** The blobs an image manifest needs in its repository: its config and layers, foreign layers aside. */
function requiredBlobs(parsed: ParsedManifest): Descriptor[] {
  const blobs = parsed.kind === 'image' ? [...(parsed.config ? [parsed.config] : []), ...parsed.layers] : [];
  return blobs.filter((descriptor) => !isForeignLayer(descriptor.mediaType));
}

function storageToRegistry(error: unknown, uploadId?: string): never {
  if (error instanceof StorageError) {
    switch (error.code) {
      case 'BLOB_NOT_FOUND':
        throw new RegistryError('BLOB_UNKNOWN', error.message, { cause: error });
      case 'DIGEST_MISMATCH':
        throw new RegistryError('DIGEST_INVALID', error.message, { cause: error });
      case 'UPLOAD_NOT_FOUND':
        throw new RegistryError('BLOB_UPLOAD_UNKNOWN', error.message, {
          cause: error,
          detail: { uuid: uploadId },
        });
      case 'UPLOAD_OFFSET_MISMATCH':
        throw new RegistryError('BLOB_UPLOAD_INVALID', error.message, { status: 416, cause: error });
      case 'RANGE_NOT_SATISFIABLE':
        throw new RegistryError('BLOB_UNKNOWN', error.message, { status: 416, cause: error });
      case 'TOO_LARGE':
        throw new RegistryError('SIZE_INVALID', error.message, { status: 413, cause: error });
    }
  }
  throw error;
}

/**
 * The registry's behaviour, independent of HTTP: names, digests, manifests and their rules, uploads,
 * and the in-memory caches that keep manifest reads off SQL and disk. One instance per process; the
 * caches are invalidated by this instance's own writes.
 */
export class Registry {
  /** Pushes and deletes; `close` when the server shuts down (long-lived event streams end then). */
  readonly events = new EventEmitter<{
    event: [RegistryEvent];
    close: [];
    /** A garbage collection ended: its report, or the error it failed with. */
    gc: [GarbageCollectionReport | Error];
  }>();
  readonly #blobs: BlobStore;
  readonly #meta: MetadataStore;
  readonly #maxBlobBytes: number;
  readonly #now: () => number;
  /** digest → manifest bytes and media type (content-addressed, never stale). */
  readonly #manifestBytes: LruCache<Digest, StoredManifest>;
  /** `repo@digest` → manifest record, for manifests known to be in a repository. */
  readonly #manifestLinks = new LruCache<string, ManifestRecord>(100_000);
  /** `repo:tag` → digest. */
  readonly #tags = new LruCache<string, Digest>(100_000);
  /**
   * Upload id → repository, for the sessions this instance started: every PATCH and PUT checks its
   * session, which took 0.4 ms a request from SQL. An id is dropped before its row is deleted; one not
   * here (a session from before a restart, or evicted) is looked up in SQL.
   */
  readonly #uploadSessions = new LruCache<string, string>(100_000);
  readonly #activeUploads = new Set<string>();
  /** Keeps garbage collection off the digests that writes are relying on (see DigestGuard). */
  readonly #guard = new DigestGuard();
  /** Manifests stored per repository by this instance (garbage collection checks it; see gc.ts). */
  readonly #manifestWrites = new Map<string, number>();
  /** The collection under way, if any: one at a time. */
  #collecting: Promise<GarbageCollectionReport> | undefined;
  readonly #createOnPush: boolean;
  /**
   * Counts this instance's tag and manifest writes. A read that went to SQL caches its answer only if no
   * write happened meanwhile: else a read that began before a tag moved could put the old digest back
   * into the cache after the write had set the new one, and serve it until the next write.
   */
  #writes = 0;

  constructor(options: RegistryOptions) {
    this.events.setMaxListeners(0); // one listener per event-stream subscriber
    this.#blobs = options.blobs;
    this.#meta = options.metadata;
    this.#maxBlobBytes = options.maxBlobBytes ?? Infinity;
    this.#now = options.now ?? Date.now;
    this.#createOnPush = options.createRepositoryOnPush ?? true;
    this.#manifestBytes = new LruCache(options.manifestCacheBytes ?? 64 * 1024 * 1024);
  }

  /** Whether a garbage collection is running. */
  get collecting(): boolean {
    return this.#collecting !== undefined;
  }

  get activeUploads(): number {
    return this.#activeUploads.size;
  }

  /** Throws NAME_INVALID unless `name` is a valid repository name. */
  checkName(name: string): void {
    const problem = repositoryNameProblem(name);
    if (problem)
      throw new RegistryError('NAME_INVALID', `Invalid repository name "${name}": ${problem}`, {
        detail: { name },
      });
  }

  /** Throws DIGEST_INVALID unless `text` is a digest this registry can verify (sha256 or sha512). */
  checkDigest(text: string): Digest {
    return digestOrThrow(text);
  }

  // ---- blobs ----

  /**
   * A blob's size in the repository. `checkedForPush` (a HEAD: what a pushing client asks before it
   * skips an upload) renews a link older than LINK_RENEW_MS, so garbage collection with a longer grace
   * period keeps a layer the client has just been told is there until its manifest arrives.
   */
  async statBlob(name: string, digestText: string, checkedForPush = false): Promise<number> {
    const digest = digestOrThrow(digestText);
    const now = this.#now();
    const renew = checkedForPush ? { before: now - LINK_RENEW_MS, at: now } : undefined;
    const size = await this.#meta.blobLink(name, digest, renew);
    // Check the bytes too, so a GET fails with a proper 404 before any header is sent, never midway.
    if (size !== undefined && (await this.#blobs.stat(digest))) return size;
    const manifest = await this.#manifestRecord(name, digest);
    if (manifest) return manifest.size;
    throw new RegistryError('BLOB_UNKNOWN', `Blob "${digest}" is not in repository "${name}"`, {
      detail: { digest },
    });
  }

  /** Writes a blob (or a range) of the repository to `destination`; the caller has sent the headers. */
  async sendBlob(digest: Digest, destination: ByteSink, range?: ByteRange): Promise<void> {
    try {
      await this.#blobs.writeTo(digest, destination, range);
    } catch (error) {
      storageToRegistry(error);
    }
  }

  async deleteBlob(name: string, digestText: string): Promise<void> {
    const digest = digestOrThrow(digestText);
    if (!(await this.#meta.unlinkBlob(name, digest))) {
      throw new RegistryError('BLOB_UNKNOWN', `Blob "${digest}" is not in repository "${name}"`, {
        detail: { digest },
      });
    }
  }

  /** Stores a whole blob sent in one request and links it into the repository. */
  async putBlob(name: string, digestText: string, body: AsyncIterable<Uint8Array>): Promise<Digest> {
    const digest = digestOrThrow(digestText);
    return this.#whilePinned([digest], async () => {
      try {
        const info = await this.#blobs.put(body, digest, { maxBytes: this.#maxBlobBytes });
        await this.#meta.linkBlob(name, digest, info.size);
        return digest;
      } catch (error) {
        storageToRegistry(error);
      }
    });
  }

  /**
   * Runs `work` with `digests` pinned against garbage collection (see DigestGuard). The pin is taken
   * before this returns to the caller's first await; `work` starts once no removal of them is under way.
   */
  async #whilePinned<T>(digests: readonly string[], work: () => Promise<T>): Promise<T> {
    const pin = this.#guard.pin(digests);
    try {
      await pin.ready;
      return await work();
    } finally {
      pin.release();
    }
  }

  /**
   * Mounts a blob from another repository; false when it cannot (unknown in `from`), in which case the
   * caller opens a normal upload session as the spec asks.
   */
  async mountBlob(name: string, digestText: string, from: string): Promise<boolean> {
    // What cannot be mounted (a malformed digest too) opens a normal upload session instead (202).
    let digest: Digest;
    try {
      digest = digestOrThrow(digestText);
    } catch {
      return false;
    }
    if (repositoryNameProblem(from)) return false;
    return this.#whilePinned([digest], async () => {
      const size = await this.#meta.blobLink(from, digest);
      if (size === undefined || !(await this.#blobs.stat(digest))) return false;
      await this.#meta.linkBlob(name, digest, size);
      return true;
    });
  }

  // ---- uploads ----

  async startUpload(name: string): Promise<string> {
    const id = randomBytes(16).toString('base64url');
    // Row first, then file: a staged file without a row is then always an orphan the purge may remove.
    await this.#meta.createUpload({ id, repository: name, createdAt: this.#now() });
    await this.#blobs.createUpload(id);
    this.#uploadSessions.set(id, name);
    return id;
  }

  async #session(name: string, id: string): Promise<void> {
    // Sessions this instance started are known here; older ones (from before a restart) are asked of SQL.
    const repository = this.#uploadSessions.get(id) ?? (await this.#meta.getUpload(id))?.repository;
    if (repository !== name) {
      throw new RegistryError('BLOB_UPLOAD_UNKNOWN', `Upload "${id}" is not open in repository "${name}"`, {
        detail: { uuid: id },
      });
    }
  }

  /** Deletes a session's row, after forgetting it here (so no request finds it in between). */
  async #endSession(id: string): Promise<void> {
    this.#uploadSessions.delete(id);
    await this.#meta.deleteUpload(id);
  }

  /** Bytes received so far in an upload session. */
  async uploadStatus(name: string, id: string): Promise<number> {
    await this.#session(name, id);
    const size = await this.#blobs.uploadSize(id);
    if (size === undefined)
      throw new RegistryError('BLOB_UPLOAD_UNKNOWN', `Upload "${id}" has no data`, { detail: { uuid: id } });
    return size;
  }

  async appendUpload(name: string, id: string, chunk: UploadChunk): Promise<number> {
    const { body, offset } = chunk;
    await this.#session(name, id);
    // Only the chunk that gets the upload counts it: one refused because another is being written
    // must not end the count while that one goes on.
    const counted = !this.#activeUploads.has(id);
    this.#activeUploads.add(id);
    try {
      return await this.#blobs.appendUpload(id, body, {
        maxBytes: this.#maxBlobBytes,
        ...(offset === undefined ? {} : { offset }),
      });
    } catch (error) {
      return storageToRegistry(error, id);
    } finally {
      if (counted) this.#activeUploads.delete(id);
    }
  }

  /** Verifies and publishes an upload. A digest mismatch discards the session (no partial blob stays). */
  async finishUpload(name: string, id: string, digestText: string): Promise<Digest> {
    await this.#session(name, id);
    const digest = digestOrThrow(digestText);
    try {
      return await this.#whilePinned([digest], async () => {
        const info = await this.#blobs.commitUpload(id, digest);
        await this.#meta.linkBlob(name, digest, info.size);
        return digest;
      });
    } catch (error) {
      return storageToRegistry(error, id);
    } finally {
      if ((await this.#blobs.uploadSize(id)) === undefined) await this.#endSession(id);
    }
  }

  /**
   * Ends a session: its row first, then its staged file. If the row cannot be deleted (a full disk), the
   * session is left whole; a staged file left without a row is an orphan that `purgeUploads` removes.
   */
  async cancelUpload(name: string, id: string): Promise<void> {
    await this.#session(name, id);
    await this.#endSession(id);
    await this.#blobs.cancelUpload(id);
  }

  /** Waits for the work left on upload chunks already answered (see BlobStore.flush); false if it gave up. */
  flushUploads(): Promise<boolean> {
    return this.#blobs.flush();
  }

  /** Removes upload sessions older than `maxAgeMs` and staged files without a session. */
  async purgeUploads(maxAgeMs: number): Promise<number> {
    const stale = await this.#meta.listUploads(this.#now() - maxAgeMs);
    for (const session of stale) {
      await this.#endSession(session.id);
      await this.#blobs.cancelUpload(session.id);
    }
    let orphans = 0;
    for (const id of await this.#blobs.listUploads()) {
      if (!(await this.#meta.getUpload(id))) {
        await this.#blobs.cancelUpload(id);
        orphans++;
      }
    }
    return stale.length + orphans;
  }

  // ---- manifests ----

  async #manifestRecord(name: string, digest: Digest): Promise<ManifestRecord | undefined> {
    const key = `${name}@${digest}`;
    const cached = this.#manifestLinks.get(key);
    if (cached) return cached;
    const writes = this.#writes;
    const record = await this.#meta.getManifest(name, digest);
    if (record && writes === this.#writes) this.#manifestLinks.set(key, record);
    return record;
  }

  /** Resolves a tag or digest to a digest known in the repository. */
  async resolve(name: string, reference: string): Promise<Digest> {
    if (reference.includes(':')) {
      const digest = digestOrThrow(reference);
      if (await this.#manifestRecord(name, digest)) return digest;
      throw new RegistryError('MANIFEST_UNKNOWN', `Manifest "${digest}" is not in repository "${name}"`, {
        detail: { digest },
      });
    }
    if (!isValidTag(reference)) {
      // A name that cannot be a tag is simply not there (the conformance suite expects 404 here).
      throw new RegistryError('MANIFEST_UNKNOWN', `Invalid tag "${reference}"`, {
        detail: { tag: reference },
      });
    }
    const key = `${name}:${reference}`;
    let digest = this.#tags.get(key);
    if (digest === undefined) {
      const writes = this.#writes;
      digest = await this.#meta.resolveTag(name, reference);
      if (digest === undefined) {
        throw new RegistryError('MANIFEST_UNKNOWN', `Tag "${reference}" is not in repository "${name}"`, {
          detail: { tag: reference },
        });
      }
      if (writes === this.#writes) this.#tags.set(key, digest);
    }
    return digest;
  }

  /**
   * The manifest a tag or digest names when memory holds all it takes to answer (the tag or the
   * repository's link, and the bytes), without waiting for anything; else undefined (use getManifest).
   */
  cachedManifest(name: string, reference: string): StoredManifest | undefined {
    // Only verified digests are keys of the link cache, so a hit is also a valid reference.
    const digest = reference.includes(':') ? (reference as Digest) : this.#tags.get(`${name}:${reference}`);
    if (digest === undefined) return undefined;
    const record = this.#manifestLinks.get(`${name}@${digest}`);
    const stored = record && this.#manifestBytes.get(digest);
    return stored && asPushed(stored, record);
  }

  /** A manifest's bytes by tag or digest, served from memory when it was read or written before. */
  async getManifest(name: string, reference: string): Promise<StoredManifest> {
    const digest = await this.resolve(name, reference);
    const record = await this.#manifestRecord(name, digest);
    if (!record)
      throw new RegistryError('MANIFEST_UNKNOWN', `Manifest "${digest}" is not in repository "${name}"`);
    const cached = this.#manifestBytes.get(digest);
    if (cached) return asPushed(cached, record);
    let bytes: Buffer;
    try {
      bytes = await this.#blobs.readBytes(digest, MAX_MANIFEST_BYTES);
    } catch (error) {
      storageToRegistry(error);
    }
    const stored = { digest, mediaType: record.mediaType, bytes };
    this.#manifestBytes.set(digest, stored, bytes.byteLength);
    return stored;
  }

  async putManifest(name: string, reference: string, content: ManifestContent): Promise<PutManifestResult> {
    const { body, contentType } = content;
    const byDigest = reference.includes(':');
    if (!byDigest && !isValidTag(reference)) {
      throw new RegistryError('MANIFEST_INVALID', `Invalid tag "${reference}"`, {
        detail: { tag: reference },
      });
    }
    const algorithm = byDigest ? parseDigestOrThrow(reference).algorithm : 'sha256';
    let parsed: ParsedManifest;
    try {
      parsed = parseManifest(body, contentType);
    } catch (error) {
      if (error instanceof ManifestError)
        throw new RegistryError('MANIFEST_INVALID', error.message, { cause: error });
      throw error;
    }
    const digest = digestOf(body, algorithm);
    if (byDigest && digest !== reference) {
      throw new RegistryError('DIGEST_INVALID', `Manifest digest is "${digest}", not "${reference}"`, {
        detail: { expected: reference, actual: digest },
      });
    }
    // The manifest, its blobs and its children must not be collected between the checks and the write.
    const relied = [
      digest,
      ...(parsed.config ? [parsed.config.digest] : []),
      ...parsed.layers.map((layer) => layer.digest),
      ...parsed.manifests.map((child) => child.digest),
    ];
    return this.#whilePinned(relied, () => this.#storeManifest(name, reference, { parsed, body, digest }));
  }

  /** The rest of putManifest, once the digests it relies on are pinned. */
  async #storeManifest(
    name: string,
    reference: string,
    manifest: { parsed: ParsedManifest; body: Buffer; digest: Digest },
  ): Promise<PutManifestResult> {
    const { parsed, body, digest } = manifest;
    const byDigest = reference.includes(':');
    await this.#checkReferences(name, parsed);
    try {
      await this.#blobs.putBytes(body, digest);
    } catch (error) {
      storageToRegistry(error);
    }
    const record: ManifestRecord = {
      digest,
      mediaType: parsed.mediaType,
      size: body.byteLength,
      createdAt: this.#now(),
      ...(parsed.artifactType === undefined ? {} : { artifactType: parsed.artifactType }),
      ...(parsed.subject ? { subject: parsed.subject.digest } : {}),
      ...(parsed.annotations ? { annotations: parsed.annotations } : {}),
    };
    const tag = byDigest ? undefined : reference;
    // Checked again as the manifest is written: the repository may have been deleted (or a blob unlinked)
    // since #checkReferences looked, and a tag naming blobs the repository lacks would answer 404s.
    const missing = await this.#meta.putManifest(name, record, {
      ...(tag === undefined ? {} : { tag }),
      requires: {
        blobs: requiredBlobs(parsed).map((descriptor) => descriptor.digest),
        manifests: parsed.manifests.map((child) => child.digest),
      },
    });
    if (missing !== undefined) {
      throw new RegistryError(
        'MANIFEST_BLOB_UNKNOWN',
        `"${missing}" is no longer in repository "${name}" (removed while the manifest was pushed)`,
        { detail: { digest: missing } },
      );
    }
    const written = ++this.#writes;
    // Counted while the push still pins its digests, so a collector claiming one sees the change.
    this.#manifestWrites.set(name, (this.#manifestWrites.get(name) ?? 0) + 1);
    // Cached as the database has it after the write: a delete of the manifest, its tag or its repository
    // may have run in between. A delete after these reads bumps #writes (or clears the caches itself).
    const existing = await this.#meta.getManifest(name, digest);
    const tagged = existing && tag !== undefined ? await this.#meta.resolveTag(name, tag) : undefined;
    if (existing && written === this.#writes) {
      this.#manifestLinks.set(`${name}@${digest}`, existing);
      if (tag !== undefined && tagged === digest) this.#tags.set(`${name}:${tag}`, digest);
    }
    this.#manifestBytes.set(digest, { digest, mediaType: parsed.mediaType, bytes: body }, body.byteLength);
    this.events.emit('event', {
      action: 'push',
      repository: name,
      digest,
      mediaType: parsed.mediaType,
      ...(tag === undefined ? {} : { tag }),
    });
    return { digest, ...(parsed.subject ? { subject: parsed.subject.digest } : {}) };
  }

  /** Every blob an image manifest names, and every child of an index, must already be in the repository. */
  async #checkReferences(name: string, parsed: ParsedManifest): Promise<void> {
    const unknown = (descriptor: Descriptor, what: string): never => {
      throw new RegistryError(
        'MANIFEST_BLOB_UNKNOWN',
        `${what} "${descriptor.digest}" is not in repository "${name}"`,
        {
          detail: { digest: descriptor.digest },
        },
      );
    };
    for (const descriptor of requiredBlobs(parsed)) {
      const size = await this.#meta.blobLink(name, descriptor.digest);
      if (size === undefined) unknown(descriptor, 'Blob');
      else if (size !== descriptor.size) {
        throw new RegistryError(
          'MANIFEST_INVALID',
          `Descriptor for "${descriptor.digest}" says ${descriptor.size} bytes but the blob has ${size}`,
          { detail: { digest: descriptor.digest } },
        );
      }
    }
    for (const child of parsed.manifests) {
      if (!(await this.#manifestRecord(name, child.digest))) unknown(child, 'Manifest');
    }
  }

  async deleteManifest(name: string, reference: string): Promise<void> {
    if (!reference.includes(':')) {
      if (!isValidTag(reference)) throw new RegistryError('MANIFEST_INVALID', `Invalid tag "${reference}"`);
      const digest = await this.resolve(name, reference);
      await this.#meta.deleteTag(name, reference);
      this.#writes++;
      this.#tags.delete(`${name}:${reference}`);
      this.events.emit('event', { action: 'delete', repository: name, digest, tag: reference });
      return;
    }
    const digest = digestOrThrow(reference);
    const deleted = await this.#meta.deleteManifest(name, digest);
    this.#writes++;
    if (!deleted) {
      throw new RegistryError('MANIFEST_UNKNOWN', `Manifest "${digest}" is not in repository "${name}"`, {
        detail: { digest },
      });
    }
    this.#manifestLinks.delete(`${name}@${digest}`);
    const prefix = `${name}:`;
    this.#tags.deleteWhere((key) => key.startsWith(prefix));
    this.events.emit('event', { action: 'delete', repository: name, digest });
  }

  // ---- listings ----

  async listTags(name: string, page: Page): Promise<string[]> {
    if (!(await this.#meta.repositoryExists(name))) {
      throw new RegistryError('NAME_UNKNOWN', `Repository "${name}" is not known`, { detail: { name } });
    }
    return (await this.#meta.listTags(name, page)).map((tag) => tag.name);
  }

  listRepositories(page: Page): Promise<string[]> {
    return this.#meta.listRepositories(page);
  }

  repositoryExists(name: string): Promise<boolean> {
    return this.#meta.repositoryExists(name);
  }

  /** Refuses a push to a repository that does not exist when repositories must be created first. */
  async checkPushTarget(name: string): Promise<void> {
    if (this.#createOnPush || (await this.#meta.repositoryExists(name))) return;
    throw new RegistryError(
      'NAME_UNKNOWN',
      `Repository "${name}" does not exist; create it first ("airlock repo create")`,
      {
        detail: { name },
      },
    );
  }

  async createRepository(name: string): Promise<void> {
    this.checkName(name);
    await this.#meta.ensureRepository(name);
  }

  /** Removes a repository and everything in it (blob bytes stay until garbage collection). */
  async deleteRepository(name: string): Promise<boolean> {
    const removed = await this.#meta.deleteRepository(name);
    this.#writes++;
    this.#manifestLinks.deleteWhere((key) => key.startsWith(`${name}@`));
    this.#tags.deleteWhere((key) => key.startsWith(`${name}:`));
    return removed;
  }

  listManifests(name: string): Promise<ManifestRecord[]> {
    return this.#meta.listManifests(name);
  }

  /**
   * Deletes what nothing refers to any more (see gc.ts), while the registry goes on serving. One
   * collection at a time: a second one asked for meanwhile fails with 409.
   */
  collectGarbage(options: GarbageCollectionOptions = {}): Promise<GarbageCollectionReport> {
    if (this.collecting) {
      return Promise.reject(
        new RegistryError('UNSUPPORTED', 'A garbage collection is already running', { status: 409 }),
      );
    }
    this.#collecting = collectGarbage(
      {
        meta: this.#meta,
        blobs: this.#blobs,
        guard: this.#guard,
        now: this.#now,
        // Straight from storage: a collection reads every manifest once and must not flush the hot cache.
        readManifest: (digest) => this.#blobs.readBytes(digest, MAX_MANIFEST_BYTES),
        manifestWrites: (name) => this.#manifestWrites.get(name) ?? 0,
        deleteUntaggedManifest: async (name, digest, since) => {
          const deleted = await this.#meta.deleteManifestIfUnchanged(name, digest, since);
          this.#writes++;
          if (deleted) {
            this.#manifestLinks.delete(`${name}@${digest}`);
            this.events.emit('event', { action: 'delete', repository: name, digest });
          }
          return deleted;
        },
      },
      options,
    ).finally(() => {
      this.#collecting = undefined;
    });
    this.#collecting.then(
      (report) => this.events.emit('gc', report),
      (error: unknown) => this.events.emit('gc', error instanceof Error ? error : new Error(String(error))),
    );
    return this.#collecting;
  }

  /** Manifests with their tags, config media type and index children, for the Harbor-style artifact list. */
  async describeArtifacts(name: string): Promise<ArtifactSummary[]> {
    const manifests = await this.#meta.listManifests(name);
    const tags = await this.#meta.listTags(name);
    const out: ArtifactSummary[] = [];
    for (const record of manifests) {
      let parsed: ParsedManifest | undefined;
      try {
        parsed = parseManifest((await this.getManifest(name, record.digest)).bytes, record.mediaType);
      } catch {
        parsed = undefined;
      }
      out.push({
        ...record,
        kind: parsed?.kind ?? 'image',
        ...(parsed?.config ? { configMediaType: parsed.config.mediaType } : {}),
        tags: tags.filter((t) => t.digest === record.digest),
        children: parsed?.manifests ?? [],
      });
    }
    return out;
  }

  /** Descriptors of the manifests whose subject is `subject`, as the referrers API returns them. */
  async listReferrers(name: string, subjectText: string, artifactType?: string): Promise<Descriptor[]> {
    const subject = digestOrThrow(subjectText);
    const records = await this.#meta.listReferrers(name, subject, artifactType);
    return records.map((record) => ({
      mediaType: record.mediaType,
      digest: record.digest,
      size: record.size,
      ...(record.artifactType === undefined ? {} : { artifactType: record.artifactType }),
      ...(record.annotations ? { annotations: record.annotations } : {}),
    }));
  }
}
