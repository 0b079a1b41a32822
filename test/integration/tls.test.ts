import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { CLI, run, startAirlockProcess, tempDir, type RunningProcess } from '../helpers/processes.js';

describe('TLS with a private CA from airlock certs init', () => {
  let dir = '';
  let server: RunningProcess | undefined;
  before(async () => {
    dir = await tempDir('airlock-tls-');
    const init = await run(process.execPath, [
      CLI,
      'certs',
      'init',
      '--dir',
      join(dir, 'certs'),
      '--host',
      'localhost',
      '--host',
      '127.0.0.1',
    ]);
    assert.equal(init.code, 0, init.stderr);
    assert.match(init.stdout, /update-ca-certificates/);
    server = await startAirlockProcess({
      extraArgs: [
        '--tls-cert',
        join(dir, 'certs', 'server.pem'),
        '--tls-key',
        join(dir, 'certs', 'server-key.pem'),
        '--init-admin',
        'admin',
      ],
      env: { AIRLOCK_ADMIN_PASSWORD: 'tls-admin-pw' },
    });
  });
  after(async () => {
    await server?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('writes keys readable by their owner only', async () => {
    assert.equal((await stat(join(dir, 'certs', 'ca-key.pem'))).mode & 0o777, 0o600);
    assert.equal((await stat(join(dir, 'certs', 'server-key.pem'))).mode & 0o777, 0o600);
  });

  it('serves HTTPS that clients trust with --ca-file, refuse without it, and accept with --insecure', async () => {
    assert.ok(server?.url.startsWith('https://'));
    const host = server?.host ?? '';
    const env = { DOCKER_CONFIG: join(dir, 'docker'), AIRLOCK_CONFIG_DIR: join(dir, 'airlock') };
    const login = await run(
      process.execPath,
      [CLI, 'login', host, '-u', 'admin', '--password-stdin', '--ca-file', join(dir, 'certs', 'ca.pem')],
      { input: 'tls-admin-pw\n', env },
    );
    assert.equal(login.code, 0, login.stderr);
    const untrusted = await run(process.execPath, [CLI, 'catalog', host], { env });
    assert.equal(untrusted.code, 1);
    assert.match(untrusted.stderr, /TLS handshake with 127\.0\.0\.1:\d+ failed.*--ca-file/);
    const trusted = await run(
      process.execPath,
      [CLI, 'catalog', host, '--ca-file', join(dir, 'certs', 'ca.pem')],
      { env },
    );
    assert.equal(trusted.code, 0, trusted.stderr);
    const insecure = await run(process.execPath, [CLI, 'catalog', host, '--insecure'], { env });
    assert.equal(insecure.code, 0, insecure.stderr);
  });

  it('reuses the CA for a second server certificate', async () => {
    const again = await run(process.execPath, [
      CLI,
      'certs',
      'init',
      '--dir',
      join(dir, 'certs'),
      '--host',
      'registry.example',
      '-o',
      'json',
    ]);
    assert.equal(again.code, 0, again.stderr);
    assert.equal((JSON.parse(again.stdout) as { reusedCa: boolean }).reusedCa, true);
  });
});
