import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Authenticator, parseChallenge } from './auth.js';
import type { Credentials } from './credentials.js';
import { ClientError } from './errors.js';
import { HttpTransport, type HttpResponse } from './transport.js';

interface TokenRequest {
  readonly method: string;
  readonly url: URL;
  readonly headers: IncomingHttpHeaders;
  readonly body: string;
}

/**
 * A server whose /challenge answers 401 with `challenge` (REALM is replaced by its /token URL), and whose
 * /token hands out tok-1, tok-2… (or answers `tokenStatus`).
 */
async function tokenServer(
  challenge: string,
  options: { tokenStatus?: number; expiresIn?: number } = {},
): Promise<{ url: string; tokens: TokenRequest[] }> {
  const tokens: TokenRequest[] = [];
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      const url = new URL(req.url ?? '/', 'http://fake');
      if (url.pathname === '/token') {
        tokens.push({ method: req.method ?? '', url, headers: req.headers, body });
        const status = options.tokenStatus ?? 200;
        res.writeHead(status, { 'content-type': 'application/json' });
        res.end(
          status === 200
            ? JSON.stringify({ token: `tok-${tokens.length}`, expires_in: options.expiresIn ?? 300 })
            : '{}',
        );
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

async function challengeFrom(transport: HttpTransport, url: string): Promise<HttpResponse> {
  const res = await transport.send({ method: 'GET', url: new URL(`${url}/challenge`) });
  await res.drain();
  return res;
}

function authenticator(
  transport: HttpTransport,
  credentials?: Credentials,
  now?: () => number,
): Authenticator {
  return new Authenticator(transport, { credentials, ...(now ? { now } : {}) });
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

  it('turns a refusal at the token service into UNAUTHORIZED naming the service', async () => {
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
          /token service at 127\.0\.0\.1:\d+ refused the credentials \(HTTP 401\)/.test(e.message),
      );
      const noRealm = await tokenServer('Bearer service="x"');
      await assert.rejects(auth.respond(await challengeFrom(transport, noRealm.url), []), /named no realm/);
    } finally {
      transport.close();
    }
  });
});
