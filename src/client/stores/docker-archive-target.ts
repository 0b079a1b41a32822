import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import {
  decompressed,
  makeTempDir,
  OciLayout,
  MediaType,
  parseManifest,
  parseReference,
  removeTempPath,
  type Descriptor,
  type Platform,
} from '../../oci/index.js';
import { ClientError } from '../errors.js';
import type { ImageTarget, PutBlobResult } from '../image-store.js';
import type { ManifestResult } from '../registry-client.js';
import { checkArchiveDestination, packFolder } from './archive-store.js';

/** Config media types of container images (what docker load takes); anything else is an artifact. */
const IMAGE_CONFIG_TYPES: ReadonlySet<string> = new Set([MediaType.DockerConfig, MediaType.OciConfig]);

/**
 * `docker-archive:FILE[:NAME:TAG]` as a target: the `docker save` layout (manifest.json, `<hex>.json`
 * config, uncompressed `<hex>/layer.tar` layers, `repositories`) that `docker load` and `podman load` read.
 * Blobs are staged in a temp folder; the tar is written to FILE.partial and renamed on success.
 */
export class DockerArchiveTarget implements ImageTarget {
  readonly name: string;
  readonly tag = undefined;
  #root: ManifestResult | undefined;

  readonly file: string;
  readonly imageName: string | undefined;
  readonly work: string;
  readonly layout: OciLayout;
  /** One image per archive: a copy takes this platform of an index unless it is asked for another. */
  readonly onePlatform: Platform = { os: 'linux', architecture: 'amd64' };

  private constructor(parts: {
    file: string;
    imageName: string | undefined;
    work: string;
    layout: OciLayout;
  }) {
    ({ file: this.file, imageName: this.imageName, work: this.work, layout: this.layout } = parts);
    this.name = `docker-archive:${this.file}${this.imageName ? `:${this.imageName}` : ''}`;
  }

  static async open(file: string, imageName: string | undefined): Promise<DockerArchiveTarget> {
    if (imageName !== undefined) {
      try {
        parseReference(imageName);
      } catch (error) {
        throw new ClientError(
          'INVALID_INPUT',
          `docker-archive name "${imageName}" is not NAME:TAG: ${(error as Error).message}`,
        );
      }
    }
    await checkArchiveDestination(file);
    const work = await makeTempDir(join(tmpdir(), 'airlock-docker-archive-'));
    const layout = await OciLayout.open(join(work, 'blobs'), { create: true });
    return new DockerArchiveTarget({ file, imageName, work, layout });
  }

  async putBlob(descriptor: Descriptor, open: () => Promise<Readable>): Promise<PutBlobResult> {
    if ((await this.layout.blobSize(descriptor.digest)) !== undefined) return 'exists';
    await this.layout.writeBlob(descriptor.digest, await open());
    return 'uploaded';
  }

  async putManifest(manifest: ManifestResult, options: { root?: boolean } = {}): Promise<void> {
    await this.layout.writeBlob(manifest.digest, [manifest.bytes]);
    if (options.root) this.#root = manifest;
  }

  async close(ok: boolean): Promise<void> {
    try {
      if (ok) await this.#write();
    } finally {
      await removeTempPath(this.work);
    }
  }

  async #write(): Promise<void> {
    if (!this.#root) throw new ClientError('INVALID_INPUT', 'Nothing was copied into the docker archive');
    // copyImage narrows an index to onePlatform, so the root is one manifest here.
    const manifest = parseManifest(this.#root.bytes, this.#root.mediaType);
    if (!manifest.config || !IMAGE_CONFIG_TYPES.has(manifest.config.mediaType))
      throw new ClientError(
        'INVALID_INPUT',
        `A docker archive holds container images; ${this.#root.digest} is an artifact (config type "${manifest.config?.mediaType ?? 'none'}"): copy it to oci: or oci-archive: instead`,
      );
    const tree = join(this.work, 'tree');
    await mkdir(tree);
    const configName = `${manifest.config.digest.slice('sha256:'.length)}.json`;
    await pipeline(this.layout.openBlob(manifest.config.digest), createWriteStream(join(tree, configName)));
    const layers: string[] = [];
    for (const layer of manifest.layers) {
      // docker save stores layers uncompressed, named by their content.
      const dir = layer.digest.slice('sha256:'.length);
      await mkdir(join(tree, dir), { recursive: true });
      await pipeline(
        await decompressed(createReadStream(this.layout.blobPath(layer.digest))),
        createWriteStream(join(tree, dir, 'layer.tar')),
      );
      layers.push(`${dir}/layer.tar`);
    }
    const repoTags = this.imageName
      ? [this.imageName.includes(':') ? this.imageName : `${this.imageName}:latest`]
      : null;
    await writeFile(
      join(tree, 'manifest.json'),
      JSON.stringify([{ Config: configName, RepoTags: repoTags, Layers: layers }]),
    );
    if (repoTags?.[0]) {
      const tagAt = repoTags[0].lastIndexOf(':');
      const top = layers.at(-1)?.split('/')[0] ?? '';
      await writeFile(
        join(tree, 'repositories'),
        JSON.stringify({ [repoTags[0].slice(0, tagAt)]: { [repoTags[0].slice(tagAt + 1)]: top } }),
      );
    }
    await packFolder(tree, this.file);
  }
}
