/**
 * The e2e control plane itself: etcd + kube-apiserver + kube-controller-manager built by
 * scripts/install-kube.sh. Checks what Airlock relies on: namespaces and service accounts, the
 * TokenRequest API, the issuer's OIDC discovery and JWKS (anonymously readable), token signatures, and
 * namespaces that really terminate. Every call is plain HTTPS from node, trusting the cluster's CA.
 */
import assert from 'node:assert/strict';
import { createPublicKey, randomBytes, verify, type JsonWebKey } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { test } from 'node:test';
import { createLocalJWKSet, decodeJwt, decodeProtectedHeader, jwtVerify, type JSONWebKeySet } from 'jose';
import { parse } from 'yaml';
import { requireKube, startControlPlane, type ControlPlane } from '../helpers/kube.js';

interface ObjectMeta {
  name: string;
  uid: string;
  deletionTimestamp?: string;
}
interface KubeObject {
  metadata: ObjectMeta;
  status?: { phase?: string };
}
interface TokenRequestStatus {
  status: { token: string; expirationTimestamp: string };
}
interface TokenReview {
  status: {
    authenticated?: boolean;
    user?: { username?: string; groups?: string[] };
    audiences?: string[];
    error?: string;
  };
}
interface OidcDiscovery {
  issuer: string;
  jwks_uri: string;
  id_token_signing_alg_values_supported: string[];
  subject_types_supported?: string[];
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function requestToken(cp: ControlPlane, ns: string, sa: string, audiences: string[]): Promise<string> {
  const res = await cp.request<TokenRequestStatus>(
    'POST',
    `/api/v1/namespaces/${ns}/serviceaccounts/${sa}/token`,
    {
      body: {
        apiVersion: 'authentication.k8s.io/v1',
        kind: 'TokenRequest',
        spec: { audiences, expirationSeconds: 600 },
      },
    },
  );
  assert.equal(res.status, 201, res.text);
  return res.json.status.token;
}

async function reviewToken(
  cp: ControlPlane,
  token: string,
  audiences: string[],
): Promise<TokenReview['status']> {
  const res = await cp.request<TokenReview>('POST', '/apis/authentication.k8s.io/v1/tokenreviews', {
    body: { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: { token, audiences } },
  });
  assert.equal(res.status, 201, res.text);
  return res.json.status;
}

test(
  'e2e control plane: etcd + kube-apiserver + kube-controller-manager',
  { timeout: 240_000 },
  async (t) => {
    const binaries = requireKube(t);
    if (!binaries) return;

    const cp = await startControlPlane({ binaries });
    t.after(() => cp.stop());
    t.diagnostic(
      `control plane at ${cp.server}: etcd ${cp.timings.etcdMs} ms, /readyz ${cp.timings.readyMs} ms, ` +
        `controllers running ${cp.timings.totalMs} ms`,
    );

    const ns = `airlock-e2e-${randomBytes(4).toString('hex')}`;
    const saName = 'reconciler';
    let saUid = '';
    let token = '';

    await t.test('serves /version and writes a usable kubeconfig', async () => {
      const version = await cp.request<{ gitVersion: string; major: string; minor: string }>(
        'GET',
        '/version',
      );
      assert.equal(version.status, 200, version.text);
      assert.match(version.json.gitVersion, /^v1\.\d+\.\d+/);
      t.diagnostic(`kube-apiserver ${version.json.gitVersion}`);

      const config = parse(await readFile(cp.kubeconfig, 'utf8')) as {
        clusters: { cluster: { server: string; 'certificate-authority-data': string } }[];
        users: { user: { token: string } }[];
      };
      assert.equal(config.clusters[0]?.cluster.server, cp.server);
      assert.equal(
        Buffer.from(config.clusters[0]?.cluster['certificate-authority-data'] ?? '', 'base64').toString(),
        cp.caPem,
      );
      assert.equal(config.users[0]?.user.token, cp.adminToken);
    });

    await t.test('RBAC: anonymous users are denied, a bad token is unauthenticated', async () => {
      const anonymous = await cp.request('GET', '/api/v1/namespaces', { token: null });
      assert.equal(anonymous.status, 403, anonymous.text);
      const bad = await cp.request('GET', '/api/v1/namespaces', { token: 'not-a-token' });
      assert.equal(bad.status, 401, bad.text);
    });

    await t.test('creates a namespace and a service account', async () => {
      const created = await cp.request<KubeObject>('POST', '/api/v1/namespaces', {
        body: { apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns } },
      });
      assert.equal(created.status, 201, created.text);
      const sa = await cp.request<KubeObject>('POST', `/api/v1/namespaces/${ns}/serviceaccounts`, {
        body: { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: saName } },
      });
      assert.equal(sa.status, 201, sa.text);
      saUid = sa.json.metadata.uid;
      assert.ok(saUid);

      // The serviceaccount controller gives every namespace its "default" service account.
      const deadline = Date.now() + 30_000;
      let status = 0;
      while (Date.now() < deadline) {
        status = (await cp.request('GET', `/api/v1/namespaces/${ns}/serviceaccounts/default`)).status;
        if (status === 200) break;
        await sleep(200);
      }
      assert.equal(status, 200, `no "default" service account in ${ns}`);
    });

    await t.test('TokenRequest issues a token with the expected claims', async () => {
      token = await requestToken(cp, ns, saName, ['airlock']);
      const header = decodeProtectedHeader(token);
      assert.equal(header.alg, 'RS256');
      assert.ok(header.kid, 'token header has a kid');
      const claims = decodeJwt(token);
      assert.equal(claims.iss, cp.issuer);
      assert.deepEqual(claims.aud, ['airlock']);
      assert.equal(claims.sub, `system:serviceaccount:${ns}:${saName}`);
      const now = Math.floor(Date.now() / 1000);
      assert.ok(
        typeof claims.exp === 'number' && claims.exp > now && claims.exp <= now + 700,
        `exp ${claims.exp}`,
      );
      const k8s = claims['kubernetes.io'] as {
        namespace: string;
        serviceaccount: { name: string; uid: string };
      };
      assert.equal(k8s.namespace, ns);
      assert.deepEqual(k8s.serviceaccount, { name: saName, uid: saUid });
    });

    await t.test('TokenReview authenticates the token for its audience only', async () => {
      const ok = await reviewToken(cp, token, ['airlock']);
      assert.equal(ok.authenticated, true, ok.error);
      assert.equal(ok.user?.username, `system:serviceaccount:${ns}:${saName}`);
      assert.ok(ok.user?.groups?.includes(`system:serviceaccounts:${ns}`));
      const other = await reviewToken(cp, token, ['someone-else']);
      assert.notEqual(other.authenticated, true);
    });

    await t.test('OIDC discovery and JWKS are served anonymously and verify the token', async () => {
      const discovery = await cp.request<OidcDiscovery>('GET', '/.well-known/openid-configuration', {
        token: null,
      });
      assert.equal(discovery.status, 200, discovery.text);
      assert.equal(discovery.json.issuer, cp.issuer);
      assert.equal(discovery.json.jwks_uri, `${cp.issuer}/openid/v1/jwks`);
      assert.ok(discovery.json.id_token_signing_alg_values_supported.includes('RS256'));

      const jwksPath = new URL(discovery.json.jwks_uri).pathname;
      // The apiserver offers the JWKS only as application/jwk-set+json (406 for application/json).
      const jwksRes = await cp.request<JSONWebKeySet>('GET', jwksPath, {
        token: null,
        headers: { accept: 'application/jwk-set+json' },
      });
      assert.equal(jwksRes.status, 200, jwksRes.text);
      const jwks = jwksRes.json;
      assert.ok(jwks.keys.length >= 1);

      // jose, as a verifier would use it
      const { payload } = await jwtVerify(token, createLocalJWKSet(jwks), {
        issuer: cp.issuer,
        audience: 'airlock',
      });
      assert.equal(payload.sub, `system:serviceaccount:${ns}:${saName}`);
      await assert.rejects(
        jwtVerify(token, createLocalJWKSet(jwks), { issuer: cp.issuer, audience: 'not-airlock' }),
        /aud/,
      );

      // node:crypto on its own: the JWK is the key the helper generated, and it verifies the signature
      const kid = decodeProtectedHeader(token).kid;
      const jwk = jwks.keys.find((k) => k.kid === kid);
      assert.ok(jwk, `no JWK with kid ${kid}`);
      const key = createPublicKey({ key: jwk as JsonWebKey, format: 'jwk' });
      assert.equal(
        key.export({ type: 'spki', format: 'pem' }).toString(),
        createPublicKey(cp.serviceAccountPublicKeyPem).export({ type: 'spki', format: 'pem' }).toString(),
      );
      const [h, p, s] = token.split('.');
      assert.ok(h && p && s);
      assert.equal(verify('sha256', Buffer.from(`${h}.${p}`), key, Buffer.from(s, 'base64url')), true);
      const tampered = Buffer.from(
        JSON.stringify({ ...decodeJwt(token), sub: 'system:serviceaccount:kube-system:admin' }),
      );
      assert.equal(
        verify(
          'sha256',
          Buffer.from(`${h}.${tampered.toString('base64url')}`),
          key,
          Buffer.from(s, 'base64url'),
        ),
        false,
      );
    });

    await t.test('a deleted namespace terminates and disappears with its service accounts', async () => {
      const del = await cp.request<KubeObject>('DELETE', `/api/v1/namespaces/${ns}`);
      assert.equal(del.status, 200, del.text);
      const started = Date.now();
      const deadline = started + 60_000;
      let last = '';
      let gone = false;
      while (Date.now() < deadline) {
        const res = await cp.request<KubeObject>('GET', `/api/v1/namespaces/${ns}`);
        if (res.status === 404) {
          gone = true;
          break;
        }
        last = `${res.status} ${res.json?.status?.phase ?? ''}`;
        await sleep(250);
      }
      assert.ok(
        gone,
        `namespace ${ns} still there after 60 s (last: ${last})\n${cp.logs().controllerManager.slice(-5_000)}`,
      );
      t.diagnostic(`namespace ${ns} gone ${Date.now() - started} ms after DELETE`);
      const sa = await cp.request('GET', `/api/v1/namespaces/${ns}/serviceaccounts/${saName}`);
      assert.equal(sa.status, 404, sa.text);
      // A bound token dies with its service account: at once for a token the apiserver has not seen,
      // and for one it has authenticated once the apiserver's 10 s token success cache expires.
      const review = await reviewToken(cp, token, ['airlock', 'fresh-cache-key']);
      assert.notEqual(review.authenticated, true, 'token of a deleted service account still authenticates');
      const cacheDeadline = Date.now() + 20_000;
      let cached = await reviewToken(cp, token, ['airlock']);
      while (cached.authenticated === true && Date.now() < cacheDeadline) {
        await sleep(500);
        cached = await reviewToken(cp, token, ['airlock']);
      }
      assert.notEqual(
        cached.authenticated,
        true,
        'token of a deleted service account still authenticates after 20 s',
      );
    });
  },
);
