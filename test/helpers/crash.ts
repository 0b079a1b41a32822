// Building blocks for crash-safety tests: a seeded PRNG, reproducible blob content, a supervisor that
// SIGKILLs and restarts `airlock serve` on one data folder, an HTTP client that tells "the server was
// killed under me" from real failures, and on-disk checks of the blob tree and the SQLite database.
import { createCipheriv, createHash } from 'node:crypto';
import { createReadStream, existsSync } from 'node:fs';
import { copyFile, mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { startAirlockProcess, type RunningProcess } from './processes.js';

// ---- randomness ----

function splitmix32(state: number): () => number {
  let s = state >>> 0;
  return () => {
    s = (s + 0x9e3779b9) >>> 0;
    let z = s;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
    return (z ^ (z >>> 16)) >>> 0;
  };
}

/** Small seeded PRNG (sfc32 seeded through splitmix32): the same seed gives the same sequence. */
export class Prng {
  #a: number;
  #b: number;
  #c: number;
  #d: number;

  constructor(seed: number) {
    const mix = splitmix32(seed);
    this.#a = mix();
    this.#b = mix();
    this.#c = mix();
    this.#d = mix();
    for (let i = 0; i < 12; i++) this.uint32();
  }

  uint32(): number {
    const t = (((this.#a + this.#b) >>> 0) + this.#d) >>> 0;
    this.#d = (this.#d + 1) >>> 0;
    this.#a = this.#b ^ (this.#b >>> 9);
    this.#b = (this.#c + (this.#c << 3)) >>> 0;
    this.#c = ((this.#c << 21) | (this.#c >>> 11)) >>> 0;
    this.#c = (this.#c + t) >>> 0;
    return t;
  }

  /** Uniform in [0, 1). */
  next(): number {
    return this.uint32() / 0x1_0000_0000;
  }

  /** Uniform integer in [min, max], both inclusive. */
  int(min: number, max: number): number {
    return min + Math.floor(this.next() * (max - min + 1));
  }

  chance(probability: number): boolean {
    return this.next() < probability;
  }

  pick<T>(items: readonly T[]): T {
    if (items.length === 0) throw new Error('Cannot pick from an empty list');
    return items[this.int(0, items.length - 1)] as T;
  }

  /** An independent generator derived from this seed and `label` (one per worker, say). */
  fork(label: number): Prng {
    return new Prng((this.uint32() ^ Math.imul(label + 1, 0x9e3779b1)) >>> 0);
  }
}

/** The seed from `variable` (decimal or 0x-hex) or a fresh random one. */
export function seedFromEnv(variable = 'CRASH_SEED'): number {
  const text = process.env[variable];
  if (text !== undefined && text.trim() !== '') {
    const value = Number(text.trim());
    if (!Number.isSafeInteger(value) || value < 0)
      throw new Error(`${variable}="${text}" is not a non-negative integer`);
    return value >>> 0;
  }
  return Math.floor(Math.random() * 0x1_0000_0000) >>> 0;
}

/** `size` pseudo-random bytes determined by `seed` (an AES-128-CTR key stream, fast for MiBs). */
export function contentBytes(seed: number, size: number): Buffer {
  const key = createHash('sha256').update(`airlock-crash-content:${seed}`).digest().subarray(0, 16);
  const cipher = createCipheriv('aes-128-ctr', key, Buffer.alloc(16));
  return Buffer.concat([cipher.update(Buffer.alloc(size)), cipher.final()]);
}

export function sha256Digest(bytes: Uint8Array): string {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
}

/** Yields `bytes` in `pieces` parts with a pause before each, so a kill can land in the middle of a body. */
export async function* trickle(
  bytes: Uint8Array,
  pieces: number,
  pauseMs: number,
): AsyncGenerator<Uint8Array> {
  const step = Math.max(1, Math.ceil(bytes.byteLength / Math.max(1, pieces)));
  for (let start = 0; start < bytes.byteLength; start += step) {
    await new Promise((resolve) => setTimeout(resolve, pauseMs));
    yield bytes.subarray(start, Math.min(start + step, bytes.byteLength));
  }
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Runs `fn` over `items` with at most `limit` calls in flight. */
export async function mapLimit<T>(
  items: readonly T[],
  limit: number,
  fn: (item: T) => Promise<void>,
): Promise<void> {
  let next = 0;
  const lanes = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) {
      const item = items[next++] as T;
      await fn(item);
    }
  });
  await Promise.all(lanes);
}

// ---- the server under test ----

interface Deferred {
  promise: Promise<void>;
  resolve: () => void;
  reject: (error: unknown) => void;
}

function deferred(): Deferred {
  let resolve!: () => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  // Nobody may be waiting when it fails; the failure is rethrown to whoever waits later.
  promise.catch(() => undefined);
  return { promise, resolve, reject };
}

/** One `airlock serve` process at a time on a fixed data folder, killed and restarted on demand. */
export class AirlockSupervisor {
  readonly dataDir: string;
  #current: RunningProcess | undefined;
  #epoch = 0;
  readonly #killed = new Set<number>();
  #up = deferred();
  readonly #logs: string[] = [];

  constructor(dataDir: string) {
    this.dataDir = dataDir;
  }

  /** Increments with every start; a request remembers the epoch it was sent in. */
  get epoch(): number {
    return this.#epoch;
  }

  /** Base URL of the current (or last) process. */
  get url(): string {
    if (!this.#current) throw new Error('Airlock was never started');
    return this.#current.url;
  }

  /** True when the process of `epoch` was killed on purpose (so its connection errors are expected). */
  wasKilled(epoch: number): boolean {
    return this.#killed.has(epoch);
  }

  /** Resolves once a process is serving; rejects when starting one failed. */
  waitUp(): Promise<void> {
    return this.#up.promise;
  }

  async start(): Promise<void> {
    if (this.#current && !this.#killed.has(this.#epoch)) throw new Error('Airlock is already running');
    try {
      this.#current = await startAirlockProcess({ dataDir: this.dataDir });
    } catch (error) {
      this.#up.reject(error);
      throw error;
    }
    this.#epoch++;
    this.#up.resolve();
  }

  /** SIGKILLs the running process and waits until it is gone. */
  async kill(): Promise<void> {
    const current = this.#current;
    if (!current || this.#killed.has(this.#epoch)) return;
    this.#killed.add(this.#epoch);
    this.#up = deferred();
    await current.stop('SIGKILL');
    this.#logs.push(current.output());
  }

  /** Stops the running process gracefully (SIGTERM) at the end of a test. */
  async stop(): Promise<void> {
    const current = this.#current;
    if (!current || this.#killed.has(this.#epoch)) return;
    this.#killed.add(this.#epoch);
    this.#up = deferred();
    await current.stop('SIGTERM');
    this.#logs.push(current.output());
  }

  /** Gives up: waiters are released with `error`. */
  fail(error: unknown): void {
    this.#up.reject(error);
  }

  /** Output of every process so far (the running one included). */
  logs(): string[] {
    const running = this.#current && !this.#killed.has(this.#epoch) ? [this.#current.output()] : [];
    return [...this.#logs, ...running];
  }
}

// ---- HTTP ----

export type HttpResult =
  | {
      readonly kind: 'response';
      readonly status: number;
      readonly headers: Headers;
      readonly body: Buffer;
      readonly epoch: number;
    }
  | { readonly kind: 'interrupted'; readonly epoch: number; readonly error: unknown };

export interface HttpRequest {
  readonly method: string;
  /** Path and query, e.g. `/v2/a/blobs/uploads/?digest=…`; sent to the current process. */
  readonly path: string;
  readonly headers?: Readonly<Record<string, string>>;
  readonly body?: Uint8Array | AsyncIterable<Uint8Array>;
}

export interface CrashHttpOptions {
  /** Called for every 5xx and every connection failure the supervisor did not cause. */
  readonly onProblem: (message: string) => void;
  /** Per-request time limit. Default: 30 s. */
  readonly timeoutMs?: number;
}

/** fetch against the supervised process: answers, or says the request died with a process we killed. */
export class CrashHttp {
  readonly #supervisor: AirlockSupervisor;
  readonly #onProblem: (message: string) => void;
  readonly #timeoutMs: number;
  /** Aborted by `giveUp`: every request in flight or yet to come ends at once, as interrupted. */
  readonly #giveUp = new AbortController();
  /** Responses by status, plus `interrupted`. */
  readonly counts = new Map<string, number>();

  constructor(supervisor: AirlockSupervisor, options: CrashHttpOptions) {
    this.#supervisor = supervisor;
    this.#onProblem = options.onProblem;
    this.#timeoutMs = options.timeoutMs ?? 30_000;
  }

  #count(key: string): void {
    this.counts.set(key, (this.counts.get(key) ?? 0) + 1);
  }

  /** Ends every request now and later as interrupted, without reporting them (a test out of time). */
  giveUp(): void {
    this.#giveUp.abort();
  }

  async request(request: HttpRequest): Promise<HttpResult> {
    const epoch = this.#supervisor.epoch;
    if (this.#giveUp.signal.aborted) return { kind: 'interrupted', epoch, error: new Error('gave up') };
    const url = `${this.#supervisor.url}${request.path}`;
    const streaming = request.body !== undefined && !(request.body instanceof Uint8Array);
    try {
      const res = await fetch(url, {
        method: request.method,
        headers: request.headers ?? {},
        signal: AbortSignal.any([AbortSignal.timeout(this.#timeoutMs), this.#giveUp.signal]),
        ...(request.body === undefined ? {} : { body: request.body }),
        ...(streaming ? { duplex: 'half' as const } : {}),
      });
      const body = Buffer.from(await res.arrayBuffer());
      this.#count(String(res.status));
      if (res.status >= 500) {
        this.#onProblem(
          `${request.method} ${request.path} answered ${res.status}: ${body.toString('utf8').slice(0, 300)}`,
        );
      }
      return { kind: 'response', status: res.status, headers: res.headers, body, epoch };
    } catch (error) {
      this.#count('interrupted');
      if (!this.#supervisor.wasKilled(epoch) && !this.#giveUp.signal.aborted) {
        const cause =
          error instanceof Error && error.cause instanceof Error ? ` (${error.cause.message})` : '';
        this.#onProblem(
          `${request.method} ${request.path} failed while the server was up: ${String(error)}${cause}`,
        );
      }
      return { kind: 'interrupted', epoch, error };
    }
  }
}

/** The `code` of the first error in a spec error body, or undefined. */
export function errorCode(body: Buffer): string | undefined {
  try {
    const parsed = JSON.parse(body.toString('utf8')) as { errors?: Array<{ code?: unknown }> };
    const code = parsed.errors?.[0]?.code;
    return typeof code === 'string' ? code : undefined;
  } catch {
    return undefined;
  }
}

// ---- on disk ----

const HEX64 = /^[a-f0-9]{64}$/;

export interface BlobTreeReport {
  readonly files: number;
  readonly bytes: number;
  readonly hashed: number;
  readonly problems: string[];
}

async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path, { highWaterMark: 1024 * 1024 }))
    hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/**
 * Checks that `DATA/blobs` holds only `sha256/<2 hex>/<64 hex>` files whose bytes hash to their name.
 * `verified` (name → size) skips files already hashed at that size; pass an empty map to hash all.
 */
export async function checkBlobTree(dataDir: string, verified: Map<string, number>): Promise<BlobTreeReport> {
  const root = join(dataDir, 'blobs');
  const problems: string[] = [];
  let files = 0;
  let bytes = 0;
  let hashed = 0;
  for (const algorithm of await readdir(root, { withFileTypes: true })) {
    if (!algorithm.isDirectory() || algorithm.name !== 'sha256') {
      problems.push(`Unexpected entry "blobs/${algorithm.name}"`);
      continue;
    }
    for (const prefix of await readdir(join(root, 'sha256'), { withFileTypes: true })) {
      if (!prefix.isDirectory() || !/^[a-f0-9]{2}$/.test(prefix.name)) {
        problems.push(`Unexpected entry "blobs/sha256/${prefix.name}"`);
        continue;
      }
      for (const entry of await readdir(join(root, 'sha256', prefix.name), { withFileTypes: true })) {
        const where = `blobs/sha256/${prefix.name}/${entry.name}`;
        if (!entry.isFile() || !HEX64.test(entry.name) || !entry.name.startsWith(prefix.name)) {
          problems.push(`Unexpected entry "${where}"`);
          continue;
        }
        const path = join(root, 'sha256', prefix.name, entry.name);
        const { size } = await stat(path);
        files++;
        bytes += size;
        if (verified.get(entry.name) === size) continue;
        const actual = await sha256File(path);
        hashed++;
        if (actual !== entry.name) problems.push(`Blob file "${where}" (${size} bytes) hashes to ${actual}`);
        else verified.set(entry.name, size);
      }
    }
  }
  return { files, bytes, hashed, problems };
}

/** Path of the blob file for `digest` in `dataDir`. */
export function blobPath(dataDir: string, digest: string): string {
  const hex = digest.slice('sha256:'.length);
  return join(dataDir, 'blobs', 'sha256', hex.slice(0, 2), hex);
}

/**
 * The blob-link and manifest rows of a stopped registry's database whose blob file is gone (what garbage
 * collection must never leave), and how many rows there are.
 */
export function rowsWithoutFiles(dataDir: string): { rows: number; problems: string[] } {
  const db = new Database(join(dataDir, 'airlock.db'), { readonly: true });
  try {
    const rows = db
      .prepare('SELECT repository, digest FROM blob_links UNION ALL SELECT repository, digest FROM manifests')
      .all() as { repository: string; digest: string }[];
    const problems = rows
      .filter((row) => !existsSync(blobPath(dataDir, row.digest)))
      .map((row) => `${row.repository} needs ${row.digest}, whose file is gone`);
    return { rows: rows.length, problems };
  } finally {
    db.close();
  }
}

/** Names in `DATA/uploads` (temp files start with `tmp-`, sessions are named by id). */
export async function uploadsDir(dataDir: string): Promise<string[]> {
  try {
    return await readdir(join(dataDir, 'uploads'));
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw error;
  }
}

/** Problems `PRAGMA integrity_check` and `foreign_key_check` report (empty when the database is sound). */
export function integrityProblems(db: Database.Database): string[] {
  const problems: string[] = [];
  const integrity = db.pragma('integrity_check', { simple: false }) as Array<{ integrity_check: string }>;
  for (const row of integrity)
    if (row.integrity_check !== 'ok') problems.push(`integrity_check: ${row.integrity_check}`);
  for (const row of db.pragma('foreign_key_check') as unknown[])
    problems.push(`foreign_key_check: ${JSON.stringify(row)}`);
  return problems;
}

/**
 * Copies `airlock.db` (with its WAL, as a killed process left it) aside and checks the copy, so the
 * real files stay exactly as the next process will find them.
 */
export async function checkDatabaseCopy(dataDir: string): Promise<string[]> {
  const scratch = await mkdtemp(join(tmpdir(), 'airlock-crash-db-'));
  try {
    const file = join(scratch, 'airlock.db');
    await copyFile(join(dataDir, 'airlock.db'), file);
    // The WAL holds the committed transactions not yet checkpointed; the -shm index is rebuilt on open.
    await copyFile(join(dataDir, 'airlock.db-wal'), `${file}-wal`).catch((error: unknown) => {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    });
    const db = new Database(file);
    try {
      return integrityProblems(db);
    } finally {
      db.close();
    }
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}
