import { describe, it, beforeEach, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { pack } from 'tar-stream';
import { digestOf, MediaType, OciLayout, type Digest } from '../oci/index.js';
import { appendLayer } from './append.js';
import { ClientError } from './errors.js';
import { LayoutStore } from './stores/layout-store.js';

async function tar(entries: { name: string; body: string }[]): Promise<Buffer> {
  const p = pack();
  for (const e of entries) p.entry({ name: e.name, mtime: new Date(0) }, e.body);
  p.finalize();
  const chunks: Buffer[] = [];
  for await (const chunk of p as AsyncIterable<Buffer>) chunks.push(chunk);
  return Buffer.concat(chunks);
}

interface Manifest {
  readonly mediaType: string;
  readonly config: { readonly mediaType: string; readonly digest: string };
  readonly layers: readonly { readonly mediaType: string; readonly digest: string; readonly size: number }[];
}

describe('appendLayer', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'airlock-append-test-'));
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  async function target(name: string, tag = 'v1'): Promise<LayoutStore> {
    return new LayoutStore(await OciLayout.open(join(dir, name), { create: true }), tag);
  }

  it('on an empty base writes the config and Docker manifest crane writes, keeping a gzip layer as it is', async () => {
    const plain = await tar([{ name: 'a.txt', body: 'a' }]);
    const gz = gzipSync(plain);
    await writeFile(join(dir, 'layer.tar.gz'), gz);
    const store = await target('out');
    const manifest = await appendLayer(store, join(dir, 'layer.tar.gz'));

    const config = `{"architecture":"","created":"0001-01-01T00:00:00Z","history":[{"created":"0001-01-01T00:00:00Z"}],"os":"","rootfs":{"type":"layers","diff_ids":["${digestOf(plain)}"]},"config":{}}`;
    assert.equal(
      manifest.bytes.toString(),
      JSON.stringify({
        schemaVersion: 2,
        mediaType: MediaType.DockerManifest,
        config: { mediaType: MediaType.DockerConfig, size: config.length, digest: digestOf(config) },
        layers: [{ mediaType: MediaType.DockerLayerGzip, size: gz.length, digest: digestOf(gz) }],
      }),
    );
    assert.equal((await store.layout.readBlob(digestOf(config), 4096)).toString(), config);
    assert.deepEqual(await store.layout.readBlob(digestOf(gz), 4096), gz);
    assert.equal((await store.layout.resolve('v1')).digest, manifest.digest);

    const oci = await appendLayer(await target('oci'), join(dir, 'layer.tar.gz'), { ociEmptyBase: true });
    const parsed = JSON.parse(oci.bytes.toString()) as Manifest;
    assert.deepEqual(
      [parsed.mediaType, parsed.config.mediaType, parsed.layers[0]?.mediaType],
      [MediaType.OciManifest, MediaType.OciConfig, MediaType.OciLayerGzip],
    );
  });

  it('on a base adds the layer, a diff_id and a history entry, and keeps the base media types', async () => {
    const first = await tar([{ name: 'one.txt', body: '1' }]);
    const second = await tar([{ name: 'two.txt', body: '2' }]);
    await writeFile(join(dir, 'one.tar'), first);
    await writeFile(join(dir, 'two.tar'), second);
    const baseStore = await target('base');
    const base = await appendLayer(baseStore, join(dir, 'one.tar'), { ociEmptyBase: true });
    const next = await appendLayer(await target('next', 'v2'), join(dir, 'two.tar'), { base: baseStore });

    const baseManifest = JSON.parse(base.bytes.toString()) as Manifest;
    const nextManifest = JSON.parse(next.bytes.toString()) as Manifest;
    assert.equal(nextManifest.mediaType, MediaType.OciManifest);
    assert.equal(nextManifest.layers.length, 2);
    assert.deepEqual(nextManifest.layers[0], baseManifest.layers[0]);
    const nextLayout = await OciLayout.open(join(dir, 'next'));
    const config = JSON.parse(
      (await nextLayout.readBlob(nextManifest.config.digest as Digest, 4096)).toString(),
    ) as {
      rootfs: { diff_ids: string[] };
      history: unknown[];
    };
    assert.deepEqual(config.rootfs.diff_ids, [digestOf(first), digestOf(second)]);
    assert.equal(config.history.length, 2);
    // The base layer was copied into the new target.
    assert.ok(await nextLayout.blobSize(nextManifest.layers[0]?.digest as Digest));
  });

  it('refuses a file that is not a whole tar before writing anything to the target', async () => {
    const whole = await tar([{ name: 'big.txt', body: 'x'.repeat(3000) }]);
    const cases = [
      ['garbage', Buffer.from('not a tar at all')],
      ['truncated.tar', whole.subarray(0, 1000)],
      ['truncated.tar.gz', gzipSync(whole).subarray(0, 40)],
    ] as const;
    for (const [name, bytes] of cases) {
      await writeFile(join(dir, name), bytes);
      const store = await target(`out-${name}`);
      await assert.rejects(
        appendLayer(store, join(dir, name)),
        (e: unknown) =>
          e instanceof ClientError && e.code === 'INVALID_INPUT' && /is not a readable tar/.test(e.message),
        name,
      );
      assert.deepEqual(await readdir(join(dir, `out-${name}`, 'blobs', 'sha256')), [], name);
    }
  });
});
