import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { envSwitch } from './env-switch.js';

/** The algorithms digest.ts hashes (repeated here: digest.ts imports this module). */
type DigestAlgorithm = 'sha256' | 'sha512';

/** What the hash thread is asked: hash bytes of shared memory, report a stream's digest, forget a stream. */
export type HashRequest =
  | {
      readonly op: 'update';
      readonly seq: number;
      readonly stream: number;
      readonly algorithm: DigestAlgorithm;
      readonly memory: SharedArrayBuffer;
      readonly offset: number;
      readonly length: number;
    }
  | {
      readonly op: 'peek';
      readonly seq: number;
      readonly stream: number;
      readonly algorithm: DigestAlgorithm;
    }
  | { readonly op: 'drop'; readonly seq: number; readonly stream: number };

/** One answer per request, in request order: `hex` for a peek, `error` when the request failed. */
export interface HashReply {
  readonly seq: number;
  readonly hex?: string;
  readonly error?: string;
}

/** A hash state kept on the hash thread, valid as long as the thread it was made on runs. */
export interface RemoteStream {
  readonly id: number;
  readonly generation: number;
}

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;

interface Pending {
  resolve(reply: HashReply): void;
  reject(error: Error): void;
}

/**
 * The thread that hashes large content: one per process, started on first use. The thread that reads a
 * socket into the shared write buffers then does not also hash what it read (SHA-256 is about
 * half of a blob upload's CPU), so hashing runs beside the reading and the disk writes. Requests are
 * answered in order, so the updates of one stream are hashed in the order they were sent. The worker
 * is unreferenced while nothing is pending, so an idle process can exit.
 */
class HashThread {
  #worker: Worker | undefined;
  /** Bumped whenever a worker goes away: the streams it held are lost. */
  #generation = 0;
  /** No worker can run here; set once and kept. */
  #unavailable = false;
  /** The worker `terminate` is stopping. */
  #stopping: Worker | undefined;
  #seq = 0;
  #streams = 0;
  readonly #pending = new Map<number, Pending>();

  /** Whether `stream` still lives: the worker that holds its state has not gone away since it was made. */
  holds(stream: RemoteStream): boolean {
    return stream.generation === this.#generation && !this.#unavailable;
  }

  /**
   * A new hash state, or undefined when no hash thread can run in this process: creating the worker was
   * refused (node's permission model without --allow-worker), or one stopped before it ever answered
   * (its file missing, say). Digesters then hash on their own thread.
   */
  newStream(): RemoteStream | undefined {
    if (this.#unavailable) return undefined;
    try {
      this.#start();
    } catch {
      this.#unavailable = true;
      return undefined;
    }
    this.#streams += 1;
    return { id: this.#streams, generation: this.#generation };
  }

  #start(): Worker {
    if (this.#worker) return this.#worker;
    const worker = new Worker(new URL('./hash-worker.js', import.meta.url));
    worker.unref();
    let answered = false;
    worker.on('message', (reply: HashReply) => {
      answered = true;
      const pending = this.#pending.get(reply.seq);
      this.#pending.delete(reply.seq);
      if (this.#pending.size === 0 && this.#stopping !== worker) worker.unref();
      pending?.resolve(reply);
    });
    // `failed`: an 'error' event (a worker that fails before it ever answered cannot run here at all).
    const stopped = (error: Error, failed: boolean): void => {
      if (this.#worker !== worker) return;
      this.#worker = undefined;
      if (failed && !answered) this.#unavailable = true;
      this.#generation += 1;
      const pending = [...this.#pending.values()];
      this.#pending.clear();
      for (const p of pending) p.reject(error);
    };
    worker.on('error', (error) => stopped(new Error(`The hash thread failed: ${error.message}`), true));
    worker.on('exit', (code) => stopped(new Error(`The hash thread exited (code ${code})`), false));
    this.#worker = worker;
    return worker;
  }

  #send(stream: RemoteStream, request: DistributiveOmit<HashRequest, 'seq'>): Promise<HashReply> {
    if (stream.generation !== this.#generation) {
      return Promise.reject(new Error('The hash thread restarted: this content has to be hashed again'));
    }
    const worker = this.#start();
    this.#seq += 1;
    const seq = this.#seq;
    return new Promise<HashReply>((resolve, reject) => {
      if (this.#pending.size === 0) worker.ref();
      this.#pending.set(seq, { resolve, reject });
      worker.postMessage({ ...request, seq });
    }).then((reply) => {
      if (reply.error !== undefined) throw new Error(`Hashing failed: ${reply.error}`);
      return reply;
    });
  }

  /** Hashes `view` (shared memory) into the stream; resolves once it is hashed and may be reused. */
  async update(stream: RemoteStream, algorithm: DigestAlgorithm, view: Uint8Array): Promise<void> {
    const memory = view.buffer;
    if (!(memory instanceof SharedArrayBuffer)) throw new Error('The hash thread reads shared memory only');
    await this.#send(stream, {
      op: 'update',
      stream: stream.id,
      algorithm,
      memory,
      offset: view.byteOffset,
      length: view.byteLength,
    });
  }

  /** The hex digest of everything hashed into the stream so far (the stream can go on). */
  async peek(stream: RemoteStream, algorithm: DigestAlgorithm): Promise<string> {
    const reply = await this.#send(stream, { op: 'peek', stream: stream.id, algorithm });
    if (reply.hex === undefined) throw new Error('The hash thread answered a peek without a digest');
    return reply.hex;
  }

  /** Stops the thread (a later use starts a new one); streams it held fail from then on. */
  async terminate(): Promise<void> {
    const worker = this.#worker;
    if (!worker) return;
    // Referenced until it has exited (replies still arriving must not unreference it): an unreferenced
    // worker would let the process end first.
    this.#stopping = worker;
    worker.ref();
    await worker.terminate();
  }

  /** Forgets a stream's state (its digester is gone); nothing to do if its thread is gone. */
  drop(stream: RemoteStream): void {
    if (stream.generation !== this.#generation || !this.#worker) return;
    this.#send(stream, { op: 'drop', stream: stream.id }).catch(() => undefined);
  }
}

export const hashThread = new HashThread();

/**
 * Whether large content is hashed on the hash thread: with two or more CPUs unless
 * `AIRLOCK_HASH_THREAD=0` (`=1` forces it). Throws on any other value than unset, empty, 0 or 1.
 */
export function hashThreadAllowed(env: NodeJS.ProcessEnv = process.env): boolean {
  return envSwitch(env, 'AIRLOCK_HASH_THREAD') ?? availableParallelism() >= 2;
}
