import { ClientError } from './errors.js';

/**
 * How failed requests are retried: network errors, 408, 429 and 5xx, with backoff, jitter and Retry-After.
 * A server's Retry-After is waited out as asked up to `maxRetryAfterMs`; a server that asks for longer
 * fails the call at once, since retrying sooner than it asked would only be refused again.
 */
export interface RetryPolicy {
  /** Attempts after the first. Default: 4. */
  readonly retries?: number;
  /** First backoff in milliseconds, doubled each time. Default: 200. */
  readonly baseDelayMs?: number;
  /** Longest backoff between attempts when the server names no Retry-After. Default: 10 000. */
  readonly maxDelayMs?: number;
  /** Longest Retry-After waited out; a longer one fails at once, naming the wait asked for. Default: 60 000. */
  readonly maxRetryAfterMs?: number;
  /** Sleep function, injectable so tests use a fake clock. Default: setTimeout. */
  readonly sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
  /** Random source for jitter in [0, 1). Default: Math.random. */
  readonly random?: () => number;
}

/** True for HTTP statuses that may succeed when tried again. */
export function isRetryableStatus(status: number): boolean {
  // 501 and 505 will not change; 507 (the registry's disk is full) will not within a retry's backoff.
  return (
    status === 408 || status === 429 || (status >= 500 && status !== 501 && status !== 505 && status !== 507)
  );
}

const RETRYABLE_NETWORK = new Set([
  'ECONNRESET',
  'ECONNREFUSED',
  'EPIPE',
  'ETIMEDOUT',
  'EAI_AGAIN',
  'ENETUNREACH',
  'UND_ERR_SOCKET',
]);

/**
 * True for network failures worth retrying (a reset or refused connection, a timeout): node's errors
 * carry the system code in `code`, the transport's ClientError (code NETWORK) in `errno`.
 */
export function isRetryableError(error: unknown): boolean {
  if (typeof error !== 'object' || error === null) return false;
  const { code, errno } = error as { code?: unknown; errno?: unknown };
  return [code, errno].some((value) => typeof value === 'string' && RETRYABLE_NETWORK.has(value));
}

/** Milliseconds to wait for a `Retry-After` header (seconds or an HTTP date), or undefined. */
export function parseRetryAfter(value: string | undefined, now = Date.now()): number | undefined {
  if (!value) return undefined;
  const seconds = Number(value);
  if (Number.isFinite(seconds) && seconds >= 0) return seconds * 1000;
  const date = Date.parse(value);
  return Number.isNaN(date) ? undefined : Math.max(0, date - now);
}

export function defaultSleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason as Error);
      return;
    }
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(signal?.reason as Error);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** The outcome of one attempt: a value, or a reason to retry (with an optional server-given delay). */
export type Attempt<T> =
  { readonly done: T } | { readonly retry: unknown; readonly afterMs?: number | undefined };

/** `reason`, told that the server asked for a wait longer than the client gives it. */
function tooLongToWait(reason: unknown, afterMs: number, maxMs: number): Error {
  const asked = `the registry asked to retry after ${Math.ceil(afterMs / 1000)} s, longer than the ${Math.round(maxMs / 1000)} s Airlock waits`;
  if (reason instanceof ClientError)
    return new ClientError(reason.code, `${reason.message}; ${asked}`, {
      ...(reason.status === undefined ? {} : { status: reason.status }),
      ...(reason.registryCode === undefined ? {} : { registryCode: reason.registryCode }),
      cause: reason,
    });
  const message = reason instanceof Error ? reason.message : String(reason);
  return new Error(`${message}; ${asked}`, { cause: reason });
}

/**
 * Runs `attempt` until it is done, or until retries run out (then the last reason is thrown).
 * Exceptions from `attempt` are retried only when `retryError` (default {@link isRetryableError}) says so.
 * A Retry-After longer than `maxRetryAfterMs` ends the retries at once (see {@link RetryPolicy}).
 */
export async function withRetry<T>(
  attempt: (n: number) => Promise<Attempt<T>>,
  options: RetryPolicy & { signal?: AbortSignal; retryError?: (error: unknown) => boolean } = {},
): Promise<T> {
  const retryError = options.retryError ?? isRetryableError;
  const retries = options.retries ?? 4;
  const base = options.baseDelayMs ?? 200;
  const max = options.maxDelayMs ?? 10_000;
  const maxRetryAfter = options.maxRetryAfterMs ?? 60_000;
  const sleep = options.sleep ?? defaultSleep;
  const random = options.random ?? Math.random;
  for (let n = 0; ; n++) {
    let outcome: Attempt<T>;
    try {
      outcome = await attempt(n);
    } catch (error) {
      if (!retryError(error) || n >= retries) throw error;
      outcome = { retry: error };
    }
    if ('done' in outcome) return outcome.done;
    const { afterMs } = outcome;
    if (afterMs !== undefined && afterMs > maxRetryAfter)
      throw tooLongToWait(outcome.retry, afterMs, maxRetryAfter);
    if (n >= retries) throw outcome.retry;
    const backoff = Math.min(max, base * 2 ** n);
    const jittered = backoff / 2 + random() * (backoff / 2);
    await sleep(afterMs ?? jittered, options.signal);
  }
}
