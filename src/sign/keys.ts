import {
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  randomBytes,
  scrypt,
  type KeyObject,
} from 'node:crypto';
import nacl from 'tweetnacl';
import { digestOf } from '../oci/index.js';
import { SignError } from './errors.js';
import { decodePem, encodePem } from './pem.js';

/** The PEM label cosign writes on private keys it makes. */
export const SIGSTORE_PRIVATE_KEY_LABEL = 'ENCRYPTED SIGSTORE PRIVATE KEY';
/** The label older cosign releases wrote; still read (and by cosign too). */
export const COSIGN_PRIVATE_KEY_LABEL = 'ENCRYPTED COSIGN PRIVATE KEY';

/** scrypt cost parameters, as stored in the key file. */
export interface ScryptParams {
  readonly N: number;
  readonly r: number;
  readonly p: number;
}

/** What cosign v2.6 and later write (and so Airlock by default): N=65536, r=8, p=1. */
export const DEFAULT_SCRYPT: ScryptParams = { N: 65536, r: 8, p: 1 };
/** Costs past these are refused, so that a crafted key file cannot make a verifier spend gigabytes. */
const MAX_SCRYPT_N = 1 << 20;
const MAX_SCRYPT_RP = 64;

/** A new key pair in cosign's file formats. */
export interface KeyPair {
  /** `ENCRYPTED SIGSTORE PRIVATE KEY` PEM (cosign.key). */
  readonly privatePem: string;
  /** PKIX `PUBLIC KEY` PEM (cosign.pub). */
  readonly publicPem: string;
}

/** A decrypted private key and its public half. */
export interface SigningKey {
  readonly privateKey: KeyObject;
  readonly publicKey: KeyObject;
}

/** A public key that verifies signatures; `id` names it in results and messages. */
export interface PublicKey {
  readonly key: KeyObject;
  /** `sha256:<hex>` of the key's DER SubjectPublicKeyInfo. */
  readonly id: string;
}

export interface GenerateKeyPairOptions {
  /** scrypt cost to encrypt with. Default: {@link DEFAULT_SCRYPT} (cosign's). */
  readonly scrypt?: ScryptParams;
}

interface EncryptedEnvelope {
  kdf: { name: string; params: ScryptParams; salt: string };
  cipher: { name: string; nonce: string };
  ciphertext: string;
}

function deriveKey(password: string, salt: Buffer, params: ScryptParams): Promise<Buffer> {
  const { N, r, p } = params;
  return new Promise((resolve, reject) => {
    scrypt(
      Buffer.from(password, 'utf8'),
      salt,
      nacl.secretbox.keyLength,
      { N, r, p, maxmem: 256 * N * r * p + 16 * 1024 * 1024 },
      (error, key) => (error ? reject(error) : resolve(key)),
    );
  });
}

/** Makes an ECDSA P-256 key pair and encrypts the private key with `password` the way cosign does. */
export async function generateKeyPair(
  password: string,
  options: GenerateKeyPairOptions = {},
): Promise<KeyPair> {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const pkcs8 = privateKey.export({ type: 'pkcs8', format: 'der' });
  const params = options.scrypt ?? DEFAULT_SCRYPT;
  const salt = randomBytes(32);
  const nonce = randomBytes(nacl.secretbox.nonceLength);
  const secret = await deriveKey(password, salt, params);
  const ciphertext = nacl.secretbox(pkcs8, nonce, secret);
  const envelope: EncryptedEnvelope = {
    kdf: { name: 'scrypt', params: { N: params.N, r: params.r, p: params.p }, salt: salt.toString('base64') },
    cipher: { name: 'nacl/secretbox', nonce: nonce.toString('base64') },
    ciphertext: Buffer.from(ciphertext).toString('base64'),
  };
  return {
    privatePem: encodePem(SIGSTORE_PRIVATE_KEY_LABEL, Buffer.from(JSON.stringify(envelope))),
    publicPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
  };
}

function keyError(why: string, cause?: unknown): SignError {
  return new SignError('INVALID_KEY', `Cannot read cosign private key: ${why}`, { cause });
}

function parseEnvelope(der: Buffer): {
  params: ScryptParams;
  salt: Buffer;
  nonce: Buffer;
  ciphertext: Buffer;
} {
  let body: unknown;
  try {
    body = JSON.parse(der.toString('utf8'));
  } catch (error) {
    throw keyError('the encrypted key is not JSON', error);
  }
  const envelope = body as Partial<EncryptedEnvelope> | null;
  const kdf = envelope?.kdf;
  const cipher = envelope?.cipher;
  if (typeof kdf !== 'object' || kdf === null || typeof cipher !== 'object' || cipher === null)
    throw keyError('the encrypted key has no "kdf" or "cipher"');
  if (kdf.name !== 'scrypt')
    throw keyError(`key derivation "${String(kdf.name)}" is not supported (only "scrypt")`);
  if (cipher.name !== 'nacl/secretbox')
    throw keyError(`cipher "${String(cipher.name)}" is not supported (only "nacl/secretbox")`);
  const { N, r, p } = (kdf.params ?? {}) as Partial<ScryptParams>;
  const whole = (n: unknown): n is number => typeof n === 'number' && Number.isSafeInteger(n) && n > 0;
  if (!whole(N) || !whole(r) || !whole(p) || N < 2 || (N & (N - 1)) !== 0)
    throw keyError('scrypt parameters N, r and p must be positive whole numbers with N a power of two');
  if (N > MAX_SCRYPT_N || r * p > MAX_SCRYPT_RP)
    throw keyError(
      `scrypt cost N=${N} r=${r} p=${p} is above the limit (N<=${MAX_SCRYPT_N}, r*p<=${MAX_SCRYPT_RP})`,
    );
  const salt = Buffer.from(String(kdf.salt ?? ''), 'base64');
  const nonce = Buffer.from(String(cipher.nonce ?? ''), 'base64');
  const ciphertext = Buffer.from(String(envelope?.ciphertext ?? ''), 'base64');
  if (salt.length === 0) throw keyError('the scrypt salt is empty');
  if (nonce.length !== nacl.secretbox.nonceLength)
    throw keyError(`the nonce is ${nonce.length} bytes, not ${nacl.secretbox.nonceLength}`);
  if (ciphertext.length <= nacl.secretbox.overheadLength) throw keyError('the ciphertext is empty');
  return { params: { N, r, p }, salt, nonce, ciphertext };
}

/**
 * Decrypts a cosign private key (`ENCRYPTED SIGSTORE PRIVATE KEY`, or the older `ENCRYPTED COSIGN PRIVATE
 * KEY`) with whatever scrypt cost the file names. A wrong password fails with code WRONG_PASSWORD.
 */
export async function loadPrivateKey(pem: string | Buffer, password: string): Promise<SigningKey> {
  const blocks = decodePem(pem.toString());
  const block = blocks[0];
  if (!block) throw keyError('no PEM block found');
  if (block.label !== SIGSTORE_PRIVATE_KEY_LABEL && block.label !== COSIGN_PRIVATE_KEY_LABEL) {
    throw keyError(
      `PEM label "${block.label}" is not "${SIGSTORE_PRIVATE_KEY_LABEL}" or "${COSIGN_PRIVATE_KEY_LABEL}"`,
    );
  }
  const { params, salt, nonce, ciphertext } = parseEnvelope(block.der);
  const secret = await deriveKey(password, salt, params);
  const plain = nacl.secretbox.open(ciphertext, nonce, secret);
  if (!plain) throw new SignError('WRONG_PASSWORD', 'Cannot decrypt cosign private key: wrong password');
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey({ key: Buffer.from(plain), format: 'der', type: 'pkcs8' });
  } catch (error) {
    throw keyError('the decrypted key is not a PKCS #8 private key', error);
  }
  const publicKey = createPublicKey(privateKey);
  checkKeyType(publicKey, 'cosign private key');
  return { privateKey, publicKey };
}

function checkKeyType(key: KeyObject, what: string): void {
  if (key.asymmetricKeyType === 'ec' || key.asymmetricKeyType === 'rsa') return;
  throw new SignError(
    'INVALID_KEY',
    `Cannot read ${what}: key type "${key.asymmetricKeyType ?? 'unknown'}" is not supported (use ECDSA or RSA)`,
  );
}

/** `sha256:<hex>` of a public key's DER SubjectPublicKeyInfo. */
export function publicKeyId(key: KeyObject): string {
  return digestOf(key.export({ type: 'spki', format: 'der' }));
}

/** Every `PUBLIC KEY` block of a PEM file (cosign.pub), in order; at least one or it fails. */
export function loadPublicKeys(pem: string | Buffer): PublicKey[] {
  const blocks = decodePem(pem.toString()).filter((b) => b.label === 'PUBLIC KEY');
  if (blocks.length === 0)
    throw new SignError('INVALID_KEY', 'Cannot read public key: no "PUBLIC KEY" PEM block found');
  return blocks.map((block) => {
    let key: KeyObject;
    try {
      key = createPublicKey({ key: block.der, format: 'der', type: 'spki' });
    } catch (error) {
      throw new SignError('INVALID_KEY', `Cannot read public key: ${(error as Error).message}`, {
        cause: error,
      });
    }
    checkKeyType(key, 'public key');
    return { key, id: publicKeyId(key) };
  });
}

/** The public half of a signing key, as a {@link PublicKey}. */
export function publicKeyOf(key: SigningKey): PublicKey {
  return { key: key.publicKey, id: publicKeyId(key.publicKey) };
}
