// How the client CLI fails: broken and malicious archives, registries that lie about digests, layer
// titles that try to leave the pull folder, unreachable hosts, wrong credentials, token auth, retries and
// redirects. Every failure is exit code 1 (2 for usage errors) with one "Error: …" line and nothing left behind.
import assert from 'node:assert/strict';
import { access, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { gzipSync } from 'node:zlib';
import { pack } from 'tar-stream';
import { digestOf, MediaType } from '../../src/oci/index.js';
import {
  airlock,
  airlockOk,
  assertOneLineError,
  cliEnv,
  closedPort,
  listTree,
  sendJson,
  serveContent,
  SharedRegistries,
  startFakeRegistry,
  type FakeContent,
} from '../helpers/cli.js';
import {
  buildSimpleImage,
  nonce,
  sha256,
  tarArchive,
  tempDirForTest,
  writeOciLayout,
} from '../helpers/interop.js';

const registries = new SharedRegistries();
after(() => registries.stopAll());

interface TarEntry {
  readonly name: string;
  readonly type?: 'file' | 'directory' | 'symlink';
  readonly linkname?: string;
  readonly body?: string | Buffer;
}

/** A tar written by tar-stream, which keeps names as given (so it can hold `../` and absolute paths). */
async function rawTar(entries: readonly TarEntry[]): Promise<Buffer> {
  const p = pack();
  for (const { body, ...header } of entries) {
    const full = { mode: 0o644, ...header, type: header.type ?? 'file' };
    if (full.type === 'file') p.entry(full, body ?? '');
    else p.entry(full);
  }
  p.finalize();
  const chunks: Buffer[] = [];
  for await (const chunk of p as AsyncIterable<Buffer>) chunks.push(chunk);
  return Buffer.concat(chunks);
}

async function exists(path: string): Promise<boolean> {
  return access(path).then(
    () => true,
    () => false,
  );
}

/** Tags of a repository; [] when the registry does not know it. */
async function tagsOf(base: string, repository: string): Promise<string[]> {
  const res = await fetch(`${base}/v2/${repository}/tags/list`);
  if (res.status === 404) {
    await res.arrayBuffer();
    return [];
  }
  return ((await res.json()) as { tags?: string[] | null }).tags ?? [];
}

/** A docker-archive (docker save layout) holding one image, and the parts it was made of. */
function dockerArchive(): { archive: Buffer; config: Buffer; layer: Buffer } {
  const layer = tarArchive([{ path: 'hello.txt', content: `hello ${nonce()}\n` }]);
  const config = Buffer.from(
    JSON.stringify({
      architecture: 'amd64',
      os: 'linux',
      rootfs: { type: 'layers', diff_ids: [sha256(layer)] },
    }),
  );
  const archive = tarArchive([
    { path: 'config.json', content: config },
    { path: 'layer/' },
    { path: 'layer/layer.tar', content: layer },
    {
      path: 'manifest.json',
      content: JSON.stringify([
        { Config: 'config.json', RepoTags: ['example/app:v1'], Layers: ['layer/layer.tar'] },
      ]),
    },
  ]);
  return { archive, config, layer };
}

/** An artifact manifest with titled layers, and its content for a fake registry. */
function artifact(
  layers: readonly { title: string; bytes: Buffer; served?: Buffer }[],
): FakeContent & { digest: string } {
  const empty = Buffer.from('{}');
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MediaType.OciManifest,
      artifactType: 'application/vnd.example',
      config: { mediaType: MediaType.OciEmpty, digest: sha256(empty), size: 2 },
      layers: layers.map((l) => ({
        mediaType: MediaType.OciLayer,
        digest: sha256(l.bytes),
        size: l.bytes.length,
        annotations: { 'org.opencontainers.image.title': l.title },
      })),
    }),
  );
  const entry = { bytes: manifest, mediaType: MediaType.OciManifest };
  return {
    digest: digestOf(manifest),
    manifests: new Map([
      ['v1', entry],
      [digestOf(manifest), entry],
    ]),
    blobs: new Map([
      [sha256(empty), empty],
      ...layers.map((l): [string, Buffer] => [sha256(l.bytes), l.served ?? l.bytes]),
    ]),
  };
}

describe('airlock CLI on broken and malicious archives', { concurrency: 2 }, () => {
  it('refuses a mistyped AIRLOCK_HASH_THREAD or AIRLOCK_DIRECT_IO at start-up, before any command runs', async (t) => {
    const env = await cliEnv(t);
    for (const [name, value] of [
      ['AIRLOCK_HASH_THREAD', 'yes'],
      ['AIRLOCK_DIRECT_IO', 'off'],
    ] as const) {
      const result = await airlock({ ...env, env: { ...env.env, [name]: value } }, [
        'tags',
        `127.0.0.1:${await closedPort()}/x`,
      ]);
      assertOneLineError(result, {
        code: 2,
        pattern: new RegExp(`${name} must be 0 \\(off\\) or 1 \\(on\\), not "${value}"`),
      });
    }
  });

  it('refuses a layer for append that is not a complete tar, before pushing anything', async (t) => {
    const registry = await registries.airlock();
    const env = await cliEnv(t);
    const work = await tempDirForTest(t, 'cli-bad-append-');
    const tar = tarArchive([{ path: 'a.txt', content: 'x'.repeat(2000) }]);
    const gz = gzipSync(tar);
    const cases = [
      { name: 'garbage', bytes: Buffer.from('this is not a tar'), pattern: /is not a readable tar/ },
      { name: 'truncated.tar', bytes: tar.subarray(0, 700), pattern: /is not a readable tar/ },
      {
        name: 'truncated.tar.gz',
        bytes: gz.subarray(0, Math.floor(gz.length / 2)),
        pattern: /is not a readable tar/,
      },
      { name: 'zstd.tar.zst', bytes: Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 1, 2, 3]), pattern: /zstd/ },
      { name: 'missing.tar', bytes: undefined, pattern: /Cannot read layer/ },
    ];
    for (const c of cases) {
      const file = join(work, c.name);
      if (c.bytes) await writeFile(file, c.bytes);
      const repository = `bad-append/${c.name.replace(/\W/g, '-')}`;
      const result = await airlock(env, ['append', '-f', file, '-t', `${registry.host}/${repository}:v1`]);
      assertOneLineError(result, { pattern: c.pattern });
      assert.deepEqual(await tagsOf(registry.url, repository), [], c.name);
    }
    // The same layer, whole, is accepted (so the cases above fail for the reason they name).
    await writeFile(join(work, 'good.tar'), tar);
    await airlockOk(env, [
      'append',
      '-f',
      join(work, 'good.tar'),
      '-t',
      `${registry.host}/bad-append/good:v1`,
    ]);
  });

  it('refuses broken docker-archive tarballs for copy and pushes nothing', async (t) => {
    const registry = await registries.airlock();
    const env = await cliEnv(t);
    const work = await tempDirForTest(t, 'cli-bad-docker-archive-');
    const { archive, config, layer } = dockerArchive();
    const manifestJson = (layers: string[]): string =>
      JSON.stringify([{ Config: 'config.json', RepoTags: ['example/app:v1'], Layers: layers }]);
    const cases = [
      { name: 'garbage', bytes: Buffer.from('garbage'), pattern: /Cannot read archive/ },
      { name: 'truncated', bytes: archive.subarray(0, 1500), pattern: /Cannot read archive/ },
      {
        name: 'no-manifest',
        bytes: tarArchive([{ path: 'config.json', content: config }]),
        pattern: /is not a docker archive/,
      },
      {
        name: 'missing-layer',
        bytes: tarArchive([
          { path: 'config.json', content: config },
          { path: 'manifest.json', content: manifestJson(['nope/layer.tar']) },
        ]),
        pattern: /nope\/layer\.tar|ENOENT|no such file/,
      },
      {
        name: 'escaping-layer',
        bytes: tarArchive([
          { path: 'config.json', content: config },
          { path: 'layer.tar', content: layer },
          { path: 'manifest.json', content: manifestJson(['../../../etc/passwd']) },
        ]),
        pattern: /climbs out|outside/,
      },
      {
        name: 'wrong-name',
        bytes: archive,
        arg: ':other/app:v2',
        pattern: /has no image tagged "other\/app:v2"/,
      },
    ];
    for (const c of cases) {
      const file = join(work, `${c.name}.tar`);
      await writeFile(file, c.bytes);
      const repository = `bad-docker-archive/${c.name}`;
      const result = await airlock(env, [
        'copy',
        `docker-archive:${file}${c.arg ?? ''}`,
        `${registry.host}/${repository}:v1`,
      ]);
      assertOneLineError(result, { pattern: c.pattern });
      assert.deepEqual(await tagsOf(registry.url, repository), [], c.name);
    }
    await writeFile(join(work, 'good.tar'), archive);
    await airlockOk(env, [
      'copy',
      `docker-archive:${join(work, 'good.tar')}`,
      `${registry.host}/bad-docker-archive/good:v1`,
    ]);
    assert.deepEqual(await tagsOf(registry.url, 'bad-docker-archive/good'), ['v1']);
    assert.deepEqual(await listTree(env.tmp), [], 'no temp folder is left behind');
  });

  it('refuses broken and malicious oci-archive tarballs without writing outside its temp folder', async (t) => {
    const registry = await registries.airlock();
    const env = await cliEnv(t);
    const work = await tempDirForTest(t, 'cli-bad-oci-archive-');
    const marker = `airlock-escape-${nonce()}`;
    const layout = [
      { name: 'oci-layout', body: JSON.stringify({ imageLayoutVersion: '1.0.0' }) },
      { name: 'index.json', body: JSON.stringify({ schemaVersion: 2, manifests: [] }) },
    ];
    const good = await rawTar(layout);
    const cases = [
      { name: 'garbage', bytes: Buffer.from('garbage'), pattern: /Cannot read archive/ },
      { name: 'truncated', bytes: good.subarray(0, 600), pattern: /Cannot read archive/ },
      {
        name: 'not-a-layout',
        bytes: await rawTar([{ name: 'hello.txt', body: 'hi' }]),
        pattern: /not an OCI layout/,
      },
      {
        name: 'dot-dot',
        bytes: await rawTar([...layout, { name: `../../${marker}`, body: 'escaped' }]),
        pattern: /climbs out/,
      },
      {
        name: 'absolute',
        bytes: await rawTar([...layout, { name: join(tmpdir(), marker), body: 'escaped' }]),
        pattern: /absolute path/,
      },
      {
        name: 'symlink-escape',
        bytes: await rawTar([
          ...layout,
          { name: 'link', type: 'symlink', linkname: '../../..' },
          { name: `link/${marker}`, body: 'escaped' },
        ]),
        pattern: /points outside/,
      },
      {
        name: 'symlink-absolute',
        bytes: await rawTar([
          ...layout,
          { name: 'link', type: 'symlink', linkname: tmpdir() },
          { name: `link/${marker}`, body: 'escaped' },
        ]),
        pattern: /absolute path/,
      },
    ];
    for (const c of cases) {
      const file = join(work, `${c.name}.tar`);
      await writeFile(file, c.bytes);
      const dest = join(work, `${c.name}-out`);
      const result = await airlock(env, ['copy', `oci-archive:${file}`, `oci:${dest}`]);
      assertOneLineError(result, { pattern: c.pattern });
      assert.equal(await exists(dest), false, `${c.name}: ${dest} was created`);
      const toRegistry = await airlock(env, [
        'copy',
        `oci-archive:${file}`,
        `${registry.host}/bad-oci-archive/${c.name}:v1`,
      ]);
      assertOneLineError(toRegistry, { pattern: c.pattern });
    }
    for (const dir of [tmpdir(), join(tmpdir(), '..'), '/'])
      assert.equal(await exists(join(dir, marker)), false, dir);
    assert.deepEqual(
      (await listTree(work)).filter((p) => !p.endsWith('.tar')),
      [],
    );
    // Nor does the unpacked archive stay in the temp folder, whichever way it failed.
    assert.deepEqual(await listTree(env.tmp), []);
  });

  it('leaves no archive or layout behind when a copy to oci-archive:, docker-archive: or oci: fails', async (t) => {
    const registry = await registries.airlock();
    const env = await cliEnv(t);
    const work = await tempDirForTest(t, 'cli-bad-target-');
    const missing = `${registry.host}/bad-target/missing:v1`;
    for (const target of [
      `oci-archive:${join(work, 'out.tar')}`,
      `docker-archive:${join(work, 'out-docker.tar')}`,
      `oci:${join(work, 'layout')}`,
    ]) {
      assertOneLineError(await airlock(env, ['copy', missing, target]), { pattern: /HTTP 404/ });
    }
    assert.deepEqual(await listTree(work), []);
    assert.deepEqual(await listTree(env.tmp), [], 'no temp folder is left behind');
  });

  it('fails a copy from a layout that lacks a blob its manifest lists with one line naming both, and leaves nothing', async (t) => {
    const registry = await registries.airlock();
    const env = await cliEnv(t);
    const work = await tempDirForTest(t, 'cli-missing-blob-');
    const image = buildSimpleImage({ randomBytes: 4096 });
    const layer = image.layers[0];
    assert.ok(layer);
    const source = join(work, 'source');
    await writeOciLayout(source, { tag: 'v1', artifact: image });
    await rm(join(source, 'blobs', 'sha256', layer.digest.slice('sha256:'.length)));
    const before = await listTree(work);
    for (const target of [
      `oci:${join(work, 'layout')}:v1`,
      `oci-archive:${join(work, 'out.tar')}`,
      `docker-archive:${join(work, 'out-docker.tar')}`,
      `${registry.host}/missing-blob/app:v1`,
    ]) {
      const result = await airlock(env, ['copy', `oci:${source}:v1`, target]);
      assertOneLineError(result, { pattern: new RegExp(`has no blob ${layer.digest}$`) });
      assert.ok(result.stderr.startsWith(`Error: Layout "oci:${source}:v1" has no blob`), result.stderr);
    }
    assert.deepEqual(await listTree(work), before, 'no new layout or archive');
    assert.deepEqual(await listTree(env.tmp), [], 'no temp folder is left behind');
    assert.deepEqual(await tagsOf(registry.url, 'missing-blob/app'), []);
  });
});

describe('airlock CLI against a registry that misbehaves', { concurrency: 2 }, () => {
  it('refuses a blob whose bytes do not match its digest and writes no file with blob -f or pull', async (t) => {
    const env = await cliEnv(t);
    const work = await tempDirForTest(t, 'cli-mismatch-');
    const good = Buffer.from(`good ${nonce()}`);
    const wanted = Buffer.from(`wanted ${nonce()}`);
    const content = artifact([
      { title: 'good.txt', bytes: good },
      { title: 'bad.txt', bytes: wanted, served: Buffer.from(`evil ${nonce()}`.padEnd(wanted.length, '!')) },
    ]);
    const fake = await startFakeRegistry(t, serveContent(content));

    const file = join(work, 'blob.bin');
    const blob = await airlock(env, ['blob', `${fake.host}/org/app@${sha256(wanted)}`, '-f', file]);
    assertOneLineError(blob, { pattern: /arrived with digest/ });
    const toStdout = await airlock(env, ['blob', `${fake.host}/org/app@${sha256(wanted)}`]);
    assert.equal(toStdout.code, 1);
    assert.match(toStdout.stderr, /^Error: .*arrived with digest/);

    const out = join(work, 'out');
    const pull = await airlock(env, ['pull', `${fake.host}/org/app:v1`, '-d', out]);
    assertOneLineError(pull, { pattern: /arrived with digest/ });
    assert.deepEqual(await listTree(work), []);

    // An existing -d folder keeps only what it had.
    await mkdir(out);
    await writeFile(join(out, 'mine.txt'), 'mine');
    assertOneLineError(await airlock(env, ['pull', `${fake.host}/org/app:v1`, '-d', out]), {
      pattern: /arrived with digest/,
    });
    assert.deepEqual(await listTree(work), ['out', 'out/mine.txt']);

    // A manifest asked for by digest must hash to it.
    const liar = await startFakeRegistry(
      t,
      serveContent({
        manifests: new Map([
          [content.digest, { bytes: Buffer.from('{"schemaVersion":2}'), mediaType: MediaType.OciManifest }],
        ]),
        blobs: new Map(),
      }),
    );
    assertOneLineError(await airlock(env, ['manifest', `${liar.host}/org/app@${content.digest}`]), {
      pattern: /arrived with digest/,
    });
  });

  it('fails a copy of a corrupt blob into a registry, oci:, oci-archive: or docker-archive: and leaves nothing', async (t) => {
    const registry = await registries.airlock();
    const env = await cliEnv(t);
    const work = await tempDirForTest(t, 'cli-corrupt-copy-');
    const image = buildSimpleImage({ randomBytes: 4096 });
    const layer = image.layers[0];
    assert.ok(layer);
    const blobs = new Map(image.blobs);
    const good = blobs.get(layer.digest) ?? Buffer.alloc(0);
    const bad = Buffer.from(good);
    bad[bad.length - 20] = (bad[bad.length - 20] ?? 0) ^ 0xff;
    blobs.set(layer.digest, bad);
    const entry = { bytes: image.bytes, mediaType: image.descriptor.mediaType };
    const fake = await startFakeRegistry(
      t,
      serveContent({
        manifests: new Map([
          ['v1', entry],
          [image.descriptor.digest, entry],
        ]),
        blobs,
      }),
    );
    const source = `${fake.host}/org/app:v1`;
    const targets = [
      `${registry.host}/corrupt-copy/app:v1`,
      `oci:${join(work, 'layout')}:v1`,
      `oci-archive:${join(work, 'image.tar')}:v1`,
      `docker-archive:${join(work, 'docker.tar')}:org/app:v1`,
    ];
    for (const target of targets) {
      const result = await airlock(env, ['copy', source, target]);
      assert.equal(result.code, 1, `${target}\n${result.stderr}`);
      assert.match(result.stderr, /^Error: .*(digest|DIGEST)/, target);
    }
    assert.deepEqual(await tagsOf(registry.url, 'corrupt-copy/app'), []);
    assert.deepEqual(await listTree(work), []);
  });

  it('refuses layer titles that would leave the pull folder, before writing anything', async (t) => {
    const env = await cliEnv(t);
    const titles = ['../../escape', '/tmp/escape-absolute', 'a/../../escape', '..', '.'];
    for (const title of titles) {
      const work = await tempDirForTest(t, 'cli-title-');
      const content = artifact([
        { title: 'fine.txt', bytes: Buffer.from('fine') },
        { title, bytes: Buffer.from(`escape ${nonce()}`) },
      ]);
      const fake = await startFakeRegistry(t, serveContent(content));
      const out = join(work, 'deep', 'out');
      const result = await airlock(env, ['pull', `${fake.host}/org/app:v1`, '-d', out]);
      assertOneLineError(result, { pattern: /outside|not a path inside/ });
      assert.deepEqual(await listTree(work), [], title);
      assert.equal(await exists(join(work, 'escape')), false);
      assert.equal(await exists('/tmp/escape-absolute'), false);
      // Nothing was downloaded either: the titles are checked first.
      assert.equal(fake.requests.filter((r) => r.url.includes('/blobs/')).length, 0, title);
    }
  });

  it('says which host it cannot reach when nothing listens on the port', async (t) => {
    const env = await cliEnv(t);
    const port = await closedPort();
    const result = await airlock(env, ['tags', `127.0.0.1:${port}/org/app`]);
    assertOneLineError(result, {
      pattern: new RegExp(`Cannot reach 127\\.0\\.0\\.1:${port}: .*ECONNREFUSED`),
    });
  });

  it('answers wrong credentials with exit 1 and a line that mentions 401, and saves nothing on login', async (t) => {
    const env = await cliEnv(t);
    const content = artifact([{ title: 'a.txt', bytes: Buffer.from('a') }]);
    const serve = serveContent(content);
    const fake = await startFakeRegistry(t, (req, res, url) => {
      if (req.headers.authorization !== `Basic ${Buffer.from('alice:right').toString('base64')}`) {
        sendJson(
          res,
          401,
          { errors: [{ code: 'UNAUTHORIZED', message: 'authentication required' }] },
          {
            'www-authenticate': 'Basic realm="fake"',
          },
        );
        return true;
      }
      return serve(req, res, url);
    });
    const ref = `${fake.host}/org/app:v1`;
    assertOneLineError(
      await airlock(env, ['manifest', ref, '-u', 'alice', '--password-stdin'], { input: 'wrong\n' }),
      {
        pattern: /HTTP 401/,
      },
    );
    assertOneLineError(await airlock(env, ['manifest', ref]), { pattern: /HTTP 401.*airlock login/ });
    assertOneLineError(
      await airlock(env, ['login', fake.host, '-u', 'alice', '--password-stdin'], { input: 'wrong' }),
      {
        pattern: /401/,
      },
    );
    assert.equal(await exists(join(env.dockerConfig, 'config.json')), false);

    await airlockOk(env, ['login', fake.host, '-u', 'alice', '--password-stdin'], { input: 'right\n' });
    const manifest = await airlockOk(env, ['manifest', ref]);
    assert.equal(sha256(manifest.stdout), content.digest);
  });

  it('fetches a bearer token at the realm with the right service and scope once, and reuses it', async (t) => {
    const env = await cliEnv(t);
    const work = await tempDirForTest(t, 'cli-token-');
    const one = Buffer.from(`one ${nonce()}`);
    const two = Buffer.from(`two ${nonce()}`);
    const content = artifact([
      { title: 'one.txt', bytes: one },
      { title: 'two.txt', bytes: two },
    ]);
    const serve = serveContent(content);
    let issued = 0;
    const fake = await startFakeRegistry(t, (req, res, url) => {
      if (url.pathname === '/token') {
        issued++;
        sendJson(res, 200, { token: `tok-${issued}`, expires_in: 300 });
        return true;
      }
      if (!/^Bearer tok-\d+$/.test(req.headers.authorization ?? '')) {
        const scope = /^\/v2\/(.+)\/(manifests|blobs)\//.exec(url.pathname)?.[1];
        sendJson(
          res,
          401,
          { errors: [{ code: 'UNAUTHORIZED', message: 'token required' }] },
          {
            'www-authenticate': `Bearer realm="http://${req.headers.host ?? ''}/token",service="fake-registry"${scope ? `,scope="repository:${scope}:pull"` : ''}`,
          },
        );
        return true;
      }
      return serve(req, res, url);
    });

    const out = join(work, 'out');
    await airlockOk(env, ['pull', `${fake.host}/org/app:v1`, '-d', out, '-u', 'alice', '--password-stdin'], {
      input: 's3cret',
    });
    assert.deepEqual(await readFile(join(out, 'one.txt')), one);
    assert.deepEqual(await readFile(join(out, 'two.txt')), two);

    const tokens = fake.requests.filter((r) => r.url.startsWith('/token'));
    assert.equal(tokens.length, 1, JSON.stringify(fake.requests.map((r) => r.url)));
    const tokenUrl = new URL(tokens[0]?.url ?? '', 'http://fake');
    assert.equal(tokenUrl.searchParams.get('service'), 'fake-registry');
    assert.deepEqual(tokenUrl.searchParams.getAll('scope'), ['repository:org/app:pull']);
    assert.equal(tokens[0]?.headers.authorization, `Basic ${Buffer.from('alice:s3cret').toString('base64')}`);
    const api = fake.requests.filter((r) => r.url.startsWith('/v2/'));
    // One challenge, then every call (manifest and both blobs) carries the one token.
    assert.equal(api.filter((r) => r.headers.authorization === undefined).length, 1);
    assert.deepEqual(
      api.filter((r) => r.headers.authorization !== undefined).map((r) => r.headers.authorization),
      ['Bearer tok-1', 'Bearer tok-1', 'Bearer tok-1'],
    );

    // Anonymous: the token is asked for without credentials.
    fake.requests.length = 0;
    await airlockOk(env, ['manifest', `${fake.host}/org/app:v1`]);
    const anonymous = fake.requests.find((r) => r.url.startsWith('/token'));
    assert.ok(anonymous);
    assert.equal(anonymous.headers.authorization, undefined);
  });

  it('retries a 503 and then succeeds, and gives up with the status after its retries', async (t) => {
    const env = await cliEnv(t);
    const content = artifact([{ title: 'a.txt', bytes: Buffer.from('a') }]);
    const serve = serveContent(content);
    let manifestCalls = 0;
    const flaky = await startFakeRegistry(t, (req, res, url) => {
      if (url.pathname.includes('/manifests/') && ++manifestCalls <= 2) {
        sendJson(res, 503, { errors: [{ code: 'UNAVAILABLE', message: 'try later' }] });
        return true;
      }
      return serve(req, res, url);
    });
    const result = await airlockOk(env, ['manifest', `${flaky.host}/org/app:v1`]);
    assert.equal(sha256(result.stdout), content.digest);
    assert.equal(manifestCalls, 3);

    const down = await startFakeRegistry(t, (_req, res) => {
      sendJson(res, 503, { errors: [{ code: 'UNAVAILABLE', message: 'down for maintenance' }] });
    });
    assertOneLineError(await airlock(env, ['tags', `${down.host}/org/app`]), {
      pattern: /HTTP 503: UNAVAILABLE down for maintenance/,
    });
    assert.equal(down.requests.length, 5);
  });

  it('waits as long as Retry-After says before trying again', async (t) => {
    const env = await cliEnv(t);
    let calls = 0;
    const fake = await startFakeRegistry(t, (_req, res) => {
      if (++calls === 1) {
        sendJson(
          res,
          429,
          { errors: [{ code: 'TOOMANYREQUESTS', message: 'slow down' }] },
          { 'retry-after': '1' },
        );
        return;
      }
      sendJson(res, 200, { name: 'org/app', tags: ['v1'] });
    });
    const result = await airlockOk(env, ['tags', `${fake.host}/org/app`]);
    assert.equal(result.stdout, 'v1\n');
    const [first, second] = fake.requests;
    assert.ok(first && second);
    // Without Retry-After the first backoff is at most 200 ms.
    assert.ok(second.at - first.at >= 950, `retried after ${second.at - first.at} ms`);
  });

  it('follows a blob redirect to another host without sending it the Authorization header', async (t) => {
    const env = await cliEnv(t);
    const work = await tempDirForTest(t, 'cli-redirect-');
    const bytes = Buffer.from(`stored elsewhere ${nonce()}`);
    const digest = sha256(bytes);
    const storage = await startFakeRegistry(t, (_req, res, url) => {
      if (url.pathname !== `/storage/${digest}`) return false;
      res.writeHead(200, { 'content-length': bytes.length });
      res.end(bytes);
      return true;
    });
    const basic = `Basic ${Buffer.from('alice:pw').toString('base64')}`;
    const registry = await startFakeRegistry(t, (req, res, url) => {
      if (req.headers.authorization !== basic) {
        sendJson(
          res,
          401,
          { errors: [{ code: 'UNAUTHORIZED' }] },
          { 'www-authenticate': 'Basic realm="fake"' },
        );
        return true;
      }
      if (url.pathname !== `/v2/org/app/blobs/${digest}`) return false;
      res.writeHead(307, { location: `${storage.url}/storage/${digest}`, 'content-length': 0 });
      res.end();
      return true;
    });

    const file = join(work, 'blob.bin');
    await airlockOk(
      env,
      ['blob', `${registry.host}/org/app@${digest}`, '-f', file, '-u', 'alice', '--password-stdin'],
      {
        input: 'pw',
      },
    );
    assert.deepEqual(await readFile(file), bytes);
    assert.equal(storage.requests.length, 1);
    assert.equal(storage.requests[0]?.headers.authorization, undefined);
    assert.equal(registry.requests.at(-1)?.headers.authorization, basic);
  });
});

describe('airlock CLI usage errors', { concurrency: 2 }, () => {
  it('exits 2 with one "Error:" line for a command used the wrong way', async (t) => {
    const env = await cliEnv(t);
    const cases: { args: string[]; pattern: RegExp; input?: string }[] = [
      { args: ['blob', '127.0.0.1:1/org/app:v1'], pattern: /names no digest/ },
      {
        args: ['tags', '127.0.0.1:1/org/app', '-u', 'a', '-p', 'b', '--password-stdin'],
        pattern: /cannot be used together/,
      },
      { args: ['tags', '127.0.0.1:1/org/app', '-p', 'b'], pattern: /without --username/ },
      { args: ['tags', '127.0.0.1:1/org/app', '-o', 'yaml'], pattern: /--output must be "text" or "json"/ },
      // oras pull names its folder with -o: the error says which flag does that here; blob is the same.
      {
        args: ['pull', '127.0.0.1:1/org/app:v1', '-o', 'out'],
        pattern:
          /--output must be "text" or "json", not "out" \(-o is the output format; to write to out, use --dir out\)/,
      },
      {
        args: ['blob', `127.0.0.1:1/org/app@sha256:${'a'.repeat(64)}`, '-o', 'layer.tgz'],
        pattern:
          /not "layer\.tgz" \(-o is the output format; to write to layer\.tgz, use --file layer\.tgz\)/,
      },
      { args: ['login', '127.0.0.1:1'], pattern: /login needs --username/ },
      { args: ['push', '127.0.0.1:1/org/app:v1', 'f.txt', '-a', 'novalue'], pattern: /is not KEY=VALUE/ },
      {
        args: ['append', '-f', 'x.tar', '-t', '127.0.0.1:1/org/app:v1', '--platform', 'linux'],
        pattern: /is not os\/arch/,
      },
      { args: ['manifest', 'UPPER/Case:v1'], pattern: /Cannot parse reference/ },
    ];
    for (const c of cases) {
      assertOneLineError(await airlock(env, c.args, c.input === undefined ? {} : { input: c.input }), {
        code: 2,
        pattern: c.pattern,
      });
    }
    // Commander's own errors (a missing argument, an unknown option) also exit 2, with its lower-case "error:".
    for (const args of [['tags'], ['tags', '127.0.0.1:1/a/b', '--no-such-flag']]) {
      const result = await airlock(env, args);
      assert.equal(result.code, 2, args.join(' '));
      assert.match(result.stderr, /^error: /i);
    }
  });

  it('exits 1 for inputs it cannot use: files that are not there (unknown transports are usage errors)', async (t) => {
    const env = await cliEnv(t);
    const work = await tempDirForTest(t, 'cli-usage-');
    assertOneLineError(await airlock(env, ['copy', 'ftp://x/y', `oci:${join(work, 'l')}`]), {
      code: 2,
      pattern: /unknown transport/,
    });
    assertOneLineError(await airlock(env, ['push', '127.0.0.1:1/org/app:v1', 'missing.txt'], { cwd: work }), {
      pattern: /Cannot read "missing\.txt"/,
    });
    assertOneLineError(
      await airlock(env, ['push', '127.0.0.1:1/org/app:v1', '/etc/hostname'], { cwd: work }),
      {
        pattern: /absolute path/,
      },
    );
    assertOneLineError(await airlock(env, ['push', '127.0.0.1:1/org/app:v1', '../x'], { cwd: work }), {
      pattern: /leaves the current folder/,
    });
    assertOneLineError(await airlock(env, ['copy', `oci:${join(work, 'nope')}`, `oci:${join(work, 'l')}`]), {
      pattern: /is not an OCI layout/,
    });
    assert.deepEqual(await listTree(work), []);
  });
});
