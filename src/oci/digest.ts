import { createHash, type Hash } from 'node:crypto';

/** A content digest such as `sha256:<64 hex>`, validated by {@link parseDigest}. */
export type Digest = string & { readonly __brand: 'Digest' };

export type DigestAlgorithm = 'sha256' | 'sha512';

const HEX_LENGTH: Record<DigestAlgorithm, number> = { sha256: 64, sha512: 128 };
const DIGEST_RE = /^([a-z0-9]+(?:[+._-][a-z0-9]+)*):([a-zA-Z0-9=_-]+)$/;

/** Thrown when a digest string is malformed or uses an algorithm Airlock cannot verify. */
export class DigestError extends Error {
  override readonly name = 'DigestError';
}

export interface ParsedDigest {
  readonly algorithm: DigestAlgorithm;
  readonly hex: string;
  readonly digest: Digest;
}

/** Parses and validates `algorithm:hex`; only sha256 and sha512 are accepted (the algorithms OCI registers). */
export function parseDigest(value: string): ParsedDigest {
  const match = DIGEST_RE.exec(value);
  if (!match) throw new DigestError(`Cannot parse digest "${value}": expected "algorithm:hex"`);
  const algorithm = match[1] as string;
  const hex = match[2] as string;
  if (algorithm !== 'sha256' && algorithm !== 'sha512') {
    throw new DigestError(`Cannot parse digest "${value}": unsupported algorithm "${algorithm}"`);
  }
  if (hex.length !== HEX_LENGTH[algorithm] || !/^[a-f0-9]+$/.test(hex)) {
    throw new DigestError(
      `Cannot parse digest "${value}": ${algorithm} needs ${HEX_LENGTH[algorithm]} lower-case hex characters`,
    );
  }
  return { algorithm, hex, digest: value as Digest };
}

/** True when `value` is a digest {@link parseDigest} accepts. */
export function isDigest(value: string): value is Digest {
  try {
    parseDigest(value);
    return true;
  } catch {
    return false;
  }
}

/** Digest of a whole buffer (manifests, configs: small data). */
export function digestOf(data: Uint8Array | string, algorithm: DigestAlgorithm = 'sha256'): Digest {
  return `${algorithm}:${createHash(algorithm).update(data).digest('hex')}` as Digest;
}

/** Incremental digester for streamed content. */
export class Digester {
  readonly algorithm: DigestAlgorithm;
  readonly #hash: Hash;
  #size = 0;

  constructor(algorithm: DigestAlgorithm = 'sha256') {
    this.algorithm = algorithm;
    this.#hash = createHash(algorithm);
  }

  update(chunk: Uint8Array): void {
    this.#hash.update(chunk);
    this.#size += chunk.byteLength;
  }

  get size(): number {
    return this.#size;
  }

  /** Finishes the hash; the digester cannot be updated afterwards. */
  digest(): Digest {
    return `${this.algorithm}:${this.#hash.digest('hex')}` as Digest;
  }
}
