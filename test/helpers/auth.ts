// Helpers for interop tests against an Airlock with access control on: a registry process with an admin,
// users, robots and bindings made through the management API; private client configuration folders; and
// a private containerd. Everything talks to 127.0.0.1 only.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { loggedRequests, tempDirForTest, type BuiltArtifact, type LoggedRequest } from './interop.js';
import { startAirlockProcess, type CommandResult, type RunningProcess } from './processes.js';
import { startContainerd as startPrivateContainerd } from './containerd.js';

export interface Credentials {
  readonly username: string;
  readonly password: string;
}

export type Role = 'reader' | 'writer' | 'admin';

/** The `Authorization` header value for Basic credentials. */
export function basicAuth(credentials: Credentials): string {
  return `Basic ${Buffer.from(`${credentials.username}:${credentials.password}`).toString('base64')}`;
}

export interface AuditEntry {
  readonly actor: string;
  readonly action: string;
  readonly target: string;
}

/** An Airlock process with access control on, driven through its management API as the first admin. */
export class AuthRegistry {
  readonly airlock: RunningProcess;
  readonly admin: Credentials;

  private constructor(airlock: RunningProcess, admin: Credentials) {
    this.airlock = airlock;
    this.admin = admin;
  }

  /**
   * Starts `airlock serve --init-admin admin` on a fresh data folder. The log level is debug so that
   * every request (GET /auth/token too) is logged and tests can see which calls a client made.
   */
  static async start(): Promise<AuthRegistry> {
    const admin = { username: 'admin', password: `admin-${randomBytes(12).toString('hex')}` };
    const airlock = await startAirlockProcess({
      extraArgs: ['--init-admin', admin.username, '--log-level', 'debug'],
      env: { AIRLOCK_ADMIN_PASSWORD: admin.password },
    });
    return new AuthRegistry(airlock, admin);
  }

  get url(): string {
    return this.airlock.url;
  }

  /** host:port, as clients write it in references. */
  get host(): string {
    return this.airlock.host;
  }

  async stop(): Promise<void> {
    await this.airlock.stop();
    await rm(this.airlock.dataDir, { recursive: true, force: true });
  }

  /** A management API call as the admin; throws unless the answer is 2xx. Returns the JSON body, if any. */
  async api(method: string, path: string, body?: unknown): Promise<unknown> {
    const res = await fetch(`${this.url}${path}`, {
      method,
      headers: {
        authorization: basicAuth(this.admin),
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    const text = await res.text();
    if (res.status < 200 || res.status > 299)
      throw new Error(`${method} ${path} answered ${res.status}: ${text}`);
    return text === '' ? undefined : (JSON.parse(text) as unknown);
  }

  /** Binds a member (`user:NAME`, `robot:NAME`) to a role on a scope (`project/repo`, `project/`, `*`). */
  async bind(member: string, role: Role, scope: string): Promise<void> {
    await this.api('POST', '/api/v1/bindings', { member, role, scope });
  }

  /** Creates a user with a random password and, optionally, binds it. */
  async addUser(name: string, binding?: { role: Role; scope: string }): Promise<Credentials> {
    const password = `${name}-${randomBytes(12).toString('hex')}`;
    await this.api('POST', '/api/v1/users', { name, password });
    if (binding) await this.bind(`user:${name}`, binding.role, binding.scope);
    return { username: name, password };
  }

  /** Creates a robot account (username `robot$NAME`) and, optionally, binds it. */
  async addRobot(name: string, binding?: { role: Role; scope: string }): Promise<Credentials> {
    const created = (await this.api('POST', '/api/v1/robots', { name })) as {
      username: string;
      secret: string;
    };
    assert.equal(created.username, `robot$${name}`);
    if (binding) await this.bind(`robot:${name}`, binding.role, binding.scope);
    return { username: created.username, password: created.secret };
  }

  /** Creates an empty repository whose content anyone may pull. */
  async addPublicRepository(name: string): Promise<void> {
    const created = (await this.api('POST', '/api/v1/repositories', { name, public: true })) as {
      public: boolean;
    };
    assert.equal(created.public, true);
  }

  /** Audit entries of one actor (`user:NAME`, `robot:NAME`). */
  async audit(actor: string): Promise<AuditEntry[]> {
    return (await this.api('GET', `/api/v1/audit?actor=${encodeURIComponent(actor)}`)) as AuditEntry[];
  }

  /** The digest the registry serves for a manifest (read as admin), or undefined when there is none. */
  async manifestDigest(repository: string, reference: string): Promise<string | undefined> {
    const res = await fetch(`${this.url}/v2/${repository}/manifests/${reference}`, {
      method: 'HEAD',
      headers: {
        authorization: basicAuth(this.admin),
        accept: 'application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json',
      },
    });
    if (res.status === 404) return undefined;
    assert.equal(res.status, 200, `HEAD ${repository}:${reference}`);
    return res.headers.get('docker-content-digest') ?? undefined;
  }

  /** Seeds a repository over HTTP with Basic credentials (monolithic uploads, children first). */
  async push(
    target: { repository: string; tag: string },
    artifact: BuiltArtifact,
    credentials: Credentials = this.admin,
  ): Promise<void> {
    const authorization = basicAuth(credentials);
    const base = `${this.url}/v2/${target.repository}`;
    for (const [digest, bytes] of artifact.blobs) {
      const res = await fetch(`${base}/blobs/uploads/?digest=${digest}`, {
        method: 'POST',
        headers: { authorization, 'content-type': 'application/octet-stream' },
        body: bytes,
      });
      assert.equal(res.status, 201, `upload of ${digest}: ${await res.text()}`);
    }
    for (const [reference, manifest] of [
      ...artifact.children.map((c) => [c.descriptor.digest, c] as const),
      [target.tag, artifact] as const,
    ]) {
      const res = await fetch(`${base}/manifests/${reference}`, {
        method: 'PUT',
        headers: { authorization, 'content-type': manifest.descriptor.mediaType },
        body: manifest.bytes,
      });
      assert.equal(res.status, 201, `PUT ${target.repository}:${reference}: ${await res.text()}`);
    }
  }

  /** How many requests the registry has logged; pass it to {@link requestsSince} later. */
  mark(): number {
    return loggedRequests(this.airlock.output()).length;
  }

  /** The requests logged after `mark`. */
  requestsSince(mark: number): LoggedRequest[] {
    return loggedRequests(this.airlock.output()).slice(mark);
  }

  /** Asserts that the token endpoint issued at least one token after `mark` (the client used the token flow). */
  assertTokensIssued(mark: number, what: string): void {
    const requests = this.requestsSince(mark);
    assert.ok(
      requests.some((r) => r.route === 'token' && r.status === 200),
      `${what}: no token was issued; requests: ${JSON.stringify(requests.slice(0, 20))}`,
    );
  }
}

/**
 * A private configuration home for one client identity: HOME, DOCKER_CONFIG, REGISTRY_AUTH_FILE (an empty
 * `{"auths":{}}`, which podman needs to exist), XDG_CONFIG_HOME and REGCTL_CONFIG all point into a temp
 * folder removed when the test ends, so the user's own credentials are never read or written.
 */
export interface ClientHome {
  readonly dir: string;
  readonly env: NodeJS.ProcessEnv;
  /** containers-auth.json (skopeo, podman). */
  readonly authFile: string;
  /** Docker's config.json (crane, oras). */
  readonly dockerConfig: string;
  /** regctl's configuration. */
  readonly regctlConfig: string;
  /** Writes `text` to a 0600 file in this home, for a client reading a password from stdin. */
  secretFile(text: string): Promise<string>;
}

export async function clientHome(t: TestContext, prefix: string): Promise<ClientHome> {
  const dir = await tempDirForTest(t, `${prefix}-`);
  const authFile = join(dir, 'auth.json');
  await writeFile(authFile, '{"auths":{}}\n', { mode: 0o600 });
  const regctlConfig = join(dir, 'regctl.json');
  let secrets = 0;
  return {
    dir,
    authFile,
    dockerConfig: join(dir, 'config.json'),
    regctlConfig,
    env: {
      HOME: dir,
      DOCKER_CONFIG: dir,
      REGISTRY_AUTH_FILE: authFile,
      XDG_CONFIG_HOME: join(dir, 'xdg'),
      REGCTL_CONFIG: regctlConfig,
    },
    async secretFile(text: string): Promise<string> {
      const file = join(dir, `secret-${++secrets}`);
      await writeFile(file, text, { mode: 0o600 });
      return file;
    },
  };
}

/**
 * Asserts that a client command failed because access was refused: a non-zero exit and a message naming
 * the refusal (by default "unauthorized" or "denied").
 */
export function assertRefused(result: CommandResult, what: string, pattern = /unauthorized|denied/i): void {
  const output = `${result.stdout}\n${result.stderr}`;
  assert.notEqual(result.code, 0, `${what} succeeded but should have been refused:\n${output}`);
  assert.match(output, pattern, `${what} failed for another reason:\n${output}`);
}

/** Asserts that a client command succeeded, showing its output otherwise. */
export function assertOk(result: CommandResult, what: string): void {
  assert.equal(result.code, 0, `${what} exited ${result.code}:\n${result.stdout}\n${result.stderr}`);
}

/** A private containerd for the auth tests: ctr results are returned, not thrown. */
export function startContainerd(
  t: TestContext,
  binaries: { containerd: string; ctr: string },
): ReturnType<typeof startPrivateContainerd> {
  return startPrivateContainerd(t, binaries, { namespace: 'airlock-auth-test', failOnError: false });
}
