import type { Readable } from 'node:stream';
import type { Descriptor, Digest, Platform } from '../oci/index.js';
import type { ManifestResult } from './registry-client.js';

/** Where a copy reads from: a registry repository, an OCI layout, an archive. */
export interface ImageSource {
  /** For messages: `oci:/path:tag`, `registry/repo:tag`. */
  readonly name: string;
  /** The names the source gives its root itself, where it has any: a docker archive's RepoTags. */
  readonly rootNames?: readonly string[];
  /** The manifest (or index) the reference names. */
  root(signal?: AbortSignal): Promise<ManifestResult>;
  manifest(digest: Digest, signal?: AbortSignal): Promise<ManifestResult>;
  /**
   * A blob's bytes, verified against the digest while streaming unless `verify` is false (for a
   * destination that checks the digest itself, so the bytes are hashed once).
   */
  blob(descriptor: Descriptor, signal?: AbortSignal, verify?: boolean): Promise<Readable>;
  /** Manifests whose subject is `digest`; empty when the store cannot tell. */
  referrers(digest: Digest, signal?: AbortSignal): Promise<Descriptor[]>;
  close(): Promise<void>;
}

export type PutBlobResult = 'exists' | 'mounted' | 'uploaded';

/** Where a copy writes to. */
export interface ImageTarget {
  readonly name: string;
  /** Stores a blob unless present; `source` may let a registry mount instead of uploading. */
  putBlob(
    descriptor: Descriptor,
    open: () => Promise<Readable>,
    options?: { source?: ImageSource; signal?: AbortSignal },
  ): Promise<PutBlobResult>;
  /** Stores a manifest by digest; `root` marks the manifest the copy is about, `tag` names it. */
  putManifest(
    manifest: ManifestResult,
    options?: { tag?: string | undefined; root?: boolean; signal?: AbortSignal },
  ): Promise<void>;
  /** The tag the reference names, if any, used for the root manifest. */
  readonly tag: string | undefined;
  /**
   * Set when the target holds one image only (a docker archive): the platform a copy takes from an index
   * unless it is asked for another one. Default: none (indexes are copied whole).
   */
  readonly onePlatform?: Platform;
  /** Finishes the write (archives are packed here); `ok: false` discards partial output. */
  close(ok: boolean): Promise<void>;
}
