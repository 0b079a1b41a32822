import type { RegistryClient } from '../client/index.js';
import { formatReference, MediaType, type Descriptor, type Digest, type Reference } from '../oci/index.js';
import { CosignAnnotation, CosignMediaType, signatureTag } from './constants.js';
import { SignError } from './errors.js';
import { publicKeyOf, type SigningKey } from './keys.js';
import { buildPayload } from './payload.js';
import { signBytes, verifyBytes } from './signature.js';
import { fetchManifest, findSignatureManifest, pushBytes, signatureLayers } from './storage.js';

export interface SignImageOptions {
  /** The decrypted private key (see `loadPrivateKey`). */
  readonly key: SigningKey;
  /** Claims for the payload's `optional` section (`--annotation k=v`). Default: none. */
  readonly annotations?: Readonly<Record<string, string>>;
  /** For an index, also sign every manifest it lists. Default: false (only the index). */
  readonly recursive?: boolean;
  readonly signal?: AbortSignal;
}

/** One manifest that was signed. */
export interface SignedManifest {
  /** The signed manifest's digest. */
  readonly digest: Digest;
  /** `registry/repository@digest`. */
  readonly reference: string;
  /** The tag the signature is kept under: `sha256-<hex>.sig`. */
  readonly signatureTag: string;
  /** Digest of the `.sig` manifest now under that tag. */
  readonly signatureManifest: Digest;
  /** False when the same payload was already signed with this key (nothing was added). */
  readonly added: boolean;
}

interface SigManifestBody {
  schemaVersion: 2;
  mediaType: string;
  config: Descriptor;
  layers: Descriptor[];
  annotations?: Record<string, string>;
}

/** The `.sig` manifest already under `tag` (its digest and layers), or none; a malformed one fails. */
async function existingSignatures(
  client: RegistryClient,
  ref: Reference,
  options: { tag: string; signal?: AbortSignal | undefined },
): Promise<{ digest: Digest; layers: Descriptor[] } | undefined> {
  const { tag, signal } = options;
  const existing = await findSignatureManifest(client, ref.repository, { tag, signal });
  if (!existing) return undefined;
  try {
    return { digest: existing.digest, layers: [...signatureLayers(existing)] };
  } catch (error) {
    throw new SignError(
      'INVALID_INPUT',
      `Cannot add to the signature manifest "${formatReference({ registry: ref.registry, repository: ref.repository, tag })}": ${(error as Error).message} (delete the tag to start over)`,
      { cause: error },
    );
  }
}

/** The config cosign writes for a `.sig` image: empty, with one diff ID per payload layer. */
function configFor(layers: readonly Descriptor[]): Buffer {
  const zero = '0001-01-01T00:00:00Z';
  return Buffer.from(
    JSON.stringify({
      architecture: '',
      created: zero,
      history: layers.map(() => ({ created: zero })),
      os: '',
      rootfs: { type: 'layers', diff_ids: layers.map((l) => l.digest) },
      config: {},
    }),
  );
}

async function signOne(
  client: RegistryClient,
  ref: Reference,
  options: SignImageOptions & { digest: Digest },
): Promise<SignedManifest> {
  const { digest, key, signal } = options;
  const payload = buildPayload(ref, digest, options.annotations ?? {});
  const tag = signatureTag(digest);
  const existing = await existingSignatures(client, ref, { tag, signal });
  const layers = existing?.layers ?? [];
  const payloadDigest = await pushBytes(client, ref.repository, { bytes: payload, signal });
  const publicKey = publicKeyOf(key);
  const reference = formatReference({ registry: ref.registry, repository: ref.repository, digest });
  // Like cosign, a second signature of the same payload with the same key is not stored again.
  const duplicate = layers.some(
    (layer) =>
      layer.digest === payloadDigest &&
      verifyBytes(publicKey, payload, layer.annotations?.[CosignAnnotation.Signature] ?? ''),
  );
  if (existing && duplicate)
    return { digest, reference, signatureTag: tag, signatureManifest: existing.digest, added: false };
  layers.push({
    mediaType: CosignMediaType.SimpleSigning,
    digest: payloadDigest,
    size: payload.length,
    annotations: { [CosignAnnotation.Signature]: signBytes(key, payload) },
  });
  const config = configFor(layers);
  const configDigest = await pushBytes(client, ref.repository, { bytes: config, signal });
  const body: SigManifestBody = {
    schemaVersion: 2,
    mediaType: MediaType.OciManifest,
    config: { mediaType: MediaType.OciConfig, digest: configDigest, size: config.length },
    layers,
  };
  const signatureManifest = await client.putManifest(ref.repository, tag, {
    bytes: Buffer.from(JSON.stringify(body)),
    mediaType: MediaType.OciManifest,
    signal,
  });
  return { digest, reference, signatureTag: tag, signatureManifest, added: true };
}

/**
 * Signs the manifest `ref` names (a tag is resolved to its digest first) and stores the signature where
 * cosign keeps it: a simple-signing payload layer in the `sha256-<hex>.sig` manifest, added to the ones
 * already there. An index is signed as a whole; with `recursive` each manifest it lists is signed too.
 */
export async function signImage(
  client: RegistryClient,
  ref: Reference,
  options: SignImageOptions,
): Promise<SignedManifest[]> {
  const target = await fetchManifest(client, ref, options.signal);
  const signed = [await signOne(client, ref, { ...options, digest: target.digest })];
  if (options.recursive && target.manifest.kind === 'index') {
    for (const child of target.manifest.manifests) {
      const childRef: Reference = {
        registry: ref.registry,
        repository: ref.repository,
        digest: child.digest,
      };
      signed.push(...(await signImage(client, childRef, options)));
    }
  }
  return signed;
}
