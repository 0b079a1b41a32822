import { describe, it, beforeEach, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { gzipSync } from 'node:zlib';
import { pack } from 'tar-stream';
import { digestOf, MediaType, type Digest } from '../oci/index.js';
import { pullArtifact, pushArtifact, titleFor } from './artifact.js';
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

async function tarGz(entries: { name: string; body?: string }[]): Promise<Buffer> {
  const p = pack();
  for (const e of entries) {
    if (e.body === undefined) p.entry({ name: e.name, type: 'directory' });
    else p.entry({ name: e.name }, e.body);
  }
  p.finalize();
  const chunks: Buffer[] = [];
  for await (const chunk of p as AsyncIterable<Buffer>) chunks.push(chunk);
  return gzipSync(Buffer.concat(chunks));
}

describe('titleFor', () => {
  it('cleans relative paths and refuses absolute ones, ".." and paths naming no file', () => {
    assert.equal(titleFor('a.txt'), 'a.txt');
    assert.equal(titleFor('./dir//x.yaml'), 'dir/x.yaml');
    for (const [path, pattern] of [
      ['/etc/passwd', /is an absolute path/],
      ['../x', /leaves the current folder/],
      ['a/../../x', /leaves the current folder/],
      ['.', /names no file/],
    ] as const) {
      assert.throws(
        () => titleFor(path),
        (e: unknown) => e instanceof ClientError && pattern.test(e.message),
        path,
      );
    }
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
});
