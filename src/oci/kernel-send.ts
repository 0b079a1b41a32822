import { existsSync } from 'node:fs';
import type { Socket } from 'node:net';
import { fileURLToPath } from 'node:url';
import { isMainThread } from 'node:worker_threads';
import { envSwitch } from './env-switch.js';

/** The addon built from native/sendfile.c (see there for the contract). */
interface NativeSend {
  send(
    socketFd: number,
    fileFd: number,
    position: number,
    length: number,
    cancel: Int32Array,
    callback: (error: string | null, sent: number) => void,
    copy: boolean,
  ): void;
}

/**
 * Where the addon is looked for: `npm run build` writes it to dist/native/, one folder up from the
 * bundled CLI's chunks (dist/bin/) and two from tsc's output (dist/src/oci/).
 */
const CANDIDATES = ['../native/sendfile.node', '../../native/sendfile.node'];

let loaded: { native: NativeSend | undefined; problem: string } | undefined;

function load(): { native: NativeSend | undefined; problem: string } {
  if (loaded) return loaded;
  let problem = `no native/sendfile.node next to ${fileURLToPath(import.meta.url)} (npm run build makes it)`;
  if (process.platform !== 'linux') problem = `sendfile(2) is used on Linux only, not ${process.platform}`;
  else if (!isMainThread) {
    // A worker's teardown frees what a running send still uses (native/sendfile.c says more).
    problem = 'kernel sends run on the main thread only';
  } else {
    for (const candidate of CANDIDATES) {
      const path = fileURLToPath(new URL(candidate, import.meta.url));
      if (!existsSync(path)) continue;
      try {
        const module = { exports: {} as NativeSend };
        process.dlopen(module, path);
        if (typeof module.exports.send !== 'function') throw new Error('it has no send function');
        loaded = { native: module.exports, problem: '' };
        return loaded;
      } catch (error) {
        problem = `${path} does not load: ${(error as Error).message}`;
      }
    }
  }
  loaded = { native: undefined, problem };
  return loaded;
}

/**
 * Whether files are sent to plain TCP sockets with sendfile(2): `AIRLOCK_SENDFILE` unset means when the
 * addon is built, 0 never, 1 always (an addon that is missing is then an error, not a slower path).
 */
export function kernelSendEnabled(env: NodeJS.ProcessEnv = process.env): boolean {
  const setting = envSwitch(env, 'AIRLOCK_SENDFILE');
  if (setting === false) return false;
  const { native, problem } = load();
  if (setting === true && !native) throw new Error(`AIRLOCK_SENDFILE=1, but ${problem}`);
  return native !== undefined;
}

/**
 * Sends in flight at most, each on a thread of its own; past it, `reserveKernelSend()` gives nothing and
 * callers send through buffers (a thousand slow downloads must not become a thousand threads).
 */
export const MAX_KERNEL_SENDS = 64;
let reserved = 0;

/** A place among the MAX_KERNEL_SENDS; `release()` gives it back (once; later calls do nothing). */
export interface KernelSendSlot {
  release(): void;
}

/**
 * Takes a place for one kernel send, at once (before any await, so concurrent callers cannot all pass
 * the check); undefined when kernel sends are off or every place is taken.
 */
export function reserveKernelSend(): KernelSendSlot | undefined {
  if (reserved >= MAX_KERNEL_SENDS || !kernelSendEnabled()) return undefined;
  reserved++;
  let held = true;
  return {
    release: () => {
      if (!held) return;
      held = false;
      reserved--;
    },
  };
}

/**
 * A kernel send that could not start (no descriptor to duplicate, no thread): nothing was written, so
 * the caller can send the same bytes another way.
 */
export class KernelSendUnavailable extends Error {
  /** The errno name when the system refused (EMFILE, EBADF, EAGAIN, …). */
  readonly code: string | undefined;
  constructor(message: string, options?: { cause: unknown; code?: string | undefined }) {
    super(message, options);
    this.name = 'KernelSendUnavailable';
    this.code = options?.code;
  }
}

/** A failed kernel send; `code` is the errno name, or 'EOF' when the file ended before the range did. */
export class KernelSendError extends Error {
  readonly code: string;
  readonly sent: number;
  constructor(code: string, sent: number) {
    super(`sendfile failed with ${code} after ${sent} bytes`);
    this.name = 'KernelSendError';
    this.code = code;
    this.sent = sent;
  }
}

/**
 * How a kernel send moves the bytes: `sendfile` hands the file's pages to the socket; `copy` reads them
 * into a 1 MiB buffer on the send thread and writes that (a copy more, but on some kernels a loopback
 * reader takes written bytes much faster than sent pages).
 */
/** Every way, in the order metrics list them. */
export const SEND_WAYS = ['sendfile', 'copy'] as const;
export type SendWay = (typeof SEND_WAYS)[number];

/** Sends at least this long are timed for the choice of way (shorter ones say more about set-up). */
export const METERED_SEND_BYTES = 16 * 1024 * 1024;
/** Timed sends per way before the faster way is kept. */
export const SAMPLES_PER_WAY = 3;
/** How much faster copying must be to be kept: sendfile costs less CPU (about 0.3 s per GiB). */
export const COPY_MARGIN = 1.15;

/**
 * Chooses the way of a process's metered kernel sends by timing both. On the benchmark VMs sendfile to a
 * loopback socket ran at 1.0-1.1 GB/s on one (Linux 6.18, where read + write reached 1.7-2.2 GB/s) and
 * was the faster way on the others. Until each way has `SAMPLES_PER_WAY` timed sends of at least
 * `METERED_SEND_BYTES`, the next send takes the way with fewer; then the median rates decide, once:
 * copying only when it was `COPY_MARGIN` faster. A send's time includes waiting for its reader, so
 * readers slower than either way (most real networks) tie, and a tie keeps sendfile.
 */
export class SendMeter {
  readonly #rates: Record<SendWay, number[]> = { sendfile: [], copy: [] };
  #chosen: SendWay | undefined;

  /** The way decided on, once both were timed enough. */
  get chosen(): SendWay | undefined {
    return this.#chosen;
  }

  /** The median rate of each way's timed sends so far, in bytes per second (undefined before the first). */
  rates(): Record<SendWay, number | undefined> {
    const perSecond = (samples: readonly number[]): number | undefined =>
      samples.length === 0 ? undefined : median(samples) * 1000;
    return { sendfile: perSecond(this.#rates.sendfile), copy: perSecond(this.#rates.copy) };
  }

  /** The way for the next metered send. */
  next(): SendWay {
    if (this.#chosen) return this.#chosen;
    return this.#rates.copy.length < this.#rates.sendfile.length ? 'copy' : 'sendfile';
  }

  /** Counts a send that ended well: `bytes` in `ms` milliseconds the way it went. */
  record(way: SendWay, bytes: number, ms: number): void {
    if (this.#chosen || bytes < METERED_SEND_BYTES || !(ms > 0)) return;
    this.#rates[way].push(bytes / ms);
    const { sendfile, copy } = this.#rates;
    if (sendfile.length < SAMPLES_PER_WAY || copy.length < SAMPLES_PER_WAY) return;
    this.#chosen = median(copy) > median(sendfile) * COPY_MARGIN ? 'copy' : 'sendfile';
  }
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = sorted.length >> 1;
  return sorted.length % 2
    ? (sorted[middle] as number)
    : ((sorted[middle - 1] as number) + (sorted[middle] as number)) / 2;
}

/** The meter of this process's metered sends (the registry's blob downloads). */
export const kernelSends = new SendMeter();

/**
 * Sends `length` bytes of the open file `fileFd` from offset `position` to `socket` on a thread of its
 * own, with sendfile(2) or by copying (`range.way`, default sendfile). The caller guarantees nothing
 * else is queued on the socket and writes nothing to it until this settles. `signal` stops the send
 * (within 200 ms) with a KernelSendError 'ECANCELED'. Resolves once every byte is in the socket's send
 * buffer. Throws when `kernelSendEnabled()` is false.
 */
export function kernelSend(
  socket: Socket,
  range: { fileFd: number; position: number; length: number; way?: SendWay },
  signal: AbortSignal,
): Promise<void> {
  const { native, problem } = load();
  if (!native) return Promise.reject(new KernelSendUnavailable(`No kernel send: ${problem}`));
  const socketFd = socketFdOf(socket);
  if (socketFd === undefined)
    return Promise.reject(new KernelSendUnavailable('The socket has no descriptor'));
  const cancel = new Int32Array(1);
  const onAbort = (): void => {
    Atomics.store(cancel, 0, 1);
  };
  return new Promise<void>((resolve, reject) => {
    signal.addEventListener('abort', onAbort, { once: true });
    if (signal.aborted) onAbort();
    try {
      native.send(
        socketFd,
        range.fileFd,
        range.position,
        range.length,
        cancel,
        (error, sent) => {
          signal.removeEventListener('abort', onAbort);
          if (error) reject(new KernelSendError(error, sent));
          else resolve();
        },
        range.way === 'copy',
      );
    } catch (error) {
      // Bad arguments (a bug here) or no descriptor or thread to be had (EMFILE, EAGAIN): nothing sent.
      signal.removeEventListener('abort', onAbort);
      const message = error instanceof Error ? error.message : String(error);
      const found = (error as { code?: unknown }).code;
      const code = typeof found === 'string' ? found : undefined;
      reject(
        new KernelSendUnavailable(`The kernel send did not start: ${code ? `${code}: ` : ''}${message}`, {
          cause: error,
          code,
        }),
      );
    }
  });
}

/** The descriptor of a plain TCP socket (node keeps it on the handle); undefined for TLS or none. */
function socketFdOf(socket: Socket): number | undefined {
  if ((socket as Socket & { encrypted?: boolean }).encrypted) return undefined;
  const fd = (socket as Socket & { _handle?: { fd?: unknown } })._handle?.fd;
  return typeof fd === 'number' && fd >= 0 ? fd : undefined;
}

/** Whether bytes can go straight to this socket: plain TCP, open, nothing queued in node or libuv. */
export function socketIsIdle(socket: Socket): boolean {
  if (socket.destroyed || !socket.writable || socket.writableLength > 0) return false;
  const handle = (socket as Socket & { _handle?: { writeQueueSize?: unknown } })._handle;
  return socketFdOf(socket) !== undefined && handle?.writeQueueSize === 0;
}
