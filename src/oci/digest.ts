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

/** A hash state kept outside the calling thread (see `hash-pool.ts`). */
export interface OffloadedHash {
  readonly algorithm: DigestAlgorithm;
  /** Finishes the hash: its hex value. */
  hex(): Promise<string>;
  /** Forgets the state without finishing it. */
  dispose(): void;
}

/**
 * Incremental digester for streamed content. `update` hashes on the calling thread. `writeHashed` may
 * instead hand the state to a hashing worker thread (`offload`): from then on only `writeHashed` feeds
 * it, and the result comes from `finish()`.
 */
export class Digester {
  readonly algorithm: DigestAlgorithm;
  #hash: Hash | undefined;
  #offloaded: OffloadedHash | undefined;
  #size = 0;

  constructor(algorithm: DigestAlgorithm = 'sha256') {
    this.algorithm = algorithm;
    this.#hash = createHash(algorithm);
  }

  update(chunk: Uint8Array): void {
    if (!this.#hash) throw new Error('This digester hashes in a worker thread; feed it through writeHashed');
    this.#hash.update(chunk);
    this.#size += chunk.byteLength;
  }

  get size(): number {
    return this.#size;
  }

  /** The worker-held state, once `offload` was called. */
  get offloaded(): OffloadedHash | undefined {
    return this.#offloaded;
  }

  /** Moves hashing to `state` (an empty hash of the same algorithm); only before the first byte. */
  offload(state: OffloadedHash): void {
    if (this.#size !== 0 || !this.#hash || state.algorithm !== this.algorithm) {
      throw new Error('Only a new digester can move its hashing to a worker thread');
    }
    this.#hash = undefined;
    this.#offloaded = state;
  }

  /** Counts bytes hashed by the offloaded state. */
  countOffloaded(bytes: number): void {
    this.#size += bytes;
  }

  /** Finishes the hash; the digester cannot be updated afterwards. Only for digesters never offloaded. */
  digest(): Digest {
    if (!this.#hash) throw new Error('This digester hashes in a worker thread; use finish()');
    return `${this.algorithm}:${this.#hash.digest('hex')}` as Digest;
  }

  /** Finishes the hash, wherever it is kept. */
  async finish(): Promise<Digest> {
    if (!this.#offloaded) return this.digest();
    return `${this.algorithm}:${await this.#offloaded.hex()}` as Digest;
  }

  /** Releases an offloaded state that will not be finished (a failed or cancelled write). */
  dispose(): void {
    this.#offloaded?.dispose();
  }
}
