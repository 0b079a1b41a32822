import { mkdir, readdir, readFile, rename, writeFile, rm } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import {
  SignJWT,
  exportJWK,
  generateKeyPair,
  importJWK,
  jwtVerify,
  type JWK,
  type CryptoKey,
  type JWTPayload,
} from 'jose';
import type { Action } from './policy.js';

/** One grant in a token, as the Docker token spec writes it. */
export interface AccessClaim {
  readonly type: 'repository' | 'registry';
  readonly name: string;
  readonly actions: readonly string[];
}

export interface TokenClaims {
  readonly subject: string;
  readonly access: readonly AccessClaim[];
  readonly expiresAt: number;
}

interface StoredKey {
  readonly kid: string;
  readonly createdAt: number;
  readonly privateKey: CryptoKey;
  readonly publicKey: CryptoKey;
}

export interface TokenServiceOptions {
  /** Folder for signing keys (created 0700). */
  readonly keyDir: string;
  /** `iss` and expected `aud`. Default: 'airlock'. */
  readonly issuer?: string;
  readonly service?: string;
  /** Token lifetime in seconds. Default: 300. */
  readonly lifetimeSeconds?: number;
  /** A new signing key is made when the newest is older than this. Default: 30 days. */
  readonly rotationSeconds?: number;
  readonly now?: () => number;
}

/** Parses a scope such as `repository:project/app:pull,push` (several may be space-separated). */
export function parseScopes(text: string): AccessClaim[] {
  const out: AccessClaim[] = [];
  for (const scope of text.split(' ').filter(Boolean)) {
    const first = scope.indexOf(':');
    const last = scope.lastIndexOf(':');
    if (first < 0 || last === first) continue;
    const type = scope.slice(0, first);
    if (type !== 'repository' && type !== 'registry') continue;
    out.push({
      type,
      name: scope.slice(first + 1, last),
      actions: scope
        .slice(last + 1)
        .split(',')
        .filter(Boolean),
    });
  }
  return out;
}

/**
 * Issues and verifies the registry's bearer tokens: ES256 JWTs with the Docker token spec's `access`
 * claim. Keys live in `keyDir`, rotate by age, and old keys still verify until their tokens expire.
 */
export class TokenService {
  readonly issuer: string;
  readonly service: string;
  readonly #options: TokenServiceOptions;
  readonly #now: () => number;
  #keys: StoredKey[] = [];
  /** Verified tokens, so a token is checked cryptographically once, not on every request. */
  readonly #verified = new Map<string, TokenClaims>();

  constructor(options: TokenServiceOptions) {
    this.#options = options;
    this.issuer = options.issuer ?? 'airlock';
    this.service = options.service ?? 'airlock';
    this.#now = options.now ?? Date.now;
  }

  get lifetimeSeconds(): number {
    return this.#options.lifetimeSeconds ?? 300;
  }

  /** Loads keys from disk and makes a new one when none is young enough. */
  async init(): Promise<void> {
    const dir = this.#options.keyDir;
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const keys: StoredKey[] = [];
    for (const name of (await readdir(dir)).filter((n) => n.endsWith('.jwk.json'))) {
      const stored = JSON.parse(await readFile(join(dir, name), 'utf8')) as {
        kid: string;
        createdAt: number;
        jwk: JWK;
      };
      const privateKey = (await importJWK(stored.jwk, 'ES256')) as CryptoKey;
      const { d: _private, ...publicJwk } = stored.jwk;
      const publicKey = (await importJWK(publicJwk, 'ES256')) as CryptoKey;
      keys.push({ kid: stored.kid, createdAt: stored.createdAt, privateKey, publicKey });
    }
    keys.sort((a, b) => b.createdAt - a.createdAt);
    const rotation = (this.#options.rotationSeconds ?? 30 * 24 * 3600) * 1000;
    const newest = keys[0];
    if (!newest || this.#now() - newest.createdAt > rotation) {
      const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
      const kid = randomBytes(8).toString('hex');
      const createdAt = this.#now();
      const jwk = await exportJWK(privateKey);
      const file = join(dir, `${kid}.jwk.json`);
      await writeFile(`${file}.tmp`, JSON.stringify({ kid, createdAt, jwk }), { mode: 0o600 });
      await rename(`${file}.tmp`, file);
      keys.unshift({ kid, createdAt, privateKey, publicKey });
    }
    // Keep one previous key for tokens signed just before a rotation; older ones are removed.
    for (const old of keys.slice(2)) await rm(join(dir, `${old.kid}.jwk.json`), { force: true });
    this.#keys = keys.slice(0, 2);
  }

  async issue(
    subject: string,
    access: readonly AccessClaim[],
  ): Promise<{ token: string; expiresIn: number; issuedAt: string }> {
    const key = this.#keys[0];
    if (!key) throw new Error('TokenService.init() was not called');
    const now = Math.floor(this.#now() / 1000);
    const token = await new SignJWT({
      access: access.map((a) => ({ type: a.type, name: a.name, actions: [...a.actions] })),
    })
      .setProtectedHeader({ alg: 'ES256', kid: key.kid, typ: 'JWT' })
      .setIssuer(this.issuer)
      .setSubject(subject)
      .setAudience(this.service)
      .setIssuedAt(now)
      .setNotBefore(now - 5)
      .setExpirationTime(now + this.lifetimeSeconds)
      .setJti(randomBytes(12).toString('hex'))
      .sign(key.privateKey);
    return { token, expiresIn: this.lifetimeSeconds, issuedAt: new Date(now * 1000).toISOString() };
  }

  /** Verifies one of our tokens (signature, alg, issuer, audience, time); undefined when it is not valid. */
  async verify(token: string): Promise<TokenClaims | undefined> {
    const cached = this.#verified.get(token);
    if (cached) {
      if (cached.expiresAt > this.#now()) return cached;
      this.#verified.delete(token);
      return undefined;
    }
    const header = decodeHeader(token);
    const key = this.#keys.find((k) => k.kid === header?.kid);
    if (!key) return undefined;
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(token, key.publicKey, {
        algorithms: ['ES256'],
        issuer: this.issuer,
        audience: this.service,
        currentDate: new Date(this.#now()),
      }));
    } catch {
      return undefined;
    }
    const claims: TokenClaims = {
      subject: String(payload.sub ?? ''),
      access: Array.isArray(payload.access) ? (payload.access as AccessClaim[]) : [],
      expiresAt: Number(payload.exp ?? 0) * 1000,
    };
    if (this.#verified.size > 50_000) this.#verified.clear();
    this.#verified.set(token, claims);
    return claims;
  }
}

function decodeHeader(token: string): { kid?: string; alg?: string } | undefined {
  const part = token.split('.')[0];
  if (!part) return undefined;
  try {
    return JSON.parse(Buffer.from(part, 'base64url').toString('utf8')) as { kid?: string; alg?: string };
  } catch {
    return undefined;
  }
}

/** Whether a token's claims allow `action` on a repository. */
export function tokenAllows(claims: TokenClaims, repository: string, action: Action): boolean {
  return claims.access.some(
    (a) =>
      a.type === 'repository' &&
      a.name === repository &&
      (a.actions.includes(action) || a.actions.includes('*')),
  );
}
