// `airlock generate-key-pair`, `sign`, `verify` and `webhook manifests` as users run them, against a
// real Airlock: results on standard output, one-line errors with exit 1 (failures) or 2 (usage).
import assert from 'node:assert/strict';
import { readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parseAllDocuments } from 'yaml';
import { airlock, airlockOk, assertOneLineError, cliEnv, type CliEnv } from '../helpers/cli.js';
import { startTestRegistry, type TestRegistry } from '../helpers/in-process.js';
import { tempDir } from '../helpers/processes.js';

let registry: TestRegistry;
let host: string;
let dir: string;
let env: CliEnv;

const withPassword = (password: string) => ({ ...env, env: { ...env.env, COSIGN_PASSWORD: password } });

before(async () => {
  registry = await startTestRegistry();
  host = new URL(registry.url).host;
  dir = await tempDir('airlock-sign-cli-');
});
after(async () => {
  await registry.dispose();
});

async function pushFile(name: string): Promise<string> {
  const file = join(dir, `${name}.txt`);
  await writeFile(file, `content of ${name}\n`);
  const ref = `${host}/signing/${name}:v1`;
  await airlockOk(env, ['push', ref, `${name}.txt`], { cwd: dir });
  return ref;
}

describe('airlock generate-key-pair', () => {
  it('writes cosign.key (0600, encrypted) and cosign.pub, and refuses to overwrite them', async (t) => {
    env = await cliEnv(t);
    const prefix = join(dir, 'first');
    const result = await airlockOk(withPassword('pw'), ['generate-key-pair', '--output-key-prefix', prefix]);
    assert.match(result.stdout, /Private key written to .*first\.key\nPublic key written to .*first\.pub/);
    assert.equal((await stat(`${prefix}.key`)).mode & 0o777, 0o600);
    assert.match(await readFile(`${prefix}.key`, 'utf8'), /^-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----/);
    assert.match(await readFile(`${prefix}.pub`, 'utf8'), /^-----BEGIN PUBLIC KEY-----/);
    const again = await airlock(withPassword('pw'), ['generate-key-pair', '--output-key-prefix', prefix]);
    assertOneLineError(again, {
      code: 1,
      pattern: /first\.key" already exists; pass --force to overwrite it/,
    });
    await airlockOk(withPassword('pw'), ['generate-key-pair', '--output-key-prefix', prefix, '--force']);
  });

  it('asks for COSIGN_PASSWORD when there is no terminal to prompt on', async (t) => {
    env = await cliEnv(t);
    const result = await airlock({ ...env, env: { ...env.env, COSIGN_PASSWORD: undefined } }, [
      'generate-key-pair',
      '--output-key-prefix',
      join(dir, 'nopw'),
    ]);
    assertOneLineError(result, { code: 2, pattern: /No password for the private key: set COSIGN_PASSWORD/ });
  });
});

describe('airlock sign and verify', () => {
  it('signs with annotations and verifies as text and JSON', async (t) => {
    env = await cliEnv(t);
    const prefix = join(dir, 'k1');
    await airlockOk(withPassword('s3cret'), ['generate-key-pair', '--output-key-prefix', prefix]);
    const ref = await pushFile('signed');
    const signed = await airlockOk(withPassword('s3cret'), [
      'sign',
      '--key',
      `${prefix}.key`,
      '-a',
      'env=prod',
      ref,
    ]);
    assert.match(
      signed.stdout,
      /^Signed .*signing\/signed@sha256:[0-9a-f]{64} \(signature in sha256-[0-9a-f]{64}\.sig\)\n$/,
    );
    const text = await airlockOk(env, ['verify', '--key', `${prefix}.pub`, ref]);
    assert.match(
      text.stdout,
      /^Verified 1 signature of .*\n  simple-signing in .*\.sig layer 1 \(key sha256:[0-9a-f]{64}\)\n$/,
    );
    const json = JSON.parse(
      (await airlockOk(env, ['verify', '--key', `${prefix}.pub`, '-o', 'json', ref])).stdout,
    );
    assert.deepEqual(json.signatures[0].annotations, { env: 'prod' });
    // tree shows the signature tag under the manifest it signs, not as a tag beside it.
    const tree = JSON.parse(
      (await airlockOk(env, ['tree', `${host}/signing/signed`, '-o', 'json'])).stdout,
    ) as { tags: { label: string; referrers: { label: string }[] }[] };
    const signatureTag = signed.stdout.replace(/^.*\(signature in (.*)\)\n$/s, '$1');
    assert.deepEqual(
      tree.tags.map((node) => [node.label, node.referrers.map((r) => r.label)]),
      [['v1', [signatureTag]]],
    );
    // The tree of the one image finds it too, by its tag.
    const one = JSON.parse((await airlockOk(env, ['tree', ref, '-o', 'json'])).stdout) as typeof tree;
    assert.deepEqual(
      one.tags.map((node) => [node.label, node.referrers.map((r) => r.label)]),
      [['v1', [signatureTag]]],
    );
    const again = await airlockOk(withPassword('s3cret'), [
      'sign',
      '--key',
      `${prefix}.key`,
      '-a',
      'env=prod',
      ref,
    ]);
    assert.match(again.stdout, /^Already signed with this key: /);
  });

  it("fails with exit 1 and cosign's messages for unsigned images and wrong keys", async (t) => {
    env = await cliEnv(t);
    const k1 = join(dir, 'a');
    const k2 = join(dir, 'b');
    await airlockOk(withPassword('pw'), ['generate-key-pair', '--output-key-prefix', k1]);
    await airlockOk(withPassword('pw'), ['generate-key-pair', '--output-key-prefix', k2]);
    const unsigned = await pushFile('unsigned');
    assertOneLineError(await airlock(env, ['verify', '--key', `${k1}.pub`, unsigned]), {
      code: 1,
      pattern: /^Error: no signatures found$/,
    });
    const ref = await pushFile('other-key');
    await airlockOk(withPassword('pw'), ['sign', '--key', `${k2}.key`, ref]);
    assertOneLineError(await airlock(env, ['verify', '--key', `${k1}.pub`, ref]), {
      code: 1,
      pattern: /^Error: no matching signatures: .*the signature does not verify with the key$/,
    });
    // Any of several keys may match.
    await airlockOk(env, ['verify', '--key', `${k1}.pub`, '--key', `${k2}.pub`, ref]);
    assertOneLineError(await airlock(withPassword('wrong'), ['sign', '--key', `${k1}.key`, ref]), {
      code: 1,
      pattern: /Cannot decrypt cosign private key: wrong password/,
    });
  });

  it('reports usage mistakes with exit 2', async (t) => {
    env = await cliEnv(t);
    const ref = `${host}/signing/usage:v1`;
    assertOneLineError(await airlock(withPassword('pw'), ['sign', ref]), {
      code: 2,
      pattern: /Name the private key with --key/,
    });
    assertOneLineError(await airlock(env, ['verify', ref]), { code: 2, pattern: /Name at least one --key/ });
    assertOneLineError(await airlock(env, ['verify', '--key', join(dir, 'missing.pub'), ref]), {
      code: 2,
      pattern: /Cannot read --key ".*missing\.pub"/,
    });
    await writeFile(join(dir, 'k.key'), 'x');
    assertOneLineError(
      await airlock(withPassword('pw'), ['sign', '--key', join(dir, 'k.key'), '-a', 'novalue', ref]),
      {
        code: 2,
        pattern: /--annotation "novalue" is not KEY=VALUE/,
      },
    );
    assertOneLineError(await airlock(withPassword('pw'), ['sign', '--key', join(dir, 'k.key'), ref]), {
      code: 1,
      pattern: /Cannot read cosign private key: no PEM block found/,
    });
    assertOneLineError(await airlock(env, ['webhook', '--key', 'x.pub']), {
      code: 2,
      pattern: /give --tls-cert and --tls-key/,
    });
  });
});

describe('airlock webhook manifests', () => {
  it('makes a CA and serving certificate for the Service and puts the CA in caBundle', async (t) => {
    env = await cliEnv(t);
    const certs = join(dir, 'webhook-certs');
    const result = await airlockOk(env, ['webhook', 'manifests', '--namespace', 'sv', '--certs-dir', certs]);
    const docs = parseAllDocuments(result.stdout).map(
      (d) => d.toJS() as { kind: string; webhooks?: Array<{ clientConfig: { caBundle: string } }> },
    );
    assert.deepEqual(
      docs.map((d) => d.kind),
      ['Deployment', 'Service', 'ValidatingWebhookConfiguration'],
    );
    const ca = await readFile(join(certs, 'ca.pem'), 'utf8');
    assert.equal(Buffer.from(docs[2]?.webhooks?.[0]?.clientConfig.caBundle ?? '', 'base64').toString(), ca);
    assert.match(
      result.stderr,
      /kubectl create secret tls webhook-tls --cert=.*server\.pem --key=.*server-key\.pem -n sv/,
    );
    const { X509Certificate } = await import('node:crypto');
    const cert = new X509Certificate(await readFile(join(certs, 'server.pem')));
    assert.match(cert.subjectAltName ?? '', /DNS:signature-verification-service\.sv\.svc/);
    assert.ok(cert.checkIssued(new X509Certificate(ca)));
    // With a given CA bundle nothing is generated.
    const given = await airlockOk(env, [
      'webhook',
      'manifests',
      '--ca-bundle-file',
      join(certs, 'ca.pem'),
      '--image',
      'reg/airlock:1',
    ]);
    assert.match(given.stdout, /image: reg\/airlock:1/);
  });
});
