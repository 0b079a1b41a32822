import { createLocalJWKSet, decodeJwt, jwtVerify, type JSONWebKeySet, type JWTVerifyGetKey } from 'jose';
import type { AuthStore, ClusterTrust } from '../../storage/index.js';
import type { Principal } from './policy.js';

/** Fetches a URL's JSON body (the issuer's OIDC discovery and JWKS); injected so the registry's TLS settings apply. */
export type JsonFetcher = (url: string) => Promise<unknown>;

export interface ServiceAccountVerifierOptions {
  readonly store: AuthStore;
  /** The audience tokens must carry. Default: 'airlock'. */
  readonly audience?: string;
  readonly fetchJson?: JsonFetcher;
  /** How long keys from discovery are trusted before they are fetched again. Default: 10 minutes. */
  readonly keyTtlMs?: number;
  readonly now?: () => number;
}

interface Keys {
  readonly get: JWTVerifyGetKey;
  readonly until: number;
}

const SUBJECT = /^system:serviceaccount:([a-z0-9-]{1,63}):([a-z0-9.-]{1,253})$/;

/**
 * Accepts Kubernetes service-account tokens (projected, audience-bound JWTs) from trusted clusters. A
 * cluster is trusted by issuer, with keys from a static JWKS (air-gapped) or the issuer's OIDC discovery.
 * The principal is `serviceAccount:NAMESPACE/NAME@CLUSTER`.
 */
export class ServiceAccountVerifier {
  readonly audience: string;
  readonly #options: ServiceAccountVerifierOptions;
  readonly #keys = new Map<string, Keys>();
  readonly #verified = new Map<string, { principal: Principal; until: number }>();
  #clusters: ClusterTrust[] = [];

  constructor(options: ServiceAccountVerifierOptions) {
    this.#options = options;
    this.audience = options.audience ?? 'airlock';
  }

  #now(): number {
    return (this.#options.now ?? Date.now)();
  }

  async refresh(): Promise<void> {
    this.#clusters = await this.#options.store.listClusters();
    this.#keys.clear();
    this.#verified.clear();
  }

  /** Whether a JWT claims an issuer of a trusted cluster (so it is worth verifying here). */
  claimsTrustedIssuer(token: string): boolean {
    try {
      const iss = decodeJwt(token).iss;
      return this.#clusters.some((c) => c.issuer === iss);
    } catch {
      return false;
    }
  }

  async #keysFor(cluster: ClusterTrust): Promise<JWTVerifyGetKey> {
    const cached = this.#keys.get(cluster.name);
    if (cached && cached.until > this.#now()) return cached.get;
    let jwks: JSONWebKeySet;
    if (cluster.jwks) {
      jwks = JSON.parse(cluster.jwks) as JSONWebKeySet;
    } else {
      const fetchJson = this.#options.fetchJson;
      if (!fetchJson) throw new Error(`Cluster "${cluster.name}" has no JWKS and discovery is not available`);
      const discovery = (await fetchJson(
        `${cluster.issuer.replace(/\/$/, '')}/.well-known/openid-configuration`,
      )) as { jwks_uri?: string; issuer?: string };
      if (discovery.issuer !== cluster.issuer || !discovery.jwks_uri) {
        throw new Error(`The OIDC discovery of "${cluster.issuer}" names another issuer or no jwks_uri`);
      }
      jwks = (await fetchJson(discovery.jwks_uri)) as JSONWebKeySet;
    }
    const get = createLocalJWKSet(jwks);
    this.#keys.set(cluster.name, { get, until: this.#now() + (this.#options.keyTtlMs ?? 600_000) });
    return get;
  }

  /** The principal for a valid token; undefined when it is not from a trusted cluster or fails any check. */
  async verify(token: string): Promise<Principal | undefined> {
    const cached = this.#verified.get(token);
    if (cached) {
      if (cached.until > this.#now()) return cached.principal;
      this.#verified.delete(token);
    }
    let iss: string | undefined;
    try {
      iss = decodeJwt(token).iss;
    } catch {
      return undefined;
    }
    const cluster = this.#clusters.find((c) => c.issuer === iss);
    if (!cluster) return undefined;
    try {
      const { payload } = await jwtVerify(token, await this.#keysFor(cluster), {
        issuer: cluster.issuer,
        audience: this.audience,
        algorithms: ['RS256', 'RS384', 'RS512', 'ES256', 'ES384', 'PS256'],
        currentDate: new Date(this.#now()),
      });
      const match = SUBJECT.exec(String(payload.sub ?? ''));
      if (!match || payload.exp === undefined) return undefined;
      const principal: Principal = {
        kind: 'serviceAccount',
        member: `serviceAccount:${match[1]}/${match[2]}@${cluster.name}`,
      };
      if (this.#verified.size > 10_000) this.#verified.clear();
      this.#verified.set(token, { principal, until: Math.min(payload.exp * 1000, this.#now() + 300_000) });
      return principal;
    } catch {
      return undefined;
    }
  }
}
