// The admission webhook over real HTTPS against a real Airlock started in-process: RootSync updates to
// signed images are allowed, to unsigned ones denied with cosign's reason; bad requests get a 400.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { request } from 'node:https';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { RegistryClient } from '../../src/client/index.js';
import { digestOf, parseReference } from '../../src/oci/index.js';
import { createCa, createServerCertificate, type Pem } from '../../src/pki/index.js';
import {
  generateKeyPair,
  loadPrivateKey,
  loadPublicKeys,
  signImage,
  type PublicKey,
  type SigningKey,
} from '../../src/sign/index.js';
import {
  IMAGE_TO_SYNC_ANNOTATION,
  imageVerifier,
  startWebhookServer,
  type RunningWebhook,
} from '../../src/sync/webhook/index.js';
import { startTestRegistry, type TestRegistry } from '../helpers/in-process.js';
import { image } from '../helpers/oci-fixtures.js';
import { CLI, tempDir } from '../helpers/processes.js';

let registry: TestRegistry;
let client: RegistryClient;
let host: string;
let ca: Pem;
let server: Pem;
let key: SigningKey;
let keys: PublicKey[];
let publicPem: string;
let webhook: RunningWebhook;

interface Reply {
  readonly status: number;
  readonly body: string;
}

function post(url: string, body: string | Buffer, path = '/validate'): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request(
      new URL(path, url),
      {
        method: path === '/healthz' ? 'GET' : 'POST',
        ca: ca.cert,
        headers: { 'content-type': 'application/json' },
      },
      (res) => {
        let text = '';
        res.on('data', (c: Buffer) => (text += c.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
      },
    );
    req.on('error', reject);
    req.end(path === '/healthz' ? undefined : body);
  });
}

function review(options: {
  newImage?: string;
  oldImage?: string;
  apiVersion?: string;
  kind?: string;
}): string {
  const object = (image?: string) => ({
    apiVersion: 'configsync.gke.io/v1beta1',
    kind: options.kind ?? 'RootSync',
    metadata: {
      name: 'root-sync',
      namespace: 'config-management-system',
      annotations: image ? { [IMAGE_TO_SYNC_ANNOTATION]: image } : {},
    },
  });
  return JSON.stringify({
    apiVersion: options.apiVersion ?? 'admission.k8s.io/v1',
    kind: 'AdmissionReview',
    request: {
      uid: 'e911857d-c318-11e8-bbad-025000000001',
      kind: { group: 'configsync.gke.io', version: 'v1beta1', kind: options.kind ?? 'RootSync' },
      resource: {
        group: 'configsync.gke.io',
        version: 'v1beta1',
        resource: options.kind === 'RepoSync' ? 'reposyncs' : 'rootsyncs',
      },
      operation: 'UPDATE',
      name: 'root-sync',
      namespace: 'config-management-system',
      object: object(options.newImage),
      oldObject: object(options.oldImage),
    },
  });
}

async function pushImage(repository: string): Promise<string> {
  const img = image();
  for (const blob of [img.config, ...img.layers]) {
    await client.pushBlob(repository, {
      digest: blob.digest,
      size: blob.bytes.length,
      open: () => Readable.from([blob.bytes]),
    });
  }
  await client.putManifest(repository, 'v1', { bytes: img.manifest, mediaType: img.mediaType });
  return `${host}/${repository}:v1@${img.digest}`;
}

interface Answer {
  apiVersion: string;
  response: { uid: string; allowed: boolean; status?: { code: number; message: string } };
}

function answer(reply: Reply): Answer {
  assert.equal(reply.status, 200, reply.body);
  return JSON.parse(reply.body) as Answer;
}

before(async () => {
  registry = await startTestRegistry();
  host = new URL(registry.url).host;
  client = new RegistryClient(host);
  ca = await createCa('webhook test CA');
  server = await createServerCertificate(ca, ['127.0.0.1', 'localhost']);
  const pair = await generateKeyPair('pw', { scrypt: { N: 1024, r: 8, p: 1 } });
  publicPem = pair.publicPem;
  key = await loadPrivateKey(pair.privatePem, 'pw');
  keys = loadPublicKeys(pair.publicPem);
  webhook = await startWebhookServer({
    tls: server,
    verify: imageVerifier({ keys, clientFor: () => client }),
    maxBodyBytes: 64 * 1024,
  });
});
after(async () => {
  await webhook.close();
  client.close();
  await registry.dispose();
});

describe('admission webhook', () => {
  it('denies a RootSync update to an unsigned image with "Image validation failed: no signatures found"', async () => {
    const unsigned = await pushImage('webhook/unsigned');
    const reply = answer(await post(webhook.url, review({ newImage: unsigned })));
    assert.equal(reply.apiVersion, 'admission.k8s.io/v1');
    assert.equal(reply.response.uid, 'e911857d-c318-11e8-bbad-025000000001');
    assert.equal(reply.response.allowed, false);
    assert.deepEqual(reply.response.status, {
      code: 403,
      reason: 'Forbidden',
      message: 'Image validation failed: no signatures found',
    });
  });

  it('allows the update once the image is signed', async () => {
    const signed = await pushImage('webhook/signed');
    await signImage(client, parseReference(signed), { key });
    const reply = answer(await post(webhook.url, review({ newImage: signed })));
    assert.equal(reply.response.allowed, true);
  });

  it('answers v1beta1 in v1beta1, for RepoSyncs too', async () => {
    const unsigned = await pushImage('webhook/repo-sync');
    const reply = answer(
      await post(
        webhook.url,
        review({ newImage: unsigned, apiVersion: 'admission.k8s.io/v1beta1', kind: 'RepoSync' }),
      ),
    );
    assert.equal(reply.apiVersion, 'admission.k8s.io/v1beta1');
    assert.equal(reply.response.allowed, false);
  });

  it('allows an update that leaves image-to-sync as it was, signed or not', async () => {
    const unsigned = await pushImage('webhook/unchanged');
    const reply = answer(await post(webhook.url, review({ newImage: unsigned, oldImage: unsigned })));
    assert.equal(reply.response.allowed, true);
  });

  it('denies a signature made with another key, and a tampered digest', async () => {
    const other = await generateKeyPair('pw', { scrypt: { N: 1024, r: 8, p: 1 } });
    const ref = await pushImage('webhook/other-key');
    await signImage(client, parseReference(ref), { key: await loadPrivateKey(other.privatePem, 'pw') });
    const reply = answer(await post(webhook.url, review({ newImage: ref })));
    assert.equal(reply.response.allowed, false);
    assert.match(
      reply.response.status?.message ?? '',
      /^Image validation failed: no matching signatures: .*does not verify with the key$/,
    );
    const missing = `${host}/webhook/other-key:v1@${digestOf('nothing')}`;
    const gone = answer(await post(webhook.url, review({ newImage: missing })));
    assert.match(gone.response.status?.message ?? '', /^Image validation failed: no signatures found$/);
  });

  it('answers bad JSON and wrong documents with 400 and a clear message', async () => {
    const bad = await post(webhook.url, '{"apiVersion":');
    assert.equal(bad.status, 400);
    assert.match(bad.body, /^Cannot read AdmissionReview: body is not JSON/);
    const wrong = await post(
      webhook.url,
      JSON.stringify({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview' }),
    );
    assert.equal(wrong.status, 400);
    assert.match(wrong.body, /"request" is missing/);
  });

  it('refuses a body past its size cap with 413', async () => {
    const reply = await post(webhook.url, Buffer.alloc(128 * 1024, 0x20));
    assert.equal(reply.status, 413);
  });

  it('says it is healthy on /healthz', async () => {
    const reply = await post(webhook.url, '', '/healthz');
    assert.equal(reply.status, 200);
  });
});

describe('airlock webhook (the command)', () => {
  it('serves the same answers from the CLI and stops on SIGTERM', async (t) => {
    const dir = await tempDir('airlock-webhook-');
    await writeFile(join(dir, 'tls.crt'), server.cert);
    await writeFile(join(dir, 'tls.key'), server.key);
    await writeFile(join(dir, 'cosign.pub'), publicPem);
    const child = spawn(
      process.execPath,
      [
        CLI,
        'webhook',
        '--addr',
        '127.0.0.1:0',
        '--tls-cert',
        join(dir, 'tls.crt'),
        '--tls-key',
        join(dir, 'tls.key'),
        '--key',
        join(dir, 'cosign.pub'),
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    t.after(() => child.kill('SIGKILL'));
    let stderr = '';
    const url = await new Promise<string>((resolve, reject) => {
      child.stderr.on('data', (c: Buffer) => {
        stderr += c.toString();
        const match = /webhook listening on (https:\/\/[^"\s]+)/.exec(stderr);
        if (match?.[1]) resolve(match[1]);
      });
      child.once('exit', () => reject(new Error(`airlock webhook exited: ${stderr}`)));
    });
    const unsigned = await pushImage('webhook/cli');
    const reply = answer(await post(url, review({ newImage: unsigned })));
    assert.equal(reply.response.status?.message, 'Image validation failed: no signatures found');
    await signImage(client, parseReference(unsigned), { key });
    assert.equal(answer(await post(url, review({ newImage: unsigned }))).response.allowed, true);
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    child.kill('SIGTERM');
    assert.equal(await exited, 0);
    assert.match(stderr, /"msg":"admission denied"/);
  });
});
