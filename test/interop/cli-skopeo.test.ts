// airlock copy/pull against skopeo, umoci and podman: multi-arch indexes keep every digest, layouts written by
// airlock are read by skopeo and umoci, and docker-archives written by skopeo and podman push intact.
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { MediaType } from '../../src/oci/index.js';
import { airlock, airlockBytes, airlockOk, cliEnv, type CliEnv } from '../helpers/cli.js';
import {
  buildImage,
  buildIndex,
  buildSimpleImage,
  fetchManifest,
  layoutEntry,
  nonce,
  readLayoutBlob,
  runForBytes,
  runToolOk,
  sha256,
  startAirlockForTest,
  tarArchive,
  tempDirForTest,
  TEST_TIMEOUT_MS,
  writeOciLayout,
  type BuiltImage,
} from '../helpers/interop.js';
import { requirePeer } from '../helpers/peers.js';
import type { CommandResult } from '../helpers/processes.js';

type Tool = (args: readonly string[]) => Promise<CommandResult>;

function tool(t: TestContext, name: string, env: CliEnv, extra: readonly string[] = []): Tool | undefined {
  const bin = requirePeer(t, name);
  if (!bin) return undefined;
  return (args) => runToolOk(bin, [...extra, ...args], { env: env.env });
}

interface Config {
  readonly rootfs: { readonly diff_ids: readonly string[] };
}

function configOf(image: BuiltImage): Buffer {
  const bytes = image.blobs.get(image.config.digest);
  assert.ok(bytes);
  return bytes;
}

describe('airlock CLI with skopeo, umoci and podman', () => {
  it(
    'copies out, to oci:DIR, the multi-arch index skopeo copy --all put in, with every digest kept',
    { timeout: TEST_TIMEOUT_MS },
    async (t) => {
      const env = await cliEnv(t);
      const skopeo = tool(t, 'skopeo', env);
      if (!skopeo) return;
      const airlockServer = await startAirlockForTest(t);
      const work = await tempDirForTest(t, 'cli-skopeo-multi-');
      const amd = buildSimpleImage({ platform: { os: 'linux', architecture: 'amd64' } });
      const arm = buildSimpleImage({ platform: { os: 'linux', architecture: 'arm64', variant: 'v8' } });
      const index = buildIndex([amd, arm]);
      await writeOciLayout(join(work, 'src'), { tag: 'multi', artifact: index });
      const ref = `${airlockServer.host}/cli/multi:v1`;
      await skopeo([
        'copy',
        '--all',
        '--preserve-digests',
        '--dest-tls-verify=false',
        `oci:${join(work, 'src')}:multi`,
        `docker://${ref}`,
      ]);

      const out = join(work, 'out');
      await airlockOk(env, ['copy', ref, `oci:${out}:v1`]);
      const entry = await layoutEntry(out, 'v1');
      assert.equal(entry.digest, index.descriptor.digest);
      assert.equal(entry.mediaType, MediaType.OciIndex);
      for (const manifest of [index, amd, arm]) {
        assert.deepEqual(await readLayoutBlob(out, manifest.descriptor.digest), manifest.bytes);
      }
      for (const [digest, bytes] of index.blobs) assert.deepEqual(await readLayoutBlob(out, digest), bytes);

      // skopeo reads airlock's layout: the same index, and each platform's config.
      assert.deepEqual(
        await runForBytes('skopeo', ['inspect', '--raw', `oci:${out}:v1`], { env: env.env }),
        index.bytes,
      );
      const armConfig = await runForBytes(
        'skopeo',
        [
          'inspect',
          '--config',
          '--raw',
          '--override-arch',
          'arm64',
          '--override-variant',
          'v8',
          `oci:${out}:v1`,
        ],
        { env: env.env },
      );
      assert.deepEqual(armConfig, configOf(arm));
      await skopeo(['copy', '--all', '--preserve-digests', `oci:${out}:v1`, `oci:${join(work, 'again')}:v1`]);
      assert.equal((await layoutEntry(join(work, 'again'), 'v1')).digest, index.descriptor.digest);

      const single = join(work, 'single');
      await airlockOk(env, ['copy', '--platform', 'linux/arm64', ref, `oci:${single}:arm`]);
      assert.equal((await layoutEntry(single, 'arm')).digest, arm.descriptor.digest);
    },
  );

  it(
    'pull --layout writes an OCI layout that skopeo and umoci read',
    { timeout: TEST_TIMEOUT_MS },
    async (t) => {
      const env = await cliEnv(t);
      const skopeo = tool(t, 'skopeo', env);
      const umoci = tool(t, 'umoci', env);
      if (!skopeo || !umoci) return;
      const airlockServer = await startAirlockForTest(t);
      const work = await tempDirForTest(t, 'cli-skopeo-layout-');
      const content = `served by airlock ${nonce()}\n`;
      const image = buildImage({ layers: [[{ path: 'etc/' }, { path: 'etc/message', content }]] });
      await writeOciLayout(join(work, 'src'), { tag: 'v1', artifact: image });
      const ref = `${airlockServer.host}/cli/layout:v1`;
      await airlockOk(env, ['copy', `oci:${join(work, 'src')}:v1`, ref]);

      const layout = join(work, 'layout');
      await airlockOk(env, ['pull', ref, '--layout', layout]);
      assert.deepEqual(
        await runForBytes('skopeo', ['inspect', '--raw', `oci:${layout}:v1`], { env: env.env }),
        image.bytes,
      );
      assert.deepEqual(
        await runForBytes('skopeo', ['inspect', '--config', '--raw', `oci:${layout}:v1`], { env: env.env }),
        configOf(image),
      );
      assert.match((await umoci(['ls', '--layout', layout])).stdout, /^v1$/m);
      const bundle = join(work, 'bundle');
      await umoci(['unpack', '--rootless', '--image', `${layout}:v1`, bundle]);
      assert.equal(await readFile(join(bundle, 'rootfs', 'etc', 'message'), 'utf8'), content);
    },
  );

  it(
    'pull --layout of a Docker-media-type image gives a layout skopeo reads',
    {
      timeout: TEST_TIMEOUT_MS,
      todo: 'airlock (like crane) keeps Docker media types in the OCI layout; skopeo only reads OCI manifests from oci:',
    },
    async (t) => {
      const env = await cliEnv(t);
      const skopeo = tool(t, 'skopeo', env);
      if (!skopeo) return;
      const airlockServer = await startAirlockForTest(t);
      const work = await tempDirForTest(t, 'cli-skopeo-docker-layout-');
      const ref = `${airlockServer.host}/cli/docker-layout:v1`;
      await writeFile(join(work, 'layer.tar'), tarArchive([{ path: 'a.txt', content: 'a' }]));
      await airlockOk(env, ['append', '-f', join(work, 'layer.tar'), '-t', ref]);
      await airlockOk(env, ['pull', ref, '--layout', join(work, 'layout')]);
      await skopeo(['inspect', '--raw', `oci:${join(work, 'layout')}:v1`]);
    },
  );

  it(
    'pushes the docker-archive skopeo wrote; crane and skopeo then see the source config and diff_ids',
    { timeout: TEST_TIMEOUT_MS },
    async (t) => {
      const env = await cliEnv(t);
      const skopeo = tool(t, 'skopeo', env);
      const crane = requirePeer(t, 'crane');
      if (!skopeo || !crane) return;
      const airlockServer = await startAirlockForTest(t);
      const work = await tempDirForTest(t, 'cli-skopeo-archive-');
      const image = buildImage({
        layers: [
          [{ path: 'one.txt', content: nonce() }],
          [{ path: 'two/' }, { path: 'two/file', content: nonce() }],
        ],
      });
      await writeOciLayout(join(work, 'src'), { tag: 'v1', artifact: image });
      const archive = join(work, 'image.tar');
      await skopeo(['copy', `oci:${join(work, 'src')}:v1`, `docker-archive:${archive}:example/app:v1`]);

      const ref = `${airlockServer.host}/cli/from-docker-archive:v1`;
      await airlockOk(env, ['copy', `docker-archive:${archive}`, ref]);
      await airlockOk(env, [
        'copy',
        `docker-archive:${archive}:example/app:v1`,
        `${airlockServer.host}/cli/named:v1`,
      ]);
      assert.deepEqual(
        (await fetchManifest(airlockServer.url, 'cli/named', 'v1')).bytes,
        (await fetchManifest(airlockServer.url, 'cli/from-docker-archive', 'v1')).bytes,
      );

      const source = configOf(image);
      assert.deepEqual(await runForBytes(crane, ['config', ref, '--insecure'], { env: env.env }), source);
      assert.deepEqual(
        await runForBytes(
          'skopeo',
          ['inspect', '--config', '--raw', '--tls-verify=false', `docker://${ref}`],
          { env: env.env },
        ),
        source,
      );
      assert.deepEqual(await airlockBytes(env, ['config', ref]), source);
      // Pulled back through skopeo, the layers unpack to the source's diff_ids.
      const back = join(work, 'back');
      await skopeo(['copy', '--src-tls-verify=false', `docker://${ref}`, `oci:${back}:v1`]);
      const backManifest = JSON.parse(
        (await readLayoutBlob(back, (await layoutEntry(back, 'v1')).digest)).toString(),
      ) as {
        config: { digest: string };
      };
      const backConfig = JSON.parse(
        (await readLayoutBlob(back, backManifest.config.digest)).toString(),
      ) as Config;
      assert.deepEqual(backConfig.rootfs.diff_ids, (JSON.parse(source.toString()) as Config).rootfs.diff_ids);
    },
  );

  it(
    'pushes the docker-archive podman save wrote, with the config podman had',
    { timeout: TEST_TIMEOUT_MS },
    async (t) => {
      const env = await cliEnv(t);
      const podmanBin = requirePeer(t, 'podman');
      if (!podmanBin) return;
      const airlockServer = await startAirlockForTest(t);
      const work = await tempDirForTest(t, 'cli-podman-save-');
      const storage = join(work, 'storage');
      const podman = (args: readonly string[]): Promise<CommandResult> =>
        runToolOk(
          podmanBin,
          [
            '--root',
            join(storage, 'root'),
            '--runroot',
            join(storage, 'run'),
            '--storage-driver',
            'vfs',
            '--tmpdir',
            join(work, 'tmp'),
            '--events-backend',
            'none',
            '--cgroup-manager',
            'cgroupfs',
            ...args,
          ],
          { env: env.env },
        );
      // podman insists that $DOCKER_CONFIG/config.json exists.
      await writeFile(join(env.dockerConfig, 'config.json'), '{}');
      const image = buildSimpleImage();
      await writeOciLayout(join(work, 'src'), { tag: 'v1', artifact: image });
      const seeded = `${airlockServer.host}/cli/podman-src:v1`;
      await airlockOk(env, ['copy', `oci:${join(work, 'src')}:v1`, seeded]);
      await podman(['pull', '--tls-verify=false', seeded]);
      const archive = join(work, 'saved.tar');
      await podman(['save', '--format', 'docker-archive', '-o', archive, seeded]);

      const ref = `${airlockServer.host}/cli/from-podman:v1`;
      const copied = await airlock(env, ['copy', `docker-archive:${archive}`, ref]);
      assert.equal(copied.code, 0, copied.stderr);
      const config = await airlockBytes(env, ['config', ref]);
      assert.deepEqual(
        (JSON.parse(config.toString()) as Config).rootfs.diff_ids,
        (JSON.parse(configOf(image).toString()) as Config).rootfs.diff_ids,
      );
      assert.equal(sha256(config), image.config.digest);
    },
  );
});
