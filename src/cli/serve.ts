import type { Command } from 'commander';

interface ServeFlags {
  config?: string;
  addr?: string;
  data?: string;
  logLevel?: string;
  initAdmin?: string;
  allowAnonymous?: boolean;
  auth?: string;
  tlsCert?: string;
  tlsKey?: string;
  createRepositoryOnPush?: boolean;
}

/** `airlock serve`: run the registry on the embedded default (filesystem + SQLite). */
export function registerServe(program: Command): void {
  program
    .command('serve')
    .description('Run the OCI registry (data in a local folder, metadata in SQLite)')
    .option('-c, --config <file>', 'YAML or JSON config file (env AIRLOCK_CONFIG)')
    .option('--addr <host:port>', 'address to listen on (default 127.0.0.1:5000, env AIRLOCK_ADDR)')
    .option('--data <dir>', 'data folder (default ./airlock-data, env AIRLOCK_DATA)')
    .option(
      '--init-admin <name>',
      'create this admin user if none exists (password: AIRLOCK_ADMIN_PASSWORD, else printed once)',
    )
    .option('--allow-anonymous', 'serve a non-loopback address without authentication')
    .option(
      '--no-create-repository-on-push',
      'refuse pushes to repositories not created with "airlock repo create"',
    )
    .option('--auth <mode>', 'auto (on once a user exists) or on (default auto, env AIRLOCK_AUTH)')
    .option('--tls-cert <file>', 'PEM certificate for HTTPS (env AIRLOCK_TLS_CERT)')
    .option('--tls-key <file>', 'PEM private key for HTTPS (env AIRLOCK_TLS_KEY)')
    .option(
      '--log-level <level>',
      'fatal|error|warn|info|debug|trace|silent (default info, env AIRLOCK_LOG_LEVEL)',
    )
    .action(async (flags: ServeFlags) => {
      const file = flags.config ?? process.env.AIRLOCK_CONFIG;
      // Stack traces in the log name TypeScript files and lines, not places in the bundle's chunks (for
      // the modules loaded from here on: the server's; client commands start without the maps).
      process.setSourceMapsEnabled(true);
      // Loaded here, not at the top: other commands start faster without the server's modules.
      const { createLogger } = await import('../log/index.js');
      const { loadServeConfig, startRegistry } = await import('../registry/index.js');
      const config = await loadServeConfig({
        ...(file ? { file } : {}),
        flags: {
          addr: flags.addr,
          data: flags.data,
          logLevel: flags.logLevel,
          initAdmin: flags.initAdmin,
          allowAnonymous: flags.allowAnonymous,
          auth: flags.auth,
          tlsCert: flags.tlsCert,
          tlsKey: flags.tlsKey,
          createRepositoryOnPush: flags.createRepositoryOnPush === false ? false : undefined,
        },
      });
      const log = createLogger({ level: config.logLevel });
      const running = await startRegistry(config, { log });
      process.stderr.write(`Airlock registry listening on ${running.url} (data: ${config.data})\n`);
      let stopping = false;
      const stop = (signal: string): void => {
        if (stopping) return;
        stopping = true;
        log.info({ signal }, 'shutting down');
        running.close().then(
          () => process.exit(0),
          (err: unknown) => {
            log.error({ err }, 'shutdown failed');
            process.exit(1);
          },
        );
      };
      process.on('SIGTERM', () => stop('SIGTERM'));
      process.on('SIGINT', () => stop('SIGINT'));
    });
}
