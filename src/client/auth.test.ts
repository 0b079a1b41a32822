import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Authenticator, parseChallenge, unauthorizedHint, withChallengeScopes } from './auth.js';
import type { Credentials } from './credentials.js';
import { ClientError } from './errors.js';
import type { RetryPolicy } from './retry.js';
import { HttpTransport, type HttpResponse } from './transport.js';

interface TokenRequest {
  readonly method: string;
  readonly url: URL;
  readonly headers: IncomingHttpHeaders;
  readonly body: string;
}

/** How the fake token service answers: statuses to answer first (then 200s), and a delay per answer. */
interface TokenServerOptions {
  /** Statuses for the first token requests, in order (one per request); 0 resets the connection. */
  readonly tokenStatuses?: readonly number[];
  /** Status for every token request after `tokenStatuses`. Default: 200. */
  readonly tokenStatus?: number;
  /** Retry-After sent with a non-200 status. Default: none. */
  readonly retryAfter?: string;
  /** Milliseconds before each token answer, so that concurrent requests overlap. Default: 0. */
  readonly delayMs?: number;
  readonly expiresIn?: number;
}

/**
 * A server whose /challenge answers 401 with `challenge` (REALM is replaced by its /token URL), and whose
 * /token hands out tok-1, tok-2… (or answers as `options` say).
 */
async function tokenServer(
  challenge: string,
  options: TokenServerOptions = {},
): Promise<{ url: string; tokens: TokenRequest[] }> {
  const tokens: TokenRequest[] = [];
  let issued = 0;
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      const url = new URL(req.url ?? '/', 'http://fake');
      if (url.pathname === '/token') {
        tokens.push({ method: req.method ?? '', url, headers: req.headers, body });
        const status = options.tokenStatuses?.[tokens.length - 1] ?? options.tokenStatus ?? 200;
        if (status === 0) {
          req.socket.resetAndDestroy();
          return;
        }
        setTimeout(() => {
          const headers = {
            'content-type': 'application/json',
            ...(status !== 200 && options.retryAfter ? { 'retry-after': options.retryAfter } : {}),
          };
          res.writeHead(status, headers);
          res.end(
            status === 200
              ? JSON.stringify({ token: `tok-${++issued}`, expires_in: options.expiresIn ?? 300 })
              : '{}',
          );
        }, options.delayMs ?? 0);
        return;
      }
      res.writeHead(401, {
        'www-authenticate': challenge.replace('REALM', `http://${req.headers.host ?? ''}/token`),
      });
      res.end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  after(() => {
    server.closeAllConnections();
    server.close();
  });
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, tokens };
}

/** A sleep that records what it was asked to wait and returns at once. */
function fakeSleep(): { sleep: (ms: number) => Promise<void>; waits: number[] } {
  const waits: number[] = [];
  return { waits, sleep: (ms) => (waits.push(ms), Promise.resolve()) };
}

async function challengeFrom(transport: HttpTransport, url: string): Promise<HttpResponse> {
  const res = await transport.send({ method: 'GET', url: new URL(`${url}/challenge`) });
  await res.drain();
  return res;
}

function authenticator(
  transport: HttpTransport,
  credentials?: Credentials,
  now?: () => number,
  retry?: RetryPolicy,
): Authenticator {
  return new Authenticator(transport, { credentials, retry, ...(now ? { now } : {}) });
}

describe('parseChallenge', () => {
  it('reads Bearer and Basic challenges with quoted, escaped and bare parameters', () => {
    assert.deepEqual(
      parseChallenge(
        'Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push"',
      ),
      {
        scheme: 'bearer',
        params: {
          realm: 'https://auth.example/token',
          service: 'registry.example',
          scope: 'repository:a/b:pull,push',
        },
      },
    );
    assert.deepEqual(parseChallenge('Basic realm="a \\"quoted\\" realm"'), {
      scheme: 'basic',
      params: { realm: 'a "quoted" realm' },
    });
    assert.deepEqual(parseChallenge('bearer Realm=https://x/token, Service=reg'), {
      scheme: 'bearer',
      params: { realm: 'https://x/token', service: 'reg' },
    });
  });

  it('returns undefined for nothing and for schemes it does not speak', () => {
    for (const header of [undefined, '', 'Negotiate abc', 'Digest realm="x"'])
      assert.equal(parseChallenge(header), undefined);
  });
});

describe('Authenticator', () => {
  it('answers Basic with the credentials, and gives up (undefined) without them', async () => {
    const { url } = await tokenServer('Basic realm="fake"');
    const transport = new HttpTransport();
    try {
      const withCredentials = authenticator(transport, { username: 'alice', password: 'pw' });
      const expected = `Basic ${Buffer.from('alice:pw').toString('base64')}`;
      assert.equal(await withCredentials.respond(await challengeFrom(transport, url), []), expected);
      assert.equal(withCredentials.header(['anything']), expected);
      const anonymous = authenticator(transport);
      assert.equal(await anonymous.respond(await challengeFrom(transport, url), []), undefined);
    } finally {
      transport.close();
    }
  });

  it('fetches a Bearer token with service and scopes, sends Basic credentials there, and caches it per scope', async () => {
    const { url, tokens } = await tokenServer('Bearer realm="REALM",service="fake-registry"');
    const transport = new HttpTransport();
    try {
      const auth = authenticator(transport, { username: 'alice', password: 'pw' });
      const pull = ['repository:org/app:pull'];
      const push = ['repository:org/app:pull,push', 'repository:org/base:pull'];
      assert.equal(auth.header(pull), undefined);
      assert.equal(await auth.respond(await challengeFrom(transport, url), pull), 'Bearer tok-1');
      assert.equal(auth.header(pull), 'Bearer tok-1');
      assert.equal(auth.header(push), undefined, 'another scope needs another token');
      assert.equal(await auth.prepare(push), 'Bearer tok-2');
      assert.equal(auth.header(push), 'Bearer tok-2');
      assert.equal(tokens.length, 2);
      assert.equal(tokens[0]?.url.searchParams.get('service'), 'fake-registry');
      assert.deepEqual(tokens[0]?.url.searchParams.getAll('scope'), pull);
      assert.deepEqual(tokens[1]?.url.searchParams.getAll('scope'), push);
      assert.equal(tokens[0]?.headers.authorization, `Basic ${Buffer.from('alice:pw').toString('base64')}`);
    } finally {
      transport.close();
    }
  });

  it('asks for a new token shortly before the old one expires', async () => {
    const { url, tokens } = await tokenServer('Bearer realm="REALM"', { expiresIn: 60 });
    const transport = new HttpTransport();
    let now = 1_000_000;
    try {
      const auth = authenticator(transport, undefined, () => now);
      const scopes = ['repository:org/app:pull'];
      await auth.respond(await challengeFrom(transport, url), scopes);
      now += 54_000;
      assert.equal(auth.header(scopes), 'Bearer tok-1');
      now += 2_000;
      assert.equal(auth.header(scopes), undefined);
      assert.equal(await auth.prepare(scopes), 'Bearer tok-2');
      assert.equal(
        tokens[0]?.headers.authorization,
        undefined,
        'anonymous token requests carry no credentials',
      );
    } finally {
      transport.close();
    }
  });

  it('trades an identity token with a POSTed refresh_token grant', async () => {
    const { url, tokens } = await tokenServer('Bearer realm="REALM",service="fake-registry"');
    const transport = new HttpTransport();
    try {
      const auth = authenticator(transport, { identityToken: 'refresh-me' });
      assert.equal(
        await auth.respond(await challengeFrom(transport, url), ['repository:org/app:pull']),
        'Bearer tok-1',
      );
      assert.equal(tokens[0]?.method, 'POST');
      const form = new URLSearchParams(tokens[0]?.body);
      assert.equal(form.get('grant_type'), 'refresh_token');
      assert.equal(form.get('refresh_token'), 'refresh-me');
      assert.equal(form.get('service'), 'fake-registry');
      assert.equal(form.get('scope'), 'repository:org/app:pull');
    } finally {
      transport.close();
    }
  });

  it('turns a refusal of given credentials at the token service into UNAUTHORIZED naming the service and user', async () => {
    const { url } = await tokenServer('Bearer realm="REALM"', { tokenStatus: 401 });
    const transport = new HttpTransport();
    try {
      const auth = authenticator(transport, { username: 'alice', password: 'wrong' });
      await assert.rejects(
        auth.respond(await challengeFrom(transport, url), []),
        (e: unknown) =>
          e instanceof ClientError &&
          e.code === 'UNAUTHORIZED' &&
          e.status === 401 &&
          /^The token service at 127\.0\.0\.1:\d+ refused the credentials of user "alice" \(HTTP 401\); check the user name and password$/.test(
            e.message,
          ),
      );
      await assert.rejects(
        authenticator(transport, { identityToken: 'stale' }).respond(await challengeFrom(transport, url), []),
        /refused the saved identity token \(HTTP 401\); log in again with "airlock login 127\.0\.0\.1:\d+"$/,
      );
      const noRealm = await tokenServer('Bearer service="x"');
      await assert.rejects(auth.respond(await challengeFrom(transport, noRealm.url), []), /named no realm/);
    } finally {
      transport.close();
    }
  });

  it('says credentials are needed, and how to give them, when the token service refuses anonymous access', async () => {
    const transport = new HttpTransport();
    try {
      for (const status of [401, 403]) {
        const { url } = await tokenServer('Bearer realm="REALM"', { tokenStatus: status });
        const host = new URL(url).host;
        await assert.rejects(
          authenticator(transport).respond(await challengeFrom(transport, url), ['repository:a:pull']),
          (e: unknown) =>
            e instanceof ClientError &&
            e.code === 'UNAUTHORIZED' &&
            e.status === status &&
            e.message ===
              `The token service at ${host} refused anonymous access (HTTP ${status}): credentials are needed; log in with "airlock login ${host}" or pass --username/--password-stdin`,
        );
      }
    } finally {
      transport.close();
    }
  });

  it("asks for the challenge's scope besides the caller's, and sends that token for the caller's scopes later", async () => {
    const { url, tokens } = await tokenServer(
      'Bearer realm="REALM",service="fake-registry",scope="repository:org/app:*",error="insufficient_scope"',
    );
    const transport = new HttpTransport();
    try {
      const auth = authenticator(transport, { username: 'alice', password: 'pw' });
      const remove = ['repository:org/app:delete', 'repository:org/app:pull,push'];
      assert.equal(await auth.respond(await challengeFrom(transport, url), remove), 'Bearer tok-1');
      assert.deepEqual(tokens[0]?.url.searchParams.getAll('scope'), [...remove, 'repository:org/app:*']);
      assert.equal(auth.header(remove), 'Bearer tok-1', 'the next call sends the wider token at once');
      assert.equal(tokens.length, 1);
    } finally {
      transport.close();
    }
  });

  it('retries the token service on a reset, 503 and 429 (waiting what Retry-After says), then gives up with the status', async () => {
    const { sleep, waits } = fakeSleep();
    const transport = new HttpTransport();
    try {
      const flaky = await tokenServer('Bearer realm="REALM"', {
        tokenStatuses: [0, 503, 429],
        retryAfter: '2',
      });
      const auth = authenticator(transport, { username: 'alice', password: 'pw' }, undefined, {
        sleep,
        random: () => 0,
      });
      assert.equal(await auth.respond(await challengeFrom(transport, flaky.url), ['s']), 'Bearer tok-1');
      assert.equal(flaky.tokens.length, 4);
      assert.deepEqual(waits, [100, 2000, 2000]);

      waits.length = 0;
      const down = await tokenServer('Bearer realm="REALM"', { tokenStatus: 503 });
      const downAuth = authenticator(transport, undefined, undefined, { sleep, retries: 2 });
      await assert.rejects(
        downAuth.respond(await challengeFrom(transport, down.url), ['s']),
        /^ClientError: The token service at 127\.0\.0\.1:\d+ answered HTTP 503$/,
      );
      assert.equal(down.tokens.length, 3);

      // A refusal is an answer, not a hiccup: asked once.
      const refusing = await tokenServer('Bearer realm="REALM"', { tokenStatus: 401 });
      await assert.rejects(
        authenticator(transport, undefined, undefined, { sleep }).respond(
          await challengeFrom(transport, refusing.url),
          ['s'],
        ),
      );
      assert.equal(refusing.tokens.length, 1);
    } finally {
      transport.close();
    }
  });

  it('shares one token request among concurrent callers of the same scopes', async () => {
    const { url, tokens } = await tokenServer('Bearer realm="REALM"', { delayMs: 100 });
    const transport = new HttpTransport();
    try {
      const auth = authenticator(transport, { username: 'alice', password: 'pw' });
      const pull = ['repository:org/app:pull'];
      const challenge = await challengeFrom(transport, url);
      const four = await Promise.all([1, 2, 3, 4].map(() => auth.respond(challenge, pull)));
      assert.deepEqual(four, Array(4).fill('Bearer tok-1'));
      assert.equal(tokens.length, 1);

      const push = ['repository:org/app:pull,push'];
      const other = ['repository:org/other:pull'];
      const mixed = await Promise.all([auth.prepare(push), auth.prepare(push), auth.prepare(other)]);
      assert.equal(tokens.length, 3, 'one request per set of scopes');
      assert.equal(mixed[0], mixed[1]);
      assert.notEqual(mixed[0], mixed[2]);

      // Once a fetch is done, a new 401 asks again (the token may have been revoked).
      assert.equal(await auth.respond(challenge, pull), 'Bearer tok-4');
    } finally {
      transport.close();
    }
  });
});

describe('withChallengeScopes', () => {
  it("adds the challenge's scopes the caller's do not cover, and nothing else", () => {
    const push = ['repository:a/b:pull,push'];
    assert.deepEqual(withChallengeScopes(push, undefined), push);
    assert.deepEqual(withChallengeScopes(push, 'repository:a/b:pull'), push);
    assert.deepEqual(withChallengeScopes(push, 'repository:a/b:push,pull'), push);
    assert.deepEqual(withChallengeScopes(['repository:a/b:*'], 'repository:a/b:delete'), [
      'repository:a/b:*',
    ]);
    assert.deepEqual(withChallengeScopes(['repository:a/b:pull'], 'repository:a/b:pull,metadata'), [
      'repository:a/b:pull',
      'repository:a/b:pull,metadata',
    ]);
    assert.deepEqual(withChallengeScopes(push, 'repository:a/c:pull registry:catalog:*'), [
      ...push,
      'repository:a/c:pull',
      'registry:catalog:*',
    ]);
    // A host with a port in the name does not confuse the split (only the last colon starts the actions).
    assert.deepEqual(withChallengeScopes(['repository:h:5000/a:pull'], 'repository:h:5000/a:pull'), [
      'repository:h:5000/a:pull',
    ]);
  });
});

describe('unauthorizedHint', () => {
  it('tells to log in, unless credentials were given and the registry said insufficient_scope', async () => {
    const transport = new HttpTransport();
    try {
      const insufficient = await tokenServer(
        'Bearer realm="REALM",scope="repository:a/b:*",error="insufficient_scope"',
      );
      const res = await challengeFrom(transport, insufficient.url);
      const login = ' (log in with "airlock login" or pass --username/--password-stdin)';
      assert.equal(unauthorizedHint(res, undefined), login);
      assert.equal(
        unauthorizedHint(res, { username: 'alice', password: 'pw' }),
        ' (the token service did not grant user "alice" the access the registry asks for, "repository:a/b:*")',
      );
      assert.equal(
        unauthorizedHint(res, { identityToken: 't' }),
        ' (the token service did not grant the saved identity token the access the registry asks for, "repository:a/b:*")',
      );
      const plain = await tokenServer('Bearer realm="REALM",scope="repository:a/b:pull"');
      const unscoped = await challengeFrom(transport, plain.url);
      assert.equal(unauthorizedHint(unscoped, { username: 'alice', password: 'pw' }), login);
    } finally {
      transport.close();
    }
  });
});
