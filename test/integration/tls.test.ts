import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { rm, stat, writeFile } from 'node:fs/promises';
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
    // NODE_EXTRA_CA_CERTS is trusted too (node drops it once a `ca` option is given; the client adds it).
    const extra = await run(process.execPath, [CLI, 'catalog', host], {
      env: { ...env, NODE_EXTRA_CA_CERTS: join(dir, 'certs', 'ca.pem') },
    });
    assert.equal(extra.code, 0, extra.stderr);
  });

  it('management commands reach an HTTPS server on a loopback address, and a scheme given decides', async () => {
    const host = server?.host ?? '';
    const ca = join(dir, 'certs', 'ca.pem');
    const env = { DOCKER_CONFIG: join(dir, 'docker'), AIRLOCK_CONFIG_DIR: join(dir, 'airlock') };
    const auth = ['-u', 'admin', '--password', 'tls-admin-pw', '--ca-file', ca];
    // Used to fail with "socket hang up": management calls did not find out that the server speaks TLS.
    const repos = await run(process.execPath, [CLI, 'repo', 'list', host, ...auth], { env });
    assert.equal(repos.code, 0, repos.stderr);
    const https = await run(process.execPath, [CLI, 'repo', 'list', `https://${host}`, ...auth], { env });
    assert.equal(https.code, 0, https.stderr);
    // http:// on a TLS server is plain HTTP as asked: no quiet switch to TLS.
    const plain = await run(process.execPath, [CLI, 'catalog', `http://${host}`, ...auth], { env });
    assert.equal(plain.code, 1, plain.stdout);
  });

  it('refuses a --ca-file without a readable certificate at once, saying which', async () => {
    const host = server?.host ?? '';
    const env = { DOCKER_CONFIG: join(dir, 'docker'), AIRLOCK_CONFIG_DIR: join(dir, 'airlock') };
    const cases: Array<[string, string, RegExp]> = [
      ['garbage.pem', 'not a certificate\n', /--ca-file ".*garbage\.pem" holds no PEM certificate$/m],
      [
        'broken.pem',
        '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n',
        /--ca-file ".*broken\.pem": certificate 1 of 1 cannot be read/,
      ],
    ];
    for (const [name, content, pattern] of cases) {
      await writeFile(join(dir, name), content);
      const result = await run(process.execPath, [CLI, 'catalog', host, '--ca-file', join(dir, name)], {
        env,
      });
      assert.equal(result.code, 1, result.stderr);
      assert.match(result.stderr, pattern);
      assert.equal(result.stderr.trim().split('\n').length, 1, result.stderr);
    }
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
