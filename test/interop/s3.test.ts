import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { HttpTransport, signV4 } from '../../src/client/index.js';
import {
  CLI,
  freePort,
  run,
  startAirlockProcess,
  tempDir,
  waitForHttp,
  type RunningProcess,
} from '../helpers/processes.js';
import { findPeer } from '../helpers/peers.js';
import { TestClient } from '../helpers/registry-client.js';
import { image } from '../helpers/oci-fixtures.js';

const USER = 'airlock-test';
const SECRET = 'airlock-test-secret-key';

/** A real MinIO server on a free loopback port with a throwaway data folder. */
async function startMinio(binary: string): Promise<{ url: string; stop: () => Promise<void> }> {
  const dir = await tempDir('minio-');
  const port = await freePort();
  const consolePort = await freePort();
  const child: ChildProcess = spawn(
    binary,
    [
      'server',
      join(dir, 'data'),
      '--address',
      `127.0.0.1:${port}`,
      '--console-address',
      `127.0.0.1:${consolePort}`,
    ],
    {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: {
        ...process.env,
        MINIO_ROOT_USER: USER,
        MINIO_ROOT_PASSWORD: SECRET,
        MINIO_BROWSER: 'off',
        MINIO_UPDATE: 'off',
        HOME: dir,
      },
    },
  );
  const url = `http://127.0.0.1:${port}`;
  await waitForHttp(`${url}/minio/health/live`, 60_000);
  return {
    url,
    async stop() {
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
      await rm(dir, { recursive: true, force: true });
    },
  };
}

async function s3Put(endpoint: string, path: string, body: Buffer | undefined): Promise<number> {
  const url = new URL(path, endpoint);
  const headers = signV4(
    { method: 'PUT', url, headers: {} },
    { endpoint, accessKeyId: USER, secretAccessKey: SECRET },
  );
  const res = await new HttpTransport().send({ method: 'PUT', url, headers, ...(body ? { body } : {}) });
  await res.drain();
  return res.status;
}

describe('s3:// sources against a real MinIO server', () => {
  let minio: { url: string; stop: () => Promise<void> } | undefined;
  let airlock: RunningProcess | undefined;
  let work = '';

  before(async () => {
    const binary = findPeer('minio');
    if (!binary) {
      if (process.env.CI) throw new Error('peer "minio" is not installed; run scripts/install-peers.sh');
      return;
    }
    minio = await startMinio(binary);
    airlock = await startAirlockProcess();
    work = await tempDir('airlock-s3-');
    assert.equal(await s3Put(minio.url, '/images', undefined), 200);
  });
  after(async () => {
    await airlock?.stop();
    await minio?.stop();
    if (work) await rm(work, { recursive: true, force: true });
  });

  it('copies an image tarball from a bucket into the registry (gdcloud cp s3://… then push)', async (t) => {
    if (!minio || !airlock) return t.skip('minio is not installed; run scripts/install-peers.sh');
    const client = new TestClient(airlock.url);
    const img = image({ layers: 2 });
    await client.pushImage('src/app', img, 'v1');
    const archive = join(work, 'app.tar');
    const out = await run(process.execPath, [
      CLI,
      'copy',
      `${airlock.host}/src/app:v1`,
      `oci-archive:${archive}`,
      '-q',
    ]);
    assert.equal(out.code, 0, out.stderr);
    assert.equal(await s3Put(minio.url, '/images/g/app.tar', await readFile(archive)), 200);
    const env = { AIRLOCK_S3_ACCESS_KEY: USER, AIRLOCK_S3_SECRET_KEY: SECRET, AIRLOCK_CONFIG_DIR: work };
    const copy = await run(
      process.execPath,
      [CLI, 'copy', 's3://images/g/app.tar', `${airlock.host}/from/s3:v1`, '--s3-endpoint', minio.url, '-q'],
      { env },
    );
    assert.equal(copy.code, 0, copy.stderr);
    const res = await client.request('GET', '/v2/from/s3/manifests/v1');
    assert.deepEqual(Buffer.from(await res.arrayBuffer()), img.manifest);
  });

  it('says which object is missing, and refuses wrong credentials', async (t) => {
    if (!minio || !airlock) return t.skip('minio is not installed; run scripts/install-peers.sh');
    const env = { AIRLOCK_S3_ACCESS_KEY: USER, AIRLOCK_S3_SECRET_KEY: SECRET, AIRLOCK_CONFIG_DIR: work };
    const missing = await run(
      process.execPath,
      [CLI, 'copy', 's3://images/nothing.tar', `${airlock.host}/x/y:v1`, '--s3-endpoint', minio.url],
      { env },
    );
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /s3:\/\/images\/nothing\.tar does not exist/);
    const denied = await run(
      process.execPath,
      [CLI, 'copy', 's3://images/g/app.tar', `${airlock.host}/x/y:v1`, '--s3-endpoint', minio.url],
      {
        env: { ...env, AIRLOCK_S3_SECRET_KEY: 'wrong' },
      },
    );
    assert.equal(denied.code, 1);
    assert.match(denied.stderr, /access denied/);
  });
});
