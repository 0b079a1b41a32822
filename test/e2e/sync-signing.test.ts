/**
 * The first seed's verification workflow on a real control plane: a cosign key pair, the admission
 * webhook registered with the API server (URL form with caBundle) denying the image-to-sync update of an
 * unsigned image (KNV2002, nothing applied), then signing it so the next reconcile passes. And the same
 * with Airlock's built-in spec.oci.verify policy, no webhook needed.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, describe, it, type TestContext } from 'node:test';
import { CLI, freePort, runOk } from '../helpers/processes.js';
import {
  applySync,
  deleteSync,
  eventually,
  getObject,
  startSyncEnv,
  waitError,
  waitSynced,
  writeFiles,
  type SyncEnv,
} from '../helpers/sync.js';

const PASSWORD = 'e2e-cosign-password';
let env: SyncEnv | undefined;
let counter = 0;

async function ready(t: TestContext): Promise<SyncEnv | undefined> {
  if (env) return env;
  env = await startSyncEnv(t);
  if (!env) return undefined;
  const keys = await env.airlock(['generate-key-pair'], {});
  assert.equal(keys.code, 0, keys.stderr);
  return env;
}

async function pushNamespace(e: SyncEnv, image: string, name: string): Promise<void> {
  const dir = await writeFiles(e, `sign-src-${++counter}`, {
    'ns.yaml': `apiVersion: v1\nkind: Namespace\nmetadata:\n  name: ${name}\n`,
  });
  await runOk('tar', ['-cf', '../layer.tar', '.'], { cwd: dir });
  const res = await e.airlock(['append', '-f', `${dir}/../layer.tar`, '-t', image]);
  assert.equal(res.code, 0, res.stderr);
}

describe('signature verification before sync', { timeout: 600_000 }, () => {
  process.env.COSIGN_PASSWORD = PASSWORD;
  after(async () => {
    await env?.stop();
  });

  it('denies an unsigned image through the admission webhook (KNV2002), then syncs it once signed', async (t) => {
    const e = await ready(t);
    if (!e) return;
    const certs = join(e.work, 'certs');
    const made = await e.airlock(['certs', 'init', '--host', '127.0.0.1', '--dir', certs]);
    assert.equal(made.code, 0, made.stderr);
    const port = await freePort();
    const webhook = spawn(
      process.execPath,
      [
        CLI,
        'webhook',
        '--tls-cert',
        join(certs, 'server.pem'),
        '--tls-key',
        join(certs, 'server-key.pem'),
        '--key',
        join(e.work, 'cosign.pub'),
        '--addr',
        `127.0.0.1:${port}`,
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let output = '';
    webhook.stdout.on('data', (c: Buffer) => (output += c.toString()));
    webhook.stderr.on('data', (c: Buffer) => (output += c.toString()));
    t.after(() => {
      webhook.kill('SIGTERM');
    });
    await eventually(() => Promise.resolve(output.includes('webhook listening') ? true : undefined), {
      timeoutMs: 20_000,
      describe: () => output,
    });

    const caBundle = Buffer.from(await readFile(join(certs, 'ca.pem'))).toString('base64');
    const config = await e.cp.request(
      'POST',
      '/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations',
      {
        body: {
          apiVersion: 'admissionregistration.k8s.io/v1',
          kind: 'ValidatingWebhookConfiguration',
          metadata: { name: 'image-verification-webhook' },
          webhooks: [
            {
              name: 'imageverification.webhook.com',
              clientConfig: { url: `https://127.0.0.1:${port}/validate`, caBundle },
              rules: [
                {
                  apiGroups: ['configsync.gke.io'],
                  apiVersions: ['v1beta1', 'v1alpha1'],
                  operations: ['UPDATE'],
                  resources: ['rootsyncs', 'reposyncs'],
                  scope: '*',
                },
              ],
              admissionReviewVersions: ['v1', 'v1beta1'],
              sideEffects: 'None',
              failurePolicy: 'Fail',
            },
          ],
        },
      },
    );
    assert.equal(config.status, 201, config.text);
    t.after(async () => {
      await e.cp.request(
        'DELETE',
        '/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations/image-verification-webhook',
      );
    });

    const image = `${e.registry.host}/project/repo/signed-by-webhook:v1`;
    await pushNamespace(e, image, 'webhook-verified');
    await applySync(
      e.cp,
      'RootSync',
      { name: 'webhook' },
      { sourceType: 'oci', sourceFormat: 'unstructured', oci: { image, dir: '.', period: '2s' } },
    );
    const errors = await waitError(e, 'RootSync', { name: 'webhook' }, 'KNV2002');
    assert.match(
      errors.join('\n'),
      /KNV2002: admission webhook "imageverification\.webhook\.com" denied the request: Image validation failed: .*no signatures found/,
    );
    assert.equal(await getObject(e.cp, '/api/v1/namespaces/webhook-verified'), undefined, 'nothing applied');
    const status = await e.airlock(['status', '--name', 'webhook']);
    assert.match(status.stdout, /ERROR/);
    assert.match(
      status.stdout,
      /Error: {3}KNV2002: admission webhook "imageverification\.webhook\.com" denied the request: Image validation failed: .*no signatures found/,
    );

    const signed = await e.airlock(['sign', '--key', 'cosign.key', image]);
    assert.equal(signed.code, 0, signed.stderr);
    await waitSynced(e, 'RootSync', { name: 'webhook' }, { timeoutMs: 30_000 });
    assert.equal((await getObject(e.cp, '/api/v1/namespaces/webhook-verified'))?.status?.phase, 'Active');
    await deleteSync(e.cp, 'RootSync', { name: 'webhook' });
  });

  it('refuses an unsigned image with the built-in spec.oci.verify policy (KNV2004), then syncs it once signed', async (t) => {
    const e = await ready(t);
    if (!e) return;
    const pub = await readFile(join(e.work, 'cosign.pub'));
    const secret = await e.cp.request('POST', '/api/v1/namespaces/config-management-system/secrets', {
      body: { metadata: { name: 'cosign-key' }, data: { 'cosign.pub': pub.toString('base64') } },
    });
    assert.equal(secret.status, 201, secret.text);
    const image = `${e.registry.host}/project/repo/signed-by-policy:v1`;
    await pushNamespace(e, image, 'policy-verified');
    await applySync(
      e.cp,
      'RootSync',
      { name: 'policy' },
      {
        sourceType: 'oci',
        oci: { image, period: '2s', verify: { secretRef: { name: 'cosign-key' } } },
      },
    );
    const errors = await waitError(e, 'RootSync', { name: 'policy' }, 'KNV2004');
    assert.match(
      errors.join('\n'),
      /KNV2004: image .*signed-by-policy@sha256:[0-9a-f]{64} failed signature verification: .*no signatures found/,
    );
    assert.equal(await getObject(e.cp, '/api/v1/namespaces/policy-verified'), undefined, 'nothing applied');

    // A signature by another key does not count.
    const other = await writeFiles(e, 'other-key', { '.keep': '' });
    const otherKeys = await e.airlock(['generate-key-pair'], { cwd: other });
    assert.equal(otherKeys.code, 0, otherKeys.stderr);
    assert.equal((await e.airlock(['sign', '--key', join(other, 'cosign.key'), image])).code, 0);
    await waitError(e, 'RootSync', { name: 'policy' }, /no matching signatures/);
    assert.equal(
      await getObject(e.cp, '/api/v1/namespaces/policy-verified'),
      undefined,
      'still nothing applied',
    );

    assert.equal((await e.airlock(['sign', '--key', 'cosign.key', image])).code, 0);
    await waitSynced(e, 'RootSync', { name: 'policy' }, { timeoutMs: 30_000 });
    assert.ok(await getObject(e.cp, '/api/v1/namespaces/policy-verified'));
    await deleteSync(e.cp, 'RootSync', { name: 'policy' });
  });
});
