import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import {
  artifactDifferences,
  fetchBlob,
  loggedRequests,
  sha256,
  buildIndex,
  buildSimpleImage,
  fetchManifest,
  fetchReferrers,
  fetchTags,
  manifestStatus,
  nonce,
  pushArtifact,
  runForBytes,
  runToolOk,
  startAirlockForTest,
  tempDirForTest,
  TEST_TIMEOUT_MS,
} from '../helpers/interop.js';
import { requirePeer } from '../helpers/peers.js';
import type { CommandResult, RunningProcess } from '../helpers/processes.js';

interface Regctl {
  (args: readonly string[], options?: { stdinFile?: string }): Promise<CommandResult>;
  /** Standard output as bytes. */
  bytes(args: readonly string[]): Promise<Buffer>;
}

/**
 * regctl with its configuration in a temp folder (REGCTL_CONFIG and HOME), told that Airlock speaks
 * plain HTTP with `regctl registry set --tls disabled`.
 */
async function regctlFor(t: TestContext, bin: string, airlock: RunningProcess): Promise<Regctl> {
  const home = await tempDirForTest(t, 'regctl-home-');
  const env = { HOME: home, REGCTL_CONFIG: join(home, 'regctl.json'), DOCKER_CONFIG: join(home, 'docker') };
  const regctl: Regctl = Object.assign(
    (args: readonly string[], options: { stdinFile?: string } = {}) =>
      runToolOk(bin, args, { env, ...options }),
    { bytes: (args: readonly string[]) => runForBytes(bin, args, { env }) },
  );
  await regctl(['registry', 'set', '--tls', 'disabled', airlock.host]);
  const config = JSON.parse(await readFile(env.REGCTL_CONFIG, 'utf8')) as {
    hosts?: Record<string, { tls?: string }>;
  };
  assert.equal(config.hosts?.[airlock.host]?.tls, 'disabled');
  return regctl;
}

describe('regctl against Airlock', () => {
  it(
    'copies an index, reads manifests and blobs, lists tags and repositories',
    { timeout: TEST_TIMEOUT_MS },
    async (t) => {
      const bin = requirePeer(t, 'regctl');
      if (!bin) return;
      const airlock = await startAirlockForTest(t);
      const regctl = await regctlFor(t, bin, airlock);
      const amd64 = buildSimpleImage({ platform: { os: 'linux', architecture: 'amd64' } });
      const arm64 = buildSimpleImage({ platform: { os: 'linux', architecture: 'arm64', variant: 'v8' } });
      const index = buildIndex([amd64, arm64]);
      await pushArtifact(airlock.url, { repository: 'project/regctl/src', tag: 'v1' }, index);
      const src = `${airlock.host}/project/regctl/src:v1`;
      const dst = `${airlock.host}/project/regctl/dst:v1`;

      await regctl(['image', 'copy', src, dst]);
      assert.deepEqual(await artifactDifferences(airlock.url, 'project/regctl/dst', index), []);
      assert.equal((await regctl(['image', 'digest', dst])).stdout.trim(), index.descriptor.digest);
      const raw = await regctl(['manifest', 'get', '--format', 'raw-body', dst]);
      assert.equal(raw.stdout, index.bytes.toString('utf8'));
      const child = await regctl([
        'manifest',
        'get',
        '--format',
        'raw-body',
        `${airlock.host}/project/regctl/dst@${arm64.descriptor.digest}`,
      ]);
      assert.equal(child.stdout, arm64.bytes.toString('utf8'));
      const platformDigest = await regctl(['image', 'digest', '--platform', 'linux/arm64/v8', dst]);
      assert.equal(platformDigest.stdout.trim(), arm64.descriptor.digest);
      const config = await regctl(['blob', 'get', `${airlock.host}/project/regctl/dst`, amd64.config.digest]);
      assert.equal(config.stdout, amd64.blobs.get(amd64.config.digest)?.toString('utf8'));

      await regctl(['image', 'copy', dst, `${airlock.host}/project/regctl/dst:v2`]);
      const tags = await regctl(['tag', 'ls', `${airlock.host}/project/regctl/dst`]);
      assert.deepEqual(tags.stdout.trim().split('\n'), ['v1', 'v2']);
      const repos = await regctl(['repo', 'ls', airlock.host]);
      assert.deepEqual(repos.stdout.trim().split('\n'), ['project/regctl/dst', 'project/regctl/src']);

      await regctl(['tag', 'delete', `${airlock.host}/project/regctl/dst:v2`]);
      assert.deepEqual(await fetchTags(airlock.url, 'project/regctl/dst'), ['v1']);
      assert.equal(await manifestStatus(airlock.url, 'project/regctl/dst', 'v1'), 200);
    },
  );

  it(
    'puts artifacts with a subject, lists them as referrers, and copies them with --referrers',
    { timeout: TEST_TIMEOUT_MS },
    async (t) => {
      const bin = requirePeer(t, 'regctl');
      if (!bin) return;
      const airlock = await startAirlockForTest(t);
      const regctl = await regctlFor(t, bin, airlock);
      const work = await tempDirForTest(t, 'regctl-artifact-');
      const image = buildSimpleImage();
      await pushArtifact(airlock.url, { repository: 'project/regctl/app', tag: 'v1' }, image);
      const subject = `${airlock.host}/project/regctl/app:v1`;
      const sbom = JSON.stringify({ spdxVersion: 'SPDX-2.3', name: nonce() });
      await writeFile(join(work, 'sbom.json'), sbom);
      await writeFile(join(work, 'sig.txt'), `signature ${nonce()}\n`);

      await regctl([
        'artifact',
        'put',
        '--subject',
        subject,
        '--artifact-type',
        'application/spdx+json',
        '--annotation',
        'org.example.tool=syft',
        '--file-media-type',
        'application/spdx+json',
        '--file',
        join(work, 'sbom.json'),
      ]);
      await regctl([
        'artifact',
        'put',
        '--subject',
        subject,
        '--artifact-type',
        'application/vnd.example.signature',
        '--file',
        join(work, 'sig.txt'),
      ]);

      const listed = JSON.parse(
        (await regctl(['artifact', 'list', '--format', '{{json .}}', subject])).stdout,
      ) as {
        descriptors: { digest: string; artifactType?: string }[];
      };
      assert.deepEqual(listed.descriptors.map((d) => d.artifactType).sort(), [
        'application/spdx+json',
        'application/vnd.example.signature',
      ]);
      const filtered = JSON.parse(
        (
          await regctl([
            'artifact',
            'list',
            '--filter-artifact-type',
            'application/spdx+json',
            '--format',
            '{{json .}}',
            subject,
          ])
        ).stdout,
      ) as { descriptors: { digest: string; annotations?: Record<string, string> }[] };
      assert.equal(filtered.descriptors.length, 1);
      assert.equal(filtered.descriptors[0]?.annotations?.['org.example.tool'], 'syft');
      const sbomDigest = filtered.descriptors[0]?.digest ?? '';
      const fetched = await regctl(['artifact', 'get', `${airlock.host}/project/regctl/app@${sbomDigest}`]);
      assert.equal(fetched.stdout, sbom);
      // The referrers API answers it, and no "sha256-<hex>" fallback tag was written.
      const referrers = await fetchReferrers(airlock.url, {
        repository: 'project/regctl/app',
        digest: image.descriptor.digest,
      });
      assert.deepEqual(referrers.map((d) => d.digest).sort(), listed.descriptors.map((d) => d.digest).sort());
      assert.deepEqual(await fetchTags(airlock.url, 'project/regctl/app'), ['v1']);

      await regctl(['image', 'copy', '--referrers', subject, `${airlock.host}/project/regctl/copy:v1`]);
      const copied = await fetchReferrers(airlock.url, {
        repository: 'project/regctl/copy',
        digest: image.descriptor.digest,
      });
      assert.deepEqual(copied.map((d) => d.digest).sort(), listed.descriptors.map((d) => d.digest).sort());
      const sbomManifest = await fetchManifest(airlock.url, 'project/regctl/copy', sbomDigest);
      assert.deepEqual(
        sbomManifest.bytes,
        (await fetchManifest(airlock.url, 'project/regctl/app', sbomDigest)).bytes,
      );
    },
  );

  it(
    'uploads a blob of unknown length in chunks (PATCH with Content-Range) and reads it back',
    { timeout: TEST_TIMEOUT_MS },
    async (t) => {
      const bin = requirePeer(t, 'regctl');
      if (!bin) return;
      const airlock = await startAirlockForTest(t);
      const regctl = await regctlFor(t, bin, airlock);
      const work = await tempDirForTest(t, 'regctl-chunks-');
      // Read from stdin, so regctl cannot know the size and sends 1 MiB chunks.
      const bytes = randomBytes(3 * 1024 * 1024 + 12_345);
      await writeFile(join(work, 'blob.bin'), bytes);
      const repo = `${airlock.host}/project/regctl/chunks`;

      const before = loggedRequests(airlock.output()).length;
      const put = await regctl(['blob', 'put', repo], { stdinFile: join(work, 'blob.bin') });
      assert.equal(put.stdout.trim(), sha256(bytes));
      const patches = loggedRequests(airlock.output())
        .slice(before)
        .filter((r) => r.method === 'PATCH' && r.status === 202);
      assert.ok(patches.length >= 2, `expected a chunked upload, saw ${patches.length} PATCH requests`);

      assert.deepEqual(await fetchBlob(airlock.url, 'project/regctl/chunks', sha256(bytes)), bytes);
      assert.deepEqual(await regctl.bytes(['blob', 'get', repo, sha256(bytes)]), bytes);
    },
  );
});
