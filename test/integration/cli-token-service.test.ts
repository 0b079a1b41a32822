// How the client CLI meets registries with Docker token auth that ask for more than it guessed, token
// services that fail for a moment, refuse or are asked by parallel transfers at once, and registries that
// ask to be retried much later. Failures are exit code 1 with one "Error: …" line.
import assert from 'node:assert/strict';
import type { IncomingMessage } from 'node:http';
import { join } from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import {
  airlock,
  airlockOk,
  assertOneLineError,
  cliEnv,
  sendJson,
  serveContent,
  startFakeRegistry,
  type FakeHandler,
  type FakeRegistry,
} from '../helpers/cli.js';
import {
  buildImage,
  nonce,
  sha256,
  tempDirForTest,
  writeOciLayout,
  type BuiltImage,
} from '../helpers/interop.js';
import { MediaType } from '../../src/oci/index.js';

interface TokenRegistryOptions {
  /** Statuses the first token requests get (one each), before tokens are handed out. */
  readonly tokenFaults?: readonly number[];
  /** Milliseconds before each token is handed out, so that parallel requests overlap. Default: 0. */
  readonly tokenDelayMs?: number;
  /** What a call to the registry needs. Default: pull for GET and HEAD, `*` for DELETE, else pull,push. */
  readonly need?: (req: IncomingMessage, repository: string) => string;
  /** Answers a call that holds the scope it needs. */
  readonly serve: FakeHandler;
}

interface TokenRegistry {
  readonly fake: FakeRegistry;
  /** The scopes of each token request, in order (faulted ones too). */
  readonly asked: string[][];
}

const USERS: Record<string, { password: string; actions?: readonly string[] }> = {
  alice: { password: 'right' },
  // bob may only read: the token service grants him pull and nothing else.
  bob: { password: 'right', actions: ['pull'] },
};

/**
 * A fake registry with Docker token auth, as Harbor and ACR answer: /token hands out tokens for the
 * scopes asked (all of them to alice, only pull to bob, none without credentials: 401); a registry call
 * without a token holding the scope it needs is challenged with that scope (`error="insufficient_scope"`
 * when it had a token).
 */
async function startTokenRegistry(t: TestContext, options: TokenRegistryOptions): Promise<TokenRegistry> {
  const asked: string[][] = [];
  const granted = new Map<string, string[]>();
  const need =
    options.need ??
    ((req: IncomingMessage, repository: string): string => {
      if (req.method === 'GET' || req.method === 'HEAD') return `repository:${repository}:pull`;
      return `repository:${repository}:${req.method === 'DELETE' ? '*' : 'pull,push'}`;
    });
  const fake = await startFakeRegistry(t, async (req, res, url) => {
    if (url.pathname === '/token') {
      const scopes = url.searchParams.getAll('scope');
      asked.push(scopes);
      const fault = options.tokenFaults?.[asked.length - 1];
      if (fault !== undefined) {
        sendJson(res, fault, { details: 'busy' }, { 'retry-after': '1' });
        return true;
      }
      const [user = '', password] = Buffer.from(
        (req.headers.authorization ?? '').replace(/^Basic /, ''),
        'base64',
      )
        .toString()
        .split(':');
      const account = USERS[user];
      if (!account || account.password !== password) {
        sendJson(res, 401, { details: 'who are you?' });
        return true;
      }
      await new Promise((resolve) => setTimeout(resolve, options.tokenDelayMs ?? 0));
      const token = `tok-${asked.length}`;
      const allowed = account.actions;
      granted.set(
        token,
        allowed ? scopes.map((s) => `${s.slice(0, s.lastIndexOf(':'))}:${allowed.join(',')}`) : [...scopes],
      );
      sendJson(res, 200, { token, expires_in: 300 });
      return true;
    }
    const repository = /^\/v2\/(.+?)\/(manifests|blobs|tags)\//.exec(url.pathname)?.[1];
    if (repository !== undefined) {
      const wanted = need(req, repository);
      const resource = wanted.slice(0, wanted.lastIndexOf(':'));
      const token = /^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1];
      const held = new Set(
        (granted.get(token ?? '') ?? [])
          .filter((s) => s.slice(0, s.lastIndexOf(':')) === resource)
          .flatMap((s) => s.slice(s.lastIndexOf(':') + 1).split(',')),
      );
      const actions = wanted.slice(wanted.lastIndexOf(':') + 1).split(',');
      if (!actions.every((action) => held.has(action))) {
        const error = token === undefined ? '' : ',error="insufficient_scope"';
        sendJson(
          res,
          401,
          { errors: [{ code: 'UNAUTHORIZED', message: 'authentication required' }] },
          {
            'www-authenticate': `Bearer realm="http://${req.headers.host ?? ''}/token",service="fake",scope="${wanted}"${error}`,
          },
        );
        return true;
      }
    }
    return options.serve(req, res, url);
  });
  return { fake, asked };
}

/** An image with `layers` small layers, and a handler that serves it by digest and as org/app:v1. */
function image(layers: number): BuiltImage & { serve: FakeHandler } {
  const built = buildImage({
    layers: Array.from({ length: layers }, (_, i) => [{ path: `f${i}.txt`, content: `${i} ${nonce()}` }]),
  });
  const entry = { bytes: built.bytes, mediaType: MediaType.OciManifest };
  const serve = serveContent({
    manifests: new Map([
      ['v1', entry],
      [built.descriptor.digest, entry],
    ]),
    blobs: built.blobs,
  });
  return { ...built, serve };
}

describe('airlock CLI against token services', { concurrency: 2 }, () => {
  it('asks the token service for the scope the challenge names (repository:*, pull,metadata) besides its own', async (t) => {
    const env = await cliEnv(t);
    const built = image(1);
    const digest = built.descriptor.digest;
    const registry = await startTokenRegistry(t, {
      serve: (req, res, url) => {
        if (req.method === 'DELETE' && url.pathname === `/v2/org/app/manifests/${digest}`) {
          res.writeHead(202, { 'content-length': 0 });
          res.end();
          return true;
        }
        return built.serve(req, res, url);
      },
    });
    const login = ['-u', 'alice', '--password-stdin'];
    await airlockOk(env, ['delete', `${registry.fake.host}/org/app@${digest}`, ...login], { input: 'right' });
    assert.deepEqual(registry.asked.at(-1), [
      'repository:org/app:delete',
      'repository:org/app:pull,push',
      'repository:org/app:*',
    ]);
    assert.equal(registry.fake.requests.filter((r) => r.method === 'DELETE').length, 2);

    // A registry that wants `pull,metadata` to read.
    const metadata = await startTokenRegistry(t, {
      need: (_req, repository) => `repository:${repository}:pull,metadata`,
      serve: built.serve,
    });
    const result = await airlockOk(env, ['manifest', `${metadata.fake.host}/org/app:v1`, ...login], {
      input: 'right',
    });
    assert.equal(sha256(result.stdout), digest);
    assert.deepEqual(metadata.asked, [['repository:org/app:pull', 'repository:org/app:pull,metadata']]);
  });

  it('does not tell a user whose token lacks the scope to log in, and names the scope', async (t) => {
    const env = await cliEnv(t);
    const built = image(1);
    const registry = await startTokenRegistry(t, { serve: built.serve });
    const ref = `${registry.fake.host}/org/app@${built.descriptor.digest}`;
    const result = await airlock(env, ['delete', ref, '-u', 'bob', '--password-stdin'], { input: 'right' });
    assertOneLineError(result, {
      pattern:
        /DELETE .* answered HTTP 401: UNAUTHORIZED authentication required \(the token service did not grant user "bob" the access the registry asks for, "repository:org\/app:\*"\)$/,
    });
    assert.doesNotMatch(result.stderr, /airlock login/);
    // Without credentials, logging in is the advice.
    assertOneLineError(await airlock(env, ['manifest', `${registry.fake.host}/org/app:v1`]), {
      pattern: /refused anonymous access.*airlock login/,
    });
  });

  it('says credentials are needed and how to give them when the token service refuses anonymous access', async (t) => {
    const env = await cliEnv(t);
    const built = image(1);
    const registry = await startTokenRegistry(t, { serve: built.serve });
    const host = registry.fake.host;
    const anonymous = await airlock(env, ['manifest', `${host}/org/app:v1`]);
    assertOneLineError(anonymous, {
      pattern: new RegExp(
        `^Error: The token service at ${host} refused anonymous access \\(HTTP 401\\): credentials are needed; log in with "airlock login ${host}" or pass --username/--password-stdin$`,
      ),
    });
    const wrong = await airlock(env, ['manifest', `${host}/org/app:v1`, '-u', 'alice', '--password-stdin'], {
      input: 'wrong',
    });
    assertOneLineError(wrong, {
      pattern: new RegExp(
        `^Error: The token service at ${host} refused the credentials of user "alice" \\(HTTP 401\\)`,
      ),
    });
  });

  it('retries a token service that answers 503, then 429 with Retry-After, and then hands out a token', async (t) => {
    const env = await cliEnv(t);
    const built = image(1);
    const registry = await startTokenRegistry(t, { tokenFaults: [503, 429], serve: built.serve });
    const result = await airlockOk(
      env,
      ['manifest', `${registry.fake.host}/org/app:v1`, '-u', 'alice', '--password-stdin'],
      { input: 'right' },
    );
    assert.equal(sha256(result.stdout), built.descriptor.digest);
    const tokens = registry.fake.requests.filter((r) => r.url.startsWith('/token'));
    assert.equal(tokens.length, 3);
    const [, second, third] = tokens;
    assert.ok(second && third);
    assert.ok(third.at - second.at >= 950, `Retry-After: 1 waited ${third.at - second.at} ms`);
  });

  it('asks for one token when parallel blob transfers meet the same challenge at once', async (t) => {
    const env = await cliEnv(t);
    const work = await tempDirForTest(t, 'cli-token-parallel-');
    const built = image(5);
    const layout = join(work, 'layout');
    await writeOciLayout(layout, { tag: 'v1', artifact: built });
    const registry = await startTokenRegistry(t, {
      tokenDelayMs: 200,
      serve: (req, res, url) => {
        // Every blob is there already (HEAD answers 200); the manifest is taken.
        if (req.method === 'HEAD') return built.serve(req, res, url);
        if (req.method === 'PUT' && url.pathname.includes('/manifests/')) {
          res.writeHead(201, { 'content-length': 0 });
          res.end();
          return true;
        }
        return false;
      },
    });
    await airlockOk(
      env,
      [
        'copy',
        `oci:${layout}:v1`,
        `${registry.fake.host}/org/app:v1`,
        '-j',
        '4',
        '-u',
        'alice',
        '--password-stdin',
      ],
      { input: 'right' },
    );
    const heads = registry.fake.requests.filter((r) => r.method === 'HEAD');
    assert.ok(heads.length >= 6, `${heads.length} HEADs`);
    assert.deepEqual(registry.asked, [['repository:org/app:pull'], ['repository:org/app:pull,push']]);
  });
});

describe('airlock CLI against a registry that asks to be retried much later', () => {
  it('fails at once, saying how long the registry asked to wait, when Retry-After is over a minute', async (t) => {
    const env = await cliEnv(t);
    const fake = await startFakeRegistry(t, (_req, res) => {
      sendJson(
        res,
        429,
        { errors: [{ code: 'TOOMANYREQUESTS', message: 'slow down' }] },
        { 'retry-after': '3600' },
      );
    });
    const started = Date.now();
    assertOneLineError(await airlock(env, ['tags', `${fake.host}/org/app`]), {
      pattern:
        /answered HTTP 429: TOOMANYREQUESTS slow down; the registry asked to retry after 3600 s, longer than the 60 s Airlock waits$/,
    });
    assert.equal(fake.requests.length, 1);
    assert.ok(Date.now() - started < 10_000, 'no waiting');
  });
});
