// airlock append against crane append: each reads what the other pushed, and the same gzip layer gives
// byte-identical manifests and configs (a plain tar differs only in how it was gzipped).
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { gunzipSync, gzipSync } from 'node:zlib';
import { extract } from 'tar-stream';
import { Readable } from 'node:stream';
import { MediaType } from '../../src/oci/index.js';
import { airlockBytes, airlockOk, cliEnv, type CliEnv } from '../helpers/cli.js';
import {
  fetchBlob,
  fetchManifest,
  nonce,
  runForBytes,
  runToolOk,
  sha256,
  startAirlockForTest,
  tarArchive,
  tempDirForTest,
  TEST_TIMEOUT_MS,
} from '../helpers/interop.js';
import { requirePeer } from '../helpers/peers.js';
import type { CommandResult } from '../helpers/processes.js';

interface Crane {
  run(args: readonly string[]): Promise<CommandResult>;
  bytes(args: readonly string[]): Promise<Buffer>;
}

/** crane with plain HTTP allowed and the test's private DOCKER_CONFIG. */
function craneFor(t: TestContext, env: CliEnv): Crane | undefined {
  const bin = requirePeer(t, 'crane');
  if (!bin) return undefined;
  return {
    run: (args) => runToolOk(bin, [...args, '--insecure'], { env: env.env }),
    bytes: (args) => runForBytes(bin, [...args, '--insecure'], { env: env.env }),
  };
}

interface Manifest {
  readonly mediaType: string;
  readonly config: { readonly mediaType: string; readonly digest: string };
  readonly layers: readonly { readonly mediaType: string; readonly digest: string }[];
}

function parse<T>(bytes: Buffer): T {
  return JSON.parse(bytes.toString('utf8')) as T;
}

/** Files of a tar (plain), by name. */
async function tarFiles(tar: Buffer): Promise<Map<string, Buffer>> {
  const files = new Map<string, Buffer>();
  const ex = extract();
  const done = new Promise<void>((resolve, reject) => {
    ex.on('entry', (header, stream, next) => {
      const chunks: Buffer[] = [];
      stream.on('data', (c: unknown) => chunks.push(c as Buffer));
      stream.on('end', () => {
        if (header.type === 'file') files.set(header.name, Buffer.concat(chunks));
        next();
      });
    });
    ex.on('finish', resolve);
    ex.on('error', reject);
  });
  Readable.from([tar]).pipe(ex);
  await done;
  return files;
}

describe('airlock append and crane', () => {
  it(
    'crane reads what airlock append pushed, and airlock reads what crane append pushed',
    { timeout: TEST_TIMEOUT_MS },
    async (t) => {
      const env = await cliEnv(t);
      const crane = craneFor(t, env);
      if (!crane) return;
      const airlock = await startAirlockForTest(t);
      const work = await tempDirForTest(t, 'cli-crane-');
      const script = `echo ${nonce()}\n`;
      const tar = tarArchive([{ path: 'app/' }, { path: 'app/run.sh', content: script, mode: 0o755 }]);
      await writeFile(join(work, 'layer.tar'), tar);

      const ours = `${airlock.host}/cli/crane-reads:v1`;
      await airlockOk(env, ['append', '-f', join(work, 'layer.tar'), '-t', ours]);
      const craneManifest = await crane.bytes(['manifest', ours]);
      assert.deepEqual(craneManifest, (await fetchManifest(airlock.url, 'cli/crane-reads', 'v1')).bytes);
      assert.deepEqual(await crane.bytes(['config', ours]), await airlockBytes(env, ['config', ours]));
      assert.equal((await crane.run(['digest', ours])).stdout.trim(), sha256(craneManifest));
      const exported = await tarFiles(await crane.bytes(['export', ours, '-']));
      assert.equal(exported.get('app/run.sh')?.toString(), script);
      await crane.run(['pull', '--format', 'oci', ours, join(work, 'pulled')]);

      const theirs = `${airlock.host}/cli/airlock-reads:v1`;
      await crane.run(['append', '-f', join(work, 'layer.tar'), '-t', theirs]);
      assert.deepEqual(
        await airlockBytes(env, ['manifest', theirs]),
        await crane.bytes(['manifest', theirs]),
      );
      assert.deepEqual(await airlockBytes(env, ['config', theirs]), await crane.bytes(['config', theirs]));
      assert.equal(
        (await airlockOk(env, ['digest', theirs])).stdout.trim(),
        (await crane.run(['digest', theirs])).stdout.trim(),
      );
      const layer = parse<Manifest>(await airlockBytes(env, ['manifest', theirs])).layers[0];
      assert.ok(layer);
      const blob = await airlockBytes(env, ['blob', `${airlock.host}/cli/airlock-reads@${layer.digest}`]);
      assert.deepEqual(blob, await fetchBlob(airlock.url, 'cli/airlock-reads', layer.digest));
    },
  );

  it(
    'writes the manifest and config crane writes for a gzip layer: empty base, OCI empty base, crane-made base',
    { timeout: TEST_TIMEOUT_MS },
    async (t) => {
      const env = await cliEnv(t);
      const crane = craneFor(t, env);
      if (!crane) return;
      const airlock = await startAirlockForTest(t);
      const work = await tempDirForTest(t, 'cli-crane-same-');
      const gz = gzipSync(tarArchive([{ path: 'etc/' }, { path: 'etc/motd', content: `hi ${nonce()}\n` }]));
      const top = gzipSync(tarArchive([{ path: 'top.txt', content: `top ${nonce()}\n` }]));
      await writeFile(join(work, 'layer.tar.gz'), gz);
      await writeFile(join(work, 'top.tar.gz'), top);
      const repo = `${airlock.host}/cli/same`;
      await crane.run(['append', '-f', join(work, 'layer.tar.gz'), '-t', `${repo}:crane-base`]);

      const cases = [
        { name: 'empty', flags: [], file: 'layer.tar.gz', manifestType: MediaType.DockerManifest },
        {
          name: 'oci-empty',
          flags: ['--oci-empty-base'],
          file: 'layer.tar.gz',
          manifestType: MediaType.OciManifest,
        },
        {
          name: 'based',
          flags: ['-b', `${repo}:crane-base`],
          file: 'top.tar.gz',
          manifestType: MediaType.DockerManifest,
        },
      ];
      for (const c of cases) {
        const file = join(work, c.file);
        await crane.run(['append', '-f', file, '-t', `${repo}:crane-${c.name}`, ...c.flags]);
        const printed = await airlockOk(env, [
          'append',
          '-f',
          file,
          '-t',
          `${repo}:airlock-${c.name}`,
          ...c.flags,
        ]);
        const craneManifest = await crane.bytes(['manifest', `${repo}:crane-${c.name}`]);
        const ourManifest = await airlockBytes(env, ['manifest', `${repo}:airlock-${c.name}`]);
        assert.equal(ourManifest.toString(), craneManifest.toString(), c.name);
        assert.equal(parse<Manifest>(ourManifest).mediaType, c.manifestType);
        assert.match(printed.stdout, new RegExp(`@${sha256(craneManifest)}$`, 'm'));
        assert.deepEqual(
          await airlockBytes(env, ['config', `${repo}:airlock-${c.name}`]),
          await crane.bytes(['config', `${repo}:crane-${c.name}`]),
          c.name,
        );
      }
      assert.equal(
        parse<Manifest>(await airlockBytes(env, ['manifest', `${repo}:airlock-based`])).layers.length,
        2,
      );
    },
  );

  it(
    'for a plain tar writes the same media types and config as crane; only the gzipped layer differs',
    { timeout: TEST_TIMEOUT_MS },
    async (t) => {
      const env = await cliEnv(t);
      const crane = craneFor(t, env);
      if (!crane) return;
      const airlock = await startAirlockForTest(t);
      const work = await tempDirForTest(t, 'cli-crane-plain-');
      const tar = tarArchive([{ path: 'plain.txt', content: `plain ${nonce()}\n`.repeat(50) }]);
      await writeFile(join(work, 'layer.tar'), tar);
      const repo = `${airlock.host}/cli/plain`;
      const variants: readonly (readonly string[])[] = [[], ['--oci-empty-base']];
      for (const flags of variants) {
        const tag = flags.length ? 'oci' : 'docker';
        await crane.run(['append', '-f', join(work, 'layer.tar'), '-t', `${repo}:crane-${tag}`, ...flags]);
        await airlockOk(env, [
          'append',
          '-f',
          join(work, 'layer.tar'),
          '-t',
          `${repo}:airlock-${tag}`,
          ...flags,
        ]);
        const theirs: Manifest = parse<Manifest>(await crane.bytes(['manifest', `${repo}:crane-${tag}`]));
        const ours: Manifest = parse<Manifest>(
          await airlockBytes(env, ['manifest', `${repo}:airlock-${tag}`]),
        );
        assert.equal(ours.mediaType, theirs.mediaType);
        assert.deepEqual(ours.config, theirs.config, 'same config descriptor, so the same config bytes');
        assert.deepEqual(
          ours.layers.map((l) => l.mediaType),
          theirs.layers.map((l) => l.mediaType),
        );
        const config = parse<{ rootfs: { diff_ids: string[] } }>(
          await airlockBytes(env, ['config', `${repo}:airlock-${tag}`]),
        );
        assert.deepEqual(config.rootfs.diff_ids, [sha256(tar)]);
        // Both layers are gzip of the same tar; the bytes (and so the digests) depend on the compressor.
        const layer = ours.layers[0];
        assert.ok(layer);
        const ourLayer = await fetchBlob(airlock.url, 'cli/plain', layer.digest);
        assert.deepEqual(gunzipSync(ourLayer), tar);
      }
    },
  );
});
