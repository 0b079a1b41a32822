// airlock push/pull/referrers/copy against oras: each reads what the other wrote, and the same inputs give
// the same manifest digest.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { MediaType } from '../../src/oci/index.js';
import { airlockOk, cliEnv, listTree, orasFor, startDistributionForTest } from '../helpers/cli.js';
import {
  fetchManifest,
  nonce,
  sha256,
  startAirlockForTest,
  tempDirForTest,
  TEST_TIMEOUT_MS,
} from '../helpers/interop.js';

interface ArtifactManifest {
  readonly artifactType?: string;
  readonly annotations?: Record<string, string>;
  readonly layers: readonly {
    readonly mediaType: string;
    readonly digest: string;
    readonly annotations?: Record<string, string>;
  }[];
}

const CREATED = 'org.opencontainers.image.created=2020-01-01T00:00:00Z';

/** A folder of files to push: two files and a folder with a nested file. */
async function makeFiles(dir: string): Promise<{ notes: string; data: Buffer }> {
  const notes = `notes ${nonce()}\n`;
  const data = randomBytes(150 * 1024);
  await writeFile(join(dir, 'notes.txt'), notes);
  await writeFile(join(dir, 'data.bin'), data);
  await mkdir(join(dir, 'conf', 'nested'), { recursive: true });
  await writeFile(join(dir, 'conf', 'a.yaml'), 'a: 1\n');
  await writeFile(join(dir, 'conf', 'nested', 'b.yaml'), `b: ${nonce()}\n`);
  return { notes, data };
}

async function assertSameFiles(expected: string, actual: string): Promise<void> {
  const want = (await listTree(expected)).filter((p) => !p.endsWith('.json'));
  assert.deepEqual(
    (await listTree(actual)).filter((p) => !p.endsWith('.json')),
    want,
  );
  for (const path of want) {
    if (path === 'conf' || path === 'conf/nested') continue;
    assert.deepEqual(await readFile(join(actual, path)), await readFile(join(expected, path)), path);
  }
}

describe('airlock CLI and oras', () => {
  it(
    'oras pulls what airlock push wrote, files and a folder, byte for byte',
    { timeout: TEST_TIMEOUT_MS },
    async (t) => {
      const env = await cliEnv(t);
      const oras = orasFor(t, env);
      if (!oras) return;
      const airlock = await startAirlockForTest(t);
      const src = await tempDirForTest(t, 'cli-oras-src-');
      const dst = await tempDirForTest(t, 'cli-oras-dst-');
      await makeFiles(src);
      const ref = `${airlock.host}/cli/oras-reads:v1`;
      await airlockOk(env, ['push', ref, 'notes.txt', 'data.bin', 'conf'], { cwd: src });
      await oras(['pull', ref, '-o', dst]);
      await assertSameFiles(src, dst);
    },
  );

  it(
    'airlock pull restores what oras push wrote, including a folder packed as tar+gzip',
    { timeout: TEST_TIMEOUT_MS },
    async (t) => {
      const env = await cliEnv(t);
      const oras = orasFor(t, env);
      if (!oras) return;
      const airlock = await startAirlockForTest(t);
      const src = await tempDirForTest(t, 'cli-oras-src-');
      const dst = await tempDirForTest(t, 'cli-oras-dst-');
      await makeFiles(src);
      const ref = `${airlock.host}/cli/airlock-reads:v1`;
      await oras(['push', ref, 'notes.txt', 'data.bin', 'conf'], src);

      const manifest = JSON.parse(
        (await fetchManifest(airlock.url, 'cli/airlock-reads', 'v1')).bytes.toString(),
      ) as ArtifactManifest;
      const folder = manifest.layers.find(
        (l) => l.annotations?.['org.opencontainers.image.title'] === 'conf',
      );
      assert.equal(folder?.mediaType, MediaType.OciLayerGzip);
      assert.equal(folder.annotations?.['io.deis.oras.content.unpack'], 'true');

      const pulled = await airlockOk(env, ['pull', ref, '-d', dst, '-o', 'json']);
      assert.deepEqual(
        (JSON.parse(pulled.stdout) as { title: string; unpacked: boolean }[]).map((f) => [
          f.title,
          f.unpacked,
        ]),
        [
          ['notes.txt', false],
          ['data.bin', false],
          ['conf', true],
        ],
      );
      await assertSameFiles(src, dst);
    },
  );

  it(
    'gives the manifest digest oras gives for the same files and created stamp, and none with --no-created',
    { timeout: TEST_TIMEOUT_MS },
    async (t) => {
      const env = await cliEnv(t);
      const oras = orasFor(t, env);
      if (!oras) return;
      const airlock = await startAirlockForTest(t);
      const src = await tempDirForTest(t, 'cli-oras-same-');
      await makeFiles(src);
      const files = ['notes.txt', 'data.bin:application/vnd.example.data'];
      const cases = [
        { name: 'default', flags: [] },
        { name: 'typed', flags: ['--artifact-type', 'application/vnd.example.bundle'] },
      ];
      for (const c of cases) {
        const orasRef = `${airlock.host}/cli/same-oras:${c.name}`;
        const airlockRef = `${airlock.host}/cli/same-airlock:${c.name}`;
        await oras(['push', orasRef, ...files, '--annotation', CREATED, ...c.flags], src);
        const pushed = await airlockOk(env, ['push', airlockRef, ...files, '-a', CREATED, ...c.flags], {
          cwd: src,
        });
        const fromOras = await fetchManifest(airlock.url, 'cli/same-oras', c.name);
        const fromAirlock = await fetchManifest(airlock.url, 'cli/same-airlock', c.name);
        assert.equal(fromAirlock.bytes.toString(), fromOras.bytes.toString(), c.name);
        assert.equal(sha256(fromAirlock.bytes), sha256(fromOras.bytes));
        assert.match(pushed.stdout, new RegExp(`Digest: ${sha256(fromOras.bytes)}`));
      }

      await airlockOk(env, ['push', `${airlock.host}/cli/same-airlock:bare`, 'notes.txt', '--no-created'], {
        cwd: src,
      });
      const bare = JSON.parse(
        (await fetchManifest(airlock.url, 'cli/same-airlock', 'bare')).bytes.toString(),
      ) as ArtifactManifest;
      assert.equal(bare.annotations, undefined);
      assert.deepEqual(
        bare.layers.map((l) => l.digest),
        [sha256(await readFile(join(src, 'notes.txt')))],
      );
    },
  );

  it(
    'lists and copies (--with-referrers) what oras attach attached, and oras discovers it on the copy',
    { timeout: TEST_TIMEOUT_MS },
    async (t) => {
      const env = await cliEnv(t);
      const oras = orasFor(t, env);
      if (!oras) return;
      const airlock = await startAirlockForTest(t);
      const distribution = await startDistributionForTest(t);
      if (!distribution) return;
      const src = await tempDirForTest(t, 'cli-oras-attach-');
      await makeFiles(src);
      const subject = `${airlock.host}/cli/signed:v1`;
      await airlockOk(env, ['push', subject, 'notes.txt'], { cwd: src });
      const attached = await oras(
        ['attach', subject, 'data.bin', '--artifact-type', 'application/vnd.example.sbom'],
        src,
      );
      const sbom = /Digest: (sha256:[0-9a-f]{64})/.exec(attached.stdout)?.[1];
      assert.ok(sbom, attached.stdout);

      const listed = await airlockOk(env, ['referrers', subject, '-o', 'json']);
      assert.deepEqual(
        (JSON.parse(listed.stdout) as { digest: string; artifactType?: string }[]).map((d) => [
          d.digest,
          d.artifactType,
        ]),
        [[sbom, 'application/vnd.example.sbom']],
      );

      // To Airlock (referrers API) and to docker-registry (no referrers API: the sha256-<hex> tag).
      for (const dest of [`${airlock.host}/cli/signed-copy:v1`, `${distribution.host}/cli/signed-copy:v1`]) {
        await airlockOk(env, ['copy', '--with-referrers', subject, dest]);
        const discovered = await oras(['discover', dest, '--format', 'json']);
        const found = JSON.parse(discovered.stdout) as {
          manifests?: { digest: string }[];
          referrers?: { digest: string }[];
        };
        assert.deepEqual(
          (found.manifests ?? found.referrers ?? []).map((m) => m.digest),
          [sbom],
          dest,
        );
        const out = await tempDirForTest(t, 'cli-oras-sbom-');
        await oras(['pull', `${dest.replace(/:v1$/, '')}@${sbom}`, '-o', out]);
        assert.deepEqual(await readFile(join(out, 'data.bin')), await readFile(join(src, 'data.bin')));
      }
    },
  );
});
