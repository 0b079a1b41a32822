import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import {
  buildSimpleImage,
  fetchManifest,
  fetchReferrers,
  fetchTags,
  nonce,
  pushArtifact,
  runToolOk,
  startAirlockForTest,
  tempDirForTest,
  TEST_TIMEOUT_MS,
} from '../helpers/interop.js';
import { requirePeer } from '../helpers/peers.js';
import type { CommandResult } from '../helpers/processes.js';

type Oras = (args: readonly string[], cwd?: string) => Promise<CommandResult>;

/** oras over plain HTTP with a private auth file (no credentials of the user's leak in). */
async function orasFor(t: TestContext): Promise<Oras | undefined> {
  const bin = requirePeer(t, 'oras');
  if (!bin) return undefined;
  const config = await tempDirForTest(t, 'oras-config-');
  return (args, cwd) =>
    runToolOk(bin, [...args, '--no-tty'], {
      env: { DOCKER_CONFIG: config, HOME: config },
      ...(cwd === undefined ? {} : { cwd }),
    });
}

interface ArtifactManifest {
  readonly artifactType?: string;
  readonly subject?: { readonly digest: string };
  readonly annotations?: Record<string, string>;
  readonly layers: readonly { readonly mediaType: string; readonly annotations?: Record<string, string> }[];
}

interface DiscoverJson {
  readonly manifests: readonly { readonly digest: string; readonly artifactType?: string }[];
}

describe('oras against Airlock', () => {
  it(
    'pushes files and a folder with annotations and pulls them back byte for byte',
    { timeout: TEST_TIMEOUT_MS },
    async (t) => {
      const oras = await orasFor(t);
      if (!oras) return;
      const airlock = await startAirlockForTest(t);
      const src = await tempDirForTest(t, 'oras-src-');
      const dst = await tempDirForTest(t, 'oras-dst-');
      const notes = `release notes ${nonce()}\n`;
      const data = randomBytes(300 * 1024);
      await writeFile(join(src, 'notes.txt'), notes);
      await writeFile(join(src, 'data.bin'), data);
      await mkdir(join(src, 'config', 'nested'), { recursive: true });
      await writeFile(join(src, 'config', 'a.yaml'), 'a: 1\n');
      await writeFile(join(src, 'config', 'nested', 'b.yaml'), 'b: 2\n');
      await writeFile(
        join(src, 'annotations.json'),
        JSON.stringify({
          $manifest: { 'org.example.release': 'v1', 'org.example.owner': 'platform' },
          'notes.txt': { 'org.example.kind': 'notes' },
        }),
      );
      const ref = `${airlock.host}/project/oras/files:v1`;

      await oras(
        [
          'push',
          '--plain-http',
          '--artifact-type',
          'application/vnd.example.bundle',
          '--annotation-file',
          'annotations.json',
          ref,
          'notes.txt:text/plain',
          'data.bin',
          'config',
        ],
        src,
      );
      const served = await fetchManifest(airlock.url, 'project/oras/files', 'v1');
      const manifest = JSON.parse(served.bytes.toString()) as ArtifactManifest;
      assert.equal(manifest.artifactType, 'application/vnd.example.bundle');
      assert.equal(manifest.annotations?.['org.example.release'], 'v1');
      assert.equal(manifest.annotations?.['org.example.owner'], 'platform');
      const notesLayer = manifest.layers.find(
        (l) => l.annotations?.['org.opencontainers.image.title'] === 'notes.txt',
      );
      assert.equal(notesLayer?.mediaType, 'text/plain');
      assert.equal(notesLayer?.annotations?.['org.example.kind'], 'notes');

      const fetched = await oras(['manifest', 'fetch', '--plain-http', ref]);
      assert.equal(fetched.stdout.trim(), served.bytes.toString());
      await oras(['pull', '--plain-http', '--output', dst, ref]);
      assert.equal(await readFile(join(dst, 'notes.txt'), 'utf8'), notes);
      assert.deepEqual(await readFile(join(dst, 'data.bin')), data);
      assert.equal(await readFile(join(dst, 'config', 'a.yaml'), 'utf8'), 'a: 1\n');
      assert.equal(await readFile(join(dst, 'config', 'nested', 'b.yaml'), 'utf8'), 'b: 2\n');
      const tags = await oras(['repo', 'tags', '--plain-http', `${airlock.host}/project/oras/files`]);
      assert.deepEqual(tags.stdout.trim().split('\n'), ['v1']);
    },
  );

  it(
    'attaches artifacts to an image and discovers them through the referrers API, filtered by artifact type',
    { timeout: TEST_TIMEOUT_MS },
    async (t) => {
      const oras = await orasFor(t);
      if (!oras) return;
      const airlock = await startAirlockForTest(t);
      const work = await tempDirForTest(t, 'oras-attach-');
      const image = buildSimpleImage();
      await pushArtifact(airlock.url, { repository: 'project/oras/app', tag: 'v1' }, image);
      await writeFile(join(work, 'sbom.json'), JSON.stringify({ spdxVersion: 'SPDX-2.3', name: nonce() }));
      await writeFile(join(work, 'sig.txt'), `signature ${nonce()}\n`);
      const subject = `${airlock.host}/project/oras/app:v1`;
      // Only the referrers API: no fallback to the "sha256-<hex>" tag schema.
      const api = ['--plain-http', '--distribution-spec', 'v1.1-referrers-api'];

      await oras(
        [
          'attach',
          ...api,
          '--artifact-type',
          'application/spdx+json',
          '--annotation',
          'org.example.tool=syft',
          subject,
          'sbom.json',
        ],
        work,
      );
      await oras(
        ['attach', ...api, '--artifact-type', 'application/vnd.example.signature', subject, 'sig.txt'],
        work,
      );

      const all = JSON.parse(
        (await oras(['discover', ...api, '--format', 'json', subject])).stdout,
      ) as DiscoverJson;
      assert.deepEqual(all.manifests.map((m) => m.artifactType).sort(), [
        'application/spdx+json',
        'application/vnd.example.signature',
      ]);
      const sboms = JSON.parse(
        (
          await oras([
            'discover',
            ...api,
            '--format',
            'json',
            '--artifact-type',
            'application/spdx+json',
            subject,
          ])
        ).stdout,
      ) as DiscoverJson;
      assert.equal(sboms.manifests.length, 1);
      const sbom = sboms.manifests[0];
      assert.equal(sbom?.artifactType, 'application/spdx+json');

      // What oras saw is what the registry's referrers API answers, and the artifact names its subject.
      const subjectRef = { repository: 'project/oras/app', digest: image.descriptor.digest };
      assert.deepEqual(
        (await fetchReferrers(airlock.url, subjectRef)).map((d) => d.digest).sort(),
        all.manifests.map((m) => m.digest).sort(),
      );
      const filtered = await fetchReferrers(airlock.url, subjectRef, 'application/spdx+json');
      assert.deepEqual(
        filtered.map((d) => d.digest),
        [sbom?.digest],
      );
      assert.equal(filtered[0]?.annotations?.['org.example.tool'], 'syft');
      const attached = JSON.parse(
        (await fetchManifest(airlock.url, 'project/oras/app', sbom?.digest ?? '')).bytes.toString(),
      ) as ArtifactManifest;
      assert.equal(attached.subject?.digest, image.descriptor.digest);
      assert.deepEqual(await fetchTags(airlock.url, 'project/oras/app'), ['v1']);

      const out = join(work, 'out');
      await oras([
        'pull',
        '--plain-http',
        '--output',
        out,
        `${airlock.host}/project/oras/app@${sbom?.digest ?? ''}`,
      ]);
      assert.deepEqual(await readFile(join(out, 'sbom.json')), await readFile(join(work, 'sbom.json')));

      // A recursive copy carries the referrers to the new repository.
      await oras([
        'cp',
        '--recursive',
        '--from-plain-http',
        '--to-plain-http',
        subject,
        `${airlock.host}/project/oras/copy:v1`,
      ]);
      const copied = await fetchReferrers(airlock.url, {
        repository: 'project/oras/copy',
        digest: image.descriptor.digest,
      });
      assert.deepEqual(copied.map((d) => d.digest).sort(), all.manifests.map((m) => m.digest).sort());
    },
  );
});
