import type { Credentials } from './credentials.js';
import { ClientError } from './errors.js';
import { isRetryableStatus, parseRetryAfter, withRetry, type RetryPolicy } from './retry.js';
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
  /** How token requests are retried (network errors, 408, 429, 5xx). Default: withRetry's defaults. */
  readonly retry?: RetryPolicy | undefined;
  /** Current time, injectable for tests. Default: Date.now. */
  readonly now?: () => number;
}

function basicHeader(credentials: Credentials | undefined): string | undefined {
  if (!credentials || !('username' in credentials)) return undefined;
  return `Basic ${Buffer.from(`${credentials.username}:${credentials.password}`).toString('base64')}`;
}

/** `repository:a/b:pull,push` → resource `repository:a/b` and actions; a scope without actions has none. */
function splitScope(scope: string): { resource: string; actions: string[] } {
  const last = scope.lastIndexOf(':');
  if (last <= scope.indexOf(':')) return { resource: scope, actions: [] };
  return { resource: scope.slice(0, last), actions: scope.slice(last + 1).split(',') };
}

/**
 * The caller's scopes plus those a challenge names (space-separated) that they do not already cover, as
 * the Docker token spec, ggcr and oras-go do: a registry may want more than the client guessed (Harbor
 * and ACR ask for `repository:x:*` to delete, some for `pull,metadata` to read).
 */
export function withChallengeScopes(scopes: readonly string[], challengeScope: string | undefined): string[] {
  const out = [...scopes];
  for (const wanted of (challengeScope ?? '').split(' ').filter(Boolean)) {
    const { resource, actions } = splitScope(wanted);
    const held = new Set(
      scopes.flatMap((scope) => {
        const split = splitScope(scope);
        return split.resource === resource ? split.actions : [];
      }),
    );
    const covered = actions.length > 0 && (held.has('*') || actions.every((action) => held.has(action)));
    if (!covered && !out.includes(wanted)) out.push(wanted);
  }
  return out;
}

/** Who a refusal concerns, for messages: the user, or the identity token a login saved. */
function whose(credentials: Credentials): string {
  return 'username' in credentials ? `user "${credentials.username}"` : 'the saved identity token';
}

/**
 * The advice appended to a registry's 401: how to log in, unless credentials were given and the registry
 * said `insufficient_scope` (logging in again would not help: those credentials lack the access).
 */
export function unauthorizedHint(res: HttpResponse, credentials: Credentials | undefined): string {
  if (res.status !== 401) return '';
  const challenge = parseChallenge(res.header('www-authenticate'));
  if (credentials && challenge?.params.error === 'insufficient_scope') {
    const scope = challenge.params.scope;
    return ` (the token service did not grant ${whose(credentials)} the access the registry asks for${scope ? `, "${scope}"` : ''})`;
  }
  return ' (log in with "airlock login" or pass --username/--password-stdin)';
}

/**
 * Answers registry auth challenges per the Docker token spec: Basic credentials are sent directly;
 * Bearer challenges are exchanged at the realm for a token (for the caller's scopes and the challenge's),
 * cached per scope until shortly before it expires. Concurrent requests for one scope share one fetch.
 */
export class Authenticator {
  readonly #transport: HttpTransport;
  readonly #credentials: Credentials | undefined;
  readonly #retry: RetryPolicy;
  readonly #now: () => number;
  readonly #tokens = new Map<string, CachedToken>();
  /** Token requests under way, by the scopes they ask for. */
  readonly #fetching = new Map<string, Promise<CachedToken>>();
  #scheme: 'basic' | 'bearer' | undefined;
  #challenge: Challenge | undefined;
  /** The registry that challenged (host:port), for the login advice of a refusal. */
  #registry: string | undefined;

  constructor(transport: HttpTransport, options: AuthenticatorOptions = {}) {
    this.#transport = transport;
    this.#credentials = options.credentials;
    this.#retry = options.retry ?? {};
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
    this.#registry = res.url.host;
    if (challenge.scheme === 'basic') return basicHeader(this.#credentials);
    const wanted = withChallengeScopes(scopes, challenge.params.scope);
    const token = await this.#token(challenge, wanted, signal);
    // Later calls with the caller's scopes send this token up front, without another challenge.
    this.#tokens.set(scopes.join(' '), token);
    return `Bearer ${token.token}`;
  }

  /** Fetches a token for `scopes` ahead of a request whose body cannot be replayed cheaply. */
  async prepare(scopes: readonly string[], signal?: AbortSignal): Promise<string | undefined> {
    const known = this.header(scopes);
    if (known || this.#scheme !== 'bearer' || !this.#challenge) return known;
    return `Bearer ${(await this.#token(this.#challenge, scopes, signal)).token}`;
  }

  /**
   * A new token for `scopes`, shared with any fetch for the same scopes already under way (a copy's
   * parallel blob transfers meet the same challenge at once). The shared fetch is cancelled by the
   * `signal` of the call that started it.
   */
  #token(challenge: Challenge, scopes: readonly string[], signal?: AbortSignal): Promise<CachedToken> {
    const key = scopes.join(' ');
    let fetching = this.#fetching.get(key);
    if (!fetching) {
      fetching = this.#fetchToken(challenge, scopes, signal).finally(() => this.#fetching.delete(key));
      this.#fetching.set(key, fetching);
    }
    return fetching;
  }

  async #fetchToken(
    challenge: Challenge,
    scopes: readonly string[],
    signal?: AbortSignal,
  ): Promise<CachedToken> {
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
    let send: () => Promise<HttpResponse>;
    if (credentials && 'identityToken' in credentials) {
      const form = new URLSearchParams({
        grant_type: 'refresh_token',
        refresh_token: credentials.identityToken,
        client_id: 'airlock',
      });
      if (service) form.set('service', service);
      if (scopes.length > 0) form.set('scope', scopes.join(' '));
      send = () =>
        this.#transport.send({
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
      send = () =>
        this.#transport.send({
          method: 'GET',
          url,
          headers: authorization ? { authorization } : {},
          ...(signal ? { signal } : {}),
        });
    }
    // A token service is a server like the registry: it fails for a moment, and it throttles.
    const res = await withRetry(
      async () => {
        const response = await send();
        if (!isRetryableStatus(response.status)) return { done: response };
        await response.drain();
        const error = new ClientError(
          'HTTP',
          `The token service at ${url.host} answered HTTP ${response.status}`,
          { status: response.status },
        );
        return { retry: error, afterMs: parseRetryAfter(response.header('retry-after')) };
      },
      { ...this.#retry, ...(signal ? { signal } : {}) },
    );
    const text = await res.text(64 * 1024);
    if (res.status === 401 || res.status === 403) throw this.#refused(url.host, res.status);
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
    const cached = { token, expiresAt: this.#now() + (lifetime - 5) * 1000 };
    this.#tokens.set(scopes.join(' '), cached);
    return cached;
  }

  /** A token service's 401 or 403: credentials are needed, or the ones given were refused. */
  #refused(service: string, status: number): ClientError {
    const credentials = this.#credentials;
    const login = `airlock login ${this.#registry ?? 'HOST'}`;
    if (!credentials)
      return new ClientError(
        'UNAUTHORIZED',
        `The token service at ${service} refused anonymous access (HTTP ${status}): credentials are needed; log in with "${login}" or pass --username/--password-stdin`,
        { status },
      );
    const message =
      'username' in credentials
        ? `refused the credentials of ${whose(credentials)} (HTTP ${status}); check the user name and password`
        : `refused ${whose(credentials)} (HTTP ${status}); log in again with "${login}"`;
    return new ClientError('UNAUTHORIZED', `The token service at ${service} ${message}`, { status });
  }
}
