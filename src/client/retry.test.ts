import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ClientError } from './errors.js';
import { isRetryableError, isRetryableStatus, parseRetryAfter, withRetry, type Attempt } from './retry.js';

/** A sleep that records what it was asked to wait and returns at once. */
function fakeSleep(): { sleep: (ms: number) => Promise<void>; waits: number[] } {
  const waits: number[] = [];
  return { waits, sleep: (ms) => (waits.push(ms), Promise.resolve()) };
}

describe('withRetry', () => {
  it('backs off exponentially with jitter between half and all of the step, up to the cap', async () => {
    const { sleep, waits } = fakeSleep();
    const attempts: number[] = [];
    await assert.rejects(
      withRetry<never>(
        (n) => {
          attempts.push(n);
          return Promise.resolve({ retry: new Error(`attempt ${n}`) });
        },
        { retries: 5, baseDelayMs: 100, maxDelayMs: 1000, sleep, random: () => 0 },
      ),
      /attempt 5/,
    );
    assert.deepEqual(attempts, [0, 1, 2, 3, 4, 5]);
    assert.deepEqual(waits, [50, 100, 200, 400, 500]);

    const high = fakeSleep();
    await assert.rejects(
      withRetry<never>(() => Promise.resolve({ retry: new Error('no') }), {
        retries: 3,
        baseDelayMs: 100,
        sleep: high.sleep,
        random: () => 0.999999,
      }),
    );
    assert.deepEqual(
      high.waits.map((w) => Math.round(w)),
      [100, 200, 400],
    );
  });

  it('waits what the server asked (Retry-After) instead of the backoff, beyond maxDelayMs up to maxRetryAfterMs', async () => {
    const { sleep, waits } = fakeSleep();
    const outcomes: Attempt<string>[] = [
      { retry: new Error('429'), afterMs: 1500 },
      { retry: new Error('503'), afterMs: 30_000 },
      { retry: new Error('503'), afterMs: 60_000 },
      { done: 'ok' },
    ];
    const result = await withRetry((n) => Promise.resolve(outcomes[n] ?? { done: 'late' }), {
      sleep,
      maxDelayMs: 10_000,
    });
    assert.equal(result, 'ok');
    assert.deepEqual(waits, [1500, 30_000, 60_000]);
  });

  it('fails at once, saying how long the registry asked to wait, when Retry-After is beyond maxRetryAfterMs', async () => {
    const { sleep, waits } = fakeSleep();
    let attempts = 0;
    const refusal = new ClientError(
      'HTTP',
      'GET r.example/v2/a/tags/list answered HTTP 429: TOOMANYREQUESTS',
      {
        status: 429,
        registryCode: 'TOOMANYREQUESTS',
      },
    );
    await assert.rejects(
      withRetry<never>(
        () => {
          attempts++;
          return Promise.resolve({ retry: refusal, afterMs: 3_600_000 });
        },
        { sleep },
      ),
      (error: unknown) =>
        error instanceof ClientError &&
        error.status === 429 &&
        error.registryCode === 'TOOMANYREQUESTS' &&
        error.cause === refusal &&
        error.message ===
          'GET r.example/v2/a/tags/list answered HTTP 429: TOOMANYREQUESTS; the registry asked to retry after 3600 s, longer than the 60 s Airlock waits',
    );
    assert.equal(attempts, 1);
    assert.deepEqual(waits, []);

    await assert.rejects(
      withRetry<never>(() => Promise.resolve({ retry: new Error('busy'), afterMs: 5_001 }), {
        sleep,
        maxRetryAfterMs: 5_000,
      }),
      /^Error: busy; the registry asked to retry after 6 s, longer than the 5 s Airlock waits$/,
    );
    assert.deepEqual(waits, []);
  });

  it('retries thrown network errors (ECONNRESET, ECONNREFUSED) but throws anything else at once', async () => {
    const { sleep, waits } = fakeSleep();
    let calls = 0;
    const value = await withRetry(
      () => {
        calls++;
        if (calls < 3)
          throw Object.assign(new Error('reset'), { code: calls === 1 ? 'ECONNRESET' : 'ECONNREFUSED' });
        return Promise.resolve({ done: calls });
      },
      { sleep },
    );
    assert.equal(value, 3);
    assert.equal(waits.length, 2);

    let tries = 0;
    await assert.rejects(
      withRetry(
        () => {
          tries++;
          throw new TypeError('a bug, not the network');
        },
        { sleep },
      ),
      TypeError,
    );
    assert.equal(tries, 1);
  });

  it('stops waiting when the signal aborts', async () => {
    const controller = new AbortController();
    const pending = withRetry<never>(() => Promise.resolve({ retry: new Error('later'), afterMs: 60_000 }), {
      signal: controller.signal,
    });
    controller.abort(new Error('cancelled by the user'));
    await assert.rejects(pending, /cancelled by the user/);
  });
});

describe('isRetryableStatus and isRetryableError', () => {
  it('retries 408, 429 and 5xx except 501, 505 and 507 (a full disk)', () => {
    const retryable = [408, 429, 500, 502, 503, 504, 599];
    const final = [200, 201, 301, 400, 401, 403, 404, 405, 409, 416, 501, 505, 507];
    for (const status of retryable) assert.equal(isRetryableStatus(status), true, String(status));
    for (const status of final) assert.equal(isRetryableStatus(status), false, String(status));
  });

  it('knows the network error codes worth another try', () => {
    for (const code of ['ECONNRESET', 'ECONNREFUSED', 'EPIPE', 'ETIMEDOUT', 'EAI_AGAIN', 'ENETUNREACH'])
      assert.equal(isRetryableError(Object.assign(new Error(code), { code })), true, code);
    for (const error of [new Error('plain'), Object.assign(new Error('x'), { code: 'ENOENT' }), 'text'])
      assert.equal(isRetryableError(error), false);
    // The transport's errors: code NETWORK, the system's code in errno.
    const network = (errno: string): ClientError =>
      Object.assign(new ClientError('NETWORK', `Cannot reach x: ${errno}`), { errno });
    assert.equal(isRetryableError(network('ECONNRESET')), true);
    assert.equal(isRetryableError(network('ECONNREFUSED')), true);
    assert.equal(isRetryableError(network('CERT_HAS_EXPIRED')), false);
    assert.equal(isRetryableError(new ClientError('INVALID_INPUT', 'a file ended early')), false);
  });
});

describe('parseRetryAfter', () => {
  it('reads seconds and HTTP dates, and ignores what it cannot read', () => {
    const now = Date.parse('2024-01-01T00:00:00Z');
    assert.equal(parseRetryAfter('3', now), 3000);
    assert.equal(parseRetryAfter('0', now), 0);
    assert.equal(parseRetryAfter('Mon, 01 Jan 2024 00:00:05 GMT', now), 5000);
    assert.equal(parseRetryAfter('Sun, 31 Dec 2023 23:59:00 GMT', now), 0);
    assert.equal(parseRetryAfter(undefined, now), undefined);
    assert.equal(parseRetryAfter('', now), undefined);
    assert.equal(parseRetryAfter('soon', now), undefined);
  });
});
