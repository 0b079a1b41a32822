import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm, unlink, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { digestOf } from './digest.js';
import { OciLayout, REF_NAME } from './layout.js';
import { MediaType } from './media-types.js';

const dirs: string[] = [];
after(() => Promise.all(dirs.map((dir) => rm(dir, { recursive: true, force: true }))));

async function layout(): Promise<OciLayout> {
  const dir = await mkdtemp(join(tmpdir(), 'airlock-layout-'));
  dirs.push(dir);
  return OciLayout.open(join(dir, 'l'), { create: true });
}

/** Writes a manifest (an image, or a referrer of `subject`) and returns its descriptor. */
async function manifest(l: OciLayout, name: string, subject?: string) {
  const bytes = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MediaType.OciManifest,
      config: { mediaType: MediaType.OciConfig, digest: digestOf(name), size: name.length },
      layers: [],
      ...(subject ? { subject: { mediaType: MediaType.OciManifest, digest: subject, size: 1 } } : {}),
    }),
  );
  const digest = await l.writeBytes(bytes);
  return { mediaType: MediaType.OciManifest, digest, size: bytes.length };
}

describe('OciLayout', () => {
  it('resolves the one image of a layout that also holds its referrers, and says which when there are several', async () => {
    const l = await layout();
    const image = await manifest(l, 'image');
    const sbom = await manifest(l, 'sbom', image.digest);
    await l.addManifest(image);
    await l.addManifest(sbom);
    assert.equal((await l.resolve()).digest, image.digest);
    assert.equal((await l.resolve(sbom.digest)).digest, sbom.digest);
    const other = await manifest(l, 'other');
    await l.addManifest(other);
    await assert.rejects(l.resolve(), /holds 2 images; name one by tag or digest/);
  });

  it('matches a digest by digest only, never a tag that reads like one', async () => {
    const l = await layout();
    const image = await manifest(l, 'image');
    const other = await manifest(l, 'other');
    // A tag cannot hold a colon, but an index.json written by another tool might.
    await l.addManifest(other, image.digest);
    await l.addManifest(image);
    assert.equal((await l.resolve(image.digest)).digest, image.digest);
  });

  it('keeps one entry per image: an untagged add keeps a tag, a tagged add takes over the untagged entry', async () => {
    const l = await layout();
    const image = await manifest(l, 'image');
    await l.addManifest(image, 'v1');
    await l.addManifest(image);
    assert.deepEqual(
      (await l.index()).manifests.map((m) => m.annotations?.[REF_NAME]),
      ['v1'],
    );
    const second = await layout();
    const again = await manifest(second, 'image');
    await second.addManifest(again);
    await second.addManifest(again, 'v2');
    assert.deepEqual(
      (await second.index()).manifests.map((m) => m.annotations?.[REF_NAME]),
      ['v2'],
    );
    assert.equal((await second.resolve()).digest, again.digest);
  });

  it('fills in only what a half-made layout lacks, never replacing an index that is there', async () => {
    const l = await layout();
    const image = await manifest(l, 'image');
    await l.addManifest(image, 'v1');
    await unlink(join(l.dir, 'oci-layout'));
    const again = await OciLayout.open(l.dir, { create: true });
    assert.deepEqual(
      (await again.index()).manifests.map((m) => m.digest),
      [image.digest],
      'index kept',
    );
    await unlink(join(l.dir, 'index.json'));
    await assert.rejects(
      OciLayout.open(l.dir).then((o) => o.index()),
      /Cannot read/,
    );
    const healed = await OciLayout.open(l.dir, { create: true });
    assert.deepEqual((await healed.index()).manifests, []);
  });

  it('publishes a staged layout into a missing folder, and adds its entries to a layout that is there', async () => {
    const root = await mkdtemp(join(tmpdir(), 'airlock-publish-'));
    dirs.push(root);
    const stage = async (name: string, tag: string) => {
      const staged = await OciLayout.open(join(root, `stage-${name}`), { create: true });
      const descriptor = await manifest(staged, name);
      await staged.addManifest({ ...descriptor, annotations: { note: name } }, tag);
      return { staged, descriptor };
    };
    const first = await stage('one', 'a');
    const target = join(root, 'out');
    const published = await OciLayout.publish(first.staged, target);
    assert.deepEqual(await readdir(join(root, 'stage-one')), ['oci-layout'], 'blobs and index moved');
    const second = await stage('two', 'b');
    await OciLayout.publish(second.staged, target);
    const index = await published.index();
    assert.deepEqual(
      index.manifests.map((m) => [m.annotations?.[REF_NAME], m.annotations?.note, m.digest]),
      [
        ['a', 'one', first.descriptor.digest],
        ['b', 'two', second.descriptor.digest],
      ],
    );
    for (const { digest } of [first.descriptor, second.descriptor])
      assert.ok((await published.blobSize(digest)) !== undefined, digest);
    assert.deepEqual((await readdir(target)).sort(), ['blobs', 'index.json', 'oci-layout']);
  });

  it('takes over an index lock left by a process that died, and waits for a live one', async () => {
    const l = await layout();
    const image = await manifest(l, 'image');
    const lock = join(l.dir, 'index.json.lock');
    await writeFile(lock, '999999 dead\n');
    const old = new Date(Date.now() - 60_000);
    await utimes(lock, old, old);
    await l.addManifest(image, 'v1');
    assert.ok(!(await readdir(l.dir)).some((name) => name.startsWith('index.json.lock')), 'no lock left');
    // A fresh lock is waited for: the add lands once it is released.
    await writeFile(lock, 'someone else\n');
    const adding = l.addManifest(image, 'v2');
    await new Promise((resolve) => setTimeout(resolve, 100));
    assert.equal(await readFile(lock, 'utf8'), 'someone else\n', 'still held by its owner');
    await unlink(lock);
    await adding;
    const tags = (await l.index()).manifests.map((m) => m.annotations?.[REF_NAME]).sort();
    assert.deepEqual(tags, ['v1', 'v2']);
  });
});
