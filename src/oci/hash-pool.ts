import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import type { DigestAlgorithm, OffloadedHash } from './digest.js';

/**
 * Messages to hash-worker.js. Bytes travel in slot buffers that are transferred (moved, not copied) to the
 * worker and back. A SharedArrayBuffer would save the transfers but V8 copies into shared memory byte by
 * byte whenever source and target are not equally aligned (7x slower here), which socket chunks never are.
 */
export type WorkerRequest =
  | {
      op: 'open';
      job: number;
      hash: number;
      algorithm: DigestAlgorithm;
      path: string;
      append: boolean;
    }
  | { op: 'chunk'; job: number; slot: number; buffer: ArrayBuffer; length: number }
  | { op: 'close'; job: number }
  | { op: 'digest'; hash: number }
  | { op: 'drop'; hash: number };

export type WorkerReply =
  | { op: 'slot'; job: number; slot: number; buffer: ArrayBuffer }
  | { op: 'closed'; job: number }
  | { op: 'digest'; hash: number; hex: string }
  | { op: 'error'; job: number; error: WorkerFailure }
  | { op: 'error'; hash: number; error: WorkerFailure };

export interface WorkerFailure {
  readonly message: string;
  readonly code?: string;
}

type JobListener = (reply: WorkerReply | { op: 'exit'; error: Error }) => void;

let nextId = 1;

/** Rebuilds an fs error (message and `code`) from the worker's report. */
export function workerError(failure: WorkerFailure): Error {
  const error = new Error(failure.message) as NodeJS.ErrnoException;
  if (failure.code) error.code = failure.code;
  return error;
}

/**
 * One hash-worker.js thread. It keeps the process alive only while it has work (open jobs or hashes
 * waiting for their digest), so a CLI command exits as soon as its last write is done.
 */
export class HashWorker {
  readonly #worker: Worker;
  readonly #jobs = new Map<number, JobListener>();
  readonly #digests = new Map<number, { resolve: (hex: string) => void; reject: (error: Error) => void }>();
  #dead: Error | undefined;

  constructor(onExit: (worker: HashWorker) => void) {
    this.#worker = new Worker(new URL('./hash-worker.js', import.meta.url));
    this.#worker.unref();
    this.#worker.on('message', (reply: WorkerReply) => this.#dispatch(reply));
    const die = (error: Error): void => {
      if (this.#dead) return;
      this.#dead = error;
      onExit(this);
      for (const listener of this.#jobs.values()) listener({ op: 'exit', error });
      for (const waiter of this.#digests.values()) waiter.reject(error);
      this.#jobs.clear();
      this.#digests.clear();
    };
    this.#worker.on('error', die);
    this.#worker.on('exit', (code) => die(new Error(`The hashing worker thread exited (code ${code})`)));
  }

  #dispatch(reply: WorkerReply): void {
    if ('job' in reply) {
      this.#jobs.get(reply.job)?.(reply);
      return;
    }
    const waiter = this.#digests.get(reply.hash);
    if (!waiter) return;
    this.#digests.delete(reply.hash);
    this.#updateRef();
    if (reply.op === 'digest') waiter.resolve(reply.hex);
    else waiter.reject(workerError(reply.error));
  }

  /** Open jobs; the pool gives new jobs to the worker with the fewest. */
  get load(): number {
    return this.#jobs.size;
  }

  #updateRef(): void {
    if (this.#jobs.size + this.#digests.size > 0) this.#worker.ref();
    else this.#worker.unref();
  }

  post(message: WorkerRequest, transfer?: ArrayBuffer[]): void {
    if (this.#dead) throw this.#dead;
    this.#worker.postMessage(message, transfer);
  }

  /** Registers a job's listener; the worker holds the process open until `endJob`. */
  startJob(listener: JobListener): number {
    if (this.#dead) throw this.#dead;
    const id = nextId++;
    this.#jobs.set(id, listener);
    this.#updateRef();
    return id;
  }

  endJob(id: number): void {
    if (!this.#jobs.delete(id)) return;
    this.#updateRef();
  }

  /** A new hash state kept in this worker, for {@link Digester.offload}. */
  newHash(algorithm: DigestAlgorithm): WorkerHash {
    return new WorkerHash(this, nextId++, algorithm);
  }

  digest(hash: number): Promise<string> {
    return new Promise((resolve, reject) => {
      try {
        this.post({ op: 'digest', hash });
      } catch (error) {
        reject(error instanceof Error ? error : new Error(String(error)));
        return;
      }
      this.#digests.set(hash, { resolve, reject });
      this.#updateRef();
    });
  }

  drop(hash: number): void {
    if (!this.#dead) this.#worker.postMessage({ op: 'drop', hash } satisfies WorkerRequest);
  }
}

/** A hash state that lives in a {@link HashWorker}; the bytes reach it only through `writeHashed`. */
export class WorkerHash implements OffloadedHash {
  #done = false;

  constructor(
    readonly worker: HashWorker,
    readonly id: number,
    readonly algorithm: DigestAlgorithm,
  ) {}

  async hex(): Promise<string> {
    if (this.#done) throw new Error('This hash was already finished or disposed');
    this.#done = true;
    return this.worker.digest(this.id);
  }

  dispose(): void {
    if (this.#done) return;
    this.#done = true;
    this.worker.drop(this.id);
  }
}

const workers: HashWorker[] = [];

/**
 * How many hashing threads large writes may use: `AIRLOCK_HASH_WORKERS`, default 0 (hashing stays on
 * the calling thread). On the 2-CPU VMs Airlock is measured on, handing slots between threads cost more
 * system time than it saved on one host and gained 40% on another (BENCHMARKS.md), so it is opt-in.
 */
export function hashWorkerCount(env: NodeJS.ProcessEnv = process.env): number {
  const configured = env.AIRLOCK_HASH_WORKERS;
  if (configured !== undefined && configured !== '') {
    const count = Number(configured);
    if (!Number.isInteger(count) || count < 0 || count > 64) {
      throw new Error(`AIRLOCK_HASH_WORKERS must be a whole number from 0 to 64, not "${configured}"`);
    }
    return Math.min(count, Math.max(1, availableParallelism()) * 2);
  }
  return 0;
}

/** The least busy hashing worker (started on first use), or undefined when they are turned off. */
export function pickHashWorker(): HashWorker | undefined {
  const limit = hashWorkerCount();
  if (limit === 0) return undefined;
  const idle = workers.find((worker) => worker.load === 0);
  if (idle) return idle;
  if (workers.length < limit) {
    const worker = new HashWorker((dead) => workers.splice(workers.indexOf(dead) >>> 0, 1));
    workers.push(worker);
    return worker;
  }
  return workers.reduce((best, worker) => (worker.load < best.load ? worker : best));
}
