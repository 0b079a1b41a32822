import { describe, it, beforeEach, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { chmod, mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { CredentialStore, credentialStorePath } from './credential-store.js';
import {
  dockerConfigPath,
  eraseCredentials,
  lookupCredentials,
  readDockerConfig,
  storeCredentials,
} from './credentials.js';
import { ClientError } from './errors.js';

const basic = (user: string, password: string): string =>
  Buffer.from(`${user}:${password}`).toString('base64');

describe('docker config credentials', () => {
  let dir: string;
  let env: NodeJS.ProcessEnv;
  let config: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'airlock-credentials-'));
    env = {
      DOCKER_CONFIG: join(dir, 'docker'),
      PATH: `${join(dir, 'bin')}${delimiter}${process.env.PATH ?? ''}`,
    };
    config = join(dir, 'docker', 'config.json');
    await mkdir(join(dir, 'docker'));
    await mkdir(join(dir, 'bin'));
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  /** A docker-credential-NAME shell script that answers `get` with `answer` and logs what it was asked. */
  async function helper(name: string, answer: string, exitCode = 0): Promise<string> {
    const log = join(dir, `${name}.log`);
    const script = join(dir, 'bin', `docker-credential-${name}`);
    await writeFile(
      script,
      `#!/bin/sh\ninput=$(cat)\necho "$1 $input" >> '${log}'\nprintf '%s' '${answer}'\nexit ${exitCode}\n`,
    );
    await chmod(script, 0o755);
    return log;
  }

  it('finds $DOCKER_CONFIG/config.json and reads an absent file as empty', async () => {
    assert.equal(dockerConfigPath(env), config);
    assert.deepEqual(await readDockerConfig(config), {});
    await writeFile(config, '[1]');
    await assert.rejects(
      readDockerConfig(config),
      (e: unknown) => e instanceof ClientError && /not a JSON object/.test(e.message),
    );
  });

  it('reads auths under the keys docker and others use, and identity tokens', async () => {
    await writeFile(
      config,
      JSON.stringify({
        auths: {
          'a.example': { auth: basic('alice', 'pa:ss') },
          'https://b.example': { username: 'bob', password: 'pw' },
          'https://c.example/v1/': { identitytoken: 'refresh' },
          'https://index.docker.io/v1/': { auth: basic('hub', 'pw') },
          'bad.example': { auth: Buffer.from('no colon').toString('base64') },
        },
      }),
    );
    assert.deepEqual(await lookupCredentials('a.example', { env }), { username: 'alice', password: 'pa:ss' });
    assert.deepEqual(await lookupCredentials('b.example', { env }), { username: 'bob', password: 'pw' });
    assert.deepEqual(await lookupCredentials('c.example', { env }), { identityToken: 'refresh' });
    assert.deepEqual(await lookupCredentials('docker.io', { env }), { username: 'hub', password: 'pw' });
    assert.equal(await lookupCredentials('other.example', { env }), undefined);
    await assert.rejects(lookupCredentials('bad.example', { env }), /is not base64 "user:password"/);
  });

  it('stores into auths with mode 0600, keeps other keys, and erases every key for the host', async () => {
    await writeFile(
      config,
      JSON.stringify({ auths: { 'https://a.example/v1/': { auth: basic('old', 'x') } }, psFormat: 'table' }),
    );
    assert.equal(await storeCredentials('a.example', { username: 'alice', password: 'pw' }, { env }), config);
    assert.deepEqual(JSON.parse(await readFile(config, 'utf8')), {
      auths: {
        'https://a.example/v1/': { auth: basic('old', 'x') },
        'a.example': { auth: basic('alice', 'pw') },
      },
      psFormat: 'table',
    });
    assert.equal((await stat(config)).mode & 0o777, 0o600);
    assert.equal(await eraseCredentials('a.example', { env }), true);
    assert.deepEqual(JSON.parse(await readFile(config, 'utf8')), { auths: {}, psFormat: 'table' });
    assert.equal(await eraseCredentials('a.example', { env }), false);
  });

  it('asks credHelpers before auths, and credsStore last', async () => {
    const log = await helper(
      'fake',
      JSON.stringify({ ServerURL: 'h.example', Username: 'helped', Secret: 's3' }),
    );
    await helper('token', JSON.stringify({ Username: '<token>', Secret: 'identity' }));
    await writeFile(
      config,
      JSON.stringify({
        credHelpers: { 'h.example': 'fake', 't.example': 'token' },
        auths: { 'h.example': { auth: basic('shadowed', 'x') } },
        credsStore: 'fake',
      }),
    );
    assert.deepEqual(await lookupCredentials('h.example', { env }), { username: 'helped', password: 's3' });
    assert.deepEqual(await lookupCredentials('t.example', { env }), { identityToken: 'identity' });
    assert.deepEqual(await lookupCredentials('store.example', { env }), {
      username: 'helped',
      password: 's3',
    });
    assert.equal(await readFile(log, 'utf8'), 'get h.example\nget store.example\n');
  });

  it('treats a helper\'s "credentials not found" as no credentials, and other failures as errors', async () => {
    await helper('empty', 'credentials not found in native keychain', 1);
    await helper('broken', 'keychain locked', 1);
    await writeFile(
      config,
      JSON.stringify({
        credHelpers: { 'e.example': 'empty', 'b.example': 'broken', 'm.example': 'missing' },
      }),
    );
    assert.equal(await lookupCredentials('e.example', { env }), undefined);
    await assert.rejects(
      lookupCredentials('b.example', { env }),
      /docker-credential-broken get" failed: keychain locked/,
    );
    await assert.rejects(
      lookupCredentials('m.example', { env }),
      /"docker-credential-missing" cannot be run/,
    );
  });

  it('stores and erases through the helper docker would use, never writing the secret to config.json', async () => {
    const log = await helper('fake', '');
    await writeFile(config, JSON.stringify({ credHelpers: { 'h.example': 'fake' } }));
    const where = await storeCredentials('h.example', { username: 'alice', password: 'pw' }, { env });
    assert.equal(where, 'credential helper docker-credential-fake');
    assert.equal(await eraseCredentials('h.example', { env }), true);
    assert.equal(
      await readFile(log, 'utf8'),
      'store {"ServerURL":"h.example","Username":"alice","Secret":"pw"}\nerase h.example\n',
    );
    assert.deepEqual(JSON.parse(await readFile(config, 'utf8')), { credHelpers: { 'h.example': 'fake' } });
  });
});

describe('CredentialStore', () => {
  it('lives in $AIRLOCK_CONFIG_DIR, names hosts the same with or without https:// and a path, and writes 0600', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'airlock-store-'));
    try {
      assert.equal(credentialStorePath({ AIRLOCK_CONFIG_DIR: dir }), join(dir, 'credentials.json'));
      assert.equal(credentialStorePath({ XDG_CONFIG_HOME: '/x' }), '/x/airlock/credentials.json');
      const store = new CredentialStore(join(dir, 'credentials.json'));
      assert.equal(await store.get('r.example'), undefined);
      await store.store('https://r.example/v1/', { Username: 'alice', Secret: 'pw' });
      assert.deepEqual(await store.get('r.example'), { Username: 'alice', Secret: 'pw' });
      assert.deepEqual(await store.list(), { 'r.example': 'alice' });
      assert.equal((await stat(join(dir, 'credentials.json'))).mode & 0o777, 0o600);
      assert.equal(await store.erase('http://r.example'), true);
      assert.equal(await store.erase('r.example'), false);
      assert.deepEqual(await store.list(), {});
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
