import type { Credentials } from './credentials.js';
import { ClientError } from './errors.js';
import type { HttpResponse, HttpTransport } from './transport.js';

export interface Challenge {
  readonly scheme: 'basic' | 'bearer';
  readonly params: Readonly<Record<string, string>>;
}

/** Parses `WWW-Authenticate: Bearer realm="…",service="…",scope="…"` (or Basic). */
export function parseChallenge(header: string | undefined): Challenge | undefined {
  if (!header) return undefined;
  const match = /^\s*(\w+)\s*(.*)$/s.exec(header);
  if (!match) return undefined;
  const scheme = (match[1] ?? '').toLowerCase();
  if (scheme !== 'basic' && scheme !== 'bearer') return undefined;
  const params: Record<string, string> = {};
  const re = /(\w+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))/g;
  for (const part of (match[2] ?? '').matchAll(re)) {
    params[(part[1] ?? '').toLowerCase()] = (part[2] ?? part[3] ?? '').replace(/\\(.)/g, '$1');
  }
  return { scheme, params };
}

interface CachedToken {
  readonly token: string;
  readonly expiresAt: number;
}

export interface AuthenticatorOptions {
  readonly credentials?: Credentials | undefined;
  /** Current time, injectable for tests. Default: Date.now. */
  readonly now?: () => number;
}

function basicHeader(credentials: Credentials | undefined): string | undefined {
  if (!credentials || !('username' in credentials)) return undefined;
  return `Basic ${Buffer.from(`${credentials.username}:${credentials.password}`).toString('base64')}`;
}

/**
 * Answers registry auth challenges per the Docker token spec: Basic credentials are sent directly;
 * Bearer challenges are exchanged at the realm for a token, cached per scope until shortly before it expires.
 */
export class Authenticator {
  readonly #transport: HttpTransport;
  readonly #credentials: Credentials | undefined;
  readonly #now: () => number;
  readonly #tokens = new Map<string, CachedToken>();
  #scheme: 'basic' | 'bearer' | undefined;
  #challenge: Challenge | undefined;

  constructor(transport: HttpTransport, options: AuthenticatorOptions = {}) {
    this.#transport = transport;
    this.#credentials = options.credentials;
    this.#now = options.now ?? Date.now;
  }

  /** The Authorization header to send for `scopes`, when one is known without a round trip. */
  header(scopes: readonly string[]): string | undefined {
    if (this.#scheme === 'basic') return basicHeader(this.#credentials);
    if (this.#scheme !== 'bearer') return undefined;
    const cached = this.#tokens.get(scopes.join(' '));
    if (cached && cached.expiresAt > this.#now()) return `Bearer ${cached.token}`;
    return undefined;
  }

  /**
   * Learns from a 401: returns the header to retry with, or undefined when retrying cannot help
   * (no usable challenge, or Basic without credentials).
   */
  async respond(
    res: HttpResponse,
    scopes: readonly string[],
    signal?: AbortSignal,
  ): Promise<string | undefined> {
    const challenge = parseChallenge(res.header('www-authenticate'));
    if (!challenge) return undefined;
    this.#scheme = challenge.scheme;
    this.#challenge = challenge;
    if (challenge.scheme === 'basic') return basicHeader(this.#credentials);
    const token = await this.#fetchToken(challenge, scopes, signal);
    return `Bearer ${token}`;
  }

  /** Fetches a token for `scopes` ahead of a request whose body cannot be replayed cheaply. */
  async prepare(scopes: readonly string[], signal?: AbortSignal): Promise<string | undefined> {
    const known = this.header(scopes);
    if (known || this.#scheme !== 'bearer' || !this.#challenge) return known;
    return `Bearer ${await this.#fetchToken(this.#challenge, scopes, signal)}`;
  }

  async #fetchToken(challenge: Challenge, scopes: readonly string[], signal?: AbortSignal): Promise<string> {
    const realm = challenge.params.realm;
    if (!realm)
      throw new ClientError('UNAUTHORIZED', 'The registry asked for a bearer token but named no realm');
    let url: URL;
    try {
      url = new URL(realm);
    } catch (error) {
      throw new ClientError('INVALID_RESPONSE', `The registry's token realm "${realm}" is not a URL`, {
        cause: error,
      });
    }
    const service = challenge.params.service;
    const credentials = this.#credentials;
    let res: HttpResponse;
    if (credentials && 'identityToken' in credentials) {
      const form = new URLSearchParams({
        grant_type: 'refresh_token',
        refresh_token: credentials.identityToken,
        client_id: 'airlock',
      });
      if (service) form.set('service', service);
      if (scopes.length > 0) form.set('scope', scopes.join(' '));
      res = await this.#transport.send({
        method: 'POST',
        url,
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: Buffer.from(form.toString()),
        ...(signal ? { signal } : {}),
      });
    } else {
      if (service) url.searchParams.set('service', service);
      for (const scope of scopes) url.searchParams.append('scope', scope);
      const authorization = basicHeader(credentials);
      res = await this.#transport.send({
        method: 'GET',
        url,
        headers: authorization ? { authorization } : {},
        ...(signal ? { signal } : {}),
      });
    }
    const text = await res.text(64 * 1024);
    if (res.status === 401 || res.status === 403) {
      throw new ClientError(
        'UNAUTHORIZED',
        `The token service at ${url.host} refused the credentials (HTTP ${res.status})`,
        { status: res.status },
      );
    }
    if (res.status !== 200) {
      throw new ClientError('HTTP', `The token service at ${url.host} answered HTTP ${res.status}`, {
        status: res.status,
      });
    }
    let body: { token?: string; access_token?: string; expires_in?: number };
    try {
      body = JSON.parse(text) as typeof body;
    } catch (error) {
      throw new ClientError(
        'INVALID_RESPONSE',
        `The token service at ${url.host} answered something that is not JSON`,
        { cause: error },
      );
    }
    const token = body.token ?? body.access_token;
    if (!token)
      throw new ClientError('INVALID_RESPONSE', `The token service at ${url.host} answered without a token`);
    const lifetime = Math.max(10, Number(body.expires_in ?? 60));
    // Renew a little early so a token never expires between header() and the registry reading it.
    this.#tokens.set(scopes.join(' '), { token, expiresAt: this.#now() + (lifetime - 5) * 1000 });
    return token;
  }
}
