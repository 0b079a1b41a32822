import { readFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import { parse as parseYaml } from 'yaml';
import { LOG_LEVELS } from '../log/index.js';
import { checkWriteSwitches } from '../oci/index.js';
import type { LevelWithSilent } from 'pino';

/** Everything `airlock serve` can be told; see docs/registry.md for each key. */
export interface ServeConfig {
  /** host:port to listen on. Default: 127.0.0.1:5000. */
  readonly addr: string;
  /** Data folder (blobs, uploads, airlock.db). Default: ./airlock-data. */
  readonly data: string;
  readonly logLevel: LevelWithSilent;
  /** Largest blob accepted in bytes; 0 means unlimited. Default: 0. */
  readonly maxBlobBytes: number;
  /** Memory for cached manifest bytes. Default: 64 MiB. */
  readonly manifestCacheBytes: number;
  /** Upload sessions idle longer than this many seconds are removed. Default: 7 days. */
  readonly uploadTtlSeconds: number;
  /** Seconds to let in-flight requests finish on shutdown. Default: 30. */
  readonly shutdownGraceSeconds: number;
  /** `auto`: access control is on once a user exists; `on`: always. Default: auto. */
  readonly auth: 'auto' | 'on';
  /** Allow an open (unauthenticated) registry on a non-loopback address. Default: false. */
  readonly allowAnonymous: boolean;
  /** Create this admin user at start if no user exists (password from AIRLOCK_ADMIN_PASSWORD, else generated and printed once). */
  readonly initAdmin: string;
  /** PEM certificate and key files for HTTPS. Default: none (plain HTTP). */
  readonly tlsCert: string;
  readonly tlsKey: string;
  /** Lifetime of issued bearer tokens. Default: 300. */
  readonly tokenLifetimeSeconds: number;
  /** A push to a repository that does not exist creates it (true) or is refused (false). Default: true. */
  readonly createRepositoryOnPush: boolean;
  /** Run garbage collection every this many seconds; 0: only when asked (`airlock gc`). Default: 0. */
  readonly gcIntervalSeconds: number;
  /** Scheduled collections keep content younger than this many seconds. Default: 3600. */
  readonly gcGraceSeconds: number;
  /** Scheduled collections also delete manifests no tag reaches. Default: false. */
  readonly gcDeleteUntagged: boolean;
}

export const DEFAULT_CONFIG: ServeConfig = {
  addr: '127.0.0.1:5000',
  data: './airlock-data',
  logLevel: 'info',
  maxBlobBytes: 0,
  manifestCacheBytes: 64 * 1024 * 1024,
  uploadTtlSeconds: 7 * 24 * 3600,
  shutdownGraceSeconds: 30,
  auth: 'auto',
  allowAnonymous: false,
  initAdmin: '',
  tlsCert: '',
  tlsKey: '',
  tokenLifetimeSeconds: 300,
  createRepositoryOnPush: true,
  gcIntervalSeconds: 0,
  gcGraceSeconds: 3600,
  gcDeleteUntagged: false,
};

/** Environment variable for each key. */
const ENV: Record<keyof ServeConfig, string> = {
  addr: 'AIRLOCK_ADDR',
  data: 'AIRLOCK_DATA',
  logLevel: 'AIRLOCK_LOG_LEVEL',
  maxBlobBytes: 'AIRLOCK_MAX_BLOB_BYTES',
  manifestCacheBytes: 'AIRLOCK_MANIFEST_CACHE_BYTES',
  uploadTtlSeconds: 'AIRLOCK_UPLOAD_TTL_SECONDS',
  shutdownGraceSeconds: 'AIRLOCK_SHUTDOWN_GRACE_SECONDS',
  auth: 'AIRLOCK_AUTH',
  allowAnonymous: 'AIRLOCK_ALLOW_ANONYMOUS',
  initAdmin: 'AIRLOCK_INIT_ADMIN',
  tlsCert: 'AIRLOCK_TLS_CERT',
  tlsKey: 'AIRLOCK_TLS_KEY',
  tokenLifetimeSeconds: 'AIRLOCK_TOKEN_LIFETIME_SECONDS',
  createRepositoryOnPush: 'AIRLOCK_CREATE_REPOSITORY_ON_PUSH',
  gcIntervalSeconds: 'AIRLOCK_GC_INTERVAL_SECONDS',
  gcGraceSeconds: 'AIRLOCK_GC_GRACE_SECONDS',
  gcDeleteUntagged: 'AIRLOCK_GC_DELETE_UNTAGGED',
};

/** Thrown for a config file, variable or flag that cannot be used; the message names it. */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
}

const NUMERIC_KEYS = new Set<keyof ServeConfig>([
  'maxBlobBytes',
  'manifestCacheBytes',
  'uploadTtlSeconds',
  'shutdownGraceSeconds',
  'tokenLifetimeSeconds',
  'gcIntervalSeconds',
  'gcGraceSeconds',
]);
/** Keys that become timer delays: node fires a delay over 2^31-1 ms (24.8 days) at once, so they stop there. */
const TIMER_KEYS = new Set<keyof ServeConfig>(['gcIntervalSeconds', 'shutdownGraceSeconds']);
const MAX_TIMER_SECONDS = Math.floor((2 ** 31 - 1) / 1000);
const BOOLEAN_KEYS = new Set<keyof ServeConfig>([
  'allowAnonymous',
  'createRepositoryOnPush',
  'gcDeleteUntagged',
]);
const OPTIONAL_STRING_KEYS = new Set<keyof ServeConfig>(['initAdmin', 'tlsCert', 'tlsKey']);

function coerce(key: keyof ServeConfig, value: unknown, source: string): unknown {
  if (NUMERIC_KEYS.has(key)) {
    const n = typeof value === 'string' && value.trim() !== '' ? Number(value) : value;
    if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 0) {
      throw new ConfigError(
        `Invalid ${source}: "${key}" must be a non-negative integer, got ${JSON.stringify(value)}`,
      );
    }
    if (TIMER_KEYS.has(key) && n > MAX_TIMER_SECONDS) {
      throw new ConfigError(
        `Invalid ${source}: "${key}" must be at most ${MAX_TIMER_SECONDS} (24.8 days), got ${n}`,
      );
    }
    return n;
  }
  if (BOOLEAN_KEYS.has(key)) {
    if (value === true || value === 'true' || value === '1') return true;
    if (value === false || value === 'false' || value === '0') return false;
    throw new ConfigError(`Invalid ${source}: "${key}" must be true or false, got ${JSON.stringify(value)}`);
  }
  if (OPTIONAL_STRING_KEYS.has(key) && typeof value === 'string') return value;
  if (typeof value !== 'string' || value === '') {
    throw new ConfigError(
      `Invalid ${source}: "${key}" must be a non-empty string, got ${JSON.stringify(value)}`,
    );
  }
  if (key === 'auth' && value !== 'auto' && value !== 'on') {
    throw new ConfigError(`Invalid ${source}: "auth" must be "auto" or "on", got "${value}"`);
  }
  if (key === 'logLevel' && !(LOG_LEVELS as readonly string[]).includes(value)) {
    throw new ConfigError(
      `Invalid ${source}: "logLevel" must be one of ${LOG_LEVELS.join(', ')}, got "${value}"`,
    );
  }
  if (key === 'addr') parseAddr(value, source);
  return value;
}

/** Splits `host:port` (IPv6 as `[::1]:port`); port 0 picks a free port. */
export function parseAddr(addr: string, source = 'address'): { host: string; port: number } {
  const match = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]*)):(\d{1,5})$/.exec(addr);
  const port = Number(match?.[3]);
  if (!match || port > 65535)
    throw new ConfigError(`Invalid ${source}: "addr" must be HOST:PORT, got "${addr}"`);
  return { host: match[1] ?? match[2] ?? '', port };
}

/** True for addresses only this machine can reach. */
export function isLoopback(host: string): boolean {
  if (host === 'localhost') return true;
  if (isIP(host) === 4) return host.startsWith('127.');
  return host === '::1';
}

function apply(target: Record<string, unknown>, input: Record<string, unknown>, source: string): void {
  for (const [key, value] of Object.entries(input)) {
    if (value === undefined) continue;
    if (!(key in DEFAULT_CONFIG)) {
      throw new ConfigError(
        `Invalid ${source}: unknown key "${key}" (known: ${Object.keys(DEFAULT_CONFIG).join(', ')})`,
      );
    }
    target[key] = coerce(key as keyof ServeConfig, value, source);
  }
}

export interface LoadConfigOptions {
  /** YAML or JSON file with any of the keys. Default: none. */
  readonly file?: string;
  /** Environment to read AIRLOCK_* variables from. Default: process.env. */
  readonly env?: NodeJS.ProcessEnv;
  /** Values from command-line flags; they win over everything else. Default: none. */
  readonly flags?: Partial<Record<keyof ServeConfig, unknown>>;
}

/** Merges defaults < config file < environment < flags, validating every value. */
export async function loadServeConfig(options: LoadConfigOptions = {}): Promise<ServeConfig> {
  try {
    checkWriteSwitches(options.env ?? process.env);
  } catch (error) {
    throw new ConfigError((error as Error).message);
  }
  const config: Record<string, unknown> = { ...DEFAULT_CONFIG };
  if (options.file) {
    let text: string;
    try {
      text = await readFile(options.file, 'utf8');
    } catch (error) {
      throw new ConfigError(`Cannot read config file "${options.file}": ${(error as Error).message}`, {
        cause: error,
      });
    }
    let parsed: unknown;
    try {
      parsed = parseYaml(text);
    } catch (error) {
      throw new ConfigError(`Cannot parse config file "${options.file}": ${(error as Error).message}`, {
        cause: error,
      });
    }
    if (parsed !== null && (typeof parsed !== 'object' || Array.isArray(parsed))) {
      throw new ConfigError(`Invalid config file "${options.file}": expected a mapping of keys to values`);
    }
    apply(config, (parsed ?? {}) as Record<string, unknown>, `config file "${options.file}"`);
  }
  const env = options.env ?? process.env;
  for (const [key, variable] of Object.entries(ENV)) {
    const value = env[variable];
    if (value !== undefined && value !== '')
      apply(config, { [key]: value }, `environment variable ${variable}`);
  }
  apply(config, options.flags ?? {}, 'flag');
  return config as unknown as ServeConfig;
}
