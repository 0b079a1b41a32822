import { describe, it, beforeEach, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import {
  chmod,
  link,
  lstat,
  mkdir,
  mkdtemp,
  readdir,
  readFile,
  readlink,
  rm,
  stat,
  symlink,
  utimes,
  lutimes,
  writeFile,
} from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { gunzipSync, gzipSync } from 'node:zlib';
import { extract, pack } from 'tar-stream';
import { digestOf, MediaType, type Digest } from '../oci/index.js';
import { isMediaType, pullArtifact, pushArtifact, titleFor } from './artifact.js';
import { ClientError } from './errors.js';
import {
  verifyingStream,
  type BlobSource,
  type ManifestResult,
  type RegistryClient,
} from './registry-client.js';

/** The parts of RegistryClient that push and pull use, over in-memory maps. */
class FakeClient {
  readonly blobs = new Map<string, Buffer>();
  readonly manifests = new Map<string, ManifestResult>();
  readonly blobGets: string[] = [];

  async pushBlob(_repository: string, blob: BlobSource): Promise<'uploaded'> {
    const chunks: Buffer[] = [];
    for await (const chunk of await blob.open()) chunks.push(chunk as Buffer);
    this.blobs.set(blob.digest, Buffer.concat(chunks));
    return 'uploaded';
  }

  putManifest(
    _repository: string,
    reference: string,
    manifest: { bytes: Buffer; mediaType: string },
  ): Promise<Digest> {
    const result = { ...manifest, digest: digestOf(manifest.bytes) };
    this.manifests.set(reference, result);
    return Promise.resolve(result.digest);
  }

  getManifest(_repository: string, reference: string): Promise<ManifestResult> {
    const found = this.manifests.get(reference);
    return found ? Promise.resolve(found) : Promise.reject(new ClientError('NOT_FOUND', `no ${reference}`));
  }

  getBlob(_repository: string, digest: Digest, options: { size?: number } = {}): Promise<Readable> {
    this.blobGets.push(digest);
    const bytes = this.blobs.get(digest) ?? Buffer.alloc(0);
    return Promise.resolve(Readable.from([bytes]).pipe(verifyingStream(digest, options.size)));
  }

  asClient(): RegistryClient {
    return this as unknown as RegistryClient;
  }
}

function artifact(
  client: FakeClient,
  layers: { title: string; bytes: Buffer; served?: Buffer; unpack?: boolean }[],
): void {
  const bytes = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MediaType.OciManifest,
      config: { mediaType: MediaType.OciEmpty, digest: digestOf('{}'), size: 2 },
      layers: layers.map((l) => ({
        mediaType: l.unpack ? MediaType.OciLayerGzip : MediaType.OciLayer,
        digest: digestOf(l.bytes),
        size: l.bytes.length,
        annotations: {
          'org.opencontainers.image.title': l.title,
          ...(l.unpack ? { 'io.deis.oras.content.unpack': 'true' } : {}),
        },
      })),
    }),
  );
  for (const l of layers) client.blobs.set(digestOf(l.bytes), l.served ?? l.bytes);
  client.manifests.set('v1', { bytes, digest: digestOf(bytes), mediaType: MediaType.OciManifest });
}

async function tarGz(entries: { name: string; body?: string; link?: string }[]): Promise<Buffer> {
  const p = pack();
  for (const e of entries) {
    if (e.link !== undefined) p.entry({ name: e.name, type: 'symlink', linkname: e.link });
    else if (e.body === undefined) p.entry({ name: e.name, type: 'directory' });
    else p.entry({ name: e.name }, e.body);
  }
  p.finalize();
  const chunks: Buffer[] = [];
  for await (const chunk of p as AsyncIterable<Buffer>) chunks.push(chunk);
  return gzipSync(Buffer.concat(chunks));
}

/** The entries of a tar+gzip layer: name, type and, for links, the target text. */
async function tarEntries(layer: Buffer): Promise<string[]> {
  const entries: string[] = [];
  const reader = extract();
  const done = (async () => {
    for await (const entry of reader) {
      const { name, type, linkname } = entry.header;
      entries.push(linkname ? `${name} ${type} -> ${linkname}` : `${name} ${type}`);
      entry.resume();
    }
  })();
  reader.end(gunzipSync(layer));
  await done;
  return entries;
}

/** The headers of a tar+gzip layer's entries: name, type, mode (octal), mtime (ISO), owner. */
async function tarHeaders(layer: Buffer): Promise<string[]> {
  const headers: string[] = [];
  const reader = extract();
  const done = (async () => {
    for await (const entry of reader) {
      const { name, type, mode, mtime, uid, gid } = entry.header;
      headers.push(`${name} ${type} ${(mode ?? 0).toString(8)} ${mtime?.toISOString()} ${uid}:${gid}`);
      entry.resume();
    }
  })();
  reader.end(gunzipSync(layer));
  await done;
  return headers;
}

/** Every path under `dir` with its kind and content (file bytes, link target), for "left as it was" checks. */
async function snapshot(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (rel: string): Promise<void> => {
    for (const name of (await readdir(join(dir, rel))).sort()) {
      const path = rel ? join(rel, name) : name;
      const info = await lstat(join(dir, path));
      if (info.isDirectory()) {
        out.push(`${path}/`);
        await walk(path);
      } else if (info.isSymbolicLink()) out.push(`${path} -> ${await readlink(join(dir, path))}`);
      else out.push(`${path}: ${await readFile(join(dir, path), 'utf8')}`);
    }
  };
  await walk('');
  return out;
}

describe('titleFor', () => {
  it('cleans relative paths and refuses absolute ones, ".." and paths naming no file', () => {
    assert.equal(titleFor('a.txt'), 'a.txt');
    assert.equal(titleFor('./dir//x.yaml'), 'dir/x.yaml');
    assert.equal(titleFor('sub/'), 'sub');
    for (const [path, pattern] of [
      ['/etc/passwd', /is an absolute path/],
      ['../x', /leaves the current folder/],
      ['a/../../x', /leaves the current folder/],
      ['', /names no file/],
    ] as const) {
      assert.throws(
        () => titleFor(path),
        (e: unknown) => e instanceof ClientError && pattern.test(e.message),
        path,
      );
    }
  });

  // Was refused with '"." names no file'; oras pushes the current folder under the title ".".
  it('titles the current folder "." as oras does, however it is written', () => {
    for (const path of ['.', './', 'sub/..', './sub/../']) assert.equal(titleFor(path), '.', path);
  });
});

describe('isMediaType', () => {
  it('takes RFC 6838 TYPE/SUBTYPE names and refuses empty, partial, parameterised or spaced ones', () => {
    for (const good of ['application/vnd.unknown.artifact.v1', 'application/vnd.acme.config+json', 'a/b'])
      assert.equal(isMediaType(good), true, good);
    for (const bad of ['', 'foo', 'application/', '/json', 'a/b/c', ' a/b', 'a/b; charset=utf-8', 'a b/c'])
      assert.equal(isMediaType(bad), false, bad);
  });
});

describe('pushArtifact and pullArtifact', () => {
  let dir: string;
  const cwd = process.cwd();
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'airlock-artifact-'));
    process.chdir(dir);
  });
  afterEach(async () => {
    process.chdir(cwd);
    await rm(dir, { recursive: true, force: true });
  });

  it('writes the manifest oras writes: empty config inline, titled layers, sorted created annotation', async () => {
    await writeFile('a.txt', 'hello');
    const client = new FakeClient();
    const manifest = await pushArtifact(
      client.asClient(),
      { repository: 'org/app', reference: 'v1', files: [{ path: 'a.txt' }] },
      {
        annotations: { 'z.last': '1', 'a.first': '2' },
        now: new Date('2020-01-01T00:00:00.123Z'),
      },
    );
    assert.equal(
      manifest.bytes.toString(),
      JSON.stringify({
        schemaVersion: 2,
        mediaType: MediaType.OciManifest,
        artifactType: 'application/vnd.unknown.artifact.v1',
        config: { mediaType: MediaType.OciEmpty, digest: digestOf('{}'), size: 2, data: 'e30=' },
        layers: [
          {
            mediaType: MediaType.OciLayer,
            digest: digestOf('hello'),
            size: 5,
            annotations: { 'org.opencontainers.image.title': 'a.txt' },
          },
        ],
        annotations: {
          'a.first': '2',
          'org.opencontainers.image.created': '2020-01-01T00:00:00Z',
          'z.last': '1',
        },
      }),
    );
    assert.deepEqual(client.blobs.get(digestOf('hello')), Buffer.from('hello'));
    assert.deepEqual(client.blobs.get(digestOf('{}')), Buffer.from('{}'));
    const bare = await pushArtifact(
      client.asClient(),
      { repository: 'org/app', reference: 'v2', files: [{ path: 'a.txt' }] },
      {
        created: false,
      },
    );
    assert.equal((JSON.parse(bare.bytes.toString()) as { annotations?: unknown }).annotations, undefined);
    await assert.rejects(
      pushArtifact(client.asClient(), { repository: 'org/app', reference: 'v3', files: [] }),
      /Nothing to push/,
    );
  });

  it('restores files and unpacks folders into the output folder', async () => {
    const client = new FakeClient();
    const folder = await tarGz([{ name: 'conf/' }, { name: 'conf/a.yaml', body: 'a: 1\n' }]);
    artifact(client, [
      { title: 'notes.txt', bytes: Buffer.from('notes') },
      { title: 'conf', bytes: folder, unpack: true },
    ]);
    const files = await pullArtifact(client.asClient(), {
      repository: 'org/app',
      reference: 'v1',
      outDir: 'out',
    });
    assert.deepEqual(
      files.map((f) => [f.title, f.unpacked]),
      [
        ['notes.txt', false],
        ['conf', true],
      ],
    );
    assert.equal(await readFile(join('out', 'notes.txt'), 'utf8'), 'notes');
    assert.equal(await readFile(join('out', 'conf', 'a.yaml'), 'utf8'), 'a: 1\n');
    assert.deepEqual((await readdir('out')).sort(), ['conf', 'notes.txt']);
  });

  it('refuses a title that leaves the output folder before downloading any layer', async () => {
    for (const title of ['../../escape', '/abs/escape', 'a/../../escape']) {
      const client = new FakeClient();
      artifact(client, [
        { title: 'fine.txt', bytes: Buffer.from('fine') },
        { title, bytes: Buffer.from('escape') },
      ]);
      await assert.rejects(
        pullArtifact(client.asClient(), { repository: 'org/app', reference: 'v1', outDir: 'out' }),
        (e: unknown) => e instanceof ClientError && /outside "out"|not a path inside/.test(e.message),
        title,
      );
      assert.deepEqual(client.blobGets, [], title);
      assert.deepEqual(await readdir(dir), [], title);
    }
  });

  it('leaves the output folder as it was when a layer arrives corrupt', async () => {
    const client = new FakeClient();
    artifact(client, [
      { title: 'first.txt', bytes: Buffer.from('first') },
      { title: 'second.txt', bytes: Buffer.from('second'), served: Buffer.from('SECOND') },
    ]);
    await assert.rejects(
      pullArtifact(client.asClient(), { repository: 'org/app', reference: 'v1', outDir: join('new', 'out') }),
      (e: unknown) => e instanceof ClientError && e.code === 'DIGEST_MISMATCH',
    );
    assert.deepEqual(await readdir(dir), []);
    await mkdir('existing');
    await writeFile(join('existing', 'mine.txt'), 'mine');
    await assert.rejects(
      pullArtifact(client.asClient(), { repository: 'org/app', reference: 'v1', outDir: 'existing' }),
    );
    assert.deepEqual(await readdir('existing'), ['mine.txt']);
  });

  // Was written as "artifactType": "" (not a media type) into the manifest.
  it('refuses an empty or malformed artifactType with INVALID_INPUT before pushing anything', async () => {
    await writeFile('a.txt', 'hello');
    const client = new FakeClient();
    for (const artifactType of ['', 'foo', 'application/x; charset=utf-8']) {
      await assert.rejects(
        pushArtifact(
          client.asClient(),
          { repository: 'org/app', reference: 'v1', files: [{ path: 'a.txt' }] },
          { artifactType },
        ),
        (e: unknown) =>
          e instanceof ClientError &&
          e.code === 'INVALID_INPUT' &&
          e.message.includes(`Artifact type "${artifactType}" is not a media type`),
        artifactType,
      );
    }
    assert.equal(client.blobs.size, 0);
    assert.equal(client.manifests.size, 0);
  });

  // Symlinks used to be dropped from folders without a word.
  it('keeps symlinks in a folder as symlink entries with their target text, as oras and tar do', async () => {
    await mkdir(join('conf', 'sub'), { recursive: true });
    await writeFile(join('conf', 'a.yaml'), 'a: 1\n');
    await symlink('a.yaml', join('conf', 'link'));
    await symlink('sub', join('conf', 'dirlink'));
    await symlink('../../outside', join('conf', 'sub', 'far'));
    const client = new FakeClient();
    const manifest = await pushArtifact(client.asClient(), {
      repository: 'org/app',
      reference: 'v1',
      files: [{ path: 'conf' }],
    });
    const layer = (JSON.parse(manifest.bytes.toString()) as { layers: { digest: string }[] }).layers[0];
    assert.deepEqual(await tarEntries(client.blobs.get(layer?.digest ?? '') ?? Buffer.alloc(0)), [
      'conf/ directory',
      'conf/a.yaml file',
      'conf/dirlink symlink -> sub',
      'conf/link symlink -> a.yaml',
      'conf/sub/ directory',
      'conf/sub/far symlink -> ../../outside',
    ]);
  });

  // A folder's own entries used to be stamped with the time of the push, so the same folder pushed again a
  // second later gave another layer, and another manifest digest even with --no-created.
  it('packs a folder to the same bytes every time: each entry, folders too, keeps its own mode and mtime', async () => {
    await mkdir(join('conf', 'sub'), { recursive: true });
    await writeFile(join('conf', 'a.yaml'), 'a: 1\n');
    await writeFile(join('conf', 'sub', 'b.yaml'), 'b: 2\n');
    await symlink('a.yaml', join('conf', 'link'));
    await chmod(join('conf', 'a.yaml'), 0o640);
    await chmod(join('conf', 'sub', 'b.yaml'), 0o600);
    await chmod(join('conf', 'sub'), 0o750);
    await chmod('conf', 0o755);
    // Innermost first: changing a folder's entries would move its mtime again.
    await lutimes(join('conf', 'link'), 0, new Date('2021-01-01T00:00:04Z'));
    await utimes(join('conf', 'a.yaml'), 0, new Date('2021-01-01T00:00:03Z'));
    await utimes(join('conf', 'sub', 'b.yaml'), 0, new Date('2021-01-01T00:00:02Z'));
    await utimes(join('conf', 'sub'), 0, new Date('2021-01-01T00:00:01Z'));
    await utimes('conf', 0, new Date('2021-01-01T00:00:00Z'));
    const client = new FakeClient();
    const push = (reference: string): Promise<ManifestResult> =>
      pushArtifact(
        client.asClient(),
        { repository: 'org/app', reference, files: [{ path: 'conf' }] },
        { created: false },
      );
    const first = await push('v1');
    const layer = (JSON.parse(first.bytes.toString()) as { layers: { digest: string }[] }).layers[0];
    assert.deepEqual(await tarHeaders(client.blobs.get(layer?.digest ?? '') ?? Buffer.alloc(0)), [
      'conf/ directory 755 2021-01-01T00:00:00.000Z 0:0',
      'conf/a.yaml file 640 2021-01-01T00:00:03.000Z 0:0',
      'conf/link symlink 777 2021-01-01T00:00:04.000Z 0:0',
      'conf/sub/ directory 750 2021-01-01T00:00:01.000Z 0:0',
      'conf/sub/b.yaml file 600 2021-01-01T00:00:02.000Z 0:0',
    ]);
    assert.equal((await push('v2')).digest, first.digest);
  });

  // Special files used to be dropped from folders without a word; they are refused, naming the file.
  it('refuses a folder holding a socket, naming it, and pushes nothing', async () => {
    await mkdir('conf');
    await writeFile(join('conf', 'a.yaml'), 'a: 1\n');
    const server = createServer();
    await new Promise<void>((listening) => server.listen(join(dir, 'conf', 'app.sock'), listening));
    try {
      const client = new FakeClient();
      await assert.rejects(
        pushArtifact(client.asClient(), {
          repository: 'org/app',
          reference: 'v1',
          files: [{ path: 'conf' }],
        }),
        (e: unknown) =>
          e instanceof ClientError &&
          e.code === 'INVALID_INPUT' &&
          /Cannot push "conf\/app\.sock": it is a socket/.test(e.message),
      );
      assert.equal(client.blobs.size, 0);
      assert.equal(client.manifests.size, 0);
    } finally {
      await new Promise((closed) => server.close(closed));
    }
  });

  // `airlock push REF .` used to be refused; oras writes one folder layer titled "." with relative entries.
  it('pushes "." as one folder layer titled "." whose entries are named relative to the folder', async () => {
    await writeFile('a.txt', 'a');
    await mkdir('sub');
    await writeFile(join('sub', 'b.txt'), 'b');
    await symlink('a.txt', 'link');
    const client = new FakeClient();
    const manifest = await pushArtifact(client.asClient(), {
      repository: 'org/app',
      reference: 'v1',
      files: [{ path: '.' }],
    });
    const layers = (
      JSON.parse(manifest.bytes.toString()) as {
        layers: { mediaType: string; digest: string; annotations: Record<string, string> }[];
      }
    ).layers;
    assert.equal(layers.length, 1);
    assert.equal(layers[0]?.mediaType, MediaType.OciLayerGzip);
    assert.equal(layers[0]?.annotations['org.opencontainers.image.title'], '.');
    assert.equal(layers[0]?.annotations['io.deis.oras.content.unpack'], 'true');
    assert.deepEqual(await tarEntries(client.blobs.get(layers[0]?.digest ?? '') ?? Buffer.alloc(0)), [
      '. directory',
      'a.txt file',
      'link symlink -> a.txt',
      'sub/ directory',
      'sub/b.txt file',
    ]);

    // And pull puts it back into the output folder itself, symlink included.
    const files = await pullArtifact(client.asClient(), {
      repository: 'org/app',
      reference: 'v1',
      outDir: 'out',
    });
    assert.deepEqual(
      files.map((f) => [f.title, f.unpacked]),
      [['.', true]],
    );
    assert.deepEqual(await snapshot('out'), ['a.txt: a', 'link -> a.txt', 'sub/', 'sub/b.txt: b']);
  });

  // Pull used to rm -rf the folder first, deleting the user's files that are not in the artifact.
  it('merges a folder layer into an existing folder: its files replace same-named ones, the others stay', async () => {
    const client = new FakeClient();
    artifact(client, [
      {
        title: 'pushdir',
        bytes: await tarGz([
          { name: 'pushdir/' },
          { name: 'pushdir/a.txt', body: 'new a' },
          { name: 'pushdir/sub/' },
          { name: 'pushdir/sub/b.txt', body: 'new b' },
          { name: 'pushdir/link', link: 'a.txt' },
        ]),
        unpack: true,
      },
    ]);
    await mkdir(join('out', 'pushdir', 'sub'), { recursive: true });
    await mkdir(join('out', 'pushdir', 'mine'));
    await writeFile(join('out', 'pushdir', 'a.txt'), 'old a');
    await writeFile(join('out', 'pushdir', 'mine.txt'), 'mine');
    await writeFile(join('out', 'pushdir', 'mine', 'deep.txt'), 'deep');
    await writeFile(join('out', 'pushdir', 'sub', 'c.txt'), 'mine too');
    await writeFile(join('out', 'pushdir', 'link'), 'a file where the artifact has a symlink');
    await pullArtifact(client.asClient(), { repository: 'org/app', reference: 'v1', outDir: 'out' });
    assert.deepEqual(await snapshot('out'), [
      'pushdir/',
      'pushdir/a.txt: new a',
      'pushdir/link -> a.txt',
      'pushdir/mine/',
      'pushdir/mine/deep.txt: deep',
      'pushdir/mine.txt: mine',
      'pushdir/sub/',
      'pushdir/sub/b.txt: new b',
      'pushdir/sub/c.txt: mine too',
    ]);
  });

  // Pull used to rm -rf a folder that had the name of a file layer.
  it('refuses a file layer whose title is an existing folder, before downloading, and leaves it alone', async () => {
    const client = new FakeClient();
    artifact(client, [
      { title: 'fine.txt', bytes: Buffer.from('fine') },
      { title: 'data', bytes: Buffer.from('a file') },
    ]);
    await mkdir(join('out', 'data'), { recursive: true });
    await writeFile(join('out', 'data', 'keep.txt'), 'keep');
    await assert.rejects(
      pullArtifact(client.asClient(), { repository: 'org/app', reference: 'v1', outDir: 'out' }),
      (e: unknown) =>
        e instanceof ClientError &&
        e.code === 'INVALID_INPUT' &&
        e.message ===
          'Cannot restore "data": "out/data" is a folder where the artifact has a file; pull does not delete folders, so move it away first',
    );
    assert.deepEqual(client.blobGets, []);
    assert.deepEqual(await snapshot('out'), ['data/', 'data/keep.txt: keep']);
  });

  it('refuses an output folder that is a file, before downloading anything', async () => {
    const client = new FakeClient();
    artifact(client, [{ title: 'a.txt', bytes: Buffer.from('a') }]);
    await writeFile('out', 'a file');
    await assert.rejects(
      pullArtifact(client.asClient(), { repository: 'org/app', reference: 'v1', outDir: 'out' }),
      /^ClientError: Cannot pull into "out": it is not a folder$/,
    );
    assert.deepEqual(client.blobGets, []);
    assert.equal(await readFile('out', 'utf8'), 'a file');
  });

  it('places layers in manifest order, so a file layer inside an earlier folder layer replaces its file', async () => {
    const client = new FakeClient();
    artifact(client, [
      {
        title: 'conf',
        bytes: await tarGz([{ name: 'conf/' }, { name: 'conf/a.yaml', body: 'from the folder' }]),
        unpack: true,
      },
      { title: 'conf/a.yaml', bytes: Buffer.from('from the file layer') },
    ]);
    await pullArtifact(client.asClient(), { repository: 'org/app', reference: 'v1', outDir: 'out' });
    assert.deepEqual(await snapshot('out'), ['conf/', 'conf/a.yaml: from the file layer']);
  });

  // A replaced file used to get default permissions: a 0600 secret became world-readable.
  it('replaces an existing file by rename, keeping its permissions, and replaces a symlink instead of writing through it', async () => {
    const client = new FakeClient();
    artifact(client, [
      { title: 'secret.txt', bytes: Buffer.from('new secret') },
      { title: 'linked.txt', bytes: Buffer.from('new linked') },
    ]);
    await mkdir('out');
    await writeFile(join('out', 'secret.txt'), 'old secret', { mode: 0o600 });
    await chmod(join('out', 'secret.txt'), 0o600);
    await link(join('out', 'secret.txt'), 'hard-link-to-old');
    await writeFile('elsewhere.txt', 'outside');
    await symlink('../elsewhere.txt', join('out', 'linked.txt'));
    await pullArtifact(client.asClient(), { repository: 'org/app', reference: 'v1', outDir: 'out' });
    assert.equal(await readFile(join('out', 'secret.txt'), 'utf8'), 'new secret');
    assert.equal((await stat(join('out', 'secret.txt'))).mode & 0o777, 0o600);
    // A new inode took the name (an in-place write would have changed the hard link's bytes too).
    assert.equal(await readFile('hard-link-to-old', 'utf8'), 'old secret');
    assert.equal((await lstat(join('out', 'linked.txt'))).isFile(), true);
    assert.equal(await readFile('elsewhere.txt', 'utf8'), 'outside');
  });

  it('refuses to merge a folder layer through a symlink or over a file, leaving both alone', async () => {
    const client = new FakeClient();
    artifact(client, [
      {
        title: 'conf/app',
        bytes: await tarGz([{ name: 'conf/app/' }, { name: 'conf/app/a.yaml', body: 'a' }]),
        unpack: true,
      },
    ]);
    await mkdir('elsewhere');
    await mkdir('out');
    await symlink('../elsewhere', join('out', 'conf'));
    await assert.rejects(
      pullArtifact(client.asClient(), { repository: 'org/app', reference: 'v1', outDir: 'out' }),
      /^ClientError: Cannot restore "conf\/app": "out\/conf" is a symlink where the artifact has a folder; pull does not write through symlinks$/,
    );
    assert.deepEqual(await readdir('elsewhere'), []);
    await rm(join('out', 'conf'));
    await mkdir(join('out', 'conf'));
    await writeFile(join('out', 'conf', 'app'), 'a file');
    await assert.rejects(
      pullArtifact(client.asClient(), { repository: 'org/app', reference: 'v1', outDir: 'out' }),
      /"out\/conf\/app" is a file where the artifact has a folder/,
    );
    assert.deepEqual(await snapshot('out'), ['conf/', 'conf/app: a file']);
  });

  // Pull used to replace folders wholesale; a conflict found part way must not leave a half-merged folder.
  it('leaves the output folder exactly as it was when a folder layer conflicts part way', async () => {
    await mkdir(join('out', 'conf', 'z.yaml'), { recursive: true });
    await writeFile(join('out', 'conf', 'a.yaml'), 'old a');
    await writeFile(join('out', 'conf', 'z.yaml', 'keep'), 'keep');
    await writeFile(join('out', 'notes.txt'), 'old notes');
    await mkdir(join('out', 'later', 'x'), { recursive: true });
    const before = await snapshot('out');
    const conf = await tarGz([
      { name: 'conf/' },
      { name: 'conf/a.yaml', body: 'new a' },
      { name: 'conf/new.yaml', body: 'new' },
      { name: 'conf/z.yaml', body: 'a file where the user has a folder' },
    ]);
    const later = await tarGz([{ name: 'later/' }, { name: 'later/x', body: 'conflicts' }]);
    const cases = [
      // The conflict is inside the layer: found before any of it moves.
      [{ title: 'conf', bytes: conf, unpack: true }],
      // The conflict is in a later layer: the files and folder merge already made are undone.
      [
        { title: 'notes.txt', bytes: Buffer.from('new notes') },
        { title: 'new.txt', bytes: Buffer.from('new file') },
        {
          title: 'conf',
          bytes: await tarGz([
            { name: 'conf/' },
            { name: 'conf/a.yaml', body: 'new a' },
            { name: 'conf/new/' },
            { name: 'conf/new/b.yaml', body: 'b' },
          ]),
          unpack: true,
        },
        { title: 'deep/er/file.txt', bytes: Buffer.from('deep') },
        { title: 'later', bytes: later, unpack: true },
      ],
    ];
    for (const [i, layers] of cases.entries()) {
      const client = new FakeClient();
      artifact(client, layers);
      await assert.rejects(
        pullArtifact(client.asClient(), { repository: 'org/app', reference: 'v1', outDir: 'out' }),
        (e: unknown) =>
          e instanceof ClientError && /is a folder where the artifact has a file/.test(e.message),
        String(i),
      );
      assert.deepEqual(await snapshot('out'), before, String(i));
    }
  });

  // Pull used to refuse the title "." that `oras push REF .` writes.
  it('restores a folder layer titled "." (as oras push REF . writes it) into the output folder itself', async () => {
    const client = new FakeClient();
    artifact(client, [
      {
        title: '.',
        bytes: await tarGz([
          { name: '.' },
          { name: 'a.txt', body: 'a' },
          { name: 'sub/' },
          { name: 'sub/b.txt', body: 'b' },
          { name: 'link', link: 'sub/b.txt' },
        ]),
        unpack: true,
      },
    ]);
    await mkdir('out');
    await writeFile(join('out', 'mine.txt'), 'mine');
    const files = await pullArtifact(client.asClient(), {
      repository: 'org/app',
      reference: 'v1',
      outDir: 'out',
    });
    assert.deepEqual(
      files.map((f) => [f.title, f.unpacked]),
      [['.', true]],
    );
    assert.deepEqual(await snapshot('out'), [
      'a.txt: a',
      'link -> sub/b.txt',
      'mine.txt: mine',
      'sub/',
      'sub/b.txt: b',
    ]);
  });

  it('refuses a folder layer with a symlink that points outside the output folder, writing nothing', async () => {
    for (const [title, entries] of [
      ['.', [{ name: '.' }, { name: 'up', link: '../secret' }]],
      ['conf', [{ name: 'conf/' }, { name: 'conf/up', link: '../../secret' }]],
      ['conf', [{ name: 'conf/' }, { name: 'conf/abs', link: '/etc/passwd' }]],
    ] as const) {
      const client = new FakeClient();
      artifact(client, [{ title, bytes: await tarGz([...entries]), unpack: true }]);
      await assert.rejects(
        pullArtifact(client.asClient(), { repository: 'org/app', reference: 'v1', outDir: 'out' }),
        (e: unknown) =>
          e instanceof ClientError &&
          e.code === 'INVALID_RESPONSE' &&
          e.message.startsWith(`Cannot unpack layer "${title}": Symlink`),
        `${title} ${JSON.stringify(entries)}`,
      );
      assert.deepEqual(await readdir(dir), [], title);
    }
  });
});
