import { mkdir } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { join, resolve } from 'node:path';
import type { Server } from 'node:http';
import type { Logger } from '../log/index.js';
import { FsBlobStore, openSqliteMetadataStore, type MetadataStore } from '../storage/index.js';
import { isLoopback, parseAddr, type ServeConfig } from './config.js';
import { createHttpServer, createRequestListener } from './http/server.js';
import { RegistryMetrics } from './metrics.js';
import { Registry } from './registry.js';

export interface RunningRegistry {
  /** Base URL, e.g. http://127.0.0.1:5000 (the real port when 0 was asked for). */
  readonly url: string;
  readonly host: string;
  readonly port: number;
  readonly registry: Registry;
  readonly server: Server;
  /** Stops accepting connections, lets in-flight requests finish (up to the grace period), closes stores. */
  close(): Promise<void>;
}

export interface StartRegistryOptions {
  readonly log: Logger;
}

const PURGE_INTERVAL_MS = 60 * 60 * 1000;

/** Opens the data folder, starts the HTTP server and returns once it listens. */
export async function startRegistry(
  config: ServeConfig,
  options: StartRegistryOptions,
): Promise<RunningRegistry> {
  const { log } = options;
  const dataDir = resolve(config.data);
  await mkdir(dataDir, { recursive: true });
  const blobs = new FsBlobStore(dataDir);
  await blobs.init();
  const metadata: MetadataStore = await openSqliteMetadataStore(join(dataDir, 'airlock.db'));
  const registry = new Registry({
    blobs,
    metadata,
    manifestCacheBytes: config.manifestCacheBytes,
    ...(config.maxBlobBytes > 0 ? { maxBlobBytes: config.maxBlobBytes } : {}),
  });
  const purged = await registry.purgeUploads(config.uploadTtlSeconds * 1000);
  if (purged > 0) log.info({ purged }, 'removed stale upload sessions');
  const purgeTimer = setInterval(() => {
    registry
      .purgeUploads(config.uploadTtlSeconds * 1000)
      .catch((err: unknown) => log.error({ err }, 'upload purge failed'));
  }, PURGE_INTERVAL_MS);
  purgeTimer.unref();

  let accepting = true;
  const metrics = new RegistryMetrics({
    activeUploads: () => registry.activeUploads,
    storageBytes: () => blobs.usage(),
  });
  const server = createHttpServer(createRequestListener({ registry, log, metrics, ready: () => accepting }));
  const { host, port } = parseAddr(config.addr);
  await new Promise<void>((resolveListen, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolveListen();
    });
  });
  const actualPort = (server.address() as AddressInfo).port;
  const urlHost = host.includes(':') ? `[${host}]` : host === '' || host === '0.0.0.0' ? '127.0.0.1' : host;
  const url = `http://${urlHost}:${actualPort}`;
  if (!isLoopback(host)) {
    log.warn(
      { addr: config.addr },
      'listening on a non-loopback address without authentication: anyone who can reach it can push and delete',
    );
  }
  log.info({ addr: `${host}:${actualPort}`, data: dataDir }, 'registry listening');

  let closing: Promise<void> | undefined;
  const close = (): Promise<void> => {
    closing ??= (async () => {
      accepting = false;
      clearInterval(purgeTimer);
      const drained = new Promise<void>((done) => server.close(() => done()));
      server.closeIdleConnections();
      const grace = new Promise<void>((done) => setTimeout(done, config.shutdownGraceSeconds * 1000).unref());
      await Promise.race([drained, grace]);
      server.closeAllConnections();
      await metadata.close();
      log.info('registry stopped');
    })();
    return closing;
  };
  return { url, host, port: actualPort, registry, server, close };
}
