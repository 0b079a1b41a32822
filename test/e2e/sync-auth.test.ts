/**
 * Sync against a registry with access control on, and the spec checks: the seed's `auth:
 * k8sserviceaccount` (a TokenRequest token for the reconciler's service account, accepted by Airlock for
 * a trusted cluster), Airlock's spec.oci.secretRef, Google-only auth types, the CRD's name limits,
 * unsupported source types (STALLED) and a fight with another writer (KNV2005).
 */
import assert from 'node:assert/strict';
import { after, describe, it, type TestContext } from 'node:test';
import { runOk } from '../helpers/processes.js';
import {
  applySync,
  eventually,
  getObject,
  readSync,
  startSyncEnv,
  waitError,
  waitSynced,
  writeFiles,
  type SyncEnv,
} from '../helpers/sync.js';

const ADMIN_PASSWORD = 'e2e-sync-admin-pw';
const BASIC = `Basic ${Buffer.from(`admin:${ADMIN_PASSWORD}`).toString('base64')}`;

let env: SyncEnv | undefined;
let counter = 0;

async function ready(t: TestContext): Promise<SyncEnv | undefined> {
  if (env) return env;
  env = await startSyncEnv(t, {
    registryArgs: ['--init-admin', 'admin'],
    registryEnv: { AIRLOCK_ADMIN_PASSWORD: ADMIN_PASSWORD },
  });
  if (!env) return undefined;
  // Trust the cluster's service-account tokens (keys from its JWKS) and let one reconciler read secure/.
  const jwks = await env.cp.request('GET', '/openid/v1/jwks', {
    headers: { accept: 'application/jwk-set+json' },
  });
  const api = (path: string, body: unknown): Promise<Response> =>
    fetch(`${env!.registry.url}${path}`, {
      method: 'POST',
      headers: { authorization: BASIC },
      body: JSON.stringify(body),
    });
  assert.equal(
    (await api('/api/v1/clusters', { name: 'e2e', issuer: env.cp.issuer, jwks: jwks.json })).status,
    201,
  );
  assert.equal(
    (
      await api('/api/v1/bindings', {
        member: 'serviceAccount:config-management-system/root-reconciler-sa-auth@e2e',
        role: 'reader',
        scope: 'secure/',
      })
    ).status,
    201,
  );
  return env;
}

async function pushAsAdmin(e: SyncEnv, image: string, files: Record<string, string>): Promise<void> {
  const dir = await writeFiles(e, `auth-src-${++counter}`, files);
  await runOk('tar', ['-cf', '../layer.tar', '.'], { cwd: dir });
  const res = await e.airlock(
    ['append', '-f', `${dir}/../layer.tar`, '-t', image, '-u', 'admin', '--password-stdin'],
    {
      input: ADMIN_PASSWORD,
    },
  );
  assert.equal(res.code, 0, res.stderr);
}

const ns = (name: string): string => `apiVersion: v1\nkind: Namespace\nmetadata:\n  name: ${name}\n`;
const cm = (name: string, namespace: string, v: string): string =>
  `apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ${name}\n  namespace: ${namespace}\ndata:\n  v: "${v}"\n`;

describe('sync: registry auth and spec checks', { timeout: 600_000 }, () => {
  after(async () => {
    await env?.stop();
  });

  it('pulls with auth: k8sserviceaccount from a registry that trusts the cluster, and reports KNV2004 for a reconciler without a role', async (t) => {
    const e = await ready(t);
    if (!e) return;
    const image = `${e.registry.host}/secure/app:v1`;
    await pushAsAdmin(e, image, { 'ns.yaml': ns('sa-auth') });
    await applySync(
      e.cp,
      'RootSync',
      { name: 'sa-auth' },
      { sourceType: 'oci', oci: { image, auth: 'k8sserviceaccount' } },
    );
    await waitSynced(e, 'RootSync', { name: 'sa-auth' });
    assert.ok(await getObject(e.cp, '/api/v1/namespaces/sa-auth'));

    await applySync(
      e.cp,
      'RootSync',
      { name: 'sa-denied' },
      { sourceType: 'oci', oci: { image, auth: 'k8sserviceaccount' } },
    );
    const errors = await waitError(e, 'RootSync', { name: 'sa-denied' }, 'KNV2004');
    assert.match(
      errors.join('\n'),
      /KNV2004: failed to pull image .*secure\/app:v1: .*(401|403).*spec\.oci\.auth/,
    );

    await applySync(
      e.cp,
      'RootSync',
      { name: 'anonymous' },
      { sourceType: 'oci', oci: { image, auth: 'none' } },
    );
    await waitError(e, 'RootSync', { name: 'anonymous' }, /KNV2004: .*401/);
  });

  it('pulls with the credentials of a dockerconfigjson Secret named by spec.oci.secretRef (Airlock extension)', async (t) => {
    const e = await ready(t);
    if (!e) return;
    const image = `${e.registry.host}/private/app:v1`;
    await pushAsAdmin(e, image, { 'ns.yaml': ns('secret-ref') });
    const dockerconfig = {
      auths: { [e.registry.host]: { auth: Buffer.from(`admin:${ADMIN_PASSWORD}`).toString('base64') } },
    };
    const secret = await e.cp.request('POST', '/api/v1/namespaces/config-management-system/secrets', {
      body: {
        apiVersion: 'v1',
        kind: 'Secret',
        metadata: { name: 'registry-creds' },
        type: 'kubernetes.io/dockerconfigjson',
        data: { '.dockerconfigjson': Buffer.from(JSON.stringify(dockerconfig)).toString('base64') },
      },
    });
    assert.equal(secret.status, 201, secret.text);
    await applySync(
      e.cp,
      'RootSync',
      { name: 'secret-ref' },
      {
        sourceType: 'oci',
        oci: { image, auth: 'none', secretRef: { name: 'registry-creds' } },
      },
    );
    await waitSynced(e, 'RootSync', { name: 'secret-ref' });
    assert.ok(await getObject(e.cp, '/api/v1/namespaces/secret-ref'));

    await applySync(
      e.cp,
      'RootSync',
      { name: 'secret-missing' },
      {
        sourceType: 'oci',
        oci: { image, secretRef: { name: 'no-such-secret' } },
      },
    );
    await waitError(
      e,
      'RootSync',
      { name: 'secret-missing' },
      'KNV2004: Secret config-management-system/no-such-secret named by spec.oci.secretRef does not exist',
    );
  });

  it('accepts gcpserviceaccount and gcenode but reports that they need Google Cloud', async (t) => {
    const e = await ready(t);
    if (!e) return;
    await applySync(
      e.cp,
      'RootSync',
      { name: 'gcp' },
      {
        sourceType: 'oci',
        oci: {
          image: `${e.registry.host}/secure/app:v1`,
          auth: 'gcpserviceaccount',
          gcpServiceAccountEmail: 'x@p.iam.gserviceaccount.com',
        },
      },
    );
    await waitError(
      e,
      'RootSync',
      { name: 'gcp' },
      /KNV2004: spec\.oci\.auth "gcpserviceaccount" needs Google Cloud/,
    );
  });

  it('enforces the name limits: RootSync name <= 26 characters, RepoSync name + namespace <= 45', async (t) => {
    const e = await ready(t);
    if (!e) return;
    const long = 'r'.repeat(27);
    const res = await e.cp.request(
      'POST',
      '/apis/configsync.gke.io/v1beta1/namespaces/config-management-system/rootsyncs',
      {
        body: {
          apiVersion: 'configsync.gke.io/v1beta1',
          kind: 'RootSync',
          metadata: { name: long },
          spec: { sourceType: 'oci' },
        },
      },
    );
    assert.equal(res.status, 422, res.text);
    assert.match(res.text, /metadata\.name.*(Too long|at most 26)/i);
    const ok = await e.cp.request(
      'POST',
      '/apis/configsync.gke.io/v1beta1/namespaces/config-management-system/rootsyncs',
      {
        body: {
          apiVersion: 'configsync.gke.io/v1beta1',
          kind: 'RootSync',
          metadata: { name: 'r'.repeat(26) },
          spec: { sourceType: 'git' },
        },
      },
    );
    assert.equal(ok.status, 201, ok.text);

    const nsName = 'n'.repeat(30);
    assert.equal(
      (await e.cp.request('POST', '/api/v1/namespaces', { body: { metadata: { name: nsName } } })).status,
      201,
    );
    const repo = await eventually(async () => {
      const r = await e.cp.request('POST', `/apis/configsync.gke.io/v1beta1/namespaces/${nsName}/reposyncs`, {
        body: {
          apiVersion: 'configsync.gke.io/v1beta1',
          kind: 'RepoSync',
          metadata: { name: 'x'.repeat(16) },
          spec: { sourceType: 'oci' },
        },
      });
      // the admission policy takes a moment to be loaded after install
      return r.status === 201 ? undefined : r;
    });
    assert.equal(repo.status, 422, repo.text);
    assert.match(repo.text, /at most 45 characters/);
  });

  it('marks a RootSync with an unsupported source type STALLED (KNV1061)', async (t) => {
    const e = await ready(t);
    if (!e) return;
    const name = 'r'.repeat(26); // created as sourceType git by the name-limit test
    await eventually(async () => {
      const sync = await readSync(e.cp, 'RootSync', { name });
      return sync?.status?.conditions?.some((c) => c.type === 'Stalled' && c.status === 'True')
        ? true
        : undefined;
    });
    const status = await e.airlock(['status', '--name', name]);
    assert.equal(status.code, 1);
    assert.match(status.stdout, /STALLED/);
    assert.match(status.stdout, /Error: {3}KNV1061: .*spec\.sourceType "git"; Airlock syncs only "oci"/);
  });

  it('reports a fight (KNV2005) when another writer keeps changing a managed object', async (t) => {
    const e = await ready(t);
    if (!e) return;
    const image = `${e.registry.host}/secure/fight:v1`;
    await pushAsAdmin(e, image, { 'ns.yaml': ns('fight'), 'cm.yaml': cm('contested', 'fight', 'declared') });
    const dockerconfig = { auths: { [e.registry.host]: { username: 'admin', password: ADMIN_PASSWORD } } };
    await e.cp.request('POST', '/api/v1/namespaces/config-management-system/secrets', {
      body: {
        metadata: { name: 'fight-creds' },
        type: 'kubernetes.io/dockerconfigjson',
        data: { '.dockerconfigjson': Buffer.from(JSON.stringify(dockerconfig)).toString('base64') },
      },
    });
    await applySync(
      e.cp,
      'RootSync',
      { name: 'fight' },
      { sourceType: 'oci', oci: { image, period: '1h', secretRef: { name: 'fight-creds' } } },
    );
    await waitSynced(e, 'RootSync', { name: 'fight' });
    for (let i = 0; i < 8; i++) {
      await e.cp.request('PATCH', '/api/v1/namespaces/fight/configmaps/contested', {
        body: { data: { v: `rogue-${i}` } },
        headers: { 'content-type': 'application/merge-patch+json' },
      });
      await new Promise((r) => setTimeout(r, 300));
    }
    const errors = await waitError(e, 'RootSync', { name: 'fight' }, 'KNV2005', 30_000);
    assert.match(errors.join('\n'), /KNV2005: detected a fight over ConfigMap fight\/contested/);
    await eventually(async () =>
      (await getObject(e.cp, '/api/v1/namespaces/fight/configmaps/contested'))?.data?.v === 'declared'
        ? true
        : undefined,
    );
  });
});
