import { createHash, type Hash } from 'node:crypto';
import { hashThread, hashThreadAllowed, type RemoteStream } from './hash-thread.js';

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

/**
 * A digest as a tag name, `sha256-<hex>`: the OCI referrers API's fallback tag for a subject, and the stem
 * of cosign's `.sig`, `.att` and `.sbom` tags (a tag cannot hold a colon).
 */
export function digestTag(digest: string): string {
  return digest.replace(':', '-');
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

/** Smallest view {@link Digester.updateShared} sends to the hash thread when a digester starts there. */
const MIN_THREAD_HASH = 1024 * 1024;

/** Remote hash states to forget when their digester is collected. */
const remoteStates = new FinalizationRegistry<RemoteStream>((stream) => hashThread.drop(stream));

/**
 * Incremental digester for streamed content. It hashes on the calling thread, or, for large content in
 * shared memory (`updateShared`, used by the blob writer), on the hash thread; then `settle()` has to run
 * before `digest()` (the writer does it before it returns).
 */
export class Digester {
  readonly algorithm: DigestAlgorithm;
  #hash: Hash | undefined;
  #remote: RemoteStream | undefined;
  #size = 0;
  /** The remote digest at a size, from the last settle. */
  #settled: { readonly size: number; readonly hex: string } | undefined;
  /** A remote update that failed: every later settle fails with it. */
  #failure: Error | undefined;

  constructor(algorithm: DigestAlgorithm = 'sha256') {
    this.algorithm = algorithm;
    this.#hash = createHash(algorithm);
  }

  update(chunk: Uint8Array): void {
    if (this.#remote) {
      // Rare (a digester moved to the hash thread fed from ordinary memory): send a shared copy.
      const copy = new Uint8Array(new SharedArrayBuffer(chunk.byteLength));
      copy.set(chunk);
      void this.#track(hashThread.update(this.#remote, this.algorithm, copy)); // failures surface in settle()
    } else {
      (this.#hash as Hash).update(chunk);
    }
    this.#size += chunk.byteLength;
  }

  /**
   * Hashes a view of shared memory, on the hash thread when this digester is there or moves there now
   * (it has hashed nothing yet, the view is large and the hash thread is allowed); otherwise at once, here.
   * Resolves once the memory may be reused; never throws (a mistyped `AIRLOCK_HASH_THREAD` rejects). The
   * size counts the bytes at once (before the first await).
   */
  async updateShared(view: Uint8Array): Promise<void> {
    // Ordinary memory (for a digester already on the hash thread: a later chunk of an upload written
    // from an ordinary buffer set, when all aligned ones were in use) goes through `update`, which sends
    // the hash thread a shared copy.
    const shared = view.buffer instanceof SharedArrayBuffer;
    if (shared && !this.#remote && this.#size === 0 && view.byteLength >= MIN_THREAD_HASH) {
      // Undefined when no hash thread can run here (workers refused): the bytes are hashed here.
      const stream = hashThreadAllowed() ? hashThread.newStream() : undefined;
      if (stream) {
        this.#remote = stream;
        this.#hash = undefined;
        remoteStates.register(this, stream);
      }
    }
    if (!shared || !this.#remote) {
      this.update(view);
      return;
    }
    this.#size += view.byteLength;
    await this.#track(hashThread.update(this.#remote, this.algorithm, view));
  }

  #track(update: Promise<void>): Promise<void> {
    update.catch((error: unknown) => {
      this.#failure ??= error as Error;
    });
    return update;
  }

  get size(): number {
    return this.#size;
  }

  /**
   * Whether more bytes can be hashed into this digester: not when it failed, or when its state was on a
   * hash thread that has gone away since (the content then has to be hashed again).
   */
  get usable(): boolean {
    return this.#failure === undefined && (this.#remote === undefined || hashThread.holds(this.#remote));
  }

  /** Whether this digester hashes on the hash thread. */
  get onHashThread(): boolean {
    return this.#remote !== undefined;
  }

  /** Waits for the hash thread (if used) to have hashed everything so far; `digest()` needs it. */
  async settle(): Promise<void> {
    if (!this.#remote) return;
    const size = this.#size;
    const hex = await hashThread.peek(this.#remote, this.algorithm);
    if (this.#failure) throw this.#failure;
    this.#settled = { size, hex };
  }

  /**
   * The digest of everything hashed. On this thread it finishes the hash (no update afterwards); for a
   * hash-thread digester it is the digest from the last `settle()`, which must cover every byte.
   */
  digest(): Digest {
    if (!this.#remote) return `${this.algorithm}:${(this.#hash as Hash).digest('hex')}` as Digest;
    if (this.#failure) throw this.#failure;
    if (this.#settled?.size !== this.#size) {
      throw new Error('Digester.digest() before settle(): bytes sent to the hash thread are not counted yet');
    }
    return `${this.algorithm}:${this.#settled.hex}` as Digest;
  }
}
