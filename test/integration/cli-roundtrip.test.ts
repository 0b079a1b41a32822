// Round trips through every client command, against Airlock and against docker-registry (CNCF
// distribution 2.8, which has no referrers API): what the CLI writes, it reads back byte for byte.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, describe, it, type TestContext } from 'node:test';
import { gzipSync } from 'node:zlib';
import { MediaType, OciLayout } from '../../src/oci/index.js';
import {
  airlock,
  airlockBytes,
  airlockOk,
  assertOneLineError,
  cliEnv,
  listTree,
  seedArtifact,
  SharedRegistries,
} from '../helpers/cli.js';
import {
  artifactDifferences,
  buildIndex,
  buildImage,
  buildSimpleImage,
  fetchBlob,
  fetchManifest,
  layoutEntry,
  manifestStatus,
  nonce,
  readLayoutBlob,
  sha256,
  tarArchive,
  tempDirForTest,
  writeOciLayout,
  type BuiltImage,
} from '../helpers/interop.js';
import type { RunningProcess } from '../helpers/processes.js';

type Start = (t: TestContext) => Promise<RunningProcess | undefined>;

interface Target {
  readonly name: string;
  readonly start: Start;
  /** The other kind of registry, for copies between registries. */
  readonly other: Start;
  /** Whether the registry deletes a manifest by tag (distribution 2.8 only deletes by digest). */
  readonly deletesTags: boolean;
}

const registries = new SharedRegistries();
after(() => registries.stopAll());
const startAirlock: Start = () => registries.airlock();
const startDistribution: Start = (t) => registries.distribution(t);

const TARGETS: readonly Target[] = [
  { name: 'Airlock', start: startAirlock, other: startDistribution, deletesTags: true },
  { name: 'docker-registry', start: startDistribution, other: startAirlock, deletesTags: false },
];

interface ImageManifest {
  readonly mediaType: string;
  readonly artifactType?: string;
  readonly config: { readonly mediaType: string; readonly digest: string; readonly size: number };
  readonly layers: readonly {
    readonly mediaType: string;
    readonly digest: string;
    readonly size: number;
    readonly annotations?: Record<string, string>;
  }[];
  readonly annotations?: Record<string, string>;
}

interface ImageConfig {
  readonly rootfs: { readonly type: string; readonly diff_ids: readonly string[] };
  readonly config?: { readonly Cmd?: readonly string[] };
  readonly history?: readonly unknown[];
}

function json<T>(bytes: Buffer | string): T {
  return JSON.parse(bytes.toString()) as T;
}

/** The digest the CLI printed on its last "Digest: …" or "REF@sha256:…" line. */
function printedDigest(stdout: string): string {
  const match = /(sha256:[0-9a-f]{64})\s*$/.exec(stdout.trim());
  assert.ok(match?.[1], `no digest in ${JSON.stringify(stdout)}`);
  return match[1];
}

interface CopyJson {
  readonly digest: string;
  readonly blobs: number;
  readonly uploaded: number;
  readonly mounted: number;
  /** Bytes uploaded (blobs mounted or already there count 0). */
  readonly bytes: number;
  readonly manifests: number;
}

async function seed(
  registry: RunningProcess,
  repository: string,
  tag: string,
  image: BuiltImage,
): Promise<void> {
  await seedArtifact(registry.url, { repository, tag }, image);
}

/** A repository namespace of its own for each test (the registries are shared by the whole file). */
function namespace(): string {
  return `t${nonce(4)}`;
}

for (const target of TARGETS) {
  describe(`airlock CLI round trips through ${target.name}`, { concurrency: 2 }, () => {
    it('moves blobs of several MiB through the raw HTTP reader byte for byte (pull and copy to a layout)', async (t) => {
      const registry = await target.start(t);
      if (!registry) return;
      const ns = namespace();
      const env = await cliEnv(t);
      const work = await tempDirForTest(t, 'cli-large-');
      // Over the 4 MiB from which the client reads blobs with its own HTTP/1.1 reader.
      const big = randomBytes(9 * 1024 * 1024 + 4321);
      await writeFile(join(work, 'big.bin'), big);
      const ref = `${registry.host}/${ns}-proj/large:v1`;
      await airlockOk(env, ['push', ref, 'big.bin'], { cwd: work });

      const out = join(work, 'out');
      await airlockOk(env, ['pull', ref, '-d', out]);
      assert.deepEqual(await readFile(join(out, 'big.bin')), big);

      const layout = join(work, 'layout');
      await airlockOk(env, ['copy', ref, `oci:${layout}:v1`]);
      const stored = await readFile(join(layout, 'blobs', 'sha256', sha256(big).slice('sha256:'.length)));
      assert.deepEqual(stored, big);
    });

    it('pushes files and a folder and pulls them back byte for byte', async (t) => {
      const registry = await target.start(t);
      if (!registry) return;
      const ns = namespace();
      const env = await cliEnv(t);
      const work = await tempDirForTest(t, 'cli-push-');
      const notes = `notes ${nonce()}\n`;
      const data = randomBytes(200 * 1024);
      await writeFile(join(work, 'notes.txt'), notes);
      await writeFile(join(work, 'data.bin'), data);
      await mkdir(join(work, 'conf', 'nested'), { recursive: true });
      await writeFile(join(work, 'conf', 'a.yaml'), 'a: 1\n');
      await writeFile(join(work, 'conf', 'nested', 'b.yaml'), 'b: 2\n');
      const ref = `${registry.host}/${ns}-proj/files:v1`;

      const pushed = await airlockOk(
        env,
        [
          'push',
          ref,
          'notes.txt',
          'data.bin',
          'conf',
          '--artifact-type',
          'application/vnd.example.bundle',
          '-a',
          'org.example.k=v',
        ],
        { cwd: work },
      );
      const digest = printedDigest(pushed.stdout);
      const served = await fetchManifest(registry.url, `${ns}-proj/files`, 'v1');
      assert.equal(sha256(served.bytes), digest);
      const manifest = json<ImageManifest>(served.bytes);
      assert.equal(manifest.artifactType, 'application/vnd.example.bundle');
      assert.equal(manifest.annotations?.['org.example.k'], 'v');
      assert.match(manifest.annotations?.['org.opencontainers.image.created'] ?? '', /^\d{4}-\d\d-\d\dT/);
      assert.deepEqual(
        manifest.layers.map((l) => [l.annotations?.['org.opencontainers.image.title'], l.mediaType]),
        [
          ['notes.txt', MediaType.OciLayer],
          ['data.bin', MediaType.OciLayer],
          ['conf', MediaType.OciLayerGzip],
        ],
      );
      assert.equal(manifest.layers[0]?.digest, sha256(notes));
      assert.equal(manifest.layers[1]?.digest, sha256(data));
      assert.equal(manifest.layers[2]?.annotations?.['io.deis.oras.content.unpack'], 'true');

      const out = join(work, 'out');
      const pulled = await airlockOk(env, ['pull', ref, '-d', out, '-o', 'json']);
      const files = json<{ title: string; digest: string; unpacked: boolean }[]>(pulled.stdout);
      assert.deepEqual(
        files.map((f) => [f.title, f.unpacked]),
        [
          ['notes.txt', false],
          ['data.bin', false],
          ['conf', true],
        ],
      );
      assert.equal(await readFile(join(out, 'notes.txt'), 'utf8'), notes);
      assert.deepEqual(await readFile(join(out, 'data.bin')), data);
      assert.equal(await readFile(join(out, 'conf', 'a.yaml'), 'utf8'), 'a: 1\n');
      assert.equal(await readFile(join(out, 'conf', 'nested', 'b.yaml'), 'utf8'), 'b: 2\n');
      assert.deepEqual(await listTree(out), [
        'conf',
        'conf/a.yaml',
        'conf/nested',
        'conf/nested/b.yaml',
        'data.bin',
        'notes.txt',
      ]);
    });

    it('pulls an image into an OCI layout (--layout), and one platform of an index with --platform', async (t) => {
      const registry = await target.start(t);
      if (!registry) return;
      const ns = namespace();
      const env = await cliEnv(t);
      const work = await tempDirForTest(t, 'cli-layout-');
      const image = buildSimpleImage();
      await seed(registry, `${ns}-proj/layout`, 'v1', image);

      const layout = join(work, 'layout');
      await airlockOk(env, ['pull', `${registry.host}/${ns}-proj/layout:v1`, '--layout', layout]);
      assert.deepEqual(json(await readFile(join(layout, 'oci-layout'))), { imageLayoutVersion: '1.0.0' });
      const entry = await layoutEntry(layout, 'v1');
      assert.equal(entry.digest, image.descriptor.digest);
      assert.deepEqual(await readLayoutBlob(layout, image.descriptor.digest), image.bytes);
      for (const [digest, bytes] of image.blobs)
        assert.deepEqual(await readLayoutBlob(layout, digest), bytes);

      const amd = buildSimpleImage({ platform: { os: 'linux', architecture: 'amd64' } });
      const arm = buildSimpleImage({ platform: { os: 'linux', architecture: 'arm64' } });
      await seedArtifact(
        registry.url,
        { repository: `${ns}-proj/layout`, tag: 'multi' },
        buildIndex([amd, arm]),
      );
      const armLayout = join(work, 'arm');
      await airlockOk(env, [
        'pull',
        `${registry.host}/${ns}-proj/layout:multi`,
        '--layout',
        armLayout,
        '--platform',
        'linux/arm64',
      ]);
      assert.equal((await layoutEntry(armLayout, 'multi')).digest, arm.descriptor.digest);
      for (const [digest, bytes] of arm.blobs)
        assert.deepEqual(await readLayoutBlob(armLayout, digest), bytes);
      await assert.rejects(readLayoutBlob(armLayout, amd.config.digest), /ENOENT/);
    });

    it('appends a layer to an empty base, an OCI empty base and a base image, with diff_ids in the config', async (t) => {
      const registry = await target.start(t);
      if (!registry) return;
      const ns = namespace();
      const env = await cliEnv(t);
      const work = await tempDirForTest(t, 'cli-append-');
      const tar = tarArchive([
        { path: 'app/' },
        { path: 'app/run.sh', content: `echo ${nonce()}\n`, mode: 0o755 },
      ]);
      const gz = gzipSync(tar);
      await writeFile(join(work, 'layer.tar.gz'), gz);
      const repo = `${registry.host}/${ns}-proj/append`;

      const cases = [
        {
          tag: 'docker',
          flags: [],
          manifestType: MediaType.DockerManifest,
          layerType: MediaType.DockerLayerGzip,
        },
        {
          tag: 'oci',
          flags: ['--oci-empty-base'],
          manifestType: MediaType.OciManifest,
          layerType: MediaType.OciLayerGzip,
        },
      ];
      for (const c of cases) {
        const result = await airlockOk(env, [
          'append',
          '-f',
          join(work, 'layer.tar.gz'),
          '-t',
          `${repo}:${c.tag}`,
          ...c.flags,
        ]);
        const digest = printedDigest(result.stdout);
        const served = await fetchManifest(registry.url, `${ns}-proj/append`, c.tag);
        assert.equal(sha256(served.bytes), digest);
        const manifest = json<ImageManifest>(served.bytes);
        assert.equal(manifest.mediaType, c.manifestType);
        assert.deepEqual(
          manifest.layers.map((l) => [l.mediaType, l.digest, l.size]),
          [[c.layerType, sha256(gz), gz.length]],
        );
        const config = json<ImageConfig>(await airlockBytes(env, ['config', `${repo}:${c.tag}`]));
        assert.deepEqual(config.rootfs, { type: 'layers', diff_ids: [sha256(tar)] });
        assert.deepEqual(await fetchBlob(registry.url, `${ns}-proj/append`, sha256(gz)), gz);
      }

      const base = buildSimpleImage();
      await seed(registry, `${ns}-proj/base`, 'v1', base);
      const based = await airlockOk(env, [
        'append',
        '-f',
        join(work, 'layer.tar.gz'),
        '-t',
        `${repo}:based`,
        '-b',
        `${registry.host}/${ns}-proj/base:v1`,
      ]);
      const basedBytes = (await fetchManifest(registry.url, `${ns}-proj/append`, 'based')).bytes;
      assert.equal(sha256(basedBytes), printedDigest(based.stdout));
      const manifest = json<ImageManifest>(basedBytes);
      assert.equal(manifest.mediaType, MediaType.OciManifest);
      assert.deepEqual(
        manifest.layers.map((l) => l.digest),
        [...base.layers.map((l) => l.digest), sha256(gz)],
      );
      const config = json<ImageConfig>(await airlockBytes(env, ['config', `${repo}:based`]));
      const baseConfig = json<ImageConfig>(base.blobs.get(base.config.digest) ?? '');
      assert.deepEqual(config.rootfs.diff_ids, [...baseConfig.rootfs.diff_ids, sha256(tar)]);
      assert.deepEqual(config.config?.Cmd, ['/hello']);
      assert.equal(config.history?.length, (baseConfig.history?.length ?? 0) + 1);
      for (const layer of base.layers)
        assert.deepEqual(
          await fetchBlob(registry.url, `${ns}-proj/append`, layer.digest),
          base.blobs.get(layer.digest),
        );
    });

    it('copies within one registry by mounting every blob and keeps the manifest digest', async (t) => {
      const registry = await target.start(t);
      if (!registry) return;
      const ns = namespace();
      const env = await cliEnv(t);
      const image = buildImage({
        layers: [[{ path: 'one.txt', content: nonce() }], [{ path: 'two.txt', content: nonce() }]],
      });
      await seed(registry, `${ns}-proj/src`, 'v1', image);
      const result = await airlockOk(env, [
        'copy',
        `${registry.host}/${ns}-proj/src:v1`,
        `${registry.host}/${ns}-team/dst:v1`,
        '-o',
        'json',
      ]);
      const copied = json<CopyJson>(result.stdout);
      assert.deepEqual(
        [copied.digest, copied.blobs, copied.mounted, copied.uploaded, copied.bytes],
        [image.descriptor.digest, 3, 3, 0, 0],
      );
      assert.deepEqual(await artifactDifferences(registry.url, `${ns}-team/dst`, image), []);
      assert.equal(
        (await fetchManifest(registry.url, `${ns}-team/dst`, 'v1')).digest,
        image.descriptor.digest,
      );
    });

    it('copies to another registry, to oci:DIR and back, and through oci-archive:FILE, keeping every byte', async (t) => {
      const registry = await target.start(t);
      const other = await target.other(t);
      if (!registry || !other) return;
      const ns = namespace();
      const env = await cliEnv(t);
      const work = await tempDirForTest(t, 'cli-copy-');
      const image = buildSimpleImage({ randomBytes: 64 * 1024 });
      await seed(registry, `${ns}-proj/app`, 'v1', image);
      const src = `${registry.host}/${ns}-proj/app:v1`;

      const toOther = await airlockOk(env, ['copy', src, `${other.host}/${ns}-mirror/app:v1`, '-o', 'json']);
      assert.equal(json<CopyJson>(toOther.stdout).uploaded, 2);
      assert.equal(
        json<CopyJson>(toOther.stdout).bytes,
        [...image.blobs.values()].reduce((sum, b) => sum + b.length, 0),
      );
      assert.deepEqual(await artifactDifferences(other.url, `${ns}-mirror/app`, image), []);

      const layout = join(work, 'layout');
      await airlockOk(env, ['copy', `${other.host}/${ns}-mirror/app:v1`, `oci:${layout}:v1`]);
      assert.equal((await layoutEntry(layout, 'v1')).digest, image.descriptor.digest);
      for (const [digest, bytes] of image.blobs)
        assert.deepEqual(await readLayoutBlob(layout, digest), bytes);
      await airlockOk(env, ['copy', `oci:${layout}:v1`, `${registry.host}/${ns}-proj/from-layout:v1`]);
      assert.deepEqual(await artifactDifferences(registry.url, `${ns}-proj/from-layout`, image), []);

      const archive = join(work, 'image.tar');
      await airlockOk(env, ['copy', src, `oci-archive:${archive}:v1`]);
      assert.ok((await stat(archive)).size > 0);
      await airlockOk(env, [
        'copy',
        `oci-archive:${archive}:v1`,
        `docker://${registry.host}/${ns}-proj/from-archive:v1`,
      ]);
      assert.deepEqual(await artifactDifferences(registry.url, `${ns}-proj/from-archive`, image), []);
      assert.equal(
        (await fetchManifest(registry.url, `${ns}-proj/from-archive`, 'v1')).digest,
        image.descriptor.digest,
      );
      assert.deepEqual(await listTree(work), [
        'image.tar',
        'layout',
        'layout/blobs',
        'layout/blobs/sha256',
        ...[...image.blobs.keys(), image.descriptor.digest]
          .map((d) => `layout/blobs/sha256/${d.slice(7)}`)
          .sort(),
        'layout/index.json',
        'layout/oci-layout',
      ]);
    });

    it('copies a multi-arch index with every platform, and only one with --platform', async (t) => {
      const registry = await target.start(t);
      if (!registry) return;
      const ns = namespace();
      const env = await cliEnv(t);
      const amd = buildSimpleImage({ platform: { os: 'linux', architecture: 'amd64' } });
      const arm = buildSimpleImage({ platform: { os: 'linux', architecture: 'arm64', variant: 'v8' } });
      const index = buildIndex([amd, arm]);
      await seedArtifact(registry.url, { repository: `${ns}-proj/multi`, tag: 'v1' }, index);

      await airlockOk(env, [
        'copy',
        `${registry.host}/${ns}-proj/multi:v1`,
        `${registry.host}/${ns}-copy/all:v1`,
      ]);
      assert.deepEqual(await artifactDifferences(registry.url, `${ns}-copy/all`, index), []);

      await airlockOk(env, [
        'copy',
        '--platform',
        'linux/arm64',
        `${registry.host}/${ns}-proj/multi:v1`,
        `${registry.host}/${ns}-copy/arm:v1`,
      ]);
      const served = await fetchManifest(registry.url, `${ns}-copy/arm`, 'v1');
      assert.deepEqual(served.bytes, arm.bytes);
      assert.equal(await manifestStatus(registry.url, `${ns}-copy/arm`, amd.descriptor.digest), 404);
      const armConfig = await airlockBytes(env, ['config', `${registry.host}/${ns}-copy/arm:v1`]);
      assert.deepEqual(armConfig, arm.blobs.get(arm.config.digest));
      const picked = await airlockBytes(env, [
        'config',
        '--platform',
        'linux/arm64',
        `${registry.host}/${ns}-proj/multi:v1`,
      ]);
      assert.deepEqual(picked, armConfig);

      const missing = await airlock(env, [
        'copy',
        '--platform',
        'linux/s390x',
        `${registry.host}/${ns}-proj/multi:v1`,
        `${registry.host}/${ns}-copy/none:v1`,
      ]);
      assertOneLineError(missing, { pattern: /no manifest for platform linux\/s390x/ });
      assert.equal(await manifestStatus(registry.url, `${ns}-copy/none`, 'v1'), 404);
    });

    it('copies an attached artifact with --with-referrers, and referrers lists it on both sides', async (t) => {
      const registry = await target.start(t);
      if (!registry) return;
      const ns = namespace();
      const env = await cliEnv(t);
      const work = await tempDirForTest(t, 'cli-referrers-');
      const image = buildSimpleImage();
      const layoutDir = join(work, 'layout');
      await writeOciLayout(layoutDir, { tag: 'v1', artifact: image });
      // A signature-like artifact whose subject is the image, listed in the layout's index.json.
      const layout = await OciLayout.open(layoutDir);
      const empty = Buffer.from('{}');
      const payload = Buffer.from(`signature ${nonce()}`);
      await layout.writeBytes(empty);
      await layout.writeBytes(payload);
      const referrer = Buffer.from(
        JSON.stringify({
          schemaVersion: 2,
          mediaType: MediaType.OciManifest,
          artifactType: 'application/vnd.example.signature',
          config: { mediaType: MediaType.OciEmpty, digest: sha256(empty), size: 2 },
          layers: [{ mediaType: 'application/octet-stream', digest: sha256(payload), size: payload.length }],
          subject: {
            mediaType: MediaType.OciManifest,
            digest: image.descriptor.digest,
            size: image.bytes.length,
          },
        }),
      );
      const referrerDigest = await layout.writeBytes(referrer);
      await layout.addManifest({
        mediaType: MediaType.OciManifest,
        digest: referrerDigest,
        size: referrer.length,
      });

      const src = `${registry.host}/${ns}-proj/signed:v1`;
      await airlockOk(env, ['copy', '--with-referrers', `oci:${layoutDir}:v1`, src]);
      const listed = json<{ digest: string; artifactType?: string }[]>(
        (await airlockOk(env, ['referrers', src, '-o', 'json'])).stdout,
      );
      assert.deepEqual(
        listed.map((d) => [d.digest, d.artifactType]),
        [[referrerDigest, 'application/vnd.example.signature']],
      );

      await airlockOk(env, ['copy', '--with-referrers', src, `${registry.host}/${ns}-mirror/signed:v1`]);
      const text = (await airlockOk(env, ['referrers', `${registry.host}/${ns}-mirror/signed:v1`])).stdout;
      assert.match(
        text,
        new RegExp(`^${referrerDigest}  application/vnd.example.signature  ${referrer.length}$`, 'm'),
      );
      assert.deepEqual(
        await airlockBytes(env, ['manifest', `${registry.host}/${ns}-mirror/signed@${referrerDigest}`]),
        referrer,
      );
      assert.deepEqual(await fetchBlob(registry.url, `${ns}-mirror/signed`, sha256(payload)), payload);

      await airlockOk(env, ['copy', src, `${registry.host}/${ns}-mirror/unsigned:v1`]);
      const none = await airlockOk(env, [
        'referrers',
        `${registry.host}/${ns}-mirror/unsigned:v1`,
        '-o',
        'json',
      ]);
      assert.deepEqual(json(none.stdout), []);
      // A digest nothing is stored under and nothing refers to (a typo) is an error, not "no referrers".
      const missing = `sha256:${'0'.repeat(64)}`;
      assertOneLineError(
        await airlock(env, ['referrers', `${registry.host}/${ns}-mirror/unsigned@${missing}`]),
        { pattern: /no manifest sha256:0+ in .*unsigned, and nothing refers to it/ },
      );
    });

    it('reads back what was pushed with tags, catalog, manifest, config, digest and blob', async (t) => {
      const registry = await target.start(t);
      if (!registry) return;
      const ns = namespace();
      const env = await cliEnv(t);
      const work = await tempDirForTest(t, 'cli-read-');
      const image = buildSimpleImage({ randomBytes: 32 * 1024 });
      await seed(registry, `${ns}-proj/read`, 'v1', image);
      await seed(registry, `${ns}-proj/read`, 'v2', image);
      const repo = `${registry.host}/${ns}-proj/read`;

      assert.deepEqual((await airlockOk(env, ['tags', repo])).stdout.trim().split('\n').sort(), ['v1', 'v2']);
      assert.deepEqual(json<string[]>((await airlockOk(env, ['tags', repo, '-o', 'json'])).stdout).sort(), [
        'v1',
        'v2',
      ]);
      assert.ok(
        (await airlockOk(env, ['catalog', registry.host])).stdout.split('\n').includes(`${ns}-proj/read`),
      );
      assert.deepEqual(await airlockBytes(env, ['manifest', `${repo}:v1`]), image.bytes);
      assert.deepEqual(
        await airlockBytes(env, ['manifest', `${repo}@${image.descriptor.digest}`]),
        image.bytes,
      );
      assert.deepEqual(
        await airlockBytes(env, ['config', `${repo}:v1`]),
        image.blobs.get(image.config.digest),
      );
      assert.equal((await airlockOk(env, ['digest', `${repo}:v2`])).stdout, `${image.descriptor.digest}\n`);
      assert.deepEqual(json((await airlockOk(env, ['digest', `${repo}:v2`, '-o', 'json'])).stdout), {
        digest: image.descriptor.digest,
      });

      const layer = image.layers[0];
      assert.ok(layer);
      assert.deepEqual(
        await airlockBytes(env, ['blob', `${repo}@${layer.digest}`]),
        image.blobs.get(layer.digest),
      );
      const file = join(work, 'layer.tar.gz');
      const written = await airlockOk(env, ['blob', `${repo}@${layer.digest}`, '-f', file]);
      assert.equal(written.stdout, '');
      assert.deepEqual(await readFile(file), image.blobs.get(layer.digest));
      assert.deepEqual(await listTree(work), ['layer.tar.gz']);
    });

    it('tags a manifest and deletes it by digest (and by tag where the registry allows)', async (t) => {
      const registry = await target.start(t);
      if (!registry) return;
      const ns = namespace();
      const env = await cliEnv(t);
      const image = buildSimpleImage();
      await seed(registry, `${ns}-proj/edit`, 'v1', image);
      const repo = `${registry.host}/${ns}-proj/edit`;

      const tagged = await airlockOk(env, ['tag', `${repo}:v1`, 'stable']);
      assert.equal(tagged.stdout.trim(), `${repo}:stable@${image.descriptor.digest}`);
      assert.deepEqual((await fetchManifest(registry.url, `${ns}-proj/edit`, 'stable')).bytes, image.bytes);
      assert.deepEqual((await airlockOk(env, ['tags', repo])).stdout.trim().split('\n').sort(), [
        'stable',
        'v1',
      ]);

      if (target.deletesTags) {
        await airlockOk(env, ['delete', `${repo}:stable`]);
        assert.deepEqual((await airlockOk(env, ['tags', repo])).stdout.trim().split('\n'), ['v1']);
      } else {
        // distribution answers a tag delete with its own DIGEST_INVALID; the line says what to do instead.
        assertOneLineError(await airlock(env, ['delete', `${repo}:stable`]), {
          pattern: /cannot delete a tag alone; delete the manifest by digest/,
        });
      }
      const deleted = await airlockOk(env, ['delete', `${repo}@${image.descriptor.digest}`]);
      assert.equal(deleted.stdout.trim(), `Deleted ${repo}@${image.descriptor.digest}`);
      assert.equal(await manifestStatus(registry.url, `${ns}-proj/edit`, image.descriptor.digest), 404);
      assertOneLineError(await airlock(env, ['manifest', `${repo}@${image.descriptor.digest}`]), {
        pattern: /HTTP 404/,
      });
    });

    it('logs in (saving the credentials in DOCKER_CONFIG/config.json) and logs out', async (t) => {
      const registry = await target.start(t);
      if (!registry) return;
      const env = await cliEnv(t);
      const login = await airlockOk(env, ['login', registry.host, '-u', 'ci', '--password-stdin'], {
        input: 'pa55\n',
      });
      assert.match(login.stdout, /^Login Succeeded/);
      const path = join(env.dockerConfig, 'config.json');
      assert.deepEqual(json(await readFile(path)), {
        auths: { [registry.host]: { auth: Buffer.from('ci:pa55').toString('base64') } },
      });
      assert.equal((await stat(path)).mode & 0o777, 0o600);
      // Commands use the saved login (the registry accepts any, having no auth).
      await airlockOk(env, ['catalog', registry.host]);

      const logout = await airlockOk(env, ['logout', registry.host]);
      assert.equal(logout.stdout.trim(), `Removed credentials for ${registry.host}`);
      assert.deepEqual(json(await readFile(path)), { auths: {} });
      const again = await airlockOk(env, ['logout', registry.host, '-o', 'json']);
      assert.deepEqual(json(again.stdout), { host: registry.host, removed: false });
    });
  });
}
