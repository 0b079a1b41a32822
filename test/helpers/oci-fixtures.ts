import { randomBytes } from 'node:crypto';
import { digestOf, MediaType, type Digest } from '../../src/oci/index.js';

export interface Blob {
  readonly bytes: Buffer;
  readonly digest: Digest;
}

export function blob(content: string | Buffer = randomBytes(64)): Blob {
  const bytes = typeof content === 'string' ? Buffer.from(content) : content;
  return { bytes, digest: digestOf(bytes) };
}

export interface Image {
  readonly config: Blob;
  readonly layers: readonly Blob[];
  readonly manifest: Buffer;
  readonly digest: Digest;
  readonly mediaType: string;
}

export interface ImageOptions {
  readonly layers?: number;
  readonly artifactType?: string;
  readonly subject?: { digest: Digest; size: number; mediaType?: string };
  readonly annotations?: Record<string, string>;
  readonly mediaType?: string;
}

/** A small random OCI image (or artifact, with artifactType/subject) and its manifest bytes. */
export function image(options: ImageOptions = {}): Image {
  const config = blob(
    JSON.stringify({ architecture: 'amd64', os: 'linux', nonce: randomBytes(8).toString('hex') }),
  );
  const layers = Array.from({ length: options.layers ?? 1 }, () => blob());
  const mediaType = options.mediaType ?? MediaType.OciManifest;
  const docker = mediaType === MediaType.DockerManifest;
  const body = {
    schemaVersion: 2,
    mediaType,
    ...(options.artifactType ? { artifactType: options.artifactType } : {}),
    config: {
      mediaType: docker ? MediaType.DockerConfig : MediaType.OciConfig,
      digest: config.digest,
      size: config.bytes.length,
    },
    layers: layers.map((l) => ({
      mediaType: docker ? MediaType.DockerLayerGzip : MediaType.OciLayerGzip,
      digest: l.digest,
      size: l.bytes.length,
    })),
    ...(options.subject
      ? {
          subject: {
            mediaType: options.subject.mediaType ?? MediaType.OciManifest,
            digest: options.subject.digest,
            size: options.subject.size,
          },
        }
      : {}),
    ...(options.annotations ? { annotations: options.annotations } : {}),
  };
  const manifest = Buffer.from(JSON.stringify(body));
  return { config, layers, manifest, digest: digestOf(manifest), mediaType };
}

/** An OCI index over the given images, each with a platform. */
export function index(
  children: readonly Image[],
  mediaType: string = MediaType.OciIndex,
): { manifest: Buffer; digest: Digest; mediaType: string } {
  const body = {
    schemaVersion: 2,
    mediaType,
    manifests: children.map((child, i) => ({
      mediaType: child.mediaType,
      digest: child.digest,
      size: child.manifest.length,
      platform: { architecture: i % 2 === 0 ? 'amd64' : 'arm64', os: 'linux' },
    })),
  };
  const manifest = Buffer.from(JSON.stringify(body));
  return { manifest, digest: digestOf(manifest), mediaType };
}
