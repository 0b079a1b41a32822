import { sign, verify, type KeyObject } from 'node:crypto';
import type { PublicKey, SigningKey } from './keys.js';

/** The hash cosign pairs with each key: SHA-256 for P-256 and RSA, SHA-384 for P-384, SHA-512 for P-521. */
function hashFor(key: KeyObject): string {
  const curve = key.asymmetricKeyDetails?.namedCurve;
  if (curve === 'secp384r1') return 'sha384';
  if (curve === 'secp521r1') return 'sha512';
  return 'sha256';
}

/** Signs `data` (ECDSA with a DER signature, or RSA PKCS #1 v1.5) and returns the base64 signature. */
export function signBytes(key: SigningKey, data: Uint8Array): string {
  return sign(hashFor(key.publicKey), data, { key: key.privateKey, dsaEncoding: 'der' }).toString('base64');
}

function derLength(bytes: Buffer, at: number): { length: number; next: number } | undefined {
  const first = bytes[at];
  if (first === undefined) return undefined;
  if (first < 0x80) return { length: first, next: at + 1 };
  const count = first & 0x7f;
  if (count === 0 || count > 2) return undefined;
  let length = 0;
  for (let i = 1; i <= count; i++) {
    const byte = bytes[at + i];
    if (byte === undefined) return undefined;
    length = length * 256 + byte;
  }
  return { length, next: at + 1 + count };
}

/** True when `sig` is an ASN.1 DER `SEQUENCE { INTEGER r, INTEGER s }` and nothing else. */
export function isDerEcdsaSignature(sig: Buffer): boolean {
  if (sig[0] !== 0x30) return false;
  const seq = derLength(sig, 1);
  if (!seq || seq.next + seq.length !== sig.length) return false;
  let at = seq.next;
  for (let i = 0; i < 2; i++) {
    if (sig[at] !== 0x02) return false;
    const int = derLength(sig, at + 1);
    if (!int || int.length === 0) return false;
    at = int.next + int.length;
  }
  return at === sig.length;
}

/** Why a base64 signature cannot be checked at all, or undefined when it is well-formed for the key. */
export function signatureProblem(key: KeyObject, signature: string): string | undefined {
  if (signature.length === 0) return 'the signature is empty';
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(signature.replace(/\s+/g, ''))) return 'the signature is not base64';
  const bytes = Buffer.from(signature, 'base64');
  if (key.asymmetricKeyType === 'ec' && !isDerEcdsaSignature(bytes))
    return 'the signature is not a DER-encoded ECDSA signature (truncated or in another format)';
  return undefined;
}

/** True when the base64 `signature` over `data` verifies with `key`; malformed signatures are false. */
export function verifyBytes(key: PublicKey, data: Uint8Array, signature: string): boolean {
  if (signatureProblem(key.key, signature) !== undefined) return false;
  try {
    return verify(
      hashFor(key.key),
      data,
      { key: key.key, dsaEncoding: 'der' },
      Buffer.from(signature, 'base64'),
    );
  } catch {
    return false;
  }
}

/** The first key that verifies the signature, or undefined. */
export function findVerifyingKey(
  keys: readonly PublicKey[],
  data: Uint8Array,
  signature: string,
): PublicKey | undefined {
  return keys.find((key) => verifyBytes(key, data, signature));
}
