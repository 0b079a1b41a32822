// The CLI's copy targets and sources, and the ways users stop or misuse them: archives written before
// "Copied" is printed, destinations checked before anything is copied, layouts with referrers read back,
// indexes into docker archives, platforms that match nothing, Ctrl-C part-way (nothing left behind),
// flags with bad numbers, hosts given as URLs or paths, and a login moved into the credential helper.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { digestOf, MediaType } from '../../src/oci/index.js';
import {
  airlock,
  airlockOk,
  assertOneLineError,
  cliEnv,
  listTree,
  SharedRegistries,
  seedArtifact,
  serveContent,
  startFakeRegistry,
} from '../helpers/cli.js';
import {
  buildImage,
  buildIndex,
  buildSimpleImage,
  nonce,
  tarArchive,
  tempDirForTest,
} from '../helpers/interop.js';
import { CLI } from '../helpers/processes.js';

const registries = new SharedRegistries();
after(() => registries.stopAll());

/** Pushes an SBOM (an OCI artifact) whose subject is `subject`; returns its digest. */
async function pushSbom(
  base: string,
  repository: string,
  subject: { mediaType: string; digest: string; size: number },
): Promise<string> {
  const empty = Buffer.from('{}');
  const sbom = Buffer.from(`{"sbom":"${nonce()}"}`);
  for (const blob of [empty, sbom]) {
    const res = await fetch(`${base}/v2/${repository}/blobs/uploads/?digest=${digestOf(blob)}`, {
      method: 'POST',
      body: blob,
    });
    assert.equal(res.status, 201);
    await res.arrayBuffer();
  }
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MediaType.OciManifest,
      artifactType: 'application/spdx+json',
      config: { mediaType: 'application/vnd.oci.empty.v1+json', digest: digestOf(empty), size: empty.length },
      layers: [{ mediaType: 'application/spdx+json', digest: digestOf(sbom), size: sbom.length }],
      subject,
    }),
  );
  const res = await fetch(`${base}/v2/${repository}/manifests/${digestOf(manifest)}`, {
    method: 'PUT',
    headers: { 'content-type': MediaType.OciManifest },
    body: manifest,
  });
  assert.equal(res.status, 201);
  await res.arrayBuffer();
  return digestOf(manifest);
}

interface Copied {
  digest: string;
  blobs: number;
}

describe('airlock copy targets', { concurrency: 2 }, () => {
  it('checks an archive destination before copying, and prints nothing when writing it fails', async (t) => {
    const env = await cliEnv(t);
    const work = await tempDirForTest(t, 'cli-archive-dest-');
    const image = buildSimpleImage();
    const entry = { bytes: image.bytes, mediaType: image.descriptor.mediaType };
    const fake = await startFakeRegistry(
      t,
      serveContent({ manifests: new Map([['v1', entry]]), blobs: new Map(image.blobs) }),
    );
    await mkdir(join(work, 'a-folder.tar'));
    const cases = [
      [`docker-archive:${join(work, 'missing', 'x.tar')}`, /folder ".*missing" does not exist/],
      [`oci-archive:${join(work, 'missing', 'x.tar')}`, /folder ".*missing" does not exist/],
      [`oci-archive:${join(work, 'a-folder.tar')}`, /a-folder\.tar": it is a folder/],
    ] as const;
    for (const [target, pattern] of cases) {
      for (const output of [[], ['-o', 'json']]) {
        assertOneLineError(await airlock(env, ['copy', `${fake.host}/org/app:v1`, target, ...output]), {
          pattern,
        });
      }
    }
    assert.equal(
      fake.requests.filter((r) => r.url.includes('/blobs/')).length,
      0,
      'no blob was fetched for a destination that cannot be written',
    );
    assert.deepEqual(await listTree(work), ['a-folder.tar']);
    assert.deepEqual(await listTree(env.tmp), []);
  });

  it('reads back a layout or archive written with its referrers and no tag, and picks entries by digest', async (t) => {
    const registry = await registries.airlock();
    const env = await cliEnv(t);
    const work = await tempDirForTest(t, 'cli-referrers-layout-');
    const image = buildSimpleImage();
    await seedArtifact(registry.url, { repository: 'wr/app', tag: 'v1' }, image);
    await pushSbom(registry.url, 'wr/app', image.descriptor);
    const archive = join(work, 'wr.tar');
    const layout = join(work, 'layout');
    await airlockOk(env, [
      'copy',
      `${registry.host}/wr/app:v1`,
      `oci-archive:${archive}`,
      '--with-referrers',
    ]);
    await airlockOk(env, ['copy', `${registry.host}/wr/app:v1`, `oci:${layout}`, '--with-referrers']);
    const entries = JSON.parse(await readFile(join(layout, 'index.json'), 'utf8')) as {
      manifests: unknown[];
    };
    assert.equal(entries.manifests.length, 2, 'the image and its SBOM, neither tagged');
    // tree shows the SBOM under its subject only, not again as an entry of its own.
    const tree = JSON.parse((await airlockOk(env, ['tree', `oci:${layout}`, '-o', 'json'])).stdout) as {
      tags: { digest: string; referrers: { digest: string }[] }[];
    };
    assert.deepEqual(
      tree.tags.map((node) => [node.digest, node.referrers.length]),
      [[image.descriptor.digest, 1]],
    );
    // The layout's folder named as it is (gdcloud's `artifacts tree BUNDLE`) reads the same layout.
    assert.deepEqual(
      JSON.parse((await airlockOk(env, ['tree', layout, '-o', 'json'])).stdout),
      tree,
      'a folder holding an OCI layout is read as oci:FOLDER',
    );
    for (const source of [`oci-archive:${archive}`, `oci:${layout}`]) {
      const copied = JSON.parse(
        (await airlockOk(env, ['copy', source, `${registry.host}/wr/back:v1`, '-o', 'json'])).stdout,
      ) as Copied;
      assert.equal(copied.digest, image.descriptor.digest, source);
      const picked = JSON.parse(
        (
          await airlockOk(env, [
            'copy',
            `${source}@${image.descriptor.digest}`,
            `${registry.host}/wr/picked:v1`,
            '-o',
            'json',
          ])
        ).stdout,
      ) as Copied;
      assert.equal(picked.digest, image.descriptor.digest, `${source}@digest`);
    }
    // Two untagged images: the error names the archive (not a temp folder) and both digests.
    const other = buildSimpleImage();
    await seedArtifact(registry.url, { repository: 'wr/other', tag: 'v1' }, other);
    await airlockOk(env, ['copy', `${registry.host}/wr/other:v1`, `oci:${layout}`]);
    const two = await airlock(env, ['copy', `oci:${layout}`, `${registry.host}/wr/two:v1`]);
    assertOneLineError(two, {
      pattern: /holds 2 images; name one by tag or digest \(sha256:.*, sha256:.*\)/,
    });
    const broken = join(work, 'not-a-layout.tar');
    await writeFile(broken, Buffer.alloc(1024));
    const bad = await airlock(env, ['copy', `oci-archive:${broken}`, `${registry.host}/wr/x:v1`]);
    assert.equal(bad.code, 1);
    assert.doesNotMatch(bad.stderr, new RegExp(env.tmp.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')));
  });

  it('keeps the tag of a layout entry when the same image is copied in again without one', async (t) => {
    const registry = await registries.airlock();
    const env = await cliEnv(t);
    const work = await tempDirForTest(t, 'cli-layout-tag-');
    const image = buildSimpleImage();
    await seedArtifact(registry.url, { repository: 'keep/app', tag: 'v1' }, image);
    const layout = join(work, 'dup');
    await airlockOk(env, ['copy', `${registry.host}/keep/app:v1`, `oci:${layout}:v1`]);
    await airlockOk(env, ['copy', `${registry.host}/keep/app:v1`, `oci:${layout}`]);
    // The other order: untagged first, then tagged, is one entry too.
    const second = join(work, 'second');
    await airlockOk(env, ['copy', `${registry.host}/keep/app:v1`, `oci:${second}`]);
    await airlockOk(env, ['copy', `${registry.host}/keep/app:v1`, `oci:${second}:v1`]);
    await airlockOk(env, ['copy', `oci:${second}`, `${registry.host}/keep/second:v1`]);
    const index = JSON.parse(await readFile(join(layout, 'index.json'), 'utf8')) as {
      manifests: { digest: string; annotations?: Record<string, string> }[];
    };
    assert.deepEqual(
      index.manifests.map((m) => [m.digest, m.annotations?.['org.opencontainers.image.ref.name']]),
      [[image.descriptor.digest, 'v1']],
    );
    await airlockOk(env, ['copy', `oci:${layout}:v1`, `${registry.host}/keep/again:v1`]);
  });

  it('saves one platform of an index into a docker archive, says which, and refuses artifacts', async (t) => {
    const registry = await registries.airlock();
    const env = await cliEnv(t);
    const work = await tempDirForTest(t, 'cli-docker-archive-index-');
    const amd64 = buildSimpleImage({ platform: { os: 'linux', architecture: 'amd64' } });
    const arm64 = buildSimpleImage({ platform: { os: 'linux', architecture: 'arm64', variant: 'v8' } });
    const index = buildIndex([amd64, arm64]);
    await seedArtifact(registry.url, { repository: 'da/app', tag: 'multi' }, index);
    const save = async (args: string[]): Promise<Copied> =>
      JSON.parse((await airlockOk(env, ['copy', ...args, '-o', 'json'])).stdout) as Copied;
    const first = await save([
      `${registry.host}/da/app:multi`,
      `docker-archive:${join(work, 'a.tar')}:app:v1`,
    ]);
    assert.equal(first.digest, amd64.descriptor.digest, 'linux/amd64 by default, and its own digest');
    assert.equal(first.blobs, amd64.blobs.size);
    // tree names the archive's image by its RepoTags, as docker load would tag it (the manifest is the
    // one the archive's layers make, so its digest is not the registry's).
    const tree = JSON.parse(
      (await airlockOk(env, ['tree', `docker-archive:${join(work, 'a.tar')}`, '-o', 'json'])).stdout,
    ) as { tags: Array<{ label: string }> };
    assert.deepEqual(
      tree.tags.map((node) => node.label),
      ['app:v1'],
    );
    const second = await save([
      `${registry.host}/da/app:multi`,
      `docker-archive:${join(work, 'b.tar')}:app:v1`,
      '--platform',
      'linux/arm64/v8',
    ]);
    assert.equal(second.digest, arm64.descriptor.digest);
    assertOneLineError(
      await airlock(env, [
        'copy',
        `${registry.host}/da/app:multi`,
        `docker-archive:${join(work, 'c.tar')}`,
        '--platform',
        'linux/arm64/v7',
      ]),
      { pattern: /has no manifest for platform linux\/arm64\/v7; it has linux\/amd64, linux\/arm64\/v8/ },
    );
    // An index without linux/amd64 but with one image: that image, unless a platform is asked for.
    await seedArtifact(registry.url, { repository: 'da/arm', tag: 'only' }, buildIndex([arm64]));
    const only = await save([`${registry.host}/da/arm:only`, `docker-archive:${join(work, 'arm.tar')}`]);
    assert.equal(only.digest, arm64.descriptor.digest);
    // pull --platform picks the index's manifest too (these images have no titled layers to restore).
    const pulled = await airlockOk(env, [
      'pull',
      `${registry.host}/da/app:multi`,
      '-d',
      join(work, 'pulled'),
      '--platform',
      'linux/arm64',
      '-o',
      'json',
    ]);
    assert.deepEqual(JSON.parse(pulled.stdout), []);
    assertOneLineError(
      await airlock(env, [
        'pull',
        `${registry.host}/da/app:multi`,
        '-d',
        join(work, 'p2'),
        '--platform',
        'linux/ppc64le',
      ]),
      { pattern: /has no manifest for platform linux\/ppc64le/ },
    );
    // docker save writes "app:v1"; docker.io/library/app:v1 and library/app:v1 are the same name.
    for (const name of ['app:v1', 'library/app:v1', 'docker.io/library/app:v1']) {
      const back = await save([
        `docker-archive:${join(work, 'a.tar')}:${name}`,
        `${registry.host}/da/back:v1`,
      ]);
      assert.ok(back.digest.startsWith('sha256:'), name);
    }
    // An artifact is not an image docker could load.
    await writeFile(join(work, 'notes.txt'), `notes ${nonce()}`);
    await airlockOk(env, ['push', `${registry.host}/da/notes:v1`, 'notes.txt'], { cwd: work });
    assertOneLineError(
      await airlock(env, ['copy', `${registry.host}/da/notes:v1`, `docker-archive:${join(work, 'n.tar')}`]),
      { pattern: /docker archive holds container images; sha256:\w+ is an artifact/ },
    );
    assert.deepEqual((await listTree(work)).sort(), ['a.tar', 'arm.tar', 'b.tar', 'notes.txt', 'pulled']);
    assert.deepEqual(await listTree(env.tmp), []);
  });

  it('builds on the platform --platform names, variant included, or says what the base has', async (t) => {
    const registry = await registries.airlock();
    const env = await cliEnv(t);
    const work = await tempDirForTest(t, 'cli-append-variant-');
    const v6 = buildSimpleImage({ platform: { os: 'linux', architecture: 'arm', variant: 'v6' } });
    const v7 = buildSimpleImage({ platform: { os: 'linux', architecture: 'arm', variant: 'v7' } });
    await seedArtifact(registry.url, { repository: 'variant/base', tag: 'multi' }, buildIndex([v6, v7]));
    await writeFile(join(work, 'layer.tar'), tarArchive([{ path: 'added.txt', content: 'added\n' }]));
    const base = `${registry.host}/variant/base:multi`;
    await airlockOk(env, [
      'append',
      '-f',
      join(work, 'layer.tar'),
      '-b',
      base,
      '-t',
      `${registry.host}/variant/app:v7`,
      '--platform',
      'linux/arm/v7',
    ]);
    const config = JSON.parse(
      (await airlockOk(env, ['config', `${registry.host}/variant/app:v7`])).stdout,
    ) as { architecture: string; variant?: string; rootfs: { diff_ids: string[] } };
    const v7Config = JSON.parse(
      (await airlockOk(env, ['config', `${registry.host}/variant/base:multi`, '--platform', 'linux/arm/v7']))
        .stdout,
    ) as { rootfs: { diff_ids: string[] } };
    assert.deepEqual(config.rootfs.diff_ids.slice(0, -1), v7Config.rootfs.diff_ids, 'built on the v7 image');
    assertOneLineError(
      await airlock(env, [
        'append',
        '-f',
        join(work, 'layer.tar'),
        '-b',
        base,
        '-t',
        `${registry.host}/variant/app:v8`,
        '--platform',
        'linux/arm/v8',
      ]),
      {
        pattern: /Base .* has no manifest for platform linux\/arm\/v8; it has linux\/arm\/v6, linux\/arm\/v7/,
      },
    );
    // manifest and digest pick from an index as crane's --platform does.
    const digest = await airlockOk(env, ['digest', base, '--platform', 'linux/arm/v7']);
    assert.equal(digest.stdout.trim(), v7.descriptor.digest);
    const manifest = await airlockOk(env, ['manifest', base, '--platform', 'linux/arm/v6']);
    assert.equal(digestOf(Buffer.from(manifest.stdout)), v6.descriptor.digest);
    // config with a platform the index lacks is a failure (1), not a usage error.
    assertOneLineError(await airlock(env, ['config', base, '--platform', 'linux/s390x']), {
      pattern: /has no manifest for platform linux\/s390x; it has linux\/arm\/v6, linux\/arm\/v7/,
    });
  });

  it('extracts only --dir, counts only what it extracted, and takes the folder with a leading slash', async (t) => {
    const registry = await registries.airlock();
    const env = await cliEnv(t);
    const work = await tempDirForTest(t, 'cli-extract-dir-');
    const image = buildImage({
      layers: [
        [
          { path: 'top.txt', content: 'not in etc\n' },
          { path: 'etc/' },
          { path: 'etc/app/' },
          { path: 'etc/app/a.conf', content: 'aaaa' },
          { path: 'etc/app/with space.txt', content: 'bb' },
        ],
      ],
    });
    await seedArtifact(registry.url, { repository: 'extract/app', tag: 'v1' }, image);
    for (const [dir, out] of [
      ['etc/app', 'one'],
      ['/etc/app', 'two'],
    ] as const) {
      const result = JSON.parse(
        (
          await airlockOk(env, [
            'extract',
            `${registry.host}/extract/app:v1`,
            join(work, out),
            '--dir',
            dir,
            '-o',
            'json',
          ])
        ).stdout,
      ) as { files: number; bytes: number };
      assert.deepEqual([result.files, result.bytes], [2, 6], dir);
    }
    assertOneLineError(
      await airlock(env, [
        'extract',
        `${registry.host}/extract/app:v1`,
        join(work, 'three'),
        '--dir',
        '../etc',
      ]),
      { pattern: /--dir "\.\.\/etc" leaves the image/ },
    );
  });
});

describe('airlock stopped with Ctrl-C', { concurrency: 2 }, () => {
  it('leaves a new or empty layout folder as it was when a copy into it fails; an existing layout keeps its image', async (t) => {
    const env = await cliEnv(t);
    const work = await tempDirForTest(t, 'cli-failed-layout-');
    const contentOf = (image: ReturnType<typeof buildSimpleImage>) => {
      const entry = { bytes: image.bytes, mediaType: image.descriptor.mediaType };
      return {
        manifests: new Map([
          ['v1', entry],
          [image.descriptor.digest, entry],
        ]),
        blobs: new Map(image.blobs),
      };
    };
    const good = buildSimpleImage({ randomBytes: 4096 });
    const bad = buildSimpleImage({ randomBytes: 4096 });
    const missing = bad.layers[0];
    assert.ok(missing);
    const badContent = contentOf(bad);
    badContent.blobs.delete(missing.digest);
    const broken = await startFakeRegistry(t, serveContent(badContent));
    const whole = await startFakeRegistry(t, serveContent(contentOf(good)));
    const empty = join(work, 'empty');
    await mkdir(empty);
    const existing = join(work, 'existing');
    await airlockOk(env, ['copy', `${whole.host}/org/app:v1`, `oci:${existing}:kept`]);
    const kept = await listTree(existing);
    for (const target of [join(work, 'new'), empty, existing]) {
      const result = await airlock(env, ['copy', `${broken.host}/org/app:v1`, `oci:${target}:v2`]);
      assertOneLineError(result, { pattern: new RegExp(missing.digest.slice(7, 19)) });
    }
    const tree = await listTree(work);
    assert.ok(!tree.includes('new'), 'the new folder is removed again');
    assert.deepEqual(await listTree(empty), [], 'the empty folder stays empty');
    const after = await listTree(existing);
    assert.deepEqual(
      kept.filter((path) => !after.includes(path)),
      [],
      'the existing layout keeps every file',
    );
    const index = JSON.parse(await readFile(join(existing, 'index.json'), 'utf8')) as {
      manifests: { annotations?: Record<string, string> }[];
    };
    assert.deepEqual(
      index.manifests.map((m) => m.annotations?.['org.opencontainers.image.ref.name']),
      ['kept'],
    );

    // Two copies into one empty folder: the one that fails (late) must not take away what the other
    // finished meanwhile.
    const serveBad = serveContent(badContent);
    const slow = await startFakeRegistry(t, (req, res, url) => {
      if (url.pathname.endsWith(`/blobs/${missing.digest}`)) {
        setTimeout(() => void serveBad(req, res, url), 1500);
        return true;
      }
      return serveBad(req, res, url);
    });
    const shared = join(work, 'shared');
    await mkdir(shared);
    const failing = airlock(env, ['copy', `${slow.host}/org/app:v1`, `oci:${shared}:bad`]);
    const deadline = Date.now() + 10_000;
    while (!(await readdir(shared)).some((name) => name.startsWith('.airlock-staging-'))) {
      assert.ok(Date.now() < deadline, 'the failing copy never started writing');
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    await airlockOk(env, ['copy', `${whole.host}/org/app:v1`, `oci:${shared}:good`]);
    assertOneLineError(await failing, { pattern: new RegExp(missing.digest.slice(7, 19)) });
    assert.deepEqual((await readdir(shared)).sort(), ['blobs', 'index.json', 'oci-layout']);
    const sharedIndex = JSON.parse(await readFile(join(shared, 'index.json'), 'utf8')) as {
      manifests: { digest: string; annotations?: Record<string, string> }[];
    };
    assert.deepEqual(
      sharedIndex.manifests.map((m) => [m.annotations?.['org.opencontainers.image.ref.name'], m.digest]),
      [['good', good.descriptor.digest]],
    );
    for (const digest of good.blobs.keys())
      assert.ok((await listTree(shared)).includes(`blobs/sha256/${digest.slice(7)}`), digest);

    // Two that both succeed into one new folder: the second to finish adds its entry to the first's.
    const both = join(work, 'both');
    await Promise.all(
      ['a', 'b', 'c'].map((tag) =>
        airlockOk(env, ['copy', `${whole.host}/org/app:v1`, `oci:${both}:${tag}`]),
      ),
    );
    const bothIndex = JSON.parse(await readFile(join(both, 'index.json'), 'utf8')) as {
      manifests: { annotations?: Record<string, string> }[];
    };
    assert.deepEqual(
      bothIndex.manifests.map((m) => m.annotations?.['org.opencontainers.image.ref.name']).sort(),
      ['a', 'b', 'c'],
    );
    assert.deepEqual((await readdir(both)).sort(), ['blobs', 'index.json', 'oci-layout']);

    // A staging folder left by a copy that was killed (its process is gone) is removed by the next copy;
    // one of a process that runs stays.
    const leftOver = join(work, 'left-over');
    const dead = spawnSync(process.execPath, ['-e', '0']).pid;
    for (const [name, pid] of [
      ['.airlock-staging-dead', dead],
      ['.airlock-staging-live', process.pid],
    ] as const) {
      await mkdir(join(leftOver, name, 'blobs'), { recursive: true });
      await writeFile(join(leftOver, name, 'owner'), `${pid}\n${hostname()}\n`);
    }
    await airlockOk(env, ['copy', `${whole.host}/org/app:v1`, `oci:${leftOver}:v1`]);
    assert.deepEqual((await readdir(leftOver)).sort(), [
      '.airlock-staging-live',
      'blobs',
      'index.json',
      'oci-layout',
    ]);
  });

  it('removes what it was writing and ends by the signal, for every command that writes', async (t) => {
    const env = await cliEnv(t);
    const work = await tempDirForTest(t, 'cli-sigint-');
    const image = buildSimpleImage({ randomBytes: 256 * 1024 });
    const layer = image.layers[0];
    assert.ok(layer);
    const entry = { bytes: image.bytes, mediaType: image.descriptor.mediaType };
    const serve = serveContent({
      manifests: new Map([
        ['v1', entry],
        [image.descriptor.digest, entry],
      ]),
      blobs: new Map(image.blobs),
    });
    // The layer's body stops half-way and never ends: each command is mid-write when the signal comes.
    const stalled: (() => void)[] = [];
    const fake = await startFakeRegistry(t, (req, res, url) => {
      // Uploads (push, append) never get an answer: the command is mid-upload when the signal comes.
      if (url.pathname.includes('/blobs/uploads/') && req.method !== 'GET') {
        stalled.push(() => res.destroy());
        return true;
      }
      if (req.method === 'HEAD' && url.pathname.startsWith('/v2/org/up/')) {
        res.writeHead(404).end();
        return true;
      }
      if (req.method === 'GET' && url.pathname.endsWith(`/blobs/${layer.digest}`)) {
        const bytes = image.blobs.get(layer.digest) ?? Buffer.alloc(0);
        res.writeHead(200, { 'content-length': bytes.length, 'content-type': 'application/octet-stream' });
        res.write(bytes.subarray(0, bytes.length >> 1));
        stalled.push(() => res.destroy());
        return true;
      }
      return serve(req, res, url);
    });
    t.after(() => stalled.forEach((end) => end()));
    const source = `${fake.host}/org/app:v1`;
    // What push and append read: outside `work`, which must stay empty.
    const inputs = await tempDirForTest(t, 'cli-sigint-inputs-');
    await writeFile(join(inputs, 'big.bin'), Buffer.alloc(2 * 1024 * 1024, 1));
    await mkdir(join(inputs, 'folder'));
    await writeFile(join(inputs, 'folder', 'f.txt'), 'in a folder');
    await writeFile(join(inputs, 'layer.tar'), tarArchive([{ path: 'added.txt', content: 'added\n' }]));
    const commands = [
      ['copy', source, `oci-archive:${join(work, 'image.tar')}:v1`],
      ['copy', source, `docker-archive:${join(work, 'docker.tar')}:app:v1`],
      ['copy', source, `oci:${join(work, 'new-layout')}:v1`],
      ['pull', source, '--layout', join(work, 'pulled-layout')],
      ['blob', `${fake.host}/org/app@${layer.digest}`, '-f', join(work, 'layer.bin')],
      ['extract', source, join(work, 'extracted')],
      ['push', `${fake.host}/org/up:v1`, 'big.bin', 'folder'],
      ['append', '-f', join(inputs, 'layer.tar'), '-t', `${fake.host}/org/up:v2`],
    ];
    for (const args of commands) {
      const before = stalled.length;
      const child = spawn(process.execPath, [CLI, ...args], {
        env: { ...process.env, ...env.env },
        stdio: ['ignore', 'pipe', 'pipe'],
        cwd: inputs,
      });
      let stderr = '';
      child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
      const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
        child.once('exit', (code, signal) => resolve({ code, signal })),
      );
      const deadline = Date.now() + 20_000;
      while (stalled.length === before) {
        assert.ok(Date.now() < deadline, `${args[0]} never reached the stalled request\n${stderr}`);
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      await new Promise((resolve) => setTimeout(resolve, 300)); // the half layer is being written
      child.kill('SIGINT');
      const { code, signal } = await exited;
      assert.equal(signal, 'SIGINT', `${args.join(' ')} ends by the signal (code ${code})\n${stderr}`);
      assert.deepEqual(await listTree(work), [], `${args.join(' ')} left nothing in the output folder`);
      assert.deepEqual(await listTree(env.tmp), [], `${args.join(' ')} left nothing in the temp folder`);
    }
  });
});

describe('airlock writing to a reader that stops early', () => {
  it('ends quietly with exit 0 when standard output closes (blob | head)', async (t) => {
    const registry = await registries.airlock();
    const env = await cliEnv(t);
    const bytes = Buffer.alloc(8 * 1024 * 1024, 7);
    const res = await fetch(`${registry.url}/v2/pipe/app/blobs/uploads/?digest=${digestOf(bytes)}`, {
      method: 'POST',
      body: bytes,
    });
    assert.equal(res.status, 201);
    await res.arrayBuffer();
    const child = spawn(process.execPath, [CLI, 'blob', `${registry.host}/pipe/app@${digestOf(bytes)}`], {
      env: { ...process.env, ...env.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    child.stdout.once('data', () => child.stdout.destroy());
    assert.equal(await exited, 0, stderr);
    assert.equal(stderr, '');
  });
});

describe('airlock --quiet', () => {
  it('prints only what a script needs: the pushed reference, the copied digest, nothing for a delete', async (t) => {
    const registry = await registries.airlock();
    const env = await cliEnv(t);
    const work = await tempDirForTest(t, 'cli-quiet-');
    await writeFile(join(work, 'notes.txt'), `notes ${nonce()}`);
    const pushed = await airlockOk(env, ['push', `${registry.host}/quiet/app:v1`, 'notes.txt', '-q'], {
      cwd: work,
    });
    const match = /^(\S+)@(sha256:[0-9a-f]{64})\n$/.exec(pushed.stdout);
    assert.ok(match, pushed.stdout);
    assert.equal(match[1], `${registry.host}/quiet/app:v1`);
    const copied = await airlockOk(env, [
      'copy',
      `${registry.host}/quiet/app:v1`,
      `${registry.host}/quiet/b:v1`,
      '-q',
    ]);
    assert.equal(copied.stdout, `${match[2]}\n`);
    const deleted = await airlockOk(env, ['delete', `${registry.host}/quiet/b:v1`, '-q']);
    assert.equal(deleted.stdout, '');
    // docker://REF works wherever a reference does, as with copy.
    const digest = await airlockOk(env, ['digest', `docker://${registry.host}/quiet/app:v1`]);
    assert.equal(digest.stdout, `${match[2]}\n`);
  });
});

describe('airlock flags and hosts given the wrong way', { concurrency: 2 }, () => {
  it('exits 2 for bad numbers, unsupported transports, malformed references and hosts with a path', async (t) => {
    const env = await cliEnv(t);
    const cases: [string[], RegExp][] = [
      [
        ['copy', '127.0.0.1:1/a/b:v1', 'oci:x', '-j', 'abc'],
        /--jobs must be a positive whole number, not "abc"/,
      ],
      [['copy', '127.0.0.1:1/a/b:v1', 'oci:x', '-j', '0'], /--jobs must be a positive whole number, not "0"/],
      [['extract', '127.0.0.1:1/a/b:v1', 'out', '--max-bytes', 'abc'], /--max-bytes must be a positive/],
      [['extract', '127.0.0.1:1/a/b:v1', 'out', '--max-entries', '1.5'], /--max-entries must be a positive/],
      [['copy', 'containers-storage:foo', 'oci:x'], /transport "containers-storage:" is not supported/],
      [['copy', 'dir:/tmp/x', 'oci:x'], /transport "dir:" is not supported/],
      [['copy', 'ftp://x/y', 'oci:x'], /unknown transport/],
      [['copy', '127.0.0.1:1/App:v1', 'oci:x'], /^Error: Cannot parse reference "127\.0\.0\.1:1\/App:v1": /],
      [['login', '127.0.0.1:1/some/repo', '-u', 'a', '-p', 'b'], /is a path, not a registry/],
      [['catalog', '127.0.0.1:1/app'], /is a path, not a registry/],
      [['logout', 'http://'], /names no registry host/],
      [['copy', 'oci:nowhere', `127.0.0.1:1/a/b:v1@sha256:${'0'.repeat(64)}`], /has both a tag and a digest/],
      [
        ['copy', '127.0.0.1:1/a/b:v1', `oci:somewhere@sha256:${'0'.repeat(64)}`],
        /names a digest; a layout entry/,
      ],
      [['login', 'https://127.0.0.1:1/v1/extra', '-u', 'a', '-p', 'b'], /is a path, not a registry/],
      // Every command that takes a registry reference refuses other transports the same way, instead of
      // reading them as Docker Hub names (which went to registry-1.docker.io).
      ...(
        [
          ['tags', 'dir:foo'],
          ['manifest', 'containers-storage:foo'],
          ['digest', 'docker-daemon:foo:latest'],
          ['config', 'oci:foo'],
          ['blob', `dir:foo@sha256:${'0'.repeat(64)}`],
          ['referrers', 'oci-archive:foo.tar'],
          ['tag', 'containers-storage:foo', 'v2'],
          ['delete', 'dir:foo'],
          ['push', 'oci:foo', 'app.yaml'],
          ['pull', 'containers-storage:foo', '-d', 'x'],
          ['append', '-f', 'layer.tar', '-t', 'dir:foo'],
          ['sign', '--key', 'cosign.key', 'docker-daemon:foo:latest'],
          ['verify', '--key', 'cosign.pub', 'dir:foo'],
        ] as const
      ).map(([command, ...rest]): [string[], RegExp] => [
        [command, ...rest],
        /^Error: Cannot use "[^"]+": transport "[a-z-]+:" is not supported here; this command takes a registry reference/,
      ]),
    ];
    for (const [args, pattern] of cases) {
      assertOneLineError(await airlock(env, args), { code: 2, pattern });
    }
  });

  it('takes a registry given as a URL, and moves a saved login into the helper it configures', async (t) => {
    const registry = await registries.airlock();
    const env = await cliEnv(t);
    const image = buildSimpleImage();
    await seedArtifact(registry.url, { repository: 'url/app', tag: 'v1' }, image);
    const catalog = await airlockOk(env, ['catalog', `http://${registry.host}/`, '-o', 'json']);
    assert.ok((JSON.parse(catalog.stdout) as string[]).includes('url/app'));
    // docker's own config keys end in /v1/: still just the host.
    const logout = await airlockOk(env, ['logout', `https://${registry.host}/v1/`]);
    assert.equal(logout.stdout.trim(), `No saved credentials for ${registry.host}`);
    // A login saved in auths (no helper yet) keeps working once the helper is configured for the host.
    const config = join(env.dockerConfig, 'config.json');
    // docker may have written it under https://HOST too; a credsStore that is not installed here is no
    // reason to fail.
    const auth = { auth: Buffer.from('alice:secret').toString('base64') };
    await writeFile(
      config,
      JSON.stringify({
        auths: { [registry.host]: auth, [`https://${registry.host}/v1/`]: auth, 'other.example': auth },
        credsStore: 'not-installed-here',
      }),
    );
    const configured = await airlockOk(env, ['auth', 'configure-docker', registry.host, '-o', 'json']);
    assert.deepEqual((JSON.parse(configured.stdout) as { moved: string[]; helperOnPath: boolean }).moved, [
      registry.host,
    ]);
    const after = JSON.parse(await readFile(config, 'utf8')) as {
      auths?: Record<string, unknown>;
      credHelpers?: Record<string, string>;
    };
    assert.equal(after.credHelpers?.[registry.host], 'airlock');
    assert.deepEqual(
      Object.keys(after.auths ?? {}),
      ['other.example'],
      'the login left auths, under every key',
    );
    const stored = JSON.parse(await readFile(join(env.airlockConfig, 'credentials.json'), 'utf8')) as Record<
      string,
      { Username: string; Secret: string }
    >;
    assert.deepEqual(stored[registry.host], { Username: 'alice', Secret: 'secret' });
    // Airlock reads its own store itself: no docker-credential-airlock on PATH is needed for its commands.
    const listed = await airlockOk(env, ['auth', 'list', '-o', 'json']);
    assert.deepEqual(JSON.parse(listed.stdout), { [registry.host]: 'alice' });
    await airlockOk(env, ['tags', `${registry.host}/url/app`]);
  });
});
