import type { Command } from 'commander';
import { constants } from 'node:fs';
import { access } from 'node:fs/promises';
import { delimiter, join } from 'node:path';
import {
  CredentialStore,
  eraseCredentials,
  lookupCredentials,
  readDockerConfig,
  storeCredentials,
  serverHost,
  toHelperCredential,
  writeDockerConfig,
  dockerConfigPath,
} from '../client/index.js';
import {
  clientFor,
  outputFor,
  readStdin,
  registryHost,
  UsageError,
  withClientOptions,
  type ClientFlags,
} from './common.js';

/** Whether docker-credential-airlock is on PATH, where docker and the other tools look for it. */
async function helperOnPath(): Promise<boolean> {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (!dir) continue;
    try {
      await access(join(dir, 'docker-credential-airlock'), constants.X_OK);
      return true;
    } catch {
      // not in this folder
    }
  }
  return false;
}

/** `login`, `logout` and `auth configure-docker`. */
export function registerAuthCommands(program: Command): void {
  withClientOptions(
    program
      .command('login')
      .argument('<host>', 'registry HOST[:PORT]')
      .description('Check credentials against a registry and save them'),
  ).action(async (hostText: string, flags: ClientFlags) => {
    const out = outputFor(flags);
    const { host } = registryHost(hostText);
    if (!flags.username) throw new UsageError('login needs --username (and --password-stdin)');
    const password = flags.passwordStdin ? await readStdin() : flags.password;
    if (password === undefined || password === '')
      throw new UsageError('login needs a password: pass it with --password-stdin');
    const credentials = { username: flags.username, password };
    // The text as given: its scheme (https://, http://) chooses how to speak to the registry.
    const client = await clientFor(hostText, { ...flags, password, passwordStdin: false });
    try {
      await client.ping();
    } finally {
      client.close();
    }
    const where = await storeCredentials(host, credentials);
    out.result(`Login Succeeded (saved in ${where})`, { host, savedIn: where }, '');
  });

  program
    .command('logout')
    .argument('<host>', 'registry HOST[:PORT]')
    .option('-o, --output <format>', 'text or json', 'text')
    .description('Forget saved credentials for a registry')
    .action(async (hostText: string, flags: ClientFlags) => {
      const out = outputFor(flags);
      const { host } = registryHost(hostText);
      const removed = await eraseCredentials(host);
      out.result(removed ? `Removed credentials for ${host}` : `No saved credentials for ${host}`, {
        host,
        removed,
      });
    });

  const auth = program.command('auth').description('Credential set-up for other tools');
  auth
    .command('configure-docker')
    .argument('<hosts...>', 'registry hosts to serve through docker-credential-airlock')
    .option('-o, --output <format>', 'text or json', 'text')
    .description('Make docker, podman, skopeo and crane ask docker-credential-airlock for these registries')
    .action(async (hostTexts: string[], flags: ClientFlags) => {
      const out = outputFor(flags);
      const hosts = hostTexts.map((text) => registryHost(text).host);
      const path = dockerConfigPath();
      // A login saved before (in auths or another store) moves into Airlock's store, which the helper
      // serves from now on: else the new credHelpers entry would hide it from every tool.
      const moved: string[] = [];
      const store = new CredentialStore();
      for (const host of hosts) {
        const config = await readDockerConfig(path);
        if (config.credHelpers?.[host] === 'airlock') continue;
        // A store that cannot be asked (a credsStore helper not installed here) has nothing to move.
        const saved = await lookupCredentials(host, { configPath: path }).catch(() => undefined);
        if (saved) {
          // Saved in Airlock's store before the config points there, so the login is never lost.
          await store.store(host, toHelperCredential(saved));
          moved.push(host);
          // The password leaves config.json, under whichever key docker wrote it.
          for (const key of Object.keys(config.auths ?? {}))
            if (serverHost(key) === host) delete config.auths?.[key];
        }
        config.credHelpers = { ...config.credHelpers, [host]: 'airlock' };
        await writeDockerConfig(config, path);
      }
      const onPath = await helperOnPath();
      out.result(
        [
          `Added credHelpers for ${hosts.join(', ')} to ${path}`,
          ...(moved.length > 0
            ? [`Moved the saved login for ${moved.join(', ')} into Airlock's credential store`]
            : []),
          ...(onPath
            ? []
            : ['docker-credential-airlock is not on PATH: docker, podman, skopeo and crane need it there']),
        ].join('\n'),
        { config: path, hosts, moved, helperOnPath: onPath },
      );
    });
  auth
    .command('list')
    .option('-o, --output <format>', 'text or json', 'text')
    .description('List the registries Airlock holds credentials for')
    .action(async (flags: ClientFlags) => {
      const out = outputFor(flags);
      const list = await new CredentialStore().list();
      out.result(
        Object.entries(list)
          .map(([h, u]) => `${h}  ${u}`)
          .join('\n') || 'No saved credentials',
        list,
      );
    });
}
