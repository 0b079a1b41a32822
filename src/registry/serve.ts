import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { dirname, join, resolve } from 'node:path';
import type { H1Server } from './http/h1/index.js';
import type { Logger } from '../log/index.js';
import { readFile } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import {
  explainFsError,
  lockDataFolder,
  openDataFolder,
  type DataFolderStores,
  type AuthStore,
  type FolderLock,
} from '../storage/index.js';
import { AccessControl } from './auth/access.js';
import { hashPassword } from './auth/password.js';
import { TokenService } from './auth/tokens.js';
import { ServiceAccountVerifier } from './auth/service-accounts.js';
import { HttpTransport } from '../client/index.js';
import { kernelSends } from '../oci/index.js';
import { ConfigError } from './config.js';
import { isLoopback, parseAddr, type ServeConfig } from './config.js';
import { createHttpServer, createRequestListener } from './http/server.js';
import { RegistryMetrics } from './metrics.js';
import { Registry } from './registry.js';
import { writeAudit } from './audit.js';
import { gcAuditDetail } from './gc.js';

export interface RunningRegistry {
  /** Base URL, e.g. http://127.0.0.1:5000 (the real port when 0 was asked for). */
  readonly url: string;
  readonly host: string;
  readonly port: number;
  readonly registry: Registry;
  readonly server: H1Server;
  readonly access: AccessControl;
  /** Stops accepting connections, lets in-flight requests finish (up to the grace period), closes stores. */
  close(): Promise<void>;
}

export interface StartRegistryOptions {
  readonly log: Logger;
  /**
   * Time a request body being read may go without new bytes; then the request fails (an upload's chunk is
   * taken back) and the connection closes. Default: 60 s.
   */
  readonly bodyIdleTimeoutMs?: number;
}

const PURGE_INTERVAL_MS = 60 * 60 * 1000;

/** The audit log's actor for collections `serve` runs on its own. */
const SCHEDULED_GC_ACTOR = 'airlock serve (gcIntervalSeconds)';

/**
 * Collects garbage every `gcIntervalSeconds`, unless a collection (scheduled or asked for) still runs. A
 * run that removed anything is audited as `gc`, as one asked for over HTTP is; runs that found nothing
 * are not, so a short interval does not fill the audit log with entries that record no change.
 */
function scheduleGc(
  registry: Registry,
  config: ServeConfig,
  options: { log: Logger; audit: Pick<AuthStore, 'appendAudit'> },
): NodeJS.Timeout {
  const { log, audit } = options;
  const timer = setInterval(() => {
    if (registry.collecting) return;
    registry
      .collectGarbage({ graceMs: config.gcGraceSeconds * 1000, deleteUntagged: config.gcDeleteUntagged })
      .then(
        async (report) => {
          log.info({ gc: report }, 'garbage collection done');
          if (report.manifestsDeleted.length + report.linksRemoved + report.blobsDeleted === 0) return;
          await writeAudit(audit, log, {
            actor: SCHEDULED_GC_ACTOR,
            action: 'gc',
            target: '*',
            detail: gcAuditDetail(report),
          }).catch((err: unknown) => log.error({ err }, 'audit of a garbage collection failed'));
        },
        (err: unknown) => log.error({ err }, 'garbage collection failed'),
      );
  }, config.gcIntervalSeconds * 1000);
  timer.unref();
  return timer;
}

/** Why a server cannot listen, in words, by error code. */
const LISTEN_REASONS: ReadonlyMap<unknown, string> = new Map([
  [
    'EADDRINUSE',
    'another process listens on that port; choose another with --addr (or addr in the config file)',
  ],
  ['EACCES', 'permission denied (a port below 1024 needs root or CAP_NET_BIND_SERVICE)'],
  ['EADDRNOTAVAIL', 'no network interface of this machine has that address'],
]);

/** Why the server could not listen on `addr`, in words, keeping the error's code. */
function listenError(error: Error, addr: string): Error {
  const code = (error as NodeJS.ErrnoException).code;
  const reason = LISTEN_REASONS.get(code);
  if (reason === undefined) return error;
  return Object.assign(new Error(`Cannot listen on ${addr}: ${reason} (${code})`, { cause: error }), {
    code,
  });
}

/**
 * Opens the data folder, starts the HTTP server and returns once it listens. The folder is locked for
 * this process until `close()` (see lockDataFolder): a second `serve` on it is refused.
 */
export async function startRegistry(
  config: ServeConfig,
  options: StartRegistryOptions,
): Promise<RunningRegistry> {
  const dataDir = resolve(config.data);
  await mkdir(dataDir, { recursive: true }).catch(async (error: unknown) => {
    // A recursive mkdir reports ENOENT under a read-only parent: creating the first missing level on
    // its own says what is wrong.
    let first = dataDir;
    while (dirname(first) !== first && !existsSync(dirname(first))) first = dirname(first);
    const precise = await mkdir(first).then(
      () => error,
      (direct: unknown) => direct,
    );
    throw await explainFsError(precise, { action: 'create the data folder', dir: dirname(first) });
  });
  const lock = await lockDataFolder(dataDir);
  try {
    return await startLocked(config, options, { dataDir, lock });
  } catch (error) {
    await lock.release();
    throw error;
  }
}

async function startLocked(
  config: ServeConfig,
  options: StartRegistryOptions,
  folder: { dataDir: string; lock: FolderLock },
): Promise<RunningRegistry> {
  const stores = await openDataFolder(folder.dataDir);
  try {
    return await startOpened(config, options, { ...folder, ...stores });
  } catch (error) {
    // Nothing listens and no timer runs yet: the database is closed before the lock is released.
    await stores.metadata.close().catch(() => undefined);
    throw error;
  }
}

async function startOpened(
  config: ServeConfig,
  options: StartRegistryOptions,
  opened: { dataDir: string; lock: FolderLock } & DataFolderStores,
): Promise<RunningRegistry> {
  const { log } = options;
  const { dataDir, lock, blobs, metadata, auth: authStore } = opened;
  const registry = new Registry({
    blobs,
    metadata,
    manifestCacheBytes: config.manifestCacheBytes,
    createRepositoryOnPush: config.createRepositoryOnPush,
    ...(config.maxBlobBytes > 0 ? { maxBlobBytes: config.maxBlobBytes } : {}),
  });
  const purged = await registry.purgeUploads(config.uploadTtlSeconds * 1000);
  if (purged > 0) log.info({ purged }, 'removed stale upload sessions');

  const { host, port } = parseAddr(config.addr);
  const initial = await initAdmin(authStore, config, log);
  const enabled = config.auth === 'on' || (await authStore.countUsers()) > 0;
  if (!enabled && !isLoopback(host) && !config.allowAnonymous) {
    throw new ConfigError(
      `Refusing to serve "${config.addr}" without authentication: create an admin with --init-admin NAME, or pass --allow-anonymous to run an open registry`,
    );
  }
  const tokens = new TokenService({
    keyDir: join(dataDir, 'keys'),
    lifetimeSeconds: config.tokenLifetimeSeconds,
  });
  await tokens.init();
  const serviceAccounts = new ServiceAccountVerifier({ store: authStore, fetchJson: fetchJsonWithSystemCas });
  const access = new AccessControl({ store: authStore, tokens, enabled, serviceAccounts });
  await access.refresh();
  const tls = config.tlsCert || config.tlsKey ? await loadTls(config) : undefined;

  let accepting = true;
  const metrics = new RegistryMetrics({
    activeUploads: () => registry.activeUploads,
    storageBytes: () => blobs.usage(),
    sendWays: kernelSends,
  });
  registry.events.on('gc', (outcome) => metrics.recordGc(outcome));
  const server = createHttpServer(
    createRequestListener({ registry, log, metrics, ready: () => accepting, access, tls: tls !== undefined }),
    { tls, bodyIdleTimeoutMs: options.bodyIdleTimeoutMs },
  );
  await new Promise<void>((resolveListen, reject) => {
    const refused = (error: Error): void => reject(listenError(error, config.addr));
    server.once('error', refused);
    server.listen(port, host, () => {
      server.off('error', refused);
      resolveListen();
    });
  });
  const actualPort = (server.address() as AddressInfo).port;
  const urlHost = host.includes(':') ? `[${host}]` : host === '' || host === '0.0.0.0' ? '127.0.0.1' : host;
  const url = `${tls ? 'https' : 'http'}://${urlHost}:${actualPort}`;
  if (!isLoopback(host) && !enabled) {
    log.warn(
      { addr: config.addr },
      'listening on a non-loopback address without authentication (--allow-anonymous): anyone who can reach it can push and delete',
    );
  }
  if (initial)
    process.stderr.write(
      `Created admin "${initial.name}" with password: ${initial.password}\n(shown once; change it with "airlock user passwd")\n`,
    );
  log.info({ addr: `${host}:${actualPort}`, data: dataDir }, 'registry listening');
  // Started once the registry listens: a start that fails before leaves nothing running.
  const purgeTimer = setInterval(() => {
    registry
      .purgeUploads(config.uploadTtlSeconds * 1000)
      .catch((err: unknown) => log.error({ err }, 'upload purge failed'));
  }, PURGE_INTERVAL_MS);
  purgeTimer.unref();
  const gcTimer =
    config.gcIntervalSeconds > 0 ? scheduleGc(registry, config, { log, audit: authStore }) : undefined;

  let closing: Promise<void> | undefined;
  const close = (): Promise<void> => {
    closing ??= (async () => {
      accepting = false;
      clearInterval(purgeTimer);
      if (gcTimer) clearInterval(gcTimer);
      registry.events.emit('close');
      const drained = new Promise<void>((done) => server.close(() => done()));
      server.closeIdleConnections();
      const grace = new Promise<void>((done) => setTimeout(done, config.shutdownGraceSeconds * 1000).unref());
      await Promise.race([drained, grace]);
      server.closeAllConnections();
      // Chunks answered before their last bytes were hashed, and upload operations still under way.
      if (!(await registry.flushUploads())) {
        log.warn('stopping with upload work still under way; the next start checks those uploads again');
      }
      await metadata.close();
      await lock.release();
      log.info('registry stopped');
    })();
    return closing;
  };
  return { url, host, port: actualPort, registry, server, close, access };
}

/** Creates the first admin when asked and no user exists yet; returns a generated password to show once. */
async function initAdmin(
  store: AuthStore,
  config: ServeConfig,
  log: Logger,
): Promise<{ name: string; password: string } | undefined> {
  if (!config.initAdmin || (await store.countUsers()) > 0) return undefined;
  if (!/^[A-Za-z0-9._@-]{1,128}$/.test(config.initAdmin))
    throw new ConfigError(`Invalid --init-admin name "${config.initAdmin}"`);
  const given = process.env.AIRLOCK_ADMIN_PASSWORD;
  if (given !== undefined && given.length < 8)
    throw new ConfigError('AIRLOCK_ADMIN_PASSWORD must have at least 8 characters');
  const password = given ?? randomBytes(18).toString('base64url');
  const now = Date.now();
  await store.putUser({ name: config.initAdmin, passwordHash: await hashPassword(password), createdAt: now });
  await store.addBinding({ member: `user:${config.initAdmin}`, role: 'admin', scope: '*', createdAt: now });
  await store.appendAudit({
    at: now,
    actor: 'airlock',
    action: 'user.add',
    target: config.initAdmin,
    detail: { admin: true },
  });
  log.info({ user: config.initAdmin }, 'created the first admin');
  return given === undefined ? { name: config.initAdmin, password } : undefined;
}

async function loadTls(config: ServeConfig): Promise<{ cert: Buffer; key: Buffer }> {
  if (!config.tlsCert || !config.tlsKey) throw new ConfigError('HTTPS needs both --tls-cert and --tls-key');
  try {
    return { cert: await readFile(config.tlsCert), key: await readFile(config.tlsKey) };
  } catch (error) {
    throw new ConfigError(`Cannot read the TLS certificate or key: ${(error as Error).message}`);
  }
}

/** OIDC discovery documents and key sets, fetched with the system's and Node's CAs (64 KiB cap). */
async function fetchJsonWithSystemCas(url: string): Promise<unknown> {
  const transport = new HttpTransport();
  try {
    const res = await transport.send({
      method: 'GET',
      url: new URL(url),
      headers: { accept: 'application/json' },
    });
    if (res.status !== 200) throw new Error(`${url} answered HTTP ${res.status}`);
    return JSON.parse(await res.text(64 * 1024)) as unknown;
  } finally {
    transport.close();
  }
}
