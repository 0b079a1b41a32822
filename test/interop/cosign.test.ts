// cosign (v2, and v3 with its sigstore-bundle referrers) against Airlock: each verifies what the other
// signs, with keys made by either tool. Key-based, no transparency log, as air-gapped sites run it.
// Everything talks only to 127.0.0.1: outbound HTTP(S) goes to a closed local proxy port, so cosign's
// attempts to fetch sigstore's public trust roots fail at once instead of leaving the machine.
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import {
  runTool,
  runToolOk,
  startAirlockForTest,
  tempDirForTest,
  TEST_TIMEOUT_MS,
} from '../helpers/interop.js';
import { requirePeer } from '../helpers/peers.js';
import { CLI, type CommandResult } from '../helpers/processes.js';

interface Tools {
  readonly cosign: (args: readonly string[], password?: string) => Promise<CommandResult>;
  readonly airlock: (args: readonly string[], password?: string) => Promise<CommandResult>;
  readonly work: string;
  readonly host: string;
  /** Pushes a one-file artifact and returns its tag reference. */
  push(name: string): Promise<string>;
}

async function setUp(t: TestContext, peer: string): Promise<Tools | undefined> {
  const bin = requirePeer(t, peer);
  if (!bin) return undefined;
  const registry = await startAirlockForTest(t);
  const work = await tempDirForTest(t, `${peer}-`);
  const env = (password?: string): NodeJS.ProcessEnv => ({
    HOME: work,
    DOCKER_CONFIG: join(work, 'docker'),
    TUF_ROOT: join(work, 'tuf'),
    HTTPS_PROXY: 'http://127.0.0.1:9',
    HTTP_PROXY: 'http://127.0.0.1:9',
    NO_PROXY: '127.0.0.1,localhost',
    https_proxy: 'http://127.0.0.1:9',
    http_proxy: 'http://127.0.0.1:9',
    no_proxy: '127.0.0.1,localhost',
    COSIGN_PASSWORD: password,
  });
  const tools: Tools = {
    work,
    host: registry.host,
    cosign: (args, password) => runTool(bin, args, { env: env(password), cwd: work }),
    airlock: (args, password) => runTool(process.execPath, [CLI, ...args], { env: env(password), cwd: work }),
    async push(name) {
      await writeFile(join(work, `${name}.txt`), `${name} ${Date.now()}\n`);
      const ref = `${registry.host}/interop/${name}:v1`;
      await runToolOk(process.execPath, [CLI, 'push', ref, `${name}.txt`], { cwd: work });
      return ref;
    },
  };
  return tools;
}

function ok(result: CommandResult, what: string): CommandResult {
  assert.equal(result.code, 0, `${what} exited ${result.code}\n${result.stdout}\n${result.stderr}`);
  return result;
}

/** cosign verify with a key and no transparency log, over plain HTTP. */
function cosignVerify(tools: Tools, key: string, ref: string): Promise<CommandResult> {
  return tools.cosign([
    'verify',
    '--key',
    key,
    '--insecure-ignore-tlog',
    '--allow-insecure-registry',
    '--allow-http-registry',
    ref,
  ]);
}

/** cosign sign with a key and no transparency log; v3 also needs its signing config turned off. */
function cosignSign(tools: Tools, options: { peer: string; key: string; ref: string; extra?: string[] }) {
  const v3 = options.peer === 'cosign-v3' ? ['--use-signing-config=false'] : [];
  return tools.cosign(
    [
      'sign',
      '--key',
      options.key,
      '--tlog-upload=false',
      ...v3,
      '--allow-insecure-registry',
      '--allow-http-registry',
      '-y',
      ...(options.extra ?? []),
      options.ref,
    ],
    'cosign-pw',
  );
}

for (const peer of ['cosign', 'cosign-v3']) {
  describe(`${peer} and airlock`, () => {
    it(
      'cosign verifies what airlock signs, with an airlock-made key',
      { timeout: TEST_TIMEOUT_MS },
      async (t) => {
        const tools = await setUp(t, peer);
        if (!tools) return;
        ok(
          await tools.airlock(['generate-key-pair', '--output-key-prefix', 'airlock'], 'airlock-pw'),
          'generate-key-pair',
        );
        const ref = await tools.push('airlock-signed');
        ok(
          await tools.airlock(['sign', '--key', 'airlock.key', '-a', 'env=prod', ref], 'airlock-pw'),
          'airlock sign',
        );
        const verified = ok(await cosignVerify(tools, 'airlock.pub', ref), 'cosign verify');
        const [signature] = JSON.parse(verified.stdout) as Array<{
          critical: { image: { 'docker-manifest-digest': string } };
          optional: Record<string, string>;
        }>;
        assert.match(signature?.critical.image['docker-manifest-digest'] ?? '', /^sha256:[0-9a-f]{64}$/);
        assert.equal(signature?.optional.env, 'prod');
        // And cosign's claim check with the annotation.
        ok(
          await tools.cosign([
            'verify',
            '--key',
            'airlock.pub',
            '--insecure-ignore-tlog',
            '--allow-insecure-registry',
            '--allow-http-registry',
            '-a',
            'env=prod',
            ref,
          ]),
          'cosign verify -a',
        );
      },
    );

    it(
      'airlock verifies what cosign signs by default, with a cosign-made key',
      { timeout: TEST_TIMEOUT_MS },
      async (t) => {
        const tools = await setUp(t, peer);
        if (!tools) return;
        ok(await tools.cosign(['generate-key-pair'], 'cosign-pw'), 'cosign generate-key-pair');
        const ref = await tools.push('cosign-signed');
        ok(await cosignSign(tools, { peer, key: 'cosign.key', ref }), 'cosign sign');
        const result = JSON.parse(
          ok(await tools.airlock(['verify', '--key', 'cosign.pub', '-o', 'json', ref]), 'airlock verify')
            .stdout,
        );
        // v2 keeps signatures under the .sig tag; v3 attaches a sigstore bundle (DSSE) as an OCI 1.1 referrer.
        assert.equal(result.signatures[0].format, peer === 'cosign-v3' ? 'bundle-dsse' : 'simple-signing');
        assert.equal(result.signatures[0].source, peer === 'cosign-v3' ? 'referrer' : 'signature-tag');
        // A key that did not sign it is refused.
        ok(
          await tools.airlock(['generate-key-pair', '--output-key-prefix', 'other'], 'x'),
          'generate-key-pair',
        );
        const wrong = await tools.airlock(['verify', '--key', 'other.pub', ref]);
        assert.equal(wrong.code, 1);
        assert.match(wrong.stderr, /no matching signatures: .*does not verify with the key/);
      },
    );

    if (peer === 'cosign-v3') {
      it(
        'airlock verifies cosign v3 signatures in the old .sig format too',
        { timeout: TEST_TIMEOUT_MS },
        async (t) => {
          const tools = await setUp(t, peer);
          if (!tools) return;
          ok(await tools.cosign(['generate-key-pair'], 'cosign-pw'), 'cosign generate-key-pair');
          const ref = await tools.push('cosign-old-format');
          ok(
            await cosignSign(tools, { peer, key: 'cosign.key', ref, extra: ['--new-bundle-format=false'] }),
            'cosign sign',
          );
          const result = JSON.parse(
            ok(await tools.airlock(['verify', '--key', 'cosign.pub', '-o', 'json', ref]), 'airlock verify')
              .stdout,
          );
          assert.equal(result.signatures[0].format, 'simple-signing');
        },
      );
    }

    it('keys made by each tool sign in the other', { timeout: TEST_TIMEOUT_MS }, async (t) => {
      const tools = await setUp(t, peer);
      if (!tools) return;
      ok(
        await tools.airlock(['generate-key-pair', '--output-key-prefix', 'airlock'], 'cosign-pw'),
        'airlock generate-key-pair',
      );
      ok(await tools.cosign(['generate-key-pair'], 'cosign-pw'), 'cosign generate-key-pair');
      // cosign signs with the airlock-made key; airlock and cosign verify.
      const a = await tools.push('airlock-key');
      ok(await cosignSign(tools, { peer, key: 'airlock.key', ref: a }), 'cosign sign with airlock key');
      ok(await tools.airlock(['verify', '--key', 'airlock.pub', a]), 'airlock verify');
      ok(await cosignVerify(tools, 'airlock.pub', a), 'cosign verify');
      // airlock signs with the cosign-made key; cosign verifies.
      const b = await tools.push('cosign-key');
      ok(
        await tools.airlock(['sign', '--key', 'cosign.key', b], 'cosign-pw'),
        'airlock sign with cosign key',
      );
      ok(await cosignVerify(tools, 'cosign.pub', b), 'cosign verify');
      const wrong = await tools.airlock(['sign', '--key', 'cosign.key', b], 'not-the-password');
      assert.match(wrong.stderr, /Cannot decrypt cosign private key: wrong password/);
    });

    it('both say "no signatures found" for an unsigned image', { timeout: TEST_TIMEOUT_MS }, async (t) => {
      const tools = await setUp(t, peer);
      if (!tools) return;
      ok(
        await tools.airlock(['generate-key-pair', '--output-key-prefix', 'airlock'], 'x'),
        'generate-key-pair',
      );
      const ref = await tools.push('unsigned');
      const cosign = await cosignVerify(tools, 'airlock.pub', ref);
      assert.notEqual(cosign.code, 0);
      assert.match(cosign.stderr, /no signatures found/);
      const airlock = await tools.airlock(['verify', '--key', 'airlock.pub', ref]);
      assert.equal(airlock.code, 1);
      assert.equal(airlock.stderr, 'Error: no signatures found\n');
    });
  });
}
