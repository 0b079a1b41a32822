import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { gunzipSync } from 'node:zlib';
import {
  artifactDifferences,
  buildIndex,
  buildSimpleImage,
  fetchBlob,
  fetchManifest,
  fetchTags,
  loggedRequests,
  manifestStatus,
  nonce,
  runToolOk,
  pushArtifact,
  readLayoutBlob,
  startAirlockForTest,
  tarArchive,
  tempDirForTest,
  TEST_TIMEOUT_MS,
  writeOciLayout,
} from '../helpers/interop.js';
import { requirePeer } from '../helpers/peers.js';
import { startDistribution, type CommandResult } from '../helpers/processes.js';

type Crane = (args: readonly string[]) => Promise<CommandResult>;

/** crane with plain HTTP allowed and a private DOCKER_CONFIG (no credentials of the user's leak in). */
async function craneFor(t: TestContext): Promise<Crane | undefined> {
  const bin = requirePeer(t, 'crane');
  if (!bin) return undefined;
  const config = await tempDirForTest(t, 'crane-config-');
  return (args) => runToolOk(bin, [...args, '--insecure'], { env: { DOCKER_CONFIG: config } });
}

interface Manifest {
  readonly config: { readonly digest: string };
  readonly layers: readonly { readonly digest: string; readonly mediaType: string }[];
}

function parse(bytes: Buffer): Manifest {
  return JSON.parse(bytes.toString('utf8')) as Manifest;
}

describe('crane against Airlock', () => {
  it(
    'appends layers to an empty base and to an image in Airlock, and pulls the result as an OCI layout',
    { timeout: TEST_TIMEOUT_MS },
    async (t) => {
      const crane = await craneFor(t);
      if (!crane) return;
      const airlock = await startAirlockForTest(t);
      const work = await tempDirForTest(t, 'crane-append-');
      const first = tarArchive([
        { path: 'app/', mode: 0o755 },
        { path: 'app/one.txt', content: `one ${nonce()}\n` },
      ]);
      const second = tarArchive([{ path: 'app/two.txt', content: `two ${nonce()}\n` }]);
      await writeFile(join(work, 'one.tar'), first);
      await writeFile(join(work, 'two.tar'), second);
      const v1 = `${airlock.host}/project/crane/app:v1`;
      const v2 = `${airlock.host}/project/crane/app:v2`;

      await crane(['append', '--oci-empty-base', '-f', join(work, 'one.tar'), '-t', v1]);
      const m1 = await fetchManifest(airlock.url, 'project/crane/app', 'v1');
      const layer1 = parse(m1.bytes).layers[0];
      assert.ok(layer1);
      assert.deepEqual(gunzipSync(await fetchBlob(airlock.url, 'project/crane/app', layer1.digest)), first);

      await crane(['append', '-b', v1, '-f', join(work, 'two.tar'), '-t', v2]);
      const m2 = parse((await fetchManifest(airlock.url, 'project/crane/app', 'v2')).bytes);
      assert.equal(m2.layers.length, 2);
      assert.equal(m2.layers[0]?.digest, layer1.digest);
      assert.deepEqual(
        gunzipSync(await fetchBlob(airlock.url, 'project/crane/app', m2.layers[1]?.digest ?? '')),
        second,
      );

      const digest = (await crane(['digest', v2])).stdout.trim();
      assert.equal(digest, (await fetchManifest(airlock.url, 'project/crane/app', 'v2')).digest);
      const out = join(work, 'layout');
      await crane(['pull', '--format', 'oci', v2, out]);
      const pulled = JSON.parse(await readFile(join(out, 'index.json'), 'utf8')) as {
        manifests: { digest: string }[];
      };
      assert.equal(pulled.manifests[0]?.digest, digest);
      assert.deepEqual(
        await readLayoutBlob(out, digest),
        (await fetchManifest(airlock.url, 'project/crane/app', 'v2')).bytes,
      );
      for (const layer of m2.layers) {
        assert.deepEqual(
          await readLayoutBlob(out, layer.digest),
          await fetchBlob(airlock.url, 'project/crane/app', layer.digest),
        );
      }
    },
  );

  it(
    'pushes an OCI layout byte for byte, and a pulled tarball back with the same config and layers',
    { timeout: TEST_TIMEOUT_MS },
    async (t) => {
      const crane = await craneFor(t);
      if (!crane) return;
      const airlock = await startAirlockForTest(t);
      const work = await tempDirForTest(t, 'crane-push-');
      const image = buildSimpleImage({ randomBytes: 256 * 1024 });
      await writeOciLayout(join(work, 'layout'), { tag: 'v1', artifact: image });

      await crane(['push', join(work, 'layout'), `${airlock.host}/project/crane/layout:v1`]);
      assert.deepEqual(await artifactDifferences(airlock.url, 'project/crane/layout', image), []);
      assert.equal(
        (await fetchManifest(airlock.url, 'project/crane/layout', 'v1')).digest,
        image.descriptor.digest,
      );

      await crane(['pull', `${airlock.host}/project/crane/layout:v1`, join(work, 'image.tar')]);
      await crane(['push', join(work, 'image.tar'), `${airlock.host}/project/crane/tarball:v1`]);
      const fromTarball = await fetchManifest(airlock.url, 'project/crane/tarball', 'v1');
      // A docker-save tarball keeps the config and layers; the manifest is rebuilt around them.
      const manifest = parse(fromTarball.bytes);
      assert.equal(manifest.config.digest, image.config.digest);
      assert.deepEqual(
        manifest.layers.map((l) => l.digest),
        image.layers.map((l) => l.digest),
      );
      assert.deepEqual(
        await fetchBlob(airlock.url, 'project/crane/tarball', image.config.digest),
        image.blobs.get(image.config.digest),
      );
    },
  );

  it(
    'copies an image between repositories by mounting its blobs, and copies an index with all children',
    { timeout: TEST_TIMEOUT_MS },
    async (t) => {
      const crane = await craneFor(t);
      if (!crane) return;
      const airlock = await startAirlockForTest(t);
      const image = buildSimpleImage({ randomBytes: 128 * 1024 });
      await pushArtifact(airlock.url, { repository: 'project/crane/source', tag: 'v1' }, image);

      const before = loggedRequests(airlock.output()).length;
      const copied = await crane([
        'copy',
        `${airlock.host}/project/crane/source:v1`,
        `${airlock.host}/project/crane/target:v1`,
      ]);
      const requests = loggedRequests(airlock.output()).slice(before);
      assert.equal(copied.stderr.match(/mounted blob/g)?.length, image.blobs.size, copied.stderr);
      assert.equal(
        requests.filter((r) => r.route === 'upload').length,
        0,
        'a blob was uploaded instead of mounted',
      );
      assert.deepEqual(await artifactDifferences(airlock.url, 'project/crane/target', image), []);

      const index = buildIndex([
        buildSimpleImage({ platform: { os: 'linux', architecture: 'amd64' } }),
        buildSimpleImage({ platform: { os: 'linux', architecture: 's390x' } }),
      ]);
      await pushArtifact(airlock.url, { repository: 'project/crane/multi', tag: 'v1' }, index);
      await crane([
        'copy',
        `${airlock.host}/project/crane/multi:v1`,
        `${airlock.host}/project/crane/multi-copy:v1`,
      ]);
      assert.deepEqual(await artifactDifferences(airlock.url, 'project/crane/multi-copy', index), []);
    },
  );

  it(
    'copies an image and an index to the docker-registry peer and back unchanged',
    { timeout: TEST_TIMEOUT_MS },
    async (t) => {
      const crane = await craneFor(t);
      if (!crane) return;
      if (!requirePeer(t, 'docker-registry')) return;
      const airlock = await startAirlockForTest(t);
      const peer = await startDistribution();
      t.after(() => peer.stop());
      const index = buildIndex([
        buildSimpleImage({ platform: { os: 'linux', architecture: 'amd64' } }),
        buildSimpleImage({ platform: { os: 'linux', architecture: 'arm64', variant: 'v8' } }),
      ]);
      await pushArtifact(airlock.url, { repository: 'project/crane/multi', tag: 'v1' }, index);

      await crane(['copy', `${airlock.host}/project/crane/multi:v1`, `${peer.host}/peer/multi:v1`]);
      assert.deepEqual(await artifactDifferences(peer.url, 'peer/multi', index), []);
      await crane(['copy', `${peer.host}/peer/multi:v1`, `${airlock.host}/project/crane/back:v1`]);
      assert.deepEqual(await artifactDifferences(airlock.url, 'project/crane/back', index), []);
      assert.equal(
        (await crane(['digest', `${airlock.host}/project/crane/back:v1`])).stdout.trim(),
        index.descriptor.digest,
      );
    },
  );

  it('lists tags, resolves digests and deletes a manifest', { timeout: TEST_TIMEOUT_MS }, async (t) => {
    const crane = await craneFor(t);
    if (!crane) return;
    const airlock = await startAirlockForTest(t);
    const image = buildSimpleImage();
    await pushArtifact(airlock.url, { repository: 'project/crane/tags', tag: 'v1' }, image);
    const repo = `${airlock.host}/project/crane/tags`;
    await crane(['tag', `${repo}:v1`, 'v2']);
    await crane(['tag', `${repo}:v1`, 'latest']);

    const listed = (await crane(['ls', repo])).stdout.trim().split('\n').sort();
    assert.deepEqual(listed, ['latest', 'v1', 'v2']);
    assert.equal((await crane(['digest', `${repo}:v2`])).stdout.trim(), image.descriptor.digest);
    const raw = (await crane(['manifest', `${repo}:latest`])).stdout;
    assert.equal(raw, image.bytes.toString('utf8'));

    await crane(['delete', `${repo}@${image.descriptor.digest}`]);
    assert.equal(await manifestStatus(airlock.url, 'project/crane/tags', image.descriptor.digest), 404);
    assert.deepEqual(await fetchTags(airlock.url, 'project/crane/tags'), []);
    assert.equal((await crane(['ls', repo])).stdout.trim(), '');
  });
});
