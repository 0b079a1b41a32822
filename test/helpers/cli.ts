// Helpers for tests of the client CLI: an isolated environment (DOCKER_CONFIG, AIRLOCK_CONFIG_DIR, HOME in
// temp folders, so the user's config is never read or written), the CLI as a child process, docker-registry
// with optional htpasswd auth, and a tiny fake registry on node:http for failure modes real ones never show.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmod, mkdir, readdir, rm, symlink, writeFile } from 'node:fs/promises';
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { delimiter, dirname, join } from 'node:path';
import type { TestContext } from 'node:test';
import { digestOf } from '../../src/oci/index.js';
import { runToolOk } from './interop.js';
import { findPeer, requirePeer } from './peers.js';
import {
  CLI,
  killedAtExit,
  freePort,
  run,
  startAirlockProcess,
  tempDir,
  waitForHttp,
  type CommandResult,
  type RunningProcess,
} from './processes.js';

/** The bundled credential helper (installed as docker-credential-airlock). */
export const CREDENTIAL_HELPER = join(dirname(CLI), 'docker-credential-airlock.js');

/** A private set of config folders for one test. */
export interface CliEnv {
  /** DOCKER_CONFIG: config.json lives here. */
  readonly dockerConfig: string;
  /** AIRLOCK_CONFIG_DIR: credentials.json of docker-credential-airlock lives here. */
  readonly airlockConfig: string;
  /** HOME for peers that look there (oras, podman). */
  readonly home: string;
  /** Environment for child processes: the above, plus PATH (with `binDir` first). */
  readonly env: NodeJS.ProcessEnv;
  /** A folder on PATH ahead of everything else, for docker-credential-airlock. */
  readonly binDir: string;
  /** TMPDIR: the CLI's temp folders go here, so a test can check none is left behind. */
  readonly tmp: string;
}

/** Makes temp config folders removed when the test ends. */
export async function cliEnv(t: TestContext): Promise<CliEnv> {
  const root = await tempDir('airlock-cli-env-');
  t.after(() => rm(root, { recursive: true, force: true }));
  const dockerConfig = join(root, 'docker');
  const airlockConfig = join(root, 'airlock');
  const home = join(root, 'home');
  const binDir = join(root, 'bin');
  const tmp = join(root, 'tmp');
  await Promise.all(
    [dockerConfig, airlockConfig, home, binDir, tmp].map((d) => mkdir(d, { recursive: true })),
  );
  return {
    dockerConfig,
    airlockConfig,
    home,
    binDir,
    tmp,
    env: {
      TMPDIR: tmp,
      DOCKER_CONFIG: dockerConfig,
      AIRLOCK_CONFIG_DIR: airlockConfig,
      HOME: home,
      XDG_CONFIG_HOME: join(home, '.config'),
      XDG_RUNTIME_DIR: join(home, 'run'),
      PATH: `${binDir}${delimiter}${process.env.PATH ?? ''}`,
    },
  };
}

/**
 * Puts `docker-credential-airlock` (a symlink to the compiled helper) on the env's PATH. The compiled file
 * is made executable, as npm does for package bins.
 */
export async function installCredentialHelper(env: CliEnv): Promise<string> {
  await chmod(CREDENTIAL_HELPER, 0o755);
  const link = join(env.binDir, 'docker-credential-airlock');
  await symlink(CREDENTIAL_HELPER, link);
  return link;
}

/** oras as a test runs it: plain HTTP, no TTY, the env's private config folders. */
export type Oras = (args: readonly string[], cwd?: string) => Promise<CommandResult>;

/** oras for `env`; undefined when it is not installed (skipped locally, a failure under CI). */
export function orasFor(t: TestContext, env: CliEnv): Oras | undefined {
  const bin = requirePeer(t, 'oras');
  if (!bin) return undefined;
  return (args, cwd) =>
    runToolOk(bin, [...args, '--plain-http', '--no-tty'], {
      env: env.env,
      ...(cwd === undefined ? {} : { cwd }),
    });
}

export interface CliOptions {
  readonly cwd?: string;
  readonly input?: string;
  readonly timeoutMs?: number;
}

/** Runs `airlock ARGS` with the env's config folders; never throws on a non-zero exit. */
export function airlock(
  env: CliEnv,
  args: readonly string[],
  options: CliOptions = {},
): Promise<CommandResult> {
  return run(process.execPath, [CLI, ...args], {
    env: env.env,
    timeoutMs: options.timeoutMs ?? 60_000,
    ...(options.cwd === undefined ? {} : { cwd: options.cwd }),
    ...(options.input === undefined ? {} : { input: options.input }),
  });
}

/** Like {@link airlock}, but fails the test with the command's output when it exits non-zero. */
export async function airlockOk(
  env: CliEnv,
  args: readonly string[],
  options: CliOptions = {},
): Promise<CommandResult> {
  const result = await airlock(env, args, options);
  assert.equal(
    result.code,
    0,
    `airlock ${args.join(' ')} exited ${result.code}\nstdout: ${result.stdout}\nstderr: ${result.stderr}`,
  );
  return result;
}

/** Runs `airlock ARGS` and returns standard output as bytes (for binary output); fails on a non-zero exit. */
export function airlockBytes(env: CliEnv, args: readonly string[]): Promise<Buffer> {
  return new Promise((done, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], {
      env: { ...process.env, ...env.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const chunks: Buffer[] = [];
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => chunks.push(chunk));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.once('error', reject);
    child.once('close', (code) => {
      clearTimeout(timer);
      if (code === 0) done(Buffer.concat(chunks));
      else reject(new Error(`airlock ${args.join(' ')} exited ${code}\n${stderr}`));
    });
  });
}

/**
 * Asserts the CLI failed the way users should see it: the exit code (1 for failures, 2 for usage errors),
 * nothing on standard output, and one line on standard error that starts with "Error: " and matches `pattern`.
 */
export function assertOneLineError(
  result: CommandResult,
  expected: { code?: number; pattern: RegExp },
): void {
  const context = `stdout: ${result.stdout}\nstderr: ${result.stderr}`;
  assert.equal(result.code, expected.code ?? 1, `exit code\n${context}`);
  assert.equal(result.stdout, '', `nothing on stdout\n${context}`);
  const lines = result.stderr.split('\n').filter((l) => l.trim() !== '');
  assert.equal(lines.length, 1, `one line on stderr\n${context}`);
  assert.match(lines[0] ?? '', /^Error: /, context);
  assert.match(lines[0] ?? '', expected.pattern, context);
}

/** All paths under `dir` (relative, sorted), for "nothing was left behind" checks. */
export async function listTree(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (rel: string): Promise<void> => {
    let entries;
    try {
      entries = await readdir(join(dir, rel), { withFileTypes: true });
    } catch {
      return;
    }
    for (const entry of entries) {
      const path = rel ? `${rel}/${entry.name}` : entry.name;
      out.push(path);
      if (entry.isDirectory()) await walk(path);
    }
  };
  await walk('');
  return out.sort();
}

// ---- docker-registry (CNCF distribution 2.8) ----

export interface DistributionOptions {
  /** An htpasswd file's content (bcrypt entries): turns on basic auth. Default: no auth. */
  readonly htpasswd?: string;
}

/**
 * docker-registry on a free port for one test (stopped and deleted when it ends), optionally with htpasswd
 * auth; undefined (and the test skipped locally, failed under CI) when it is not installed.
 */
export async function startDistributionForTest(
  t: TestContext,
  options: DistributionOptions = {},
): Promise<RunningProcess | undefined> {
  const binary = requirePeer(t, 'docker-registry');
  if (!binary) return undefined;
  const registry = await startDistributionWith(binary, options);
  t.after(() => registry.stop());
  return registry;
}

/** docker-registry on a free port (retried when another process takes the port first). */
export async function startDistributionWith(
  binary: string,
  options: DistributionOptions = {},
): Promise<RunningProcess> {
  const dataDir = await tempDir('distribution-data-');
  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    const config = join(dataDir, 'config.yml');
    const auth = options.htpasswd === undefined ? [] : ['auth:', '  htpasswd:', '    realm: airlock-test'];
    if (options.htpasswd !== undefined) {
      await writeFile(join(dataDir, 'htpasswd'), options.htpasswd);
      auth.push(`    path: ${join(dataDir, 'htpasswd')}`);
    }
    await writeFile(
      config,
      [
        'version: 0.1',
        'log:',
        '  level: error',
        '  accesslog:',
        '    disabled: true',
        'storage:',
        '  filesystem:',
        `    rootdirectory: ${join(dataDir, 'store')}`,
        '  delete:',
        '    enabled: true',
        ...auth,
        'http:',
        `  addr: 127.0.0.1:${port}`,
        '  secret: airlock-test-secret',
        '',
      ].join('\n'),
    );
    const child = spawn(binary, ['serve', config], { stdio: ['ignore', 'pipe', 'pipe'] });
    killedAtExit(child);
    let text = '';
    child.stdout.on('data', (c: Buffer) => (text += c.toString()));
    child.stderr.on('data', (c: Buffer) => (text += c.toString()));
    const exited = new Promise<void>((done) => child.once('exit', () => done()));
    const url = `http://127.0.0.1:${port}`;
    try {
      await waitForHttp(`${url}/v2/`);
      await new Promise((r) => setTimeout(r, 100));
      if (child.exitCode !== null) throw new Error(`docker-registry exited: ${text}`);
    } catch (error) {
      child.kill('SIGKILL');
      if (attempt < 3) continue;
      await rm(dataDir, { recursive: true, force: true });
      throw new Error(`docker-registry did not start: ${String(error)}\n${text}`);
    }
    return {
      url,
      host: `127.0.0.1:${port}`,
      child,
      dataDir,
      output: () => text,
      async stop(signal: NodeJS.Signals = 'SIGTERM') {
        if (child.exitCode === null && child.signalCode === null) child.kill(signal);
        await exited;
        await rm(dataDir, { recursive: true, force: true });
      },
    };
  }
}

/** True when docker-registry is installed (for suites that share one instance). */
export function hasDistribution(): boolean {
  return findPeer('docker-registry') !== undefined;
}

/**
 * An htpasswd line with a bcrypt hash, made by `htpasswd -B` when installed, else by Python's crypt module
 * (Blowfish); undefined when neither can.
 */
export async function bcryptHtpasswd(user: string, password: string): Promise<string | undefined> {
  const htpasswd = findPeer('htpasswd');
  if (htpasswd) {
    const result = await run(htpasswd, ['-nbB', user, password]);
    if (result.code === 0) return `${result.stdout.trim()}\n`;
  }
  const script =
    'import crypt,sys; print(crypt.crypt(sys.argv[1], crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16)))';
  for (const python of ['python3', '/usr/bin/python3']) {
    const result = await run(python, ['-W', 'ignore', '-c', script, password]).catch(() => undefined);
    const hash = result?.stdout.trim() ?? '';
    if (result?.code === 0 && /^\$2[aby]\$/.test(hash)) return `${user}:${hash}\n`;
  }
  return undefined;
}

// ---- a fake registry on node:http ----

export interface RecordedRequest {
  readonly method: string;
  readonly url: string;
  readonly headers: IncomingHttpHeaders;
  /** When the request arrived (ms since the epoch). */
  readonly at: number;
}

/** Handles one request; return false to fall through to a 404. */
export type FakeHandler = (
  req: IncomingMessage,
  res: ServerResponse,
  url: URL,
) => boolean | void | Promise<boolean | void>;

export interface FakeRegistry {
  readonly url: string;
  /** host:port, as written in references. */
  readonly host: string;
  readonly requests: RecordedRequest[];
}

/** A node:http server on 127.0.0.1:0 that records every request and answers with `handler`. */
export async function startFakeRegistry(t: TestContext, handler: FakeHandler): Promise<FakeRegistry> {
  const requests: RecordedRequest[] = [];
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://fake');
    requests.push({
      method: req.method ?? '',
      url: url.pathname + url.search,
      headers: req.headers,
      at: Date.now(),
    });
    // Bodies are not needed by these fakes; reading them keeps the connection usable.
    req.resume();
    Promise.resolve(handler(req, res, url)).then(
      (handled) => {
        if (handled === false && !res.headersSent)
          sendJson(res, 404, { errors: [{ code: 'NOT_FOUND', message: 'fake' }] });
      },
      (error: unknown) => {
        if (!res.headersSent) sendJson(res, 500, { errors: [{ code: 'UNKNOWN', message: String(error) }] });
      },
    );
  });
  server.keepAliveTimeout = 1000;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(
    () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  );
  const { port } = server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}`, host: `127.0.0.1:${port}`, requests };
}

export function sendJson(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): void {
  const bytes = Buffer.from(JSON.stringify(body));
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': bytes.length, ...headers });
  res.end(bytes);
}

export interface FakeContent {
  /** Manifests by tag or digest. */
  readonly manifests: ReadonlyMap<string, { readonly bytes: Buffer; readonly mediaType: string }>;
  /** Blob bytes by digest (the bytes need not match: that is how corruption is served). */
  readonly blobs: ReadonlyMap<string, Buffer>;
}

/** Serves `/v2/`, manifests and blobs (GET and HEAD) of any repository from `content`. */
export function serveContent(content: FakeContent): FakeHandler {
  return (req, res, url) => {
    if (url.pathname === '/v2/' || url.pathname === '/v2') {
      sendJson(res, 200, {});
      return true;
    }
    const match = /^\/v2\/(.+)\/(manifests|blobs)\/([^/]+)$/.exec(url.pathname);
    if (!match || (req.method !== 'GET' && req.method !== 'HEAD')) return false;
    const [, , kind, reference = ''] = match;
    if (kind === 'manifests') {
      const manifest = content.manifests.get(reference);
      if (!manifest) {
        sendJson(res, 404, { errors: [{ code: 'MANIFEST_UNKNOWN', message: 'unknown' }] });
        return true;
      }
      res.writeHead(200, {
        'content-type': manifest.mediaType,
        'content-length': manifest.bytes.length,
        'docker-content-digest': digestOf(manifest.bytes),
      });
      res.end(req.method === 'HEAD' ? undefined : manifest.bytes);
      return true;
    }
    const blob = content.blobs.get(reference);
    if (!blob) {
      sendJson(res, 404, { errors: [{ code: 'BLOB_UNKNOWN', message: 'unknown' }] });
      return true;
    }
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': blob.length });
    res.end(req.method === 'HEAD' ? undefined : blob);
    return true;
  };
}

/** A port on 127.0.0.1 where nothing listens (it was free a moment ago). */
export function closedPort(): Promise<number> {
  return freePort();
}

// ---- seeding a registry over HTTP ----

/** The parts of a built artifact seeding needs (see test/helpers/interop.ts BuiltArtifact). */
export interface SeedArtifact {
  readonly descriptor: { readonly mediaType: string; readonly digest: string };
  readonly bytes: Buffer;
  readonly blobs: ReadonlyMap<string, Buffer>;
  readonly children: readonly SeedArtifact[];
}

async function expectStatus(res: Response, expected: readonly number[], what: string): Promise<void> {
  const text = await res.text();
  if (!expected.includes(res.status)) throw new Error(`${what} answered ${res.status}: ${text}`);
}

/**
 * Seeds any registry over plain HTTP: each blob with POST then PUT ?digest= (distribution 2.8 does not
 * take the one-request POST ?digest= upload), children before the index, the root under `tag`.
 */
export async function seedArtifact(
  base: string,
  target: { repository: string; tag: string },
  artifact: SeedArtifact,
): Promise<void> {
  const { repository, tag } = target;
  for (const [digest, bytes] of artifact.blobs) {
    const start = await fetch(`${base}/v2/${repository}/blobs/uploads/`, { method: 'POST' });
    await expectStatus(start, [202], `upload start for ${digest}`);
    const location = new URL(start.headers.get('location') ?? '', base);
    location.searchParams.set('digest', digest);
    const put = await fetch(location, {
      method: 'PUT',
      headers: { 'content-type': 'application/octet-stream' },
      body: bytes,
    });
    await expectStatus(put, [201], `upload of blob ${digest}`);
  }
  const putManifest = async (reference: string, manifest: SeedArtifact): Promise<void> => {
    const res = await fetch(`${base}/v2/${repository}/manifests/${reference}`, {
      method: 'PUT',
      headers: { 'content-type': manifest.descriptor.mediaType },
      body: manifest.bytes,
    });
    await expectStatus(res, [201], `PUT manifest ${repository}:${reference}`);
  };
  for (const child of artifact.children) await putManifest(child.descriptor.digest, child);
  await putManifest(tag, artifact);
}

// ---- registries shared by the tests of one file ----

/** Starts registries on first use and stops them all at the end of the file (call `stopAll` in `after`). */
export class SharedRegistries {
  #airlock: Promise<RunningProcess> | undefined;
  #distribution: Promise<RunningProcess> | undefined;

  /** One Airlock for the file. */
  airlock(): Promise<RunningProcess> {
    this.#airlock ??= startAirlockProcess().then((p) => ({
      ...p,
      async stop(signal?: NodeJS.Signals) {
        await p.stop(signal);
        await rm(p.dataDir, { recursive: true, force: true });
      },
    }));
    return this.#airlock;
  }

  /** One docker-registry for the file; undefined (skipped locally, failed under CI) when not installed. */
  async distribution(t: TestContext): Promise<RunningProcess | undefined> {
    const binary = requirePeer(t, 'docker-registry');
    if (!binary) return undefined;
    this.#distribution ??= startDistributionWith(binary);
    return this.#distribution;
  }

  async stopAll(): Promise<void> {
    const all = [this.#airlock, this.#distribution].filter((p) => p !== undefined);
    await Promise.all(all.map(async (p) => (await p.catch(() => undefined))?.stop()));
  }
}
