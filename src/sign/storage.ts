import { Readable } from 'node:stream';
import type { ManifestResult, RegistryClient } from '../client/index.js';
import {
  digestOf,
  parseManifest,
  type Descriptor,
  type Digest,
  type ParsedManifest,
  type Reference,
} from '../oci/index.js';

/** Uploads small bytes (a payload, a config) as a blob, skipping it when the repository has it. */
export async function pushBytes(
  client: RegistryClient,
  repository: string,
  options: { bytes: Buffer; signal?: AbortSignal | undefined },
): Promise<Digest> {
  const { bytes, signal } = options;
  const digest = digestOf(bytes);
  await client.pushBlob(
    repository,
    { digest, size: bytes.length, open: () => Readable.from([bytes]) },
    signal ? { signal } : {},
  );
  return digest;
}

/** A manifest fetched and parsed, with its digest. */
export interface FetchedManifest {
  readonly digest: Digest;
  readonly mediaType: string;
  readonly bytes: Buffer;
  readonly manifest: ParsedManifest;
}

/** Fetches the manifest a reference names (by digest when it has one, else by tag) and parses it. */
export async function fetchManifest(
  client: RegistryClient,
  ref: Reference,
  signal?: AbortSignal,
): Promise<FetchedManifest> {
  const result = await client.getManifest(ref.repository, ref.digest ?? ref.tag ?? 'latest', signal);
  return { ...result, manifest: parseManifest(result.bytes, result.mediaType) };
}

/** Tells the registry's "not found" apart from real failures. */
export function isNotFound(error: unknown): boolean {
  return (error as { code?: unknown }).code === 'NOT_FOUND';
}

/** The `.sig` manifest under `tag` in one request, or undefined when the repository has no such tag. */
export async function findSignatureManifest(
  client: RegistryClient,
  repository: string,
  options: { tag: string; signal?: AbortSignal | undefined },
): Promise<ManifestResult | undefined> {
  try {
    return await client.getManifest(repository, options.tag, options.signal);
  } catch (error) {
    if (isNotFound(error)) return undefined;
    throw error;
  }
}

/** The layers of a `.sig` manifest; an Error says why when it is not an image manifest. */
export function signatureLayers(found: ManifestResult): readonly Descriptor[] {
  const parsed = parseManifest(found.bytes, found.mediaType);
  if (parsed.kind !== 'image') throw new Error('it is an index, not an image manifest');
  return parsed.layers;
}
