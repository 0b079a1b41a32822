import { once } from 'node:events';
import { pipeline, type Readable } from 'node:stream';
import type { OciLayout } from '../../oci/index.js';
import {
  digestOf,
  MAX_MANIFEST_BYTES,
  parseManifest,
  type Descriptor,
  type Digest,
} from '../../oci/index.js';
import { ClientError } from '../errors.js';
import { verifyingStream, type ManifestResult } from '../registry-client.js';
import type { ImageSource, ImageTarget, PutBlobResult } from '../image-store.js';

/** An OCI image layout folder (`oci:DIR[:TAG]`), as the source or target of a copy. */
export class LayoutStore implements ImageSource, ImageTarget {
  readonly name: string;

  constructor(
    readonly layout: OciLayout,
    readonly tag: string | undefined,
    name?: string,
  ) {
    this.name = name ?? `oci:${layout.dir}${tag ? `:${tag}` : ''}`;
  }

  async root(): Promise<ManifestResult> {
    const descriptor = await this.layout.resolve(this.tag);
    const bytes = await this.layout.readBlob(descriptor.digest, MAX_MANIFEST_BYTES);
    return { bytes, digest: descriptor.digest, mediaType: descriptor.mediaType };
  }

  async manifest(digest: Digest): Promise<ManifestResult> {
    const bytes = await this.layout.readBlob(digest, MAX_MANIFEST_BYTES);
    return { bytes, digest, mediaType: parseManifest(bytes).mediaType };
  }

  /**
   * The blob's file as a stream, once it is open: a missing or unreadable file fails here, before a
   * consumer that first awaits other work (a target's mkdir) could leave the stream's error unheard.
   */
  async blob(descriptor: Descriptor, _signal?: AbortSignal, verify = true): Promise<Readable> {
    const { digest } = descriptor;
    const stream = this.layout.openBlob(digest);
    try {
      await once(stream, 'open');
    } catch (error) {
      const missing = (error as NodeJS.ErrnoException).code === 'ENOENT';
      throw new ClientError(
        missing ? 'NOT_FOUND' : 'INVALID_INPUT',
        missing
          ? `Layout "${this.name}" has no blob ${digest}`
          : `Cannot read blob ${digest} of layout "${this.name}": ${(error as Error).message}`,
        { cause: error },
      );
    }
    if (!verify) return stream;
    // pipeline, unlike pipe, passes a read error on to the verifying stream's reader.
    return pipeline(stream, verifyingStream(digest, descriptor.size), () => undefined);
  }

  /** Referrers in a layout are the manifests it holds whose subject is `digest`. */
  async referrers(digest: Digest): Promise<Descriptor[]> {
    const out: Descriptor[] = [];
    for (const entry of (await this.layout.index()).manifests) {
      try {
        const parsed = parseManifest(await this.layout.readBlob(entry.digest, MAX_MANIFEST_BYTES));
        if (parsed.subject?.digest === digest)
          out.push({ ...entry, ...(parsed.artifactType ? { artifactType: parsed.artifactType } : {}) });
      } catch {
        // A missing or foreign entry is not a referrer.
      }
    }
    return out;
  }

  async putBlob(descriptor: Descriptor, open: () => Promise<Readable>): Promise<PutBlobResult> {
    if ((await this.layout.blobSize(descriptor.digest)) !== undefined) return 'exists';
    await this.layout.writeBlob(descriptor.digest, await open());
    return 'uploaded';
  }

  async putManifest(
    manifest: ManifestResult,
    options: { tag?: string | undefined; root?: boolean } = {},
  ): Promise<void> {
    const digest = digestOf(manifest.bytes);
    await this.layout.writeBlob(digest, [manifest.bytes]);
    const parsed = parseManifest(manifest.bytes, manifest.mediaType);
    const descriptor: Descriptor = {
      mediaType: manifest.mediaType,
      digest,
      size: manifest.bytes.length,
      ...(parsed.artifactType && parsed.kind === 'index' ? { artifactType: parsed.artifactType } : {}),
    };
    // Children of an index stay out of index.json; roots and referrers are listed.
    if (options.root || parsed.subject) await this.layout.addManifest(descriptor, options.tag);
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}
