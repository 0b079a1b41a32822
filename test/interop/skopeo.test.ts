import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import {
  artifactDifferences,
  buildIndex,
  buildSimpleImage,
  fetchBlob,
  fetchManifest,
  fetchTags,
  layoutEntry,
  loggedRequests,
  manifestStatus,
  runToolOk,
  readLayoutBlob,
  startAirlockForTest,
  tempDirForTest,
  TEST_TIMEOUT_MS,
  writeOciLayout,
  type BuiltImage,
} from '../helpers/interop.js';
import { requirePeer } from '../helpers/peers.js';
import type { CommandResult } from '../helpers/processes.js';

// --insecure-policy: the tests must not depend on the host's /etc/containers/policy.json.
const COMMON = ['--insecure-policy'];

function skopeo(binary: string, args: readonly string[]): Promise<CommandResult> {
  return runToolOk(binary, [...COMMON, ...args]);
}

/** Every blob of `image` in the OCI layout at `dir`, byte for byte. */
async function assertLayoutHolds(dir: string, image: BuiltImage): Promise<void> {
  assert.deepEqual(await readLayoutBlob(dir, image.descriptor.digest), image.bytes);
  for (const [digest, bytes] of image.blobs)
    assert.deepEqual(await readLayoutBlob(dir, digest), bytes, `blob ${digest}`);
}

describe('skopeo against Airlock', () => {
  it(
    'copies an image from an OCI layout into Airlock and back out with the same digests',
    { timeout: TEST_TIMEOUT_MS },
    async (t) => {
      const bin = requirePeer(t, 'skopeo');
      if (!bin) return;
      const airlock = await startAirlockForTest(t);
      const work = await tempDirForTest(t, 'skopeo-copy-');
      // 3 MiB of random bytes: big enough that skopeo streams it rather than sending one small body.
      const image = buildSimpleImage({ randomBytes: 3 * 1024 * 1024 });
      await writeOciLayout(join(work, 'in'), { tag: 'v1', artifact: image });
      const remote = `docker://${airlock.host}/project/repo/img:v1`;

      await skopeo(bin, ['copy', '--dest-tls-verify=false', `oci:${join(work, 'in')}:v1`, remote]);
      const served = await fetchManifest(airlock.url, 'project/repo/img', 'v1');
      assert.equal(served.digest, image.descriptor.digest);
      assert.deepEqual(served.bytes, image.bytes);
      assert.deepEqual(await artifactDifferences(airlock.url, 'project/repo/img', image), []);

      await skopeo(bin, ['copy', '--src-tls-verify=false', remote, `oci:${join(work, 'out')}:v1`]);
      const entry = await layoutEntry(join(work, 'out'), 'v1');
      assert.equal(entry.digest, image.descriptor.digest);
      await assertLayoutHolds(join(work, 'out'), image);
    },
  );

  it('copies an image built by umoci in and out unchanged', { timeout: TEST_TIMEOUT_MS }, async (t) => {
    const bin = requirePeer(t, 'skopeo');
    const umoci = requirePeer(t, 'umoci');
    if (!bin || !umoci) return;
    const airlock = await startAirlockForTest(t);
    const work = await tempDirForTest(t, 'skopeo-umoci-');
    const layout = join(work, 'layout');
    const bundle = join(work, 'bundle');
    await runToolOk(umoci, ['init', '--layout', layout]);
    await runToolOk(umoci, ['new', '--image', `${layout}:v1`]);
    await runToolOk(umoci, ['unpack', '--rootless', '--image', `${layout}:v1`, bundle]);
    await writeFile(join(bundle, 'rootfs', 'hello.txt'), `made by umoci ${Date.now()}\n`);
    await runToolOk(umoci, ['repack', '--image', `${layout}:v1`, bundle]);
    await runToolOk(umoci, ['config', '--image', `${layout}:v1`, '--config.cmd', '/hello.txt']);
    const original = await layoutEntry(layout, 'v1');

    const remote = `docker://${airlock.host}/project/umoci/img:v1`;
    await skopeo(bin, ['copy', '--dest-tls-verify=false', `oci:${layout}:v1`, remote]);
    const served = await fetchManifest(airlock.url, 'project/umoci/img', 'v1');
    assert.equal(served.digest, original.digest);
    assert.deepEqual(served.bytes, await readLayoutBlob(layout, original.digest));

    await skopeo(bin, ['copy', '--src-tls-verify=false', remote, `oci:${join(work, 'out')}:v1`]);
    assert.equal((await layoutEntry(join(work, 'out'), 'v1')).digest, original.digest);
  });

  it(
    'copies a multi-platform index with --all and keeps the index and both children',
    { timeout: TEST_TIMEOUT_MS },
    async (t) => {
      const bin = requirePeer(t, 'skopeo');
      if (!bin) return;
      const airlock = await startAirlockForTest(t);
      const work = await tempDirForTest(t, 'skopeo-index-');
      const amd64 = buildSimpleImage({ platform: { os: 'linux', architecture: 'amd64' } });
      const arm64 = buildSimpleImage({ platform: { os: 'linux', architecture: 'arm64', variant: 'v8' } });
      const index = buildIndex([amd64, arm64]);
      await writeOciLayout(join(work, 'in'), { tag: 'multi', artifact: index });
      const remote = `docker://${airlock.host}/project/multi/img:multi`;

      await skopeo(bin, [
        'copy',
        '--all',
        '--dest-tls-verify=false',
        `oci:${join(work, 'in')}:multi`,
        remote,
      ]);
      const served = await fetchManifest(airlock.url, 'project/multi/img', 'multi');
      assert.equal(served.digest, index.descriptor.digest);
      assert.equal(served.mediaType, 'application/vnd.oci.image.index.v1+json');
      assert.deepEqual(served.bytes, index.bytes);
      for (const child of [amd64, arm64]) {
        assert.deepEqual(await artifactDifferences(airlock.url, 'project/multi/img', child), []);
      }

      await skopeo(bin, [
        'copy',
        '--all',
        '--src-tls-verify=false',
        remote,
        `oci:${join(work, 'out')}:multi`,
      ]);
      assert.equal((await layoutEntry(join(work, 'out'), 'multi')).digest, index.descriptor.digest);
      assert.deepEqual(await readLayoutBlob(join(work, 'out'), index.descriptor.digest), index.bytes);
      await assertLayoutHolds(join(work, 'out'), amd64);
      await assertLayoutHolds(join(work, 'out'), arm64);
    },
  );

  it(
    'mounts a layer it already pushed to another repository instead of uploading it again',
    { timeout: TEST_TIMEOUT_MS },
    async (t) => {
      const bin = requirePeer(t, 'skopeo');
      if (!bin) return;
      const airlock = await startAirlockForTest(t);
      const work = await tempDirForTest(t, 'skopeo-mount-');
      const image = buildSimpleImage({ randomBytes: 512 * 1024 });
      const layer = image.layers[0];
      assert.ok(layer);
      await writeOciLayout(join(work, 'in'), { tag: 'v1', artifact: image });

      await skopeo(bin, [
        'copy',
        '--dest-tls-verify=false',
        `oci:${join(work, 'in')}:v1`,
        `docker://${airlock.host}/project/first/img:v1`,
      ]);
      // skopeo learns where a blob lives from its blob-info cache (the first copy recorded it), and
      // then asks Airlock to mount it from that repository.
      const before = loggedRequests(airlock.output()).length;
      await skopeo(bin, [
        'copy',
        '--src-tls-verify=false',
        '--dest-tls-verify=false',
        `docker://${airlock.host}/project/first/img:v1`,
        `docker://${airlock.host}/project/second/img:v1`,
      ]);
      const second = loggedRequests(airlock.output()).slice(before);
      const mounts = second.filter((r) => r.method === 'POST' && r.route === 'uploads' && r.status === 201);
      const patches = second.filter(
        (r) => r.method === 'PATCH' && r.path.startsWith('/v2/project/second/img/'),
      );
      // The layer comes by mount (POST answered 201); only the small config may still be uploaded.
      assert.ok(mounts.length >= 1, `no mount in:\n${JSON.stringify(second, null, 1)}`);
      assert.ok(
        patches.length <= 1,
        `more than the config was uploaded:\n${JSON.stringify(second, null, 1)}`,
      );

      assert.deepEqual(
        await fetchBlob(airlock.url, 'project/second/img', layer.digest),
        image.blobs.get(layer.digest),
      );
      assert.equal(
        (await fetchManifest(airlock.url, 'project/second/img', 'v1')).digest,
        image.descriptor.digest,
      );
    },
  );

  it('deletes a manifest with skopeo delete', { timeout: TEST_TIMEOUT_MS }, async (t) => {
    const bin = requirePeer(t, 'skopeo');
    if (!bin) return;
    const airlock = await startAirlockForTest(t);
    const work = await tempDirForTest(t, 'skopeo-delete-');
    const image = buildSimpleImage();
    await writeOciLayout(join(work, 'in'), { tag: 'v1', artifact: image });
    const remote = `docker://${airlock.host}/project/del/img:v1`;
    await skopeo(bin, ['copy', '--dest-tls-verify=false', `oci:${join(work, 'in')}:v1`, remote]);
    assert.equal(await manifestStatus(airlock.url, 'project/del/img', 'v1'), 200);

    await skopeo(bin, ['delete', '--tls-verify=false', remote]);
    assert.equal(await manifestStatus(airlock.url, 'project/del/img', image.descriptor.digest), 404);
    assert.equal(await manifestStatus(airlock.url, 'project/del/img', 'v1'), 404);
  });

  it('lists the tags of a repository with skopeo list-tags', { timeout: TEST_TIMEOUT_MS }, async (t) => {
    const bin = requirePeer(t, 'skopeo');
    if (!bin) return;
    const airlock = await startAirlockForTest(t);
    const work = await tempDirForTest(t, 'skopeo-tags-');
    const image = buildSimpleImage();
    await writeOciLayout(join(work, 'in'), { tag: 'v1', artifact: image });
    const tags = ['v1', 'v1.1', 'latest', 'release-2024_01'];
    for (const tag of tags) {
      await skopeo(bin, [
        'copy',
        '--dest-tls-verify=false',
        `oci:${join(work, 'in')}:v1`,
        `docker://${airlock.host}/project/tags/img:${tag}`,
      ]);
    }
    const result = await skopeo(bin, [
      'list-tags',
      '--tls-verify=false',
      `docker://${airlock.host}/project/tags/img`,
    ]);
    const listed = JSON.parse(result.stdout) as { Repository: string; Tags: string[] };
    assert.equal(listed.Repository, `${airlock.host}/project/tags/img`);
    assert.deepEqual([...listed.Tags].sort(), [...tags].sort());
    assert.deepEqual((await fetchTags(airlock.url, 'project/tags/img')).sort(), [...tags].sort());
  });
});
