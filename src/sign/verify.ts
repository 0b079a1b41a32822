import type { RegistryClient } from '../client/index.js';
import {
  formatReference,
  MAX_MANIFEST_BYTES,
  parseDigest,
  parseManifest,
  type Descriptor,
  type Digest,
  type Reference,
} from '../oci/index.js';
import { parseBundle, parseSignStatement, preAuthEncoding } from './bundle.js';
import { CosignAnnotation, CosignMediaType, signatureTag } from './constants.js';
import { SignError } from './errors.js';
import type { PublicKey } from './keys.js';
import { dockerReferenceOf, parsePayload, sameRepository } from './payload.js';
import { findVerifyingKey, signatureProblem } from './signature.js';
import { findSignatureManifest, isNotFound, signatureLayers } from './storage.js';

/** Largest payload or bundle blob read by default (cosign's are a few hundred bytes to a few KiB). */
export const DEFAULT_MAX_SIGNATURE_BYTES = 1024 * 1024;
/** Most signatures examined by default: enough for real use, bounded for a webhook. */
export const DEFAULT_MAX_SIGNATURES = 100;

export interface VerifyImageOptions {
  /** Public keys; a signature is good when any of them verifies it. */
  readonly keys: readonly PublicKey[];
  /** Require the payload's docker-reference to name the image's repository. Default: true. */
  readonly checkReference?: boolean;
  /** Largest payload, bundle or bundle manifest read, judged by its descriptor before downloading. Default: 1 MiB. */
  readonly maxSignatureBytes?: number;
  /** Most signatures examined. Default: {@link DEFAULT_MAX_SIGNATURES}. */
  readonly maxSignatures?: number;
  readonly signal?: AbortSignal;
}

/** One signature that verified. */
export interface VerifiedSignature {
  /** Where it was found: the `.sig` tag, or an OCI 1.1 referrer holding a sigstore bundle. */
  readonly source: 'signature-tag' | 'referrer';
  readonly format: 'simple-signing' | 'bundle-message-signature' | 'bundle-dsse';
  /** The manifest or layer that holds it: `registry/repo:sha256-….sig` layer, or the referrer's digest. */
  readonly location: string;
  /** The `sha256:…` ID of the key that verified it. */
  readonly keyId: string;
  /** The repository the signature names (payload docker-reference or statement subject), when it names one. */
  readonly dockerReference?: string;
  /** The signed claims: the payload's `optional` section, or the statement subject's annotations. */
  readonly annotations: Readonly<Record<string, unknown>>;
  /** The base64 signature. */
  readonly signature: string;
}

export interface VerifyResult {
  /** `registry/repository@digest` of what was verified. */
  readonly reference: string;
  readonly digest: Digest;
  readonly signatures: readonly VerifiedSignature[];
}

interface Context {
  readonly client: RegistryClient;
  readonly ref: Reference;
  readonly digest: Digest;
  readonly keys: readonly PublicKey[];
  readonly checkReference: boolean;
  readonly maxBytes: number;
  readonly signal: AbortSignal | undefined;
  manifestBytes?: Buffer;
}

function sizeCheck(descriptor: Descriptor, limit: number, what: string): void {
  if (descriptor.size > limit)
    throw new Error(`${what} is ${descriptor.size} bytes, more than the ${limit} allowed`);
}

function keysPhrase(keys: readonly PublicKey[]): string {
  return keys.length === 1 ? 'the key' : `any of the ${keys.length} keys`;
}

/** The key that verifies one base64 signature over `data`, or an Error saying why none does. */
function verifyingKey(context: Context, data: Uint8Array, signature: string): PublicKey {
  const problems = context.keys.map((k) => signatureProblem(k.key, signature));
  const problem = problems.find((p) => p !== undefined);
  if (problem !== undefined && problems.every((p) => p !== undefined)) throw new Error(problem);
  const key = findVerifyingKey(context.keys, data, signature);
  if (!key) throw new Error(`the signature does not verify with ${keysPhrase(context.keys)}`);
  return key;
}

/** The first of several signatures over `data` that a key verifies; else the first one's failure. */
function firstVerifying(
  context: Context,
  data: Uint8Array,
  signatures: readonly string[],
): { key: PublicKey; signature: string } {
  let failure: Error | undefined;
  for (const signature of signatures) {
    try {
      return { key: verifyingKey(context, data, signature), signature };
    } catch (error) {
      failure ??= error as Error;
    }
  }
  throw failure ?? new Error(`the signature does not verify with ${keysPhrase(context.keys)}`);
}

function checkRepository(context: Context, named: string): void {
  if (context.checkReference && !sameRepository(named, context.ref))
    throw new Error(
      `it names repository "${named}", not "${dockerReferenceOf(context.ref)}" (turn off the reference check to accept it)`,
    );
}

async function verifySimpleSigning(
  context: Context,
  layer: Descriptor,
  location: string,
): Promise<VerifiedSignature> {
  if (layer.mediaType !== CosignMediaType.SimpleSigning)
    throw new Error(`media type "${layer.mediaType}" is not "${CosignMediaType.SimpleSigning}"`);
  const signature = layer.annotations?.[CosignAnnotation.Signature];
  if (signature === undefined) throw new Error(`no "${CosignAnnotation.Signature}" annotation`);
  sizeCheck(layer, context.maxBytes, 'the payload');
  const payload = await context.client.getBlobBytes(context.ref.repository, layer.digest, context.maxBytes);
  const key = verifyingKey(context, payload, signature);
  const claims = parsePayload(payload);
  if (claims.digest !== context.digest)
    throw new Error(`it signs digest "${claims.digest}", not "${context.digest}"`);
  checkRepository(context, claims.dockerReference);
  return {
    source: 'signature-tag',
    format: 'simple-signing',
    location,
    keyId: key.id,
    ...(claims.dockerReference ? { dockerReference: claims.dockerReference } : {}),
    annotations: claims.annotations,
    signature,
  };
}

async function imageManifestBytes(context: Context): Promise<Buffer> {
  context.manifestBytes ??= (
    await context.client.getManifest(context.ref.repository, context.digest, context.signal)
  ).bytes;
  return context.manifestBytes;
}

async function verifyBundleReferrer(context: Context, referrer: Descriptor): Promise<VerifiedSignature> {
  const { client, ref, digest, signal } = context;
  sizeCheck(referrer, Math.min(context.maxBytes, MAX_MANIFEST_BYTES), 'the bundle manifest');
  const fetched = await client.getManifest(ref.repository, referrer.digest, signal);
  const manifest = parseManifest(fetched.bytes, fetched.mediaType);
  if (manifest.subject && manifest.subject.digest !== digest)
    throw new Error(`its subject is "${manifest.subject.digest}", not "${digest}"`);
  const layer = manifest.layers[0];
  if (!layer?.mediaType.startsWith(CosignMediaType.BundlePrefix))
    throw new Error('the bundle manifest has no sigstore bundle layer');
  sizeCheck(layer, context.maxBytes, 'the bundle');
  const bundle = parseBundle(await client.getBlobBytes(ref.repository, layer.digest, context.maxBytes));
  const hex = parseDigest(digest).hex;
  const location = formatReference({
    registry: ref.registry,
    repository: ref.repository,
    digest: referrer.digest,
  });
  if (bundle.kind === 'message-signature') {
    if (bundle.digestHex !== hex)
      throw new Error(`it signs digest "sha256:${bundle.digestHex}", not "${digest}"`);
    const key = verifyingKey(context, await imageManifestBytes(context), bundle.signature);
    return {
      source: 'referrer',
      format: 'bundle-message-signature',
      location,
      keyId: key.id,
      annotations: {},
      signature: bundle.signature,
    };
  }
  if (bundle.payloadType !== CosignMediaType.InToto)
    throw new Error(`the DSSE payload type "${bundle.payloadType}" is not "${CosignMediaType.InToto}"`);
  const { key, signature } = firstVerifying(
    context,
    preAuthEncoding(bundle.payloadType, bundle.payload),
    bundle.signatures,
  );
  const statement = parseSignStatement(bundle.payload);
  const subject = statement.subjects.find((s) => s.sha256 === hex);
  if (!subject) {
    const named = statement.subjects.map((s) => `sha256:${s.sha256}`).join(', ') || 'nothing';
    throw new Error(`it signs ${named}, not "${digest}"`);
  }
  if (subject.name) checkRepository(context, subject.name);
  return {
    source: 'referrer',
    format: 'bundle-dsse',
    location,
    keyId: key.id,
    ...(subject.name ? { dockerReference: subject.name } : {}),
    annotations: subject.annotations,
    signature,
  };
}

/**
 * Verifies an image's signatures against public keys: every layer of its `.sig` tag (cosign's simple
 * signing) and every sigstore bundle attached as an OCI 1.1 referrer (cosign v3's key-based format).
 * A signature counts when a key verifies it, its payload names the image's digest and, unless
 * `checkReference` is false, its repository. Transparency-log entries are not consulted (air-gapped use).
 *
 * Fails with SignError NO_SIGNATURES ("no signatures found") or NO_MATCHING_SIGNATURES ("no matching
 * signatures: <reasons>"); registry failures surface as the client's errors.
 */
export async function verifyImage(
  client: RegistryClient,
  ref: Reference,
  options: VerifyImageOptions,
): Promise<VerifyResult> {
  if (options.keys.length === 0)
    throw new SignError('INVALID_KEY', 'Verification needs at least one public key');
  const { signal } = options;
  let digest = ref.digest;
  if (!digest) {
    const head = await client.headManifest(ref.repository, ref.tag ?? 'latest', signal);
    digest = head?.digest ?? (await client.getManifest(ref.repository, ref.tag ?? 'latest', signal)).digest;
  }
  const context: Context = {
    client,
    ref,
    digest,
    keys: options.keys,
    checkReference: options.checkReference ?? true,
    maxBytes: options.maxSignatureBytes ?? DEFAULT_MAX_SIGNATURE_BYTES,
    signal,
  };
  const maxSignatures = options.maxSignatures ?? DEFAULT_MAX_SIGNATURES;
  const verified: VerifiedSignature[] = [];
  const reasons: string[] = [];
  let candidates = 0;
  const attempt = async (label: string, check: () => Promise<VerifiedSignature>): Promise<void> => {
    candidates++;
    if (candidates > maxSignatures) {
      if (candidates === maxSignatures + 1)
        reasons.push(`more than ${maxSignatures} signatures; the rest were not examined`);
      return;
    }
    try {
      verified.push(await check());
    } catch (error) {
      if (signal?.aborted) throw error;
      reasons.push(`${label}: ${(error as Error).message}`);
    }
  };

  const tag = signatureTag(digest);
  const tagRef = formatReference({ registry: ref.registry, repository: ref.repository, tag });
  const sig = await findSignatureManifest(client, ref.repository, { tag, signal });
  if (sig) {
    let layers: readonly Descriptor[] = [];
    try {
      layers = signatureLayers(sig);
      if (layers.length === 0) throw new Error('it has no layers');
    } catch (error) {
      candidates++;
      reasons.push(`signature manifest "${tagRef}" is malformed: ${(error as Error).message}`);
    }
    for (const [i, layer] of layers.entries()) {
      const location = `${tagRef} layer ${i + 1}`;
      await attempt(location, () => verifySimpleSigning(context, layer, location));
    }
  }

  let referrers: Descriptor[] = [];
  try {
    referrers = await client.referrers(ref.repository, digest, signal ? { signal } : {});
  } catch (error) {
    if (!isNotFound(error)) throw error;
  }
  for (const referrer of referrers) {
    if (!referrer.artifactType?.startsWith(CosignMediaType.BundlePrefix)) continue;
    await attempt(`sigstore bundle ${referrer.digest}`, () => verifyBundleReferrer(context, referrer));
  }

  const reference = formatReference({ registry: ref.registry, repository: ref.repository, digest });
  if (verified.length > 0) return { reference, digest, signatures: verified };
  if (candidates === 0) throw new SignError('NO_SIGNATURES', 'no signatures found');
  throw new SignError('NO_MATCHING_SIGNATURES', `no matching signatures: ${reasons.join('; ')}`, { reasons });
}
