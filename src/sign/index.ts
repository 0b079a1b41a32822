export { SignError } from './errors.js';
export type { SignErrorCode } from './errors.js';
export {
  generateKeyPair,
  loadPrivateKey,
  loadPublicKeys,
  publicKeyOf,
  publicKeyId,
  DEFAULT_SCRYPT,
  SIGSTORE_PRIVATE_KEY_LABEL,
  COSIGN_PRIVATE_KEY_LABEL,
} from './keys.js';
export type { KeyPair, SigningKey, PublicKey, ScryptParams, GenerateKeyPairOptions } from './keys.js';
export { signImage } from './sign.js';
export type { SignImageOptions, SignedManifest } from './sign.js';
export { verifyImage, DEFAULT_MAX_SIGNATURE_BYTES, DEFAULT_MAX_SIGNATURES } from './verify.js';
export type { VerifyImageOptions, VerifyResult, VerifiedSignature } from './verify.js';
export { buildPayload, parsePayload, dockerReferenceOf } from './payload.js';
export type { SimpleSigningPayload } from './payload.js';
export {
  CosignMediaType,
  CosignAnnotation,
  COSIGN_SIGN_PREDICATE,
  SIMPLE_SIGNING_TYPE,
  signatureTag,
} from './constants.js';
