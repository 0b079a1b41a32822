import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
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
});
