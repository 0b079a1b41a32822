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

/** A hash state kept on a hash thread, valid as long as the thread it was made on runs. */
export interface RemoteStream {
  readonly id: number;
  /** Which of the hash threads holds it. */
  readonly thread: number;
  readonly generation: number;
}

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;

interface Pending {
  resolve(reply: HashReply): void;
  reject(error: Error): void;
}

/** One hash thread: its worker (started on first use), the requests it has not answered yet. */
interface Slot {
  worker: Worker | undefined;
  /** Bumped whenever its worker goes away: the streams it held are lost. */
  generation: number;
  /** The worker `terminate` is stopping. */
  stopping: Worker | undefined;
  readonly pending: Map<number, Pending>;
}

/**
 * Hash threads: the threads that hash large content, started on first use, up to `maxHashThreads()` (one per
 * CPU but one, from one to four). The thread that reads a socket into the shared write buffers then does not also
 * hash what it read (SHA-256 is about half of a blob upload's CPU), so hashing runs beside the reading
 * and the disk writes. A stream's state lives on one thread, which answers in order, so the updates of
 * a stream are hashed in the order they were sent; one stream is never faster than one core, but
 * concurrent ones (the layers of a push) are spread: new streams go to the threads in turn. Workers are
 * unreferenced while nothing is pending, so an idle process can exit.
 */
class HashThread {
  readonly #slots: Slot[] = [];
  /** No worker can run here (none ever answered, and one failed or was refused); set once and kept. */
  #unavailable = false;
  /** Some worker answered once: workers can run here, and a later one failing is that one's fault. */
  #workersRun = false;
  #seq = 0;
  #streams = 0;
  #turn = 0;
  /** Read from the environment on first use (`checkWriteSwitches` checks it at start-up). */
  #maxThreads: number | undefined;

  /** Whether `stream` still lives: the worker that holds its state has not gone away since it was made. */
  holds(stream: RemoteStream): boolean {
    return this.#slotOf(stream) !== undefined && !this.#unavailable;
  }

  /** The slot holding `stream`, unless its worker went away since the stream was made. */
  #slotOf(stream: RemoteStream): Slot | undefined {
    const slot = this.#slots[stream.thread];
    return slot?.generation === stream.generation ? slot : undefined;
  }

  /** Hash threads running now. */
  get running(): number {
    return this.#slots.filter((slot) => slot.worker !== undefined).length;
  }

  /**
   * A new hash state, or undefined when no hash thread can run in this process: creating the worker was
   * refused (node's permission model without --allow-worker), or one stopped before any worker ever
   * answered (its file missing, say). Digesters then hash on their own thread. Where workers did run,
   * one that cannot be started now only leaves this stream on its own thread.
   */
  newStream(): RemoteStream | undefined {
    if (this.#unavailable) return undefined;
    const thread = this.#pick();
    try {
      this.#start(thread);
    } catch {
      if (!this.#workersRun) this.#unavailable = true;
      return undefined;
    }
    this.#streams += 1;
    return { id: this.#streams, thread, generation: (this.#slots[thread] as Slot).generation };
  }

  /**
   * The slot for a new stream: the next one in turn, a new one while fewer than the most allowed run.
   * (How busy a thread is cannot be told when a stream is made: concurrent uploads make theirs at once,
   * before any has sent bytes, and a stream's end is known only when its digester is collected.)
   */
  #pick(): number {
    this.#maxThreads ??= maxHashThreads();
    const next = this.#turn % this.#maxThreads;
    this.#turn += 1;
    while (this.#slots.length <= next) {
      this.#slots.push({ worker: undefined, generation: 0, stopping: undefined, pending: new Map() });
    }
    return next;
  }

  #start(thread: number): Worker {
    const slot = this.#slots[thread] as Slot;
    if (slot.worker) return slot.worker;
    const worker = new Worker(new URL('./hash-worker.js', import.meta.url));
    worker.unref();
    worker.on('message', (reply: HashReply) => {
      this.#workersRun = true;
      const pending = slot.pending.get(reply.seq);
      slot.pending.delete(reply.seq);
      if (slot.pending.size === 0 && slot.stopping !== worker) worker.unref();
      pending?.resolve(reply);
    });
    // `failed`: an 'error' event (a worker that fails when none ever answered cannot run here at all).
    const stopped = (error: Error, failed: boolean): void => {
      if (slot.worker !== worker) return;
      slot.worker = undefined;
      if (failed && !this.#workersRun) this.#unavailable = true;
      slot.generation += 1;
      const pending = [...slot.pending.values()];
      slot.pending.clear();
      for (const p of pending) p.reject(error);
    };
    worker.on('error', (error) => stopped(new Error(`The hash thread failed: ${error.message}`), true));
    worker.on('exit', (code) => stopped(new Error(`The hash thread exited (code ${code})`), false));
    slot.worker = worker;
    return worker;
  }

  #send(stream: RemoteStream, request: DistributiveOmit<HashRequest, 'seq'>): Promise<HashReply> {
    const slot = this.#slotOf(stream);
    if (!slot) {
      return Promise.reject(new Error('The hash thread restarted: this content has to be hashed again'));
    }
    const worker = this.#start(stream.thread);
    this.#seq += 1;
    const seq = this.#seq;
    return new Promise<HashReply>((resolve, reject) => {
      if (slot.pending.size === 0) worker.ref();
      slot.pending.set(seq, { resolve, reject });
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

  /** Stops every hash thread (a later use starts new ones); streams they held fail from then on. */
  async terminate(): Promise<void> {
    await Promise.all(
      this.#slots.map(async (slot) => {
        const worker = slot.worker;
        if (!worker) return;
        // Referenced until it has exited (replies still arriving must not unreference it): an
        // unreferenced worker would let the process end first.
        slot.stopping = worker;
        worker.ref();
        await worker.terminate();
      }),
    );
  }

  /** Forgets a stream's state (its digester is gone); nothing to do if its thread is gone. */
  drop(stream: RemoteStream): void {
    if (!this.#slotOf(stream)?.worker) return;
    this.#send(stream, { op: 'drop', stream: stream.id }).catch(() => undefined);
  }
}

/**
 * Hash threads a process starts at most (`AIRLOCK_HASH_THREADS` overrides): one per CPU but one, for the
 * thread that reads the sockets, and from one to four. On two CPUs that is one: a second one made no
 * push faster there (the cores were already busy) and cost a pull about 9 MB; with more CPUs, one thread
 * would cap the hashing of all uploads together at one core's SHA-256 speed (about 2 GB/s).
 */
export function maxHashThreads(env: NodeJS.ProcessEnv = process.env): number {
  const setting = env.AIRLOCK_HASH_THREADS;
  if (setting !== undefined && setting !== '') {
    const count = Number(setting);
    if (!Number.isInteger(count) || count < 1 || count > 64) {
      throw new Error(
        `AIRLOCK_HASH_THREADS must be a whole number from 1 to 64, not "${setting.slice(0, 40)}"`,
      );
    }
    return count;
  }
  return Math.min(4, Math.max(1, availableParallelism() - 1));
}

export const hashThread = new HashThread();

/**
 * Whether large content is hashed on the hash thread: with two or more CPUs unless
 * `AIRLOCK_HASH_THREAD=0` (`=1` forces it). Throws on any other value than unset, empty, 0 or 1.
 */
export function hashThreadAllowed(env: NodeJS.ProcessEnv = process.env): boolean {
  return envSwitch(env, 'AIRLOCK_HASH_THREAD') ?? availableParallelism() >= 2;
}
