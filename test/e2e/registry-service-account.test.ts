import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { findKubeBinaries, startControlPlane, type ControlPlane } from '../helpers/kube.js';
import { CLI, run, startAirlockProcess, tempDir, type RunningProcess } from '../helpers/processes.js';
import { image } from '../helpers/oci-fixtures.js';
import { join } from 'node:path';
import { rm } from 'node:fs/promises';

const ADMIN = `Basic ${Buffer.from('admin:e2e-admin-pw').toString('base64')}`;

describe("a service-account token from a real kube-apiserver pulls from Airlock (the seed's k8sserviceaccount auth)", () => {
  let cp: ControlPlane | undefined;
  let airlock: RunningProcess | undefined;
  let token = '';
  let work = '';
  const img = image();

  before(async () => {
    if (!findKubeBinaries(false)) {
      if (process.env.CI)
        throw new Error('etcd and kube-apiserver are not installed; run scripts/install-kube.sh');
      return;
    }
    cp = await startControlPlane({ controllerManager: false });
    airlock = await startAirlockProcess({
      extraArgs: ['--init-admin', 'admin'],
      env: { AIRLOCK_ADMIN_PASSWORD: 'e2e-admin-pw' },
    });
    work = await tempDir('airlock-e2e-sa-');
    // The reconciler's service account, as Config Sync names it.
    assert.equal(
      (
        await cp.request('POST', '/api/v1/namespaces', {
          body: { metadata: { name: 'config-management-system' } },
        })
      ).status,
      201,
    );
    const sa = await cp.request('POST', '/api/v1/namespaces/config-management-system/serviceaccounts', {
      body: { metadata: { name: 'root-reconciler' } },
    });
    assert.equal(sa.status, 201);
    const request = await cp.request<{ status: { token: string } }>(
      'POST',
      '/api/v1/namespaces/config-management-system/serviceaccounts/root-reconciler/token',
      {
        body: {
          apiVersion: 'authentication.k8s.io/v1',
          kind: 'TokenRequest',
          spec: { audiences: ['airlock'], expirationSeconds: 600 },
        },
      },
    );
    assert.equal(request.status, 201, request.text);
    token = request.json.status.token;
    const jwks = await cp.request('GET', '/openid/v1/jwks', {
      headers: { accept: 'application/jwk-set+json' },
    });
    assert.equal(jwks.status, 200);
    const api = (method: string, path: string, body: unknown) =>
      fetch(`${airlock?.url}${path}`, {
        method,
        headers: { authorization: ADMIN },
        body: JSON.stringify(body),
      });
    assert.equal(
      (await api('POST', '/api/v1/clusters', { name: 'e2e', issuer: cp.issuer, jwks: jwks.json })).status,
      201,
    );
    assert.equal(
      (
        await api('POST', '/api/v1/bindings', {
          member: 'serviceAccount:config-management-system/root-reconciler@e2e',
          role: 'reader',
          scope: 'project/repo/',
        })
      ).status,
      201,
    );
    for (const b of [img.config, ...img.layers]) {
      const res = await fetch(
        `${airlock.url}/v2/project/repo/test-namespace/blobs/uploads/?digest=${b.digest}`,
        { method: 'POST', headers: { authorization: ADMIN }, body: b.bytes },
      );
      assert.equal(res.status, 201);
    }
    const put = await fetch(`${airlock.url}/v2/project/repo/test-namespace/manifests/v1`, {
      method: 'PUT',
      headers: { authorization: ADMIN, 'content-type': img.mediaType },
      body: img.manifest,
    });
    assert.equal(put.status, 201);
  });
  after(async () => {
    await airlock?.stop();
    await cp?.stop();
    if (work) await rm(work, { recursive: true, force: true });
  });

  it('pulls with the projected token as a bearer token, and through the token endpoint', async (t) => {
    if (!cp || !airlock)
      return t.skip('kube-apiserver or etcd is not installed; run scripts/install-kube.sh');
    const res = await fetch(`${airlock.url}/v2/project/repo/test-namespace/manifests/v1`, {
      headers: { authorization: `Bearer ${token}` },
    });
    assert.equal(res.status, 200);
    assert.deepEqual(Buffer.from(await res.arrayBuffer()), img.manifest);
    const env = { DOCKER_CONFIG: join(work, 'docker'), AIRLOCK_CONFIG_DIR: join(work, 'airlock') };
    const pulled = await run(
      process.execPath,
      [
        CLI,
        'manifest',
        `${airlock.host}/project/repo/test-namespace:v1`,
        '-u',
        'serviceaccount',
        '--password-stdin',
      ],
      { input: token, env },
    );
    assert.equal(pulled.code, 0, pulled.stderr);
    assert.equal(pulled.stdout, img.manifest.toString());
  });

  it('is denied a push and anything outside its binding', async (t) => {
    if (!cp || !airlock)
      return t.skip('kube-apiserver or etcd is not installed; run scripts/install-kube.sh');
    const push = await fetch(`${airlock.url}/v2/project/repo/test-namespace/blobs/uploads/`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}` },
    });
    assert.equal(push.status, 403);
    const other = await fetch(`${airlock.url}/v2/other/repo/manifests/v1`, {
      headers: { authorization: `Bearer ${token}` },
    });
    assert.equal(other.status, 403);
  });

  it('refuses a token minted for another audience by the same cluster', async (t) => {
    if (!cp || !airlock)
      return t.skip('kube-apiserver or etcd is not installed; run scripts/install-kube.sh');
    const request = await cp.request<{ status: { token: string } }>(
      'POST',
      '/api/v1/namespaces/config-management-system/serviceaccounts/root-reconciler/token',
      {
        body: {
          apiVersion: 'authentication.k8s.io/v1',
          kind: 'TokenRequest',
          spec: { audiences: [cp.issuer], expirationSeconds: 600 },
        },
      },
    );
    assert.equal(request.status, 201);
    const res = await fetch(`${airlock.url}/v2/project/repo/test-namespace/manifests/v1`, {
      headers: { authorization: `Bearer ${request.json.status.token}` },
    });
    assert.equal(res.status, 401);
  });
});
