import type { Command } from 'commander';
import {
  CredentialStore,
  eraseCredentials,
  readDockerConfig,
  storeCredentials,
  writeDockerConfig,
  dockerConfigPath,
} from '../client/index.js';
import {
  clientFor,
  outputFor,
  readStdin,
  UsageError,
  withClientOptions,
  type ClientFlags,
} from './common.js';

/** `login`, `logout` and `auth configure-docker`. */
export function registerAuthCommands(program: Command): void {
  withClientOptions(
    program
      .command('login')
      .argument('<host>', 'registry HOST[:PORT]')
      .description('Check credentials against a registry and save them'),
  ).action(async (host: string, flags: ClientFlags) => {
    const out = outputFor(flags);
    if (!flags.username) throw new UsageError('login needs --username (and --password-stdin)');
    const password = flags.passwordStdin ? await readStdin() : flags.password;
    if (password === undefined || password === '')
      throw new UsageError('login needs a password: pass it with --password-stdin');
    const credentials = { username: flags.username, password };
    const client = await clientFor(host, { ...flags, password, passwordStdin: false });
    try {
      await client.ping();
    } finally {
      client.close();
    }
    const where = await storeCredentials(host, credentials);
    out.result(`Login Succeeded (saved in ${where})`, { host, savedIn: where });
  });

  program
    .command('logout')
    .argument('<host>', 'registry HOST[:PORT]')
    .option('-o, --output <format>', 'text or json', 'text')
    .description('Forget saved credentials for a registry')
    .action(async (host: string, flags: ClientFlags) => {
      const out = outputFor(flags);
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
    .action(async (hosts: string[], flags: ClientFlags) => {
      const out = outputFor(flags);
      const path = dockerConfigPath();
      const config = await readDockerConfig(path);
      config.credHelpers ??= {};
      for (const host of hosts) config.credHelpers[host] = 'airlock';
      await writeDockerConfig(config, path);
      out.result(
        `Added credHelpers for ${hosts.join(', ')} to ${path}; make sure docker-credential-airlock is on PATH`,
        { config: path, hosts },
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
