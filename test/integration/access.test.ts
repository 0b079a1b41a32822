import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { SignJWT, generateKeyPair } from 'jose';
import { startTestRegistry, type TestRegistry } from '../helpers/in-process.js';
import { blob, image } from '../helpers/oci-fixtures.js';
import { errorCode } from '../helpers/registry-client.js';
import { run, startAirlockProcess } from '../helpers/processes.js';
import { findPeer } from '../helpers/peers.js';

const ADMIN_PASSWORD = 'admin-password-1';
const basic = (user: string, password: string): string =>
  `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;

describe('access control', () => {
  let reg: TestRegistry;
  const img = image();
  const secretImg = image();
  let robotSecret = '';
  const headers = new Map<string, string>();

  async function call(
    who: string,
    method: string,
    path: string,
    init: { body?: Buffer | string; headers?: Record<string, string> } = {},
  ): Promise<Response> {
    const auth = headers.get(who);
    return fetch(`${reg.url}${path}`, {
      method,
      ...(init.body === undefined ? {} : { body: init.body }),
      headers: { ...(auth ? { authorization: auth } : {}), ...init.headers },
    });
  }

  async function api(method: string, path: string, body?: unknown): Promise<Response> {
    return call(
      'admin',
      method,
      path,
      body === undefined
        ? {}
        : { body: JSON.stringify(body), headers: { 'content-type': 'application/json' } },
    );
  }

  async function push(who: string, repo: string, image_: typeof img, tag: string): Promise<number> {
    for (const b of [image_.config, ...image_.layers]) {
      const res = await call(who, 'POST', `/v2/${repo}/blobs/uploads/?digest=${b.digest}`, { body: b.bytes });
      await res.arrayBuffer();
      if (res.status !== 201) return res.status;
    }
    const res = await call(who, 'PUT', `/v2/${repo}/manifests/${tag}`, {
      body: image_.manifest,
      headers: { 'content-type': image_.mediaType },
    });
    await res.arrayBuffer();
    return res.status;
  }

  before(async () => {
    process.env.AIRLOCK_ADMIN_PASSWORD = ADMIN_PASSWORD;
    reg = await startTestRegistry({ initAdmin: 'admin' });
    delete process.env.AIRLOCK_ADMIN_PASSWORD;
    headers.set('admin', basic('admin', ADMIN_PASSWORD));
    for (const [name, role, scope] of [
      ['alice', 'reader', 'p/app'],
      ['bob', 'writer', 'p/'],
      ['carol', 'admin', 'p/app'],
    ] as const) {
      assert.equal((await api('POST', '/api/v1/users', { name, password: `${name}-password` })).status, 201);
      assert.equal(
        (await api('POST', '/api/v1/bindings', { member: `user:${name}`, role, scope })).status,
        201,
      );
      headers.set(name, basic(name, `${name}-password`));
    }
    const robot = await api('POST', '/api/v1/robots', { name: 'ci', description: 'pipeline' });
    robotSecret = ((await robot.json()) as { secret: string }).secret;
    headers.set('robot', basic('robot$ci', robotSecret));
    assert.equal(
      (await api('POST', '/api/v1/bindings', { member: 'robot:ci', role: 'writer', scope: 'p/app' })).status,
      201,
    );
    assert.equal(await push('admin', 'p/app', img, 'v1'), 201);
    assert.equal(await push('admin', 'q/secret', secretImg, 'v1'), 201);
  });
  after(async () => reg.dispose());

  // who → [pull p/app, push p/app, delete p/app, pull q/secret]
  const matrix: Array<[string, number, number, number, number]> = [
    ['anonymous', 401, 401, 401, 401],
    ['alice', 200, 403, 403, 403],
    ['bob', 200, 201, 403, 403],
    ['carol', 200, 201, 202, 403],
    ['robot', 200, 201, 403, 403],
    ['admin', 200, 201, 202, 200],
  ];
  for (const [who, pull, pushStatus, del, other] of matrix) {
    it(`gives ${who}: pull ${pull}, push ${pushStatus}, delete ${del}, pull elsewhere ${other}`, async () => {
      const get = await call(who, 'GET', '/v2/p/app/manifests/v1');
      await get.arrayBuffer();
      assert.equal(get.status, pull);
      if (pull === 401)
        assert.match(
          get.headers.get('www-authenticate') ?? '',
          /^Bearer realm="http:\/\/127\.0\.0\.1:\d+\/auth\/token",service="airlock",scope="repository:p\/app:pull"/,
        );
      const fresh = image();
      assert.equal(await push(who, 'p/app', fresh, `t-${who}`), pushStatus);
      const target = del === 202 ? fresh : img;
      if (del === 202) assert.equal(await push('admin', 'p/app', target, `d-${who}`), 201);
      const remove = await call(who, 'DELETE', `/v2/p/app/manifests/${target.digest}`);
      await remove.arrayBuffer();
      assert.equal(remove.status, del);
      const elsewhere = await call(who, 'GET', '/v2/q/secret/tags/list');
      await elsewhere.arrayBuffer();
      assert.equal(elsewhere.status, other);
      // Tags, referrers and blob reads need the same pull right as manifests.
      for (const path of [
        '/v2/p/app/tags/list',
        `/v2/p/app/referrers/${img.digest}`,
        `/v2/p/app/blobs/${img.config.digest}`,
      ]) {
        const res = await call(who, 'GET', path);
        await res.arrayBuffer();
        assert.equal(res.status, pull, path);
      }
      // Upload sessions need push; a blob delete needs delete.
      const session = await call(who, 'POST', '/v2/p/app/blobs/uploads/');
      await session.arrayBuffer();
      assert.equal(session.status, pushStatus === 201 ? 202 : pushStatus);
      const blobDelete = await call(who, 'DELETE', `/v2/p/app/blobs/${'sha256:' + '0'.repeat(64)}`);
      await blobDelete.arrayBuffer();
      assert.equal(blobDelete.status, del === 202 ? 404 : del);
    });
  }

  it('answers 403 DENIED to a known user and 401 UNAUTHORIZED to a wrong password', async () => {
    const denied = await call('alice', 'GET', '/v2/q/secret/manifests/v1');
    assert.equal(await errorCode(denied), 'DENIED');
    headers.set('wrong', basic('alice', 'not-her-password'));
    const wrong = await call('wrong', 'GET', '/v2/p/app/manifests/v1');
    assert.equal(wrong.status, 401);
    assert.equal(await errorCode(wrong), 'UNAUTHORIZED');
  });

  it('filters the catalog to what the caller may see', async () => {
    const list = async (who: string) =>
      ((await (await call(who, 'GET', '/v2/_catalog')).json()) as { repositories: string[] }).repositories;
    assert.deepEqual(await list('alice'), ['p/app']);
    assert.deepEqual(await list('admin'), ['p/app', 'q/secret']);
    assert.equal((await call('anonymous', 'GET', '/v2/_catalog')).status, 401);
  });

  it("renews a blob's garbage-collection time on HEAD only for callers that may push", async () => {
    const b = blob(`renewal ${Date.now()}`);
    const up = await call('admin', 'POST', `/v2/p/app/blobs/uploads/?digest=${b.digest}`, { body: b.bytes });
    assert.equal(up.status, 201);
    const db = new Database(join(reg.dataDir, 'airlock.db'));
    try {
      const old = Date.now() - 2 * 60 * 60 * 1000;
      db.prepare('UPDATE blob_links SET created_at = ? WHERE repository = ? AND digest = ?').run(
        old,
        'p/app',
        b.digest,
      );
      const linkTime = (): number =>
        (
          db
            .prepare('SELECT created_at FROM blob_links WHERE repository = ? AND digest = ?')
            .get('p/app', b.digest) as {
            created_at: number;
          }
        ).created_at;
      // A reader's HEAD (a pull) must not keep unreferenced content alive.
      assert.equal((await call('alice', 'HEAD', `/v2/p/app/blobs/${b.digest}`)).status, 200);
      assert.equal(linkTime(), old);
      // A writer's HEAD is a push about to skip the blob.
      assert.equal((await call('bob', 'HEAD', `/v2/p/app/blobs/${b.digest}`)).status, 200);
      assert.ok(linkTime() > old);
    } finally {
      db.close();
    }
  });

  it('mounts only from a repository the caller may read, else opens a normal upload', async () => {
    const b = blob('mount source');
    const up = await call('admin', 'POST', `/v2/q/secret/blobs/uploads/?digest=${b.digest}`, {
      body: b.bytes,
    });
    assert.equal(up.status, 201);
    const bobMount = await call('bob', 'POST', `/v2/p/app/blobs/uploads/?mount=${b.digest}&from=q/secret`);
    assert.equal(bobMount.status, 202);
    const adminMount = await call(
      'admin',
      'POST',
      `/v2/p/app/blobs/uploads/?mount=${b.digest}&from=q/secret`,
    );
    assert.equal(adminMount.status, 201);
  });

  it('issues tokens cut down to the roles, which then allow exactly that', async () => {
    const res = await call(
      'alice',
      'GET',
      '/auth/token?service=airlock&scope=repository:p/app:pull,push&scope=repository:q/secret:pull',
    );
    assert.equal(res.status, 200);
    const { token, expires_in } = (await res.json()) as { token: string; expires_in: number };
    assert.equal(expires_in, 300);
    const claims = JSON.parse(Buffer.from(token.split('.')[1] ?? '', 'base64url').toString()) as {
      access: unknown;
      sub: string;
    };
    assert.equal(claims.sub, 'user:alice');
    assert.deepEqual(claims.access, [
      { type: 'repository', name: 'p/app', actions: ['pull'] },
      { type: 'repository', name: 'q/secret', actions: [] },
    ]);
    headers.set('alice-token', `Bearer ${token}`);
    assert.equal((await call('alice-token', 'GET', '/v2/p/app/manifests/v1')).status, 200);
    const put = await call('alice-token', 'POST', '/v2/p/app/blobs/uploads/');
    assert.equal(put.status, 401);
    assert.match(put.headers.get('www-authenticate') ?? '', /error="insufficient_scope"/);
    const form = new URLSearchParams({
      grant_type: 'password',
      username: 'bob',
      password: 'bob-password',
      service: 'airlock',
      scope: 'repository:p/x:pull,push',
    });
    const post = await fetch(`${reg.url}/auth/token`, {
      method: 'POST',
      body: form,
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
    });
    assert.equal(post.status, 200);
    assert.ok(((await post.json()) as { access_token: string }).access_token);
  });

  it('rejects forged, expired, wrong-audience, wrong-issuer and alg:none tokens', async () => {
    const { privateKey } = await generateKeyPair('ES256');
    const access = [{ type: 'repository', name: 'p/app', actions: ['pull', 'push', 'delete'] }];
    const now = Math.floor(Date.now() / 1000);
    const forged = await new SignJWT({ access })
      .setProtectedHeader({ alg: 'ES256', kid: 'x' })
      .setIssuer('airlock')
      .setAudience('airlock')
      .setSubject('user:admin')
      .setExpirationTime(now + 60)
      .sign(privateKey);
    const none = `${Buffer.from(JSON.stringify({ alg: 'none', typ: 'JWT' })).toString('base64url')}.${Buffer.from(JSON.stringify({ iss: 'airlock', aud: 'airlock', sub: 'user:admin', exp: now + 60, access })).toString('base64url')}.`;
    const real = (await (
      await call('admin', 'GET', '/auth/token?service=airlock&scope=repository:p/app:pull')
    ).json()) as { token: string };
    const [h, p] = real.token.split('.');
    const tampered = `${h}.${Buffer.from(JSON.stringify({ ...JSON.parse(Buffer.from(p ?? '', 'base64url').toString()), access })).toString('base64url')}.${real.token.split('.')[2]}`;
    const issue = async (claims: { iss: string; aud: string; exp: number }) => {
      const t = reg.access.tokens;
      void t;
      const { privateKey: k } = await generateKeyPair('ES256');
      return new SignJWT({ access })
        .setProtectedHeader({ alg: 'ES256' })
        .setIssuer(claims.iss)
        .setAudience(claims.aud)
        .setSubject('user:admin')
        .setExpirationTime(claims.exp)
        .sign(k);
    };
    for (const token of [
      forged,
      none,
      tampered,
      await issue({ iss: 'airlock', aud: 'other', exp: now + 60 }),
      await issue({ iss: 'evil', aud: 'airlock', exp: now + 60 }),
      'not.a.jwt',
    ]) {
      headers.set('forged', `Bearer ${token}`);
      const res = await call('forged', 'GET', '/v2/p/app/manifests/v1');
      assert.equal(res.status, 401, token);
      assert.equal(await errorCode(res), 'UNAUTHORIZED');
    }
  });

  it('refuses a revoked robot', async () => {
    const robot = await api('POST', '/api/v1/robots', { name: 'temp' });
    const { secret } = (await robot.json()) as { secret: string };
    await api('POST', '/api/v1/bindings', { member: 'robot:temp', role: 'reader', scope: 'p/app' });
    headers.set('temp', basic('robot$temp', secret));
    assert.equal((await call('temp', 'GET', '/v2/p/app/tags/list')).status, 200);
    const before = (await (
      await call('temp', 'GET', '/auth/token?service=airlock&scope=repository:p/app:pull')
    ).json()) as { token: string };
    assert.equal((await api('DELETE', '/api/v1/robots/temp')).status, 204);
    assert.equal((await call('temp', 'GET', '/v2/p/app/tags/list')).status, 401);
    // Its last token cannot be refreshed into a new one.
    const form = new URLSearchParams({
      grant_type: 'refresh_token',
      refresh_token: before.token,
      service: 'airlock',
      scope: 'repository:p/app:pull,push',
    });
    const refreshed = await fetch(`${reg.url}/auth/token`, {
      method: 'POST',
      body: form,
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
    });
    assert.equal(refreshed.status, 401);
    assert.match(await refreshed.text(), /robot:temp is no longer active/);
  });

  it('rate-limits repeated wrong passwords with 429 TOOMANYREQUESTS', async () => {
    assert.equal((await api('POST', '/api/v1/users', { name: 'eve', password: 'eve-password' })).status, 201);
    headers.set('guess', basic('eve', 'guess'));
    let last = 0;
    for (let i = 0; i < 12; i++) {
      const res = await call('guess', 'GET', '/v2/p/app/tags/list');
      await res.arrayBuffer();
      last = res.status;
    }
    assert.equal(last, 429);
    // Even the right password is refused from this address until the window passes.
    headers.set('eve', basic('eve', 'eve-password'));
    assert.equal((await call('eve', 'GET', '/v2/')).status, 429);
    assert.equal((await call('alice', 'GET', '/v2/')).status, 200);
  });

  it('lets management calls through only for admins of the scope, and audits them', async () => {
    assert.equal(
      (
        await call('alice', 'POST', '/api/v1/bindings', {
          body: JSON.stringify({ member: 'user:alice', role: 'admin', scope: '*' }),
        })
      ).status,
      403,
    );
    const carolGrant = await call('carol', 'POST', '/api/v1/bindings', {
      body: JSON.stringify({ member: 'user:alice', role: 'writer', scope: 'p/app' }),
    });
    assert.equal(carolGrant.status, 201);
    assert.equal(
      (
        await call('carol', 'POST', '/api/v1/bindings', {
          body: JSON.stringify({ member: 'user:carol', role: 'admin', scope: 'q/' }),
        })
      ).status,
      403,
    );
    assert.equal((await call('carol', 'GET', '/api/v1/users')).status, 403);
    const bad = await api('POST', '/api/v1/bindings', { member: 'nobody', role: 'reader', scope: 'p/app' });
    assert.equal(bad.status, 400);
    const audit = (await (await api('GET', '/api/v1/audit')).json()) as Array<{
      actor: string;
      action: string;
      target: string;
    }>;
    assert.ok(
      audit.some((e) => e.actor === 'user:carol' && e.action === 'binding.add' && e.target === 'p/app'),
    );
    assert.ok(audit.some((e) => e.actor === 'user:admin' && e.action === 'robot.revoke'));
  });

  it('lets only registry admins collect garbage, and audits a real run (not a dry run)', async () => {
    const body = JSON.stringify({ dryRun: true });
    assert.equal((await call('anonymous', 'POST', '/api/v1/gc', { body })).status, 401);
    assert.equal((await call('alice', 'POST', '/api/v1/gc', { body })).status, 403);
    assert.equal((await call('carol', 'POST', '/api/v1/gc', { body })).status, 403, 'admin of p/app only');
    const dry = await api('POST', '/api/v1/gc', { dryRun: true });
    assert.equal(dry.status, 200);
    assert.equal(((await dry.json()) as { dryRun: boolean }).dryRun, true);
    const real = await api('POST', '/api/v1/gc', {});
    assert.equal(real.status, 200);
    await real.arrayBuffer();
    const audit = (await (await api('GET', '/api/v1/audit')).json()) as Array<{ action: string }>;
    assert.equal(audit.filter((e) => e.action === 'gc').length, 1);
    // Content is an hour old at the least before it can go: the images pushed above are still whole.
    const layer = img.layers[0];
    assert.ok(layer);
    const get = await call('admin', 'GET', `/v2/p/app/blobs/${layer.digest}`);
    await get.arrayBuffer();
    assert.equal(get.status, 200);
  });

  it('serves the Harbor artifacts API so the GDC curl | jq recipe works verbatim', async (t) => {
    const curl = findPeer('curl');
    const jq = findPeer('jq');
    if (!curl || !jq) {
      if (process.env.CI) throw new Error('curl and jq are needed; run scripts/install-peers.sh');
      return t.skip('curl or jq missing');
    }
    await push('admin', 'p/app/nested', image(), 'v7');
    const script = [
      `curl -k -s -X GET --header 'Accept: application/json' --header "authorization: Basic $(echo -n admin:\${ADMIN_PASS:?} | base64)"`,
      `"\${HARBOR_URL}/api/v2.0/projects/\${HARBOR_PROJECT:?}/repositories/\${REPOSITORY:?}/artifacts?with_tag=true"`,
      `| jq -r '.[] | select(.tags != null) | .tags[] | {tag: .name, updated:.push_time}'`,
    ].join(' ');
    const result = await run('bash', ['-c', script], {
      env: {
        ADMIN_PASS: ADMIN_PASSWORD,
        HARBOR_URL: reg.url,
        HARBOR_PROJECT: 'p',
        REPOSITORY: 'app%252Fnested',
      },
    });
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /"tag": "v7"/);
    assert.match(result.stdout, /"updated": "\d{4}-\d\d-\d\dT/);
    const page = await call('admin', 'GET', '/api/v2.0/projects/p/repositories?page=1&page_size=1');
    assert.equal(page.headers.get('x-total-count'), '2');
    assert.match(page.headers.get('link') ?? '', /rel="next"/);
  });

  it('keeps passwords, tokens and robot secrets out of the logs', async () => {
    const server = await startAirlockProcess({
      extraArgs: ['--init-admin', 'root', '--log-level', 'trace'],
      env: { AIRLOCK_ADMIN_PASSWORD: 'very-secret-pw' },
    });
    try {
      const auth = basic('root', 'very-secret-pw');
      const token = (await (
        await fetch(`${server.url}/auth/token?service=airlock&scope=repository:a/b:pull`, {
          headers: { authorization: auth },
        })
      ).json()) as { token: string };
      await fetch(`${server.url}/v2/a/b/tags/list`, { headers: { authorization: `Bearer ${token.token}` } });
      const robot = (await (
        await fetch(`${server.url}/api/v1/robots`, {
          method: 'POST',
          headers: { authorization: auth },
          body: JSON.stringify({ name: 'r' }),
        })
      ).json()) as { secret: string };
      await fetch(`${server.url}/v2/`, { headers: { authorization: basic('root', 'wrong-guess') } });
      const logs = server.output();
      assert.match(logs, /"msg":"request"/);
      for (const secret of ['very-secret-pw', token.token, robot.secret, 'wrong-guess', auth.slice(6)])
        assert.ok(!logs.includes(secret), `log contains ${secret.slice(0, 8)}…`);
    } finally {
      await server.stop();
    }
  });
});
