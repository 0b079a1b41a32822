import { digestTag } from '../oci/index.js';

/** Media types, annotation keys and names cosign and sigstore use; the one place `sign/` spells them out. */
export const CosignMediaType = {
  /** A layer of a `.sig` manifest: the simple-signing payload. */
  SimpleSigning: 'application/vnd.dev.cosign.simplesigning.v1+json',
  /** Artifact type (and layer media type) of a sigstore bundle attached as an OCI 1.1 referrer. */
  BundleV03: 'application/vnd.dev.sigstore.bundle.v0.3+json',
  /** Prefix shared by every sigstore bundle media type (v0.1, v0.2, v0.3). */
  BundlePrefix: 'application/vnd.dev.sigstore.bundle',
  /** DSSE payload type of an in-toto statement. */
  InToto: 'application/vnd.in-toto+json',
} as const;

export const CosignAnnotation = {
  /** Base64 signature over the layer's payload. */
  Signature: 'dev.cosignproject.cosign/signature',
  /** Rekor bundle of a signature that went to a transparency log (not checked here: no log offline). */
  RekorBundle: 'dev.sigstore.cosign/bundle',
  Certificate: 'dev.sigstore.cosign/certificate',
} as const;

/** `critical.type` of a cosign simple-signing payload. */
export const SIMPLE_SIGNING_TYPE = 'cosign container image signature';

/** Predicate type of the in-toto statement cosign v3 signs for `cosign sign` in the bundle format. */
export const COSIGN_SIGN_PREDICATE = 'https://sigstore.dev/cosign/sign/v1';

/** The `.sig` tag cosign keeps an image's signatures under: `sha256-<hex>.sig`. */
export function signatureTag(digest: string): string {
  return `${digestTag(digest)}.sig`;
}
