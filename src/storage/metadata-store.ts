import type { Digest } from '../oci/index.js';

/** What the registry remembers about a stored manifest (its bytes live in the BlobStore). */
export interface ManifestRecord {
  readonly digest: Digest;
  readonly mediaType: string;
  readonly size: number;
  readonly artifactType?: string;
  readonly subject?: Digest;
  readonly annotations?: Readonly<Record<string, string>>;
  /** Milliseconds since the epoch. */
  readonly createdAt: number;
}

export interface TagRecord {
  readonly name: string;
  readonly digest: Digest;
  readonly updatedAt: number;
}

/** A blob linked into a repository (pushed or mounted there). */
export interface BlobLinkRecord {
  readonly digest: Digest;
  readonly size: number;
  /** When it was last linked (a push or mount of a linked blob renews it), in milliseconds since the epoch. */
  readonly createdAt: number;
}

/** Who still needs a blob's bytes: repositories that link it, and repositories holding it as a manifest. */
export interface BlobUsers {
  readonly links: readonly string[];
  readonly manifests: readonly string[];
}

export interface UploadSession {
  readonly id: string;
  readonly repository: string;
  readonly createdAt: number;
}

/** When to renew a blob link as it is read (see MetadataStore.blobLink); times in ms since the epoch. */
export interface LinkRenewal {
  readonly before: number;
  readonly at: number;
}

/** Lexical pagination as the distribution spec defines it: up to `n` items after `last`. */
export interface Page {
  readonly last?: string;
  readonly n?: number;
}

/** What a manifest names that must be in its repository when it is recorded. */
export interface ManifestRequirements {
  readonly blobs: readonly Digest[];
  readonly manifests: readonly Digest[];
}

/**
 * Repositories, manifests, tags, referrers, per-repository blob links and upload sessions.
 * Every method is atomic; `putManifest` records the manifest, its blob link and its tag together.
 */
export interface MetadataStore {
  close(): Promise<void>;

  ensureRepository(name: string): Promise<void>;
  repositoryExists(name: string): Promise<boolean>;
  listRepositories(page?: Page): Promise<string[]>;

  linkBlob(repository: string, digest: Digest, size: number): Promise<void>;
  /**
   * Size of a blob linked into `repository`, or undefined. With `renew`, a link made before
   * `renew.before` is first renewed to `renew.at` (garbage collection's grace period counts from then),
   * atomically with the answer: a link reported here cannot be one a collector removed meanwhile as old.
   */
  blobLink(repository: string, digest: Digest, renew?: LinkRenewal): Promise<number | undefined>;
  /** Removes a blob link; with `createdBefore`, only one made (or renewed) before that time. */
  unlinkBlob(repository: string, digest: Digest, createdBefore?: number): Promise<boolean>;
  /** Repositories that link `digest` (for mounts and garbage collection). */
  repositoriesWithBlob(digest: Digest): Promise<string[]>;
  /** Every blob linked into a repository, by digest. */
  listBlobLinks(repository: string): Promise<BlobLinkRecord[]>;
  /** Repositories that link `digest` or store a manifest with that digest (garbage collection). */
  blobUsers(digest: Digest): Promise<BlobUsers>;

  /** Removes a repository with its manifests, tags, blob links and upload sessions; true when it existed. */
  deleteRepository(name: string): Promise<boolean>;
  /** Every manifest in a repository, newest first. */
  listManifests(repository: string): Promise<ManifestRecord[]>;

  /**
   * Records a manifest (and `tag` pointing at it). With `requires`, checked atomically with the write:
   * every blob and child manifest it names must still be in the repository (not deleted, nor unlinked,
   * since the caller looked). Returns the first one missing, and then writes nothing; undefined once
   * written.
   */
  putManifest(
    repository: string,
    manifest: ManifestRecord,
    write?: { readonly tag?: string; readonly requires?: ManifestRequirements },
  ): Promise<Digest | undefined>;
  getManifest(repository: string, digest: Digest): Promise<ManifestRecord | undefined>;
  /** Removes a manifest and every tag pointing at it; true when it existed. */
  deleteManifest(repository: string, digest: Digest): Promise<boolean>;
  /**
   * Removes an untagged manifest, atomically checking that it still is one and that nothing in the
   * repository was pushed or tagged at or after `since` (a garbage collector's snapshot time): false
   * (nothing removed) otherwise, or when it does not exist.
   */
  deleteManifestIfUnchanged(repository: string, digest: Digest, since: number): Promise<boolean>;

  resolveTag(repository: string, tag: string): Promise<Digest | undefined>;
  listTags(repository: string, page?: Page): Promise<TagRecord[]>;
  deleteTag(repository: string, tag: string): Promise<boolean>;

  /** Manifests in `repository` whose subject is `subject`, optionally with one artifact type. */
  listReferrers(repository: string, subject: Digest, artifactType?: string): Promise<ManifestRecord[]>;

  createUpload(session: UploadSession): Promise<void>;
  getUpload(id: string): Promise<UploadSession | undefined>;
  deleteUpload(id: string): Promise<boolean>;
  listUploads(olderThan?: number): Promise<UploadSession[]>;
}
