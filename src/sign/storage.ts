import { Readable } from 'node:stream';
import type { RegistryClient } from '../client/index.js';
import { digestOf, parseManifest, type Digest, type ParsedManifest, type Reference } from '../oci/index.js';

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
