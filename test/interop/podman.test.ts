import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { gunzipSync } from 'node:zlib';
import {
  buildIndex,
  buildSimpleImage,
  fetchBlob,
  fetchManifest,
  nonce,
  runToolOk,
  pushArtifact,
  startAirlockForTest,
  tarArchive,
  tempDirForTest,
  TEST_TIMEOUT_MS,
  type TarFile,
} from '../helpers/interop.js';
import { requirePeer } from '../helpers/peers.js';
import type { CommandResult } from '../helpers/processes.js';

type Tool = (args: readonly string[]) => Promise<CommandResult>;

/** Storage flags for a throwaway image store (vfs: works without overlay or fuse), shared by podman and buildah. */
async function isolatedStorage(t: TestContext): Promise<string[]> {
  const dir = await tempDirForTest(t, 'podman-storage-');
  return ['--root', join(dir, 'root'), '--runroot', join(dir, 'run'), '--storage-driver', 'vfs'];
}

function tool(binary: string, storage: readonly string[], extra: readonly string[] = []): Tool {
  return (args) => runToolOk(binary, [...storage, ...extra, ...args]);
}

/** podman on `storage`, with its libpod state under `work` and no journald or systemd needed. */
function podmanTool(binary: string, storage: readonly string[], work: string): Tool {
  return tool(binary, storage, [
    '--tmpdir',
    join(work, 'tmp'),
    '--events-backend',
    'none',
    '--cgroup-manager',
    'cgroupfs',
  ]);
}

interface ImageInfo {
  readonly Id: string;
  readonly Digest: string;
  readonly RepoDigests: string[];
}

async function inspect(podman: Tool, reference: string): Promise<ImageInfo> {
  const result = await podman(['image', 'inspect', reference]);
  const [info] = JSON.parse(result.stdout) as ImageInfo[];
  assert.ok(info, `podman image inspect ${reference} printed nothing`);
  return info;
}

describe('podman and buildah against Airlock', () => {
  it(
    'pushes an image buildah built from scratch and pulls it back with the same id',
    { timeout: TEST_TIMEOUT_MS },
    async (t) => {
      const podmanBin = requirePeer(t, 'podman');
      const buildahBin = requirePeer(t, 'buildah');
      if (!podmanBin || !buildahBin) return;
      const airlock = await startAirlockForTest(t);
      const storage = await isolatedStorage(t);
      const work = await tempDirForTest(t, 'podman-build-');
      const podman = podmanTool(podmanBin, storage, work);
      const buildah = tool(buildahBin, storage);
      const content = `built by buildah ${nonce()}\n`;
      await writeFile(join(work, 'hello.txt'), content);

      const container = (await buildah(['from', 'scratch'])).stdout.trim();
      await buildah(['copy', container, join(work, 'hello.txt'), '/hello.txt']);
      await buildah(['config', '--cmd', '/hello.txt', '--label', 'org.example.test=airlock', container]);
      await buildah(['commit', '--format', 'oci', container, 'localhost/built:v1']);
      await buildah(['rm', container]);
      const built = await inspect(podman, 'localhost/built:v1');

      const remote = `${airlock.host}/project/podman/built:v1`;
      await podman(['tag', 'localhost/built:v1', remote]);
      const digestFile = join(work, 'digest');
      await podman(['push', '--tls-verify=false', '--digestfile', digestFile, remote]);
      const pushedDigest = (await readFile(digestFile, 'utf8')).trim();
      const served = await fetchManifest(airlock.url, 'project/podman/built', 'v1');
      assert.equal(served.digest, pushedDigest);
      const manifest = JSON.parse(served.bytes.toString()) as {
        config: { digest: string };
        layers: { digest: string }[];
      };
      // An image's id is its config digest: the config crossed the registry unchanged.
      assert.equal(manifest.config.digest, `sha256:${built.Id}`);
      assert.equal(manifest.layers.length, 1);

      await podman(['rmi', '--force', remote, 'localhost/built:v1']);
      const images = await podman(['images', '--quiet']);
      assert.equal(images.stdout.trim(), '', 'the local store still holds an image');
      await podman(['pull', '--tls-verify=false', remote]);
      const pulled = await inspect(podman, remote);
      assert.equal(pulled.Id, built.Id);
      assert.equal(pulled.Digest, pushedDigest);
      assert.ok(
        pulled.RepoDigests.includes(`${airlock.host}/project/podman/built@${pushedDigest}`),
        JSON.stringify(pulled.RepoDigests),
      );

      // The layer Airlock holds really carries the file buildah copied in.
      const layer = await fetchBlob(airlock.url, 'project/podman/built', manifest.layers[0]?.digest ?? '');
      assert.ok(gunzipSync(layer).includes(content), 'the pushed layer does not contain hello.txt');
    },
  );

  it(
    'loads an OCI archive, pushes it, and pulls one platform of a multi-arch index',
    { timeout: TEST_TIMEOUT_MS },
    async (t) => {
      const podmanBin = requirePeer(t, 'podman');
      if (!podmanBin) return;
      const airlock = await startAirlockForTest(t);
      const storage = await isolatedStorage(t);
      const work = await tempDirForTest(t, 'podman-archive-');
      const podman = podmanTool(podmanBin, storage, work);

      // An oci-archive is an OCI layout in a tar.
      const image = buildSimpleImage();
      const files: TarFile[] = [
        { path: 'oci-layout', content: JSON.stringify({ imageLayoutVersion: '1.0.0' }) },
        {
          path: 'index.json',
          content: JSON.stringify({
            schemaVersion: 2,
            manifests: [{ ...image.descriptor, annotations: { 'org.opencontainers.image.ref.name': 'v1' } }],
          }),
        },
        { path: 'blobs/' },
        { path: 'blobs/sha256/' },
        { path: `blobs/sha256/${image.descriptor.digest.slice(7)}`, content: image.bytes },
        ...[...image.blobs].map(([digest, bytes]) => ({
          path: `blobs/sha256/${digest.slice(7)}`,
          content: bytes,
        })),
      ];
      await writeFile(join(work, 'image.tar'), tarArchive(files));
      await podman(['load', '--input', join(work, 'image.tar')]);
      const loaded = await inspect(podman, `sha256:${image.config.digest.slice(7)}`);
      assert.equal(`sha256:${loaded.Id}`, image.config.digest);

      const remote = `${airlock.host}/project/podman/loaded:v1`;
      await podman(['push', '--tls-verify=false', '--format', 'oci', loaded.Id, remote]);
      const served = await fetchManifest(airlock.url, 'project/podman/loaded', 'v1');
      const manifest = JSON.parse(served.bytes.toString()) as { config: { digest: string } };
      assert.equal(manifest.config.digest, image.config.digest);
      assert.deepEqual(
        await fetchBlob(airlock.url, 'project/podman/loaded', image.config.digest),
        image.blobs.get(image.config.digest),
      );

      const amd64 = buildSimpleImage({ platform: { os: 'linux', architecture: 'amd64' } });
      const arm64 = buildSimpleImage({ platform: { os: 'linux', architecture: 'arm64', variant: 'v8' } });
      const index = buildIndex([amd64, arm64]);
      await pushArtifact(airlock.url, { repository: 'project/podman/multi', tag: 'v1' }, index);
      const multi = `${airlock.host}/project/podman/multi:v1`;
      await podman(['pull', '--tls-verify=false', '--platform', 'linux/arm64/v8', multi]);
      const pulled = await inspect(podman, multi);
      assert.equal(`sha256:${pulled.Id}`, arm64.config.digest);
      assert.equal(pulled.Digest, index.descriptor.digest);
    },
  );
});
