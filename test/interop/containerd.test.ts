import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  artifactDifferences,
  buildIndex,
  buildSimpleImage,
  pushArtifact,
  startAirlockForTest,
  TEST_TIMEOUT_MS,
  type BuiltArtifact,
} from '../helpers/interop.js';
import { requirePeer } from '../helpers/peers.js';
import { startContainerd, type Ctr } from '../helpers/containerd.js';

interface CtrImage {
  readonly ref: string;
  readonly digest: string;
}

async function listImages(ctr: Ctr): Promise<CtrImage[]> {
  const out = await ctr(['images', 'ls']);
  return out.stdout
    .split('\n')
    .slice(1)
    .filter((line) => line.trim() !== '')
    .map((line) => {
      const [ref = '', , digest = ''] = line.trim().split(/\s+/);
      return { ref, digest };
    });
}

/** Every manifest and blob of `artifact` is in containerd's content store with the same bytes. */
async function assertContentStored(ctr: Ctr, artifact: BuiltArtifact): Promise<void> {
  const expected = new Map(artifact.blobs);
  for (const manifest of [artifact, ...artifact.children])
    expected.set(manifest.descriptor.digest, manifest.bytes);
  for (const [digest, bytes] of expected) {
    assert.ok((await ctr.content(digest)).equals(bytes), `content ${digest} differs in containerd`);
  }
}

describe('containerd (ctr) against Airlock', () => {
  it(
    'pulls a multi-platform index over plain HTTP, unpacks it, and pushes it back unchanged',
    { timeout: TEST_TIMEOUT_MS },
    async (t) => {
      const containerd = requirePeer(t, 'containerd');
      const ctrBin = requirePeer(t, 'ctr');
      if (!containerd || !ctrBin) return;
      const airlock = await startAirlockForTest(t);
      const ctr = await startContainerd(t, { containerd, ctr: ctrBin });

      const index = buildIndex([
        buildSimpleImage({ platform: { os: 'linux', architecture: 'amd64' } }),
        buildSimpleImage({ platform: { os: 'linux', architecture: 'arm64', variant: 'v8' } }),
      ]);
      await pushArtifact(airlock.url, { repository: 'project/ctr/img', tag: 'v1' }, index);
      const ref = `${airlock.host}/project/ctr/img:v1`;

      const pull = await ctr([
        'images',
        'pull',
        '--plain-http',
        '--all-platforms',
        '--snapshotter',
        'native',
        ref,
      ]);
      // Unpacking applies every layer (tar+gzip) to a snapshot, so the layers are real, readable archives.
      assert.match(pull.stdout, new RegExp(`unpacking linux/amd64 ${index.descriptor.digest}`));
      assert.match(pull.stdout, new RegExp(`unpacking linux/arm64/v8 ${index.descriptor.digest}`));
      const snapshots = await ctr(['snapshots', '--snapshotter', 'native', 'ls']);
      assert.equal(snapshots.stdout.trim().split('\n').length - 1, 2, snapshots.stdout);
      const images = await listImages(ctr);
      assert.deepEqual(images, [{ ref, digest: index.descriptor.digest }]);
      await assertContentStored(ctr, index);
      const check = await ctr(['images', 'check']);
      assert.match(check.stdout, /complete/, check.stdout);

      const copy = `${airlock.host}/project/ctr/copy:v1`;
      await ctr(['images', 'tag', ref, copy]);
      await ctr(['images', 'push', '--plain-http', copy]);
      assert.deepEqual(await artifactDifferences(airlock.url, 'project/ctr/copy', index), []);
    },
  );
});
