import { spawn } from 'node:child_process';
import { mkdir, readFile, rename, writeFile, chmod } from 'node:fs/promises';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { ClientError } from './errors.js';
import { CredentialStore, credentialStorePath, type StoredCredential } from './credential-store.js';

/** What a registry is told about who is calling. */
export type Credentials =
  { readonly username: string; readonly password: string } | { readonly identityToken: string };

interface AuthEntry {
  auth?: string;
  username?: string;
  password?: string;
  identitytoken?: string;
}

/** The parts of docker's config.json Airlock reads and writes; other keys are kept as they are. */
export interface DockerConfig {
  auths?: Record<string, AuthEntry>;
  credsStore?: string;
  credHelpers?: Record<string, string>;
  [key: string]: unknown;
}

/** `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`. */
export function dockerConfigPath(env: NodeJS.ProcessEnv = process.env): string {
  return join(env.DOCKER_CONFIG ?? join(homedir(), '.docker'), 'config.json');
}

export async function readDockerConfig(path = dockerConfigPath()): Promise<DockerConfig> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return {};
    throw new ClientError(
      'INVALID_INPUT',
      `Cannot read docker config "${path}": ${(error as Error).message}`,
      { cause: error },
    );
  }
  try {
    const parsed = JSON.parse(text) as unknown;
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed))
      throw new Error('not a JSON object');
    return parsed as DockerConfig;
  } catch (error) {
    throw new ClientError(
      'INVALID_INPUT',
      `Cannot parse docker config "${path}": ${(error as Error).message}`,
      { cause: error },
    );
  }
}

/** Writes the config atomically (temp file + rename), readable by its owner only. */
export async function writeDockerConfig(config: DockerConfig, path = dockerConfigPath()): Promise<void> {
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  const temp = `${path}.${randomBytes(6).toString('hex')}.tmp`;
  await writeFile(temp, `${JSON.stringify(config, null, '\t')}\n`, { mode: 0o600 });
  await chmod(temp, 0o600);
  await rename(temp, path);
}

/** Keys docker and others use for one registry host in `auths`. */
function authKeys(host: string): string[] {
  const keys = [host, `https://${host}`, `http://${host}`, `https://${host}/v1/`, `https://${host}/v2/`];
  if (host === 'docker.io' || host === 'registry-1.docker.io' || host === 'index.docker.io') {
    keys.push('https://index.docker.io/v1/', 'index.docker.io', 'registry-1.docker.io');
  }
  return keys;
}

function fromEntry(entry: AuthEntry, host: string): Credentials | undefined {
  if (entry.identitytoken) return { identityToken: entry.identitytoken };
  if (entry.auth) {
    const decoded = Buffer.from(entry.auth, 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    if (colon < 0)
      throw new ClientError(
        'INVALID_INPUT',
        `The "auth" entry for "${host}" in the docker config is not base64 "user:password"`,
      );
    return { username: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
  }
  if (entry.username !== undefined && entry.password !== undefined)
    return { username: entry.username, password: entry.password };
  return undefined;
}

export interface HelperOptions {
  /** PATH to find `docker-credential-*` on. Default: process.env.PATH. */
  readonly env?: NodeJS.ProcessEnv;
}

/** Runs `docker-credential-NAME ACTION` with `input` on standard input and returns standard output. */
export async function runCredentialHelper(
  name: string,
  request: { action: 'get' | 'store' | 'erase' | 'list'; input: string },
  options: HelperOptions = {},
): Promise<string> {
  const { action, input } = request;
  const program = `docker-credential-${name}`;
  return new Promise((resolve, reject) => {
    const child = spawn(program, [action], {
      env: options.env ?? process.env,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    child.stderr.on('data', (c: Buffer) => (err += c.toString()));
    child.on('error', (error) =>
      reject(
        new ClientError('INVALID_INPUT', `Credential helper "${program}" cannot be run: ${error.message}`, {
          cause: error,
        }),
      ),
    );
    child.on('close', (code) => {
      if (code === 0) resolve(out);
      else
        reject(
          new ClientError(
            'INVALID_INPUT',
            `Credential helper "${program} ${action}" failed: ${(out + err).trim() || `exit ${code}`}`,
          ),
        );
    });
    child.stdin.end(input);
  });
}

/** Credentials for `host` from the docker config: credHelpers, then auths, then credsStore. */
export async function lookupCredentials(
  host: string,
  options: { configPath?: string; env?: NodeJS.ProcessEnv } = {},
): Promise<Credentials | undefined> {
  const config = await readDockerConfig(options.configPath ?? dockerConfigPath(options.env));
  const helper = config.credHelpers?.[host];
  if (helper) return helperGet(helper, host, options.env);
  for (const key of authKeys(host)) {
    const entry = config.auths?.[key];
    if (entry) {
      const found = fromEntry(entry, host);
      if (found) return found;
    }
  }
  if (config.credsStore) return helperGet(config.credsStore, host, options.env);
  return undefined;
}

/**
 * The helper Airlock installs (`auth configure-docker`): Airlock reads and writes its store itself, so its
 * own commands work whether or not docker-credential-airlock is on PATH.
 */
const OWN_HELPER = 'airlock';

/** Credentials in the credential-helper shape (an identity token is the user `<token>`). */
export function toHelperCredential(credentials: Credentials): StoredCredential {
  return 'identityToken' in credentials
    ? { Username: '<token>', Secret: credentials.identityToken }
    : { Username: credentials.username, Secret: credentials.password };
}

/** The reverse of toHelperCredential; undefined without a secret. */
function fromHelperCredential(found: { Username?: string; Secret?: string }): Credentials | undefined {
  if (!found.Secret) return undefined;
  if (found.Username === '<token>') return { identityToken: found.Secret };
  return { username: found.Username ?? '', password: found.Secret };
}

function ownStore(env?: NodeJS.ProcessEnv): CredentialStore {
  return new CredentialStore(credentialStorePath(env ?? process.env));
}

async function helperGet(
  helper: string,
  host: string,
  env?: NodeJS.ProcessEnv,
): Promise<Credentials | undefined> {
  if (helper === OWN_HELPER) {
    const found = await ownStore(env).get(host);
    return found && fromHelperCredential(found);
  }
  let out: string;
  try {
    out = await runCredentialHelper(helper, { action: 'get', input: host }, env ? { env } : {});
  } catch (error) {
    // Helpers answer "credentials not found" with a non-zero exit: that is "no credentials", not a failure.
    if (error instanceof ClientError && /credentials not found/i.test(error.message)) return undefined;
    throw error;
  }
  return fromHelperCredential(JSON.parse(out) as { Username?: string; Secret?: string });
}

/** Saves credentials for `host` where docker would: its credHelper or credsStore, else `auths`. */
export async function storeCredentials(
  host: string,
  credentials: Credentials,
  options: { configPath?: string; env?: NodeJS.ProcessEnv } = {},
): Promise<string> {
  const path = options.configPath ?? dockerConfigPath(options.env);
  const config = await readDockerConfig(path);
  const helper = config.credHelpers?.[host] ?? config.credsStore;
  if (helper) {
    const credential = toHelperCredential(credentials);
    if (helper === OWN_HELPER) {
      const store = ownStore(options.env);
      await store.store(host, credential);
      return `credential helper docker-credential-airlock (${store.path})`;
    }
    await runCredentialHelper(
      helper,
      { action: 'store', input: JSON.stringify({ ServerURL: host, ...credential }) },
      options.env ? { env: options.env } : {},
    );
    return `credential helper docker-credential-${helper}`;
  }
  config.auths ??= {};
  config.auths[host] =
    'identityToken' in credentials
      ? { identitytoken: credentials.identityToken }
      : { auth: Buffer.from(`${credentials.username}:${credentials.password}`).toString('base64') };
  await writeDockerConfig(config, path);
  return path;
}

/** Removes stored credentials for `host`; true when there were some. */
export async function eraseCredentials(
  host: string,
  options: { configPath?: string; env?: NodeJS.ProcessEnv } = {},
): Promise<boolean> {
  const path = options.configPath ?? dockerConfigPath(options.env);
  const config = await readDockerConfig(path);
  const helper = config.credHelpers?.[host] ?? config.credsStore;
  let removed = false;
  if (helper === OWN_HELPER) {
    removed = await ownStore(options.env).erase(host);
  } else if (helper) {
    try {
      await runCredentialHelper(
        helper,
        { action: 'erase', input: host },
        options.env ? { env: options.env } : {},
      );
      removed = true;
    } catch (error) {
      if (!(error instanceof ClientError && /not found/i.test(error.message))) throw error;
    }
  }
  for (const key of authKeys(host)) {
    if (config.auths?.[key]) {
      delete config.auths[key];
      removed = true;
    }
  }
  if (removed) await writeDockerConfig(config, path);
  return removed;
}
