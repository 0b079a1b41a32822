// airlock login/logout and docker-credential-airlock against docker-registry with htpasswd (bcrypt) auth:
// what airlock saves, skopeo and crane use, directly from config.json or through the credential helper.
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import {
  airlock,
  airlockOk,
  assertOneLineError,
  bcryptHtpasswd,
  cliEnv,
  installCredentialHelper,
  startDistributionForTest,
  type CliEnv,
} from '../helpers/cli.js';
import { nonce, runTool, runToolOk, sha256, tempDirForTest, TEST_TIMEOUT_MS } from '../helpers/interop.js';
import { requirePeer } from '../helpers/peers.js';
import { run, type CommandResult, type RunningProcess } from '../helpers/processes.js';

const USER = 'alice';
const PASSWORD = `pw-${nonce(6)}`;

/** docker-registry with htpasswd auth for alice; undefined (skipped locally) when it or bcrypt is missing. */
async function securedRegistry(t: TestContext): Promise<RunningProcess | undefined> {
  const htpasswd = await bcryptHtpasswd(USER, PASSWORD);
  if (!htpasswd) {
    const message =
      'cannot make a bcrypt htpasswd entry: install apache2-utils (htpasswd) or a Python with the crypt module';
    if (process.env.CI) throw new Error(message);
    t.skip(message);
    return undefined;
  }
  return startDistributionForTest(t, { htpasswd });
}

interface Peers {
  crane(env: CliEnv, args: readonly string[]): Promise<CommandResult>;
  skopeo(env: CliEnv, args: readonly string[]): Promise<CommandResult>;
}

function peersFor(t: TestContext): Peers | undefined {
  const crane = requirePeer(t, 'crane');
  const skopeo = requirePeer(t, 'skopeo');
  if (!crane || !skopeo) return undefined;
  return {
    crane: (env, args) => runTool(crane, [...args, '--insecure'], { env: env.env }),
    skopeo: (env, args) => runTool(skopeo, args, { env: env.env }),
  };
}

/** Pushes a small artifact with explicit credentials; returns its manifest digest. */
async function pushWithFlags(t: TestContext, env: CliEnv, ref: string): Promise<string> {
  const work = await tempDirForTest(t, 'cli-credentials-push-');
  await writeFile(join(work, 'file.txt'), `secret ${nonce()}`);
  const pushed = await airlockOk(env, ['push', ref, 'file.txt', '-u', USER, '--password-stdin'], {
    cwd: work,
    input: PASSWORD,
  });
  const digest = /Digest: (sha256:[0-9a-f]{64})/.exec(pushed.stdout)?.[1];
  assert.ok(digest, pushed.stdout);
  return digest;
}

async function assertPeersRead(peers: Peers, env: CliEnv, ref: string, digest: string): Promise<void> {
  const crane = await peers.crane(env, ['digest', ref]);
  assert.equal(crane.code, 0, crane.stderr);
  assert.equal(crane.stdout.trim(), digest);
  const skopeo = await peers.skopeo(env, ['inspect', '--raw', '--tls-verify=false', `docker://${ref}`]);
  assert.equal(skopeo.code, 0, skopeo.stderr);
  assert.equal(sha256(skopeo.stdout), digest);
}

async function assertPeersRefused(peers: Peers, env: CliEnv, ref: string): Promise<void> {
  const crane = await peers.crane(env, ['digest', ref]);
  assert.notEqual(crane.code, 0);
  assert.match(crane.stderr, /UNAUTHORIZED|401|authentication required/i);
  const skopeo = await peers.skopeo(env, ['inspect', '--raw', '--tls-verify=false', `docker://${ref}`]);
  assert.notEqual(skopeo.code, 0);
  assert.match(skopeo.stderr, /unauthorized|401|authentication required/i);
}

describe('airlock login and docker-credential-airlock with skopeo and crane', () => {
  it(
    'login writes DOCKER_CONFIG/config.json that skopeo and crane use, and logout removes it',
    { timeout: TEST_TIMEOUT_MS },
    async (t) => {
      const peers = peersFor(t);
      if (!peers) return;
      const registry = await securedRegistry(t);
      if (!registry) return;
      const env = await cliEnv(t);
      const ref = `${registry.host}/cli/secured:v1`;
      const digest = await pushWithFlags(t, env, ref);
      await assertPeersRefused(peers, env, ref);

      const login = await airlockOk(env, ['login', registry.host, '-u', USER, '--password-stdin'], {
        input: `${PASSWORD}\n`,
      });
      assert.equal(
        login.stdout.trim(),
        `Login Succeeded (saved in ${join(env.dockerConfig, 'config.json')})`,
      );
      const config = JSON.parse(await readFile(join(env.dockerConfig, 'config.json'), 'utf8')) as unknown;
      assert.deepEqual(config, {
        auths: { [registry.host]: { auth: Buffer.from(`${USER}:${PASSWORD}`).toString('base64') } },
      });
      await assertPeersRead(peers, env, ref, digest);
      // airlock itself uses the saved login.
      assert.equal((await airlockOk(env, ['digest', ref])).stdout.trim(), digest);

      await airlockOk(env, ['logout', registry.host]);
      await assertPeersRefused(peers, env, ref);
      assertOneLineError(await airlock(env, ['digest', ref]), { pattern: /401/ });
    },
  );

  it(
    'configure-docker sends skopeo and crane to docker-credential-airlock, which serves what login stored',
    { timeout: TEST_TIMEOUT_MS },
    async (t) => {
      const peers = peersFor(t);
      if (!peers) return;
      const registry = await securedRegistry(t);
      if (!registry) return;
      const env = await cliEnv(t);
      const helper = await installCredentialHelper(env);
      const ref = `${registry.host}/cli/helper:v1`;
      const digest = await pushWithFlags(t, env, ref);

      await airlockOk(env, ['auth', 'configure-docker', registry.host]);
      const configPath = join(env.dockerConfig, 'config.json');
      assert.deepEqual(JSON.parse(await readFile(configPath, 'utf8')), {
        credHelpers: { [registry.host]: 'airlock' },
      });
      await assertPeersRefused(peers, env, ref);

      const login = await airlockOk(env, ['login', registry.host, '-u', USER, '--password-stdin'], {
        input: PASSWORD,
      });
      assert.match(login.stdout, /saved in credential helper docker-credential-airlock/);
      // The secret is in airlock's store, not in config.json.
      assert.deepEqual(JSON.parse(await readFile(configPath, 'utf8')), {
        credHelpers: { [registry.host]: 'airlock' },
      });
      assert.deepEqual(JSON.parse(await readFile(join(env.airlockConfig, 'credentials.json'), 'utf8')), {
        [registry.host]: { Username: USER, Secret: PASSWORD },
      });
      const got = await run(helper, ['get'], { env: env.env, input: registry.host });
      assert.deepEqual(JSON.parse(got.stdout), {
        ServerURL: registry.host,
        Username: USER,
        Secret: PASSWORD,
      });
      assert.deepEqual(JSON.parse((await runToolOk(helper, ['list'], { env: env.env })).stdout), {
        [registry.host]: USER,
      });
      assert.match(
        (await airlockOk(env, ['auth', 'list'])).stdout,
        new RegExp(`^${registry.host}  ${USER}$`, 'm'),
      );

      await assertPeersRead(peers, env, ref, digest);
      assert.equal((await airlockOk(env, ['digest', ref])).stdout.trim(), digest);

      const logout = await airlockOk(env, ['logout', registry.host]);
      assert.equal(logout.stdout.trim(), `Removed credentials for ${registry.host}`);
      assert.deepEqual(JSON.parse(await readFile(join(env.airlockConfig, 'credentials.json'), 'utf8')), {});
      const missing = await run(helper, ['get'], { env: env.env, input: registry.host });
      assert.equal(missing.code, 1);
      assert.match(missing.stdout, /credentials not found/);
      await assertPeersRefused(peers, env, ref);
    },
  );

  it(
    'refuses a wrong password with exit 1 and one line that mentions 401, saving nothing',
    { timeout: TEST_TIMEOUT_MS },
    async (t) => {
      const registry = await securedRegistry(t);
      if (!registry) return;
      const env = await cliEnv(t);
      const result = await airlock(env, ['login', registry.host, '-u', USER, '--password-stdin'], {
        input: 'wrong',
      });
      assertOneLineError(result, { pattern: /HTTP 401/ });
      const pushed = await airlock(
        env,
        ['tags', `${registry.host}/cli/anything`, '-u', USER, '--password-stdin'],
        {
          input: 'wrong',
        },
      );
      assertOneLineError(pushed, { pattern: /HTTP 401/ });
      await assert.rejects(readFile(join(env.dockerConfig, 'config.json')), /ENOENT/);
    },
  );
});
