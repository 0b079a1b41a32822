import type { Readable } from 'node:stream';
import { formatReference, type Descriptor, type Digest, type Reference } from '../../oci/index.js';
import type { ImageSource, ImageTarget, PutBlobResult } from '../image-store.js';
import type { ManifestResult, RegistryClient } from '../registry-client.js';

/** A repository in a registry, as the source or target of a copy. */
export class RegistryStore implements ImageSource, ImageTarget {
  readonly name: string;
  readonly tag: string | undefined;

  constructor(
    readonly client: RegistryClient,
    readonly ref: Reference,
  ) {
    this.name = formatReference(ref);
    this.tag = ref.digest ? undefined : ref.tag;
  }

  root(signal?: AbortSignal): Promise<ManifestResult> {
    return this.client.getManifest(this.ref.repository, this.ref.digest ?? this.ref.tag ?? 'latest', signal);
  }

  manifest(digest: Digest, signal?: AbortSignal): Promise<ManifestResult> {
    return this.client.getManifest(this.ref.repository, digest, signal);
  }

  blob(descriptor: Descriptor, signal?: AbortSignal, verify = true): Promise<Readable> {
    return this.client.getBlob(this.ref.repository, descriptor.digest, {
      size: descriptor.size,
      verify,
      ...(signal ? { signal } : {}),
    });
  }

  referrers(digest: Digest, signal?: AbortSignal): Promise<Descriptor[]> {
    return this.client.referrers(this.ref.repository, digest, signal ? { signal } : {});
  }

  putBlob(
    descriptor: Descriptor,
    open: () => Promise<Readable>,
    options: { source?: ImageSource; signal?: AbortSignal } = {},
  ): Promise<PutBlobResult> {
    const source = options.source;
    // A blob in another repository of the same registry is mounted, not uploaded again.
    const mountFrom =
      source instanceof RegistryStore &&
      source.ref.registry === this.ref.registry &&
      source.ref.repository !== this.ref.repository
        ? source.ref.repository
        : undefined;
    return this.client.pushBlob(
      this.ref.repository,
      { digest: descriptor.digest, size: descriptor.size, open },
      { ...(mountFrom ? { mountFrom } : {}), ...(options.signal ? { signal: options.signal } : {}) },
    );
  }

  async putManifest(
    manifest: ManifestResult,
    options: { tag?: string | undefined; signal?: AbortSignal } = {},
  ): Promise<void> {
    await this.client.putManifest(this.ref.repository, options.tag ?? manifest.digest, {
      ...manifest,
      signal: options.signal,
    });
  }

  close(): Promise<void> {
    this.client.close();
    return Promise.resolve();
  }
}
