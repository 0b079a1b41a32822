import type { AuthStore, Binding } from '../../storage/index.js';
import { RegistryError } from '../errors.js';
import { sameHash, sha256, verifyPassword } from './password.js';
import { ANONYMOUS, grantedActions, registryActions, type Action, type Principal } from './policy.js';
import { parseScopes, tokenAllows, type AccessClaim, type TokenClaims, type TokenService } from './tokens.js';
import type { ServiceAccountVerifier } from './service-accounts.js';

/** An authenticated request: who, and (for bearer tokens) exactly what the token grants. */
export interface Caller {
  readonly principal: Principal;
  readonly claims?: TokenClaims;
}

export interface AccessControlOptions {
  readonly store: AuthStore;
  readonly tokens: TokenService;
  /** Verifies Kubernetes service-account tokens from trusted clusters. Default: none accepted. */
  readonly serviceAccounts?: ServiceAccountVerifier;
  /** When false every request is allowed (the open embedded default on loopback). */
  readonly enabled: boolean;
  readonly now?: () => number;
  /** Failed logins per user and address within a minute before 429. Default: 10. */
  readonly maxFailures?: number;
}

const CREDENTIAL_CACHE_MS = 60_000;
const FAILURE_WINDOW_MS = 60_000;

/** Members that may be bound: `user:NAME`, `robot:NAME`, `serviceAccount:NS/NAME@CLUSTER`. */
export function memberProblem(member: string): string | undefined {
  if (/^user:[A-Za-z0-9._@-]{1,128}$/.test(member)) return undefined;
  if (/^robot:[a-z0-9._-]{1,128}$/.test(member)) return undefined;
  if (/^serviceAccount:[a-z0-9-]{1,63}\/[a-z0-9.-]{1,253}@[a-z0-9.-]{1,128}$/.test(member)) return undefined;
  return 'use user:NAME, robot:NAME or serviceAccount:NAMESPACE/NAME@CLUSTER';
}

/**
 * Authentication (Basic for users and robots, our bearer tokens) and authorization (role bindings on
 * repository scopes) for the registry. Verified credentials and all bindings are kept in memory so the
 * per-request cost is a map lookup; every change through this class refreshes them.
 */
export class AccessControl {
  readonly enabled: boolean;
  readonly tokens: TokenService;
  readonly store: AuthStore;
  readonly serviceAccounts: ServiceAccountVerifier | undefined;
  readonly #now: () => number;
  readonly #maxFailures: number;
  readonly #credentials = new Map<string, { principal: Principal; until: number }>();
  readonly #failures = new Map<string, { count: number; since: number }>();
  /** Bindings by member, so a request looks up only its caller's. */
  #bindings = new Map<string, Binding[]>();
  #publicRepos = new Set<string>();

  constructor(options: AccessControlOptions) {
    this.enabled = options.enabled;
    this.tokens = options.tokens;
    this.store = options.store;
    this.serviceAccounts = options.serviceAccounts;
    this.#now = options.now ?? Date.now;
    this.#maxFailures = options.maxFailures ?? 10;
  }

  /** Reloads bindings and public repositories, and forgets cached credentials (after any change). */
  async refresh(): Promise<void> {
    const byMember = new Map<string, Binding[]>();
    for (const binding of await this.store.listBindings()) {
      byMember.set(binding.member, [...(byMember.get(binding.member) ?? []), binding]);
    }
    this.#bindings = byMember;
    this.#publicRepos = new Set(
      (await this.store.listRepositorySettings()).filter((r) => r.publicRead).map((r) => r.name),
    );
    this.#credentials.clear();
    await this.serviceAccounts?.refresh();
  }

  #throttle(key: string): void {
    const entry = this.#failures.get(key);
    if (entry && this.#now() - entry.since < FAILURE_WINDOW_MS && entry.count >= this.#maxFailures) {
      throw new RegistryError('TOOMANYREQUESTS', 'Too many failed logins; try again in a minute');
    }
  }

  #fail(key: string): never {
    const now = this.#now();
    const entry = this.#failures.get(key);
    if (!entry || now - entry.since >= FAILURE_WINDOW_MS) this.#failures.set(key, { count: 1, since: now });
    else entry.count++;
    if (this.#failures.size > 100_000) this.#failures.clear();
    throw new RegistryError('UNAUTHORIZED', 'Authentication failed: unknown user or wrong password');
  }

  /** Checks `user:password` (or `robot$name:secret`) and returns the principal. */
  async login(username: string, password: string, address = ''): Promise<Principal> {
    const key = `${username}\u0000${address}`;
    this.#throttle(key);
    if (username === 'serviceaccount' || username === 'kubernetes') {
      // A service-account token given as the password (how docker-style clients carry it).
      const principal = await this.serviceAccounts?.verify(password);
      if (!principal) this.#fail(key);
      this.#failures.delete(key);
      return principal;
    }
    const robotName = /^robot[$:](.+)$/.exec(username)?.[1];
    if (robotName !== undefined) {
      const robot = await this.store.getRobot(robotName);
      const valid =
        robot !== undefined &&
        robot.revokedAt === undefined &&
        (robot.expiresAt === undefined || robot.expiresAt > this.#now()) &&
        sameHash(sha256(password), robot.secretHash);
      if (!valid) this.#fail(key);
      this.#failures.delete(key);
      return { kind: 'robot', member: `robot:${robotName}` };
    }
    const user = await this.store.getUser(username);
    // Verify against a dummy hash for unknown users too, so timing does not tell which names exist.
    const ok = await verifyPassword(password, user?.passwordHash ?? DUMMY_HASH);
    if (!user || !ok) this.#fail(key);
    this.#failures.delete(key);
    return { kind: 'user', member: `user:${username}` };
  }

  /** Whether a principal's account still exists and is usable (token refreshes check this). */
  async isActive(principal: Principal): Promise<boolean> {
    if (principal.kind === 'user')
      return (await this.store.getUser(principal.member.slice('user:'.length))) !== undefined;
    if (principal.kind === 'robot') {
      const robot = await this.store.getRobot(principal.member.slice('robot:'.length));
      return (
        robot !== undefined &&
        robot.revokedAt === undefined &&
        (robot.expiresAt === undefined || robot.expiresAt > this.#now())
      );
    }
    return principal.kind === 'serviceAccount';
  }

  /** Reads the Authorization header: nothing is anonymous; Basic and Bearer are checked. */
  async authenticate(authorization: string | undefined, address = ''): Promise<Caller> {
    if (!authorization) return { principal: ANONYMOUS };
    const space = authorization.indexOf(' ');
    const scheme = authorization.slice(0, space).toLowerCase();
    const value = authorization.slice(space + 1).trim();
    if (scheme === 'bearer') {
      const claims = await this.tokens.verify(value);
      if (!claims && this.serviceAccounts?.claimsTrustedIssuer(value)) {
        const principal = await this.serviceAccounts.verify(value);
        if (principal) return { principal };
      }
      if (!claims)
        throw new RegistryError('UNAUTHORIZED', 'The bearer token is invalid or expired; request a new one');
      return { principal: principalFromSubject(claims.subject), claims };
    }
    if (scheme === 'basic') {
      const cacheKey = sha256(value);
      const cached = this.#credentials.get(cacheKey);
      if (cached && cached.until > this.#now()) return { principal: cached.principal };
      const decoded = Buffer.from(value, 'base64').toString('utf8');
      const colon = decoded.indexOf(':');
      if (colon < 0)
        throw new RegistryError('UNAUTHORIZED', 'Basic credentials must be base64 "user:password"');
      const principal = await this.login(decoded.slice(0, colon), decoded.slice(colon + 1), address);
      if (this.#credentials.size > 10_000) this.#credentials.clear();
      this.#credentials.set(cacheKey, { principal, until: this.#now() + CREDENTIAL_CACHE_MS });
      return { principal };
    }
    throw new RegistryError(
      'UNAUTHORIZED',
      `Authorization scheme "${scheme}" is not supported; use Basic or Bearer`,
    );
  }

  #bindingsOf(principal: Principal): Binding[] {
    return this.#bindings.get(principal.member) ?? [];
  }

  /** The actions a caller may take on a repository. */
  actions(caller: Caller, repository: string): Set<Action> {
    if (!this.enabled) return new Set<Action>(['pull', 'push', 'delete', 'manage']);
    if (caller.claims) {
      const claims = caller.claims;
      return new Set(
        (['pull', 'push', 'delete', 'manage'] as const).filter((a) => tokenAllows(claims, repository, a)),
      );
    }
    return grantedActions(this.#bindingsOf(caller.principal), repository, {
      publicRead: this.#publicRepos.has(repository),
    });
  }

  allows(caller: Caller, repository: string, action: Action): boolean {
    return this.actions(caller, repository).has(action);
  }

  /** Registry-wide rights (users, robots, clusters, audit): an admin binding on `*`. */
  isRegistryAdmin(caller: Caller): boolean {
    if (!this.enabled) return true;
    if (caller.claims)
      return caller.claims.access.some(
        (a) => a.type === 'registry' && a.name === 'admin' && a.actions.includes('*'),
      );
    return registryActions(this.#bindingsOf(caller.principal)).has('manage');
  }

  /** May the caller see that the repository exists (catalog, Harbor API)? */
  canSee(caller: Caller, repository: string): boolean {
    return this.actions(caller, repository).size > 0;
  }

  /** Grants for a token request: each requested scope cut down to what the principal's roles allow. */
  grant(principal: Principal, scopeText: readonly string[]): AccessClaim[] {
    const caller: Caller = { principal };
    const out: AccessClaim[] = [];
    for (const scope of parseScopes(scopeText.join(' '))) {
      if (scope.type === 'registry') {
        if (scope.name === 'catalog' && principal.kind !== 'anonymous')
          out.push({ type: 'registry', name: 'catalog', actions: ['*'] });
        continue;
      }
      const allowed = this.actions(caller, scope.name);
      const wanted = scope.actions.includes('*') ? ['pull', 'push', 'delete'] : scope.actions;
      const actions = wanted.filter((a) => allowed.has(a as Action));
      out.push({ type: 'repository', name: scope.name, actions });
    }
    return out;
  }
}

/** Parses a token subject back into a principal (`user:alice` → user). */
export function principalFromSubject(subject: string): Principal {
  const kind = subject.split(':')[0];
  if (kind === 'user' || kind === 'robot' || kind === 'serviceAccount') return { kind, member: subject };
  return ANONYMOUS;
}

/** A valid hash of a random password, compared against when the user does not exist. */
const DUMMY_HASH = 'scrypt$16384$8$1$c2FsdHNhbHRzYWx0c2FsdA$0000000000000000000000000000000000000000000';
