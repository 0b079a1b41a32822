import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { SignJWT, exportJWK, generateKeyPair, type JWK, type CryptoKey } from 'jose';
import { startTestRegistry, type TestRegistry } from '../helpers/in-process.js';
import { image } from '../helpers/oci-fixtures.js';
import { TestClient } from '../helpers/registry-client.js';

const ISSUER = 'https://kubernetes.default.svc.cluster.local';
const basic = (user: string, password: string): string =>
  `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;

describe('Kubernetes service-account tokens', () => {
  let reg: TestRegistry;
  let privateKey: CryptoKey;
  let jwk: JWK;
  const admin = basic('admin', 'sa-test-admin');
  const img = image();

  const saToken = async (
    claims: { sub?: string; aud?: string; iss?: string; exp?: number; key?: CryptoKey } = {},
  ): Promise<string> =>
    new SignJWT({ 'kubernetes.io': { namespace: 'config-management-system' } })
      .setProtectedHeader({ alg: 'RS256', kid: 'k1' })
      .setIssuer(claims.iss ?? ISSUER)
      .setAudience(claims.aud ?? 'airlock')
      .setSubject(claims.sub ?? 'system:serviceaccount:config-management-system:root-reconciler')
      .setIssuedAt()
      .setExpirationTime(claims.exp ?? Math.floor(Date.now() / 1000) + 600)
      .sign(claims.key ?? privateKey);

  const get = (path: string, authorization: string) =>
    fetch(`${reg.url}${path}`, { headers: { authorization } });

  before(async () => {
    process.env.AIRLOCK_ADMIN_PASSWORD = 'sa-test-admin';
    reg = await startTestRegistry({ initAdmin: 'admin' });
    delete process.env.AIRLOCK_ADMIN_PASSWORD;
    const keys = await generateKeyPair('RS256');
    privateKey = keys.privateKey;
    jwk = { ...(await exportJWK(keys.publicKey)), kid: 'k1', alg: 'RS256', use: 'sig' };
    const trust = await fetch(`${reg.url}/api/v1/clusters`, {
      method: 'POST',
      headers: { authorization: admin },
      body: JSON.stringify({ name: 'prod', issuer: ISSUER, jwks: { keys: [jwk] } }),
    });
    assert.equal(trust.status, 201);
    const bind = await fetch(`${reg.url}/api/v1/bindings`, {
      method: 'POST',
      headers: { authorization: admin },
      body: JSON.stringify({
        member: 'serviceAccount:config-management-system/root-reconciler@prod',
        role: 'reader',
        scope: 'project/repo/',
      }),
    });
    assert.equal(bind.status, 201);
    const client = new TestClient(reg.url);
    const origRequest = client.request.bind(client);
    client.request = (method, path, init = {}) =>
      origRequest(method, path, { ...init, headers: { ...init.headers, authorization: admin } });
    await client.pushImage('project/repo/ns', img, 'v1');
  });
  after(async () => reg.dispose());

  it('lets a reader service account pull with its projected token, as Bearer or as a password', async () => {
    const token = await saToken();
    assert.equal((await get('/v2/project/repo/ns/manifests/v1', `Bearer ${token}`)).status, 200);
    assert.equal((await get('/v2/project/repo/ns/manifests/v1', basic('serviceaccount', token))).status, 200);
    const viaTokenEndpoint = await get(
      '/auth/token?service=airlock&scope=repository:project/repo/ns:pull,push',
      basic('serviceaccount', token),
    );
    const { token: registryToken } = (await viaTokenEndpoint.json()) as { token: string };
    const claims = JSON.parse(Buffer.from(registryToken.split('.')[1] ?? '', 'base64url').toString()) as {
      sub: string;
      access: Array<{ actions: string[] }>;
    };
    assert.equal(claims.sub, 'serviceAccount:config-management-system/root-reconciler@prod');
    assert.deepEqual(claims.access[0]?.actions, ['pull']);
  });

  it('denies it a push', async () => {
    const token = await saToken();
    const res = await fetch(`${reg.url}/v2/project/repo/ns/blobs/uploads/`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}` },
    });
    assert.equal(res.status, 403);
  });

  it('rejects tokens with another audience, issuer or key, expired ones and other service accounts', async () => {
    const other = await generateKeyPair('RS256');
    const cases = [
      await saToken({ aud: 'kubernetes' }),
      await saToken({ iss: 'https://evil.example' }),
      await saToken({ key: other.privateKey }),
      await saToken({ exp: Math.floor(Date.now() / 1000) - 60 }),
    ];
    for (const token of cases)
      assert.equal((await get('/v2/project/repo/ns/manifests/v1', `Bearer ${token}`)).status, 401);
    const stranger = await saToken({ sub: 'system:serviceaccount:default:someone' });
    assert.equal((await get('/v2/project/repo/ns/manifests/v1', `Bearer ${stranger}`)).status, 403);
  });

  it('stops accepting a cluster once it is removed', async () => {
    const token = await saToken({ sub: 'system:serviceaccount:config-management-system:root-reconciler' });
    const removed = await fetch(`${reg.url}/api/v1/clusters/prod`, {
      method: 'DELETE',
      headers: { authorization: admin },
    });
    assert.equal(removed.status, 204);
    assert.equal((await get('/v2/project/repo/ns/manifests/v1', `Bearer ${token}`)).status, 401);
  });
});
