import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { ClientError } from './errors.js';

/** One saved login, in the docker credential-helper shape. */
export interface StoredCredential {
  readonly Username: string;
  readonly Secret: string;
}

/** Airlock's own credential file, served to docker & co. by `docker-credential-airlock`. */
export function credentialStorePath(env: NodeJS.ProcessEnv = process.env): string {
  return join(
    env.AIRLOCK_CONFIG_DIR ?? join(env.XDG_CONFIG_HOME ?? join(homedir(), '.config'), 'airlock'),
    'credentials.json',
  );
}

/** A small JSON file of host → credential, written atomically with mode 0600. */
export class CredentialStore {
  constructor(readonly path: string = credentialStorePath()) {}

  async #read(): Promise<Record<string, StoredCredential>> {
    try {
      return JSON.parse(await readFile(this.path, 'utf8')) as Record<string, StoredCredential>;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return {};
      throw new ClientError(
        'INVALID_INPUT',
        `Cannot read credential store "${this.path}": ${(error as Error).message}`,
        { cause: error },
      );
    }
  }

  async #write(data: Record<string, StoredCredential>): Promise<void> {
    await mkdir(dirname(this.path), { recursive: true, mode: 0o700 });
    const temp = `${this.path}.${randomBytes(6).toString('hex')}.tmp`;
    await writeFile(temp, `${JSON.stringify(data, null, 2)}\n`, { mode: 0o600 });
    await rename(temp, this.path);
  }

  async get(host: string): Promise<StoredCredential | undefined> {
    return (await this.#read())[serverHost(host)];
  }

  async store(host: string, credential: StoredCredential): Promise<void> {
    const data = await this.#read();
    data[serverHost(host)] = credential;
    await this.#write(data);
  }

  async erase(host: string): Promise<boolean> {
    const data = await this.#read();
    const key = serverHost(host);
    if (!(key in data)) return false;
    delete data[key];
    await this.#write(data);
    return true;
  }

  async list(): Promise<Record<string, string>> {
    return Object.fromEntries(Object.entries(await this.#read()).map(([host, c]) => [host, c.Username]));
  }
}

/** The registry a docker server URL or config key names: `https://host/v1/` and `host` are one. */
export function serverHost(serverUrl: string): string {
  return serverUrl.replace(/^https?:\/\//, '').replace(/\/.*$/, '');
}
