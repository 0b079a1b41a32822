import { parseDigest, type Digest } from './digest.js';
import { MediaType, isManifestMediaType, isIndexMediaType, type ManifestMediaType } from './media-types.js';

/** Largest manifest Airlock accepts or fetches (the distribution spec's suggested minimum limit). */
export const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;

export interface Platform {
  readonly architecture: string;
  readonly os: string;
  readonly variant?: string;
  readonly 'os.version'?: string;
  readonly 'os.features'?: readonly string[];
}

/** Parses `os/arch[/variant]`; undefined when the text is not of that form (callers word the error). */
export function parsePlatform(text: string): Platform | undefined {
  const [os, architecture, variant, ...rest] = text.split('/');
  if (!os || !architecture || rest.length > 0) return undefined;
  return { os, architecture, ...(variant ? { variant } : {}) };
}

export interface Descriptor {
  readonly mediaType: string;
  readonly digest: Digest;
  readonly size: number;
  readonly urls?: readonly string[];
  readonly annotations?: Readonly<Record<string, string>>;
  readonly artifactType?: string;
  readonly platform?: Platform;
  readonly data?: string;
}

/** The parts of an image manifest or index that a registry and a client act on. */
export interface ParsedManifest {
  readonly mediaType: ManifestMediaType;
  readonly kind: 'image' | 'index';
  readonly config?: Descriptor;
  readonly layers: readonly Descriptor[];
  readonly manifests: readonly Descriptor[];
  readonly subject?: Descriptor;
  /** `artifactType`, or for an image manifest without one its config media type (the referrers rule). */
  readonly artifactType?: string;
  readonly annotations?: Readonly<Record<string, string>>;
}

/** Thrown when manifest bytes are not a valid OCI/Docker manifest; `message` says which field is wrong. */
export class ManifestError extends Error {
  override readonly name = 'ManifestError';
}

type Json = Record<string, unknown>;

function isObject(value: unknown): value is Json {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function stringMap(value: unknown, where: string): Record<string, string> | undefined {
  if (value === undefined) return undefined;
  if (!isObject(value)) throw new ManifestError(`${where} must be an object of strings`);
  for (const [key, item] of Object.entries(value)) {
    if (typeof item !== 'string') throw new ManifestError(`${where}["${key}"] must be a string`);
  }
  return value as Record<string, string>;
}

function parseDescriptor(value: unknown, where: string): Descriptor {
  if (!isObject(value)) throw new ManifestError(`${where} must be an object`);
  const { mediaType, digest, size, urls, artifactType, platform, data } = value;
  if (typeof mediaType !== 'string' || mediaType.length === 0) {
    throw new ManifestError(`${where}.mediaType must be a non-empty string`);
  }
  if (typeof digest !== 'string') throw new ManifestError(`${where}.digest must be a string`);
  let parsed: Digest;
  try {
    parsed = parseDigest(digest).digest;
  } catch (error) {
    throw new ManifestError(`${where}.digest is invalid: ${(error as Error).message}`);
  }
  if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) {
    throw new ManifestError(`${where}.size must be a non-negative integer`);
  }
  if (urls !== undefined && (!Array.isArray(urls) || urls.some((u) => typeof u !== 'string'))) {
    throw new ManifestError(`${where}.urls must be an array of strings`);
  }
  if (artifactType !== undefined && typeof artifactType !== 'string') {
    throw new ManifestError(`${where}.artifactType must be a string`);
  }
  if (data !== undefined && typeof data !== 'string')
    throw new ManifestError(`${where}.data must be a string`);
  if (platform !== undefined) {
    if (!isObject(platform) || typeof platform.architecture !== 'string' || typeof platform.os !== 'string') {
      throw new ManifestError(`${where}.platform must have string "architecture" and "os"`);
    }
  }
  const annotations = stringMap(value.annotations, `${where}.annotations`);
  return {
    ...value,
    mediaType,
    digest: parsed,
    size,
    ...(annotations ? { annotations } : {}),
  };
}

function descriptorList(value: unknown, where: string): Descriptor[] {
  if (!Array.isArray(value)) throw new ManifestError(`${where} must be an array`);
  return value.map((item, i) => parseDescriptor(item, `${where}[${i}]`));
}

function resolveMediaType(body: Json, contentType: string | undefined): ManifestMediaType {
  const declared = body.mediaType;
  if (declared !== undefined && typeof declared !== 'string') {
    throw new ManifestError('mediaType must be a string');
  }
  const header = contentType?.split(';')[0]?.trim().toLowerCase();
  const headerIsManifest = header !== undefined && isManifestMediaType(header);
  if (declared !== undefined) {
    if (!isManifestMediaType(declared)) throw new ManifestError(`mediaType "${declared}" is not supported`);
    if (headerIsManifest && header !== declared) {
      throw new ManifestError(
        `Content-Type "${header}" does not match the manifest's mediaType "${declared}"`,
      );
    }
    return declared;
  }
  if (headerIsManifest) return header;
  if (
    header !== undefined &&
    header !== '' &&
    header !== 'application/json' &&
    header !== 'application/octet-stream'
  ) {
    throw new ManifestError(`Content-Type "${header}" is not a supported manifest media type`);
  }
  // OCI lets mediaType be omitted; tell an index from a manifest by its fields.
  return Array.isArray(body.manifests) ? MediaType.OciIndex : MediaType.OciManifest;
}

/**
 * Parses and validates manifest bytes. `contentType` is the HTTP Content-Type the bytes came with,
 * which must agree with the manifest's own `mediaType` when both are present.
 */
export function parseManifest(bytes: Uint8Array, contentType?: string): ParsedManifest {
  if (bytes.byteLength > MAX_MANIFEST_BYTES) {
    throw new ManifestError(
      `manifest is ${bytes.byteLength} bytes, more than the ${MAX_MANIFEST_BYTES} allowed`,
    );
  }
  let body: unknown;
  try {
    body = JSON.parse(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8'));
  } catch (error) {
    throw new ManifestError(`manifest is not valid JSON: ${(error as Error).message}`);
  }
  if (!isObject(body)) throw new ManifestError('manifest must be a JSON object');
  if (body.schemaVersion !== 2) {
    throw new ManifestError(
      body.schemaVersion === 1
        ? 'Docker schema 1 manifests are not supported; push schema 2 or OCI'
        : 'schemaVersion must be 2',
    );
  }
  const mediaType = resolveMediaType(body, contentType);
  const annotations = stringMap(body.annotations, 'annotations');
  const subject = body.subject === undefined ? undefined : parseDescriptor(body.subject, 'subject');
  if (body.artifactType !== undefined && typeof body.artifactType !== 'string') {
    throw new ManifestError('artifactType must be a string');
  }
  // Empty counts as missing (the referrers rule): an image then reports its config type, an index none.
  const declaredArtifactType = body.artifactType === '' ? undefined : body.artifactType;
  const common = {
    mediaType,
    ...(subject ? { subject } : {}),
    ...(annotations ? { annotations } : {}),
  };
  if (isIndexMediaType(mediaType)) {
    if (body.layers !== undefined || body.config !== undefined) {
      throw new ManifestError('an index must not have "config" or "layers"');
    }
    const manifests = descriptorList(body.manifests, 'manifests');
    return {
      ...common,
      kind: 'index',
      layers: [],
      manifests,
      ...(declaredArtifactType === undefined ? {} : { artifactType: declaredArtifactType }),
    };
  }
  if (body.manifests !== undefined) throw new ManifestError('an image manifest must not have "manifests"');
  const config = parseDescriptor(body.config, 'config');
  const layers =
    body.layers === undefined && mediaType === MediaType.OciManifest
      ? []
      : descriptorList(body.layers, 'layers');
  return {
    ...common,
    kind: 'image',
    config,
    layers,
    manifests: [],
    artifactType: declaredArtifactType ?? config.mediaType,
  };
}
