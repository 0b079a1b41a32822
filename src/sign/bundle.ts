import { COSIGN_SIGN_PREDICATE, CosignMediaType } from './constants.js';
import { isObject, parseJsonObject } from './json.js';

/** What a key-based sigstore bundle signs: a message digest, or a DSSE envelope around a statement. */
export type BundleContent =
  | {
      readonly kind: 'message-signature';
      /** Hex digest of the signed message (the artifact itself). */
      readonly digestHex: string;
      readonly signature: string;
    }
  | {
      readonly kind: 'dsse-envelope';
      readonly payloadType: string;
      readonly payload: Buffer;
      /** Base64 signatures over the envelope's pre-authentication encoding. */
      readonly signatures: readonly string[];
    };

/** Standard base64 of protobuf-JSON bytes, which may come URL-safe. */
function normalizeBase64(value: unknown, what: string): string {
  if (typeof value !== 'string' || value.length === 0) throw new Error(`the bundle has no ${what}`);
  return Buffer.from(value, 'base64').toString('base64');
}

/** Parses the parts of a sigstore bundle (v0.1 to v0.3) that key-based verification needs. */
export function parseBundle(bytes: Buffer): BundleContent {
  const body = parseJsonObject(bytes, 'the bundle');
  const mediaType = body.mediaType;
  if (typeof mediaType !== 'string' || !mediaType.startsWith(CosignMediaType.BundlePrefix))
    throw new Error(`the bundle media type "${String(mediaType)}" is not a sigstore bundle`);
  const message = body.messageSignature;
  const envelope = body.dsseEnvelope;
  if (isObject(message)) {
    const digest = message.messageDigest;
    if (!isObject(digest) || digest.algorithm !== 'SHA2_256')
      throw new Error('the bundle message digest is not SHA2_256');
    return {
      kind: 'message-signature',
      digestHex: Buffer.from(normalizeBase64(digest.digest, 'message digest'), 'base64').toString('hex'),
      signature: normalizeBase64(message.signature, 'signature'),
    };
  }
  if (isObject(envelope)) {
    const signatures = Array.isArray(envelope.signatures) ? envelope.signatures : [];
    const sigs = signatures.filter(isObject).map((s) => normalizeBase64(s.sig, 'DSSE signature'));
    if (sigs.length === 0) throw new Error('the bundle DSSE envelope has no signatures');
    return {
      kind: 'dsse-envelope',
      payloadType: typeof envelope.payloadType === 'string' ? envelope.payloadType : '',
      payload: Buffer.from(normalizeBase64(envelope.payload, 'DSSE payload'), 'base64'),
      signatures: sigs,
    };
  }
  throw new Error('the bundle has neither "messageSignature" nor "dsseEnvelope"');
}

/** DSSE's pre-authentication encoding: the bytes a DSSE signature is made over. */
export function preAuthEncoding(payloadType: string, payload: Buffer): Buffer {
  const type = Buffer.from(payloadType, 'utf8');
  return Buffer.concat([
    Buffer.from(`DSSEv1 ${type.length} `),
    type,
    Buffer.from(` ${payload.length} `),
    payload,
  ]);
}

/** The subject names and sha256 digests of an in-toto statement that cosign signs for an image. */
export interface SignStatement {
  readonly predicateType: string;
  readonly subjects: ReadonlyArray<{
    readonly name: string;
    readonly sha256: string;
    /** Claims cosign puts on the subject (its `--annotation` values). */
    readonly annotations: Readonly<Record<string, unknown>>;
  }>;
}

/** Parses an in-toto statement; only cosign's image-signing predicate counts as a signature. */
export function parseSignStatement(payload: Buffer): SignStatement {
  const body = parseJsonObject(payload, 'the in-toto statement');
  const predicateType = typeof body.predicateType === 'string' ? body.predicateType : '';
  if (predicateType !== COSIGN_SIGN_PREDICATE)
    throw new Error(
      `the bundle holds an attestation of predicate type "${predicateType}", not a cosign signature ("${COSIGN_SIGN_PREDICATE}")`,
    );
  const subjects = (Array.isArray(body.subject) ? body.subject : []).filter(isObject).map((s) => ({
    name: typeof s.name === 'string' ? s.name : '',
    sha256: isObject(s.digest) && typeof s.digest.sha256 === 'string' ? s.digest.sha256 : '',
    annotations: isObject(s.annotations) ? s.annotations : {},
  }));
  return { predicateType, subjects };
}
