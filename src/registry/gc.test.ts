import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, unlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { digestOf, MediaType, parseDigest, type Digest } from '../oci/index.js';
import { FsBlobStore, openSqliteStores, type BlobStore, type MetadataStore } from '../storage/index.js';
import { DigestGuard } from './digest-guard.js';
import { Registry } from './registry.js';

const dirs: string[] = [];
after(() => Promise.all(dirs.map((dir) => rm(dir, { recursive: true, force: true }))));

interface Setup {
  readonly dir: string;
  readonly blobs: FsBlobStore;
  readonly metadata: MetadataStore;
  readonly registry: Registry;
}

interface SetupOptions {
  readonly wrap?: (m: MetadataStore) => MetadataStore;
  readonly wrapBlobs?: (b: BlobStore) => BlobStore;
  readonly now?: () => number;
}

async function setup(options: SetupOptions = {}): Promise<Setup> {
  const dir = await mkdtemp(join(tmpdir(), 'airlock-gc-'));
  dirs.push(dir);
  const blobs = new FsBlobStore(dir, { fsync: false });
  await blobs.init();
  const { metadata } = await openSqliteStores(join(dir, 'airlock.db'));
  const registry = new Registry({
    blobs: options.wrapBlobs?.(blobs) ?? blobs,
    metadata: options.wrap?.(metadata) ?? metadata,
    ...(options.now ? { now: options.now } : {}),
  });
  return { dir, blobs, metadata, registry };
}

type Hooks<T> = { [K in keyof T]?: (original: T[K]) => T[K] };

/** `inner` with some methods replaced: each hook gets the original (bound) and returns the stand-in. */
function hooked<T extends object>(inner: T, hooks: Hooks<T>): T {
  return new Proxy(inner, {
    get(target, property) {
      const value: unknown = Reflect.get(target, property);
      if (typeof value !== 'function') return value;
      const bound = (value as (...args: unknown[]) => unknown).bind(target);
      const hook = hooks[property as keyof T] as ((original: unknown) => unknown) | undefined;
      return hook ? hook(bound) : bound;
    },
  });
}

/** Runs `during` once, the first time it is called (later calls do nothing). */
function once(during: () => Promise<void>): () => Promise<void> {
  let ran = false;
  return async () => {
    if (ran) return;
    ran = true;
    await during();
  };
}

async function blob(
  registry: Registry,
  repo: string,
  text: string,
): Promise<{ digest: Digest; size: number }> {
  const bytes = Buffer.from(text);
  const digest = await registry.putBlob(repo, digestOf(bytes), Readable.from([bytes]));
  return { digest, size: bytes.byteLength };
}

/** Pushes an image (a config and one layer per text) and returns its manifest digest. */
async function image(
  registry: Registry,
  repo: string,
  tag: string | undefined,
  layers: readonly string[],
  extra: Record<string, unknown> = {},
): Promise<Digest> {
  const config = await blob(registry, repo, JSON.stringify({ layers }));
  const descriptors = [];
  for (const text of layers)
    descriptors.push({ mediaType: MediaType.OciLayer, ...(await blob(registry, repo, text)) });
  const body = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MediaType.OciManifest,
      config: { mediaType: MediaType.OciConfig, ...config },
      layers: descriptors,
      ...extra,
    }),
  );
  const digest = digestOf(body);
  await registry.putManifest(repo, tag ?? digest, { body, contentType: MediaType.OciManifest });
  return digest;
}

async function index(
  registry: Registry,
  repo: string,
  tag: string,
  children: readonly Digest[],
): Promise<Digest> {
  const manifests = [];
  for (const child of children) {
    const stored = await registry.getManifest(repo, child);
    manifests.push({ mediaType: stored.mediaType, digest: child, size: stored.bytes.byteLength });
  }
  const body = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MediaType.OciIndex, manifests }));
  await registry.putManifest(repo, tag, { body, contentType: MediaType.OciIndex });
  return digestOf(body);
}

/** Everything stored, to compare before and after: blob files and every repository's links. */
async function snapshot(s: Setup, repos: readonly string[]): Promise<string> {
  const files = (await s.blobs.listBlobs()).map((b) => `${b.digest}:${b.size}`).sort();
  const links: string[] = [];
  for (const repo of repos) {
    for (const link of await s.metadata.listBlobLinks(repo)) links.push(`${repo}@${link.digest}`);
    for (const m of await s.metadata.listManifests(repo)) links.push(`${repo}#${m.digest}`);
  }
  return JSON.stringify({ files, links: links.sort() });
}

/** Every link and manifest row has its bytes: what a collection must never break. */
async function assertWhole(s: Setup, repos: readonly string[]): Promise<void> {
  for (const repo of repos) {
    for (const link of await s.metadata.listBlobLinks(repo))
      assert.ok(await s.blobs.stat(link.digest), `${repo} links ${link.digest}, whose file is gone`);
    for (const m of await s.metadata.listManifests(repo))
      assert.ok(await s.blobs.stat(m.digest), `${repo} holds manifest ${m.digest}, whose file is gone`);
  }
}

/** Lets the clock move past everything written so far (the collector keeps what is not older than it). */
const settle = (): Promise<void> => sleep(15);

describe('garbage collection', () => {
  it('deletes the blobs only a deleted manifest used, and keeps shared and tagged ones', async () => {
    const s = await setup();
    const { registry, blobs } = s;
    const kept = await image(registry, 'p/app', 'v1', ['shared layer', 'kept layer']);
    const gone = await image(registry, 'p/app', 'v2', ['shared layer', 'lonely layer']);
    await registry.deleteManifest('p/app', gone);
    await settle();
    const usageBefore = await blobs.usage();
    const report = await registry.collectGarbage({ graceMs: 0 });
    // Unlinked: the lonely layer and v2's config; deleted: those two files and v2's manifest bytes.
    assert.equal(report.linksRemoved, 2);
    assert.equal(report.blobsDeleted, 3);
    assert.equal(report.manifestsDeleted.length, 0);
    assert.equal(report.bytesFreed, usageBefore - (await blobs.usage()));
    assert.ok(report.bytesFreed > 0);
    assert.equal(await blobs.stat(digestOf('lonely layer')), undefined);
    assert.equal(await blobs.stat(gone), undefined);
    for (const text of ['shared layer', 'kept layer']) assert.ok(await blobs.stat(digestOf(text)));
    assert.equal((await registry.getManifest('p/app', 'v1')).digest, kept);
    await assert.rejects(registry.statBlob('p/app', digestOf('lonely layer')), { code: 'BLOB_UNKNOWN' });
    await assertWhole(s, ['p/app']);
    // A second run finds nothing more.
    const again = await registry.collectGarbage({ graceMs: 0 });
    assert.deepEqual([again.linksRemoved, again.blobsDeleted, again.bytesFreed], [0, 0, 0]);
  });

  it("keeps a blob another repository still uses, removing only the first repository's link", async () => {
    const s = await setup();
    const { registry, blobs } = s;
    const first = await image(registry, 'p/one', 'v1', ['common']);
    await image(registry, 'p/two', 'v1', ['common']);
    await registry.deleteManifest('p/one', first);
    await settle();
    await registry.collectGarbage({ graceMs: 0 });
    assert.ok(await blobs.stat(digestOf('common')));
    assert.equal(await s.metadata.blobLink('p/one', digestOf('common')), undefined);
    assert.ok(await s.metadata.blobLink('p/two', digestOf('common')));
    await assertWhole(s, ['p/one', 'p/two']);
  });

  it('keeps content younger than the grace period, and blobs waiting for their manifest within it', async () => {
    const s = await setup();
    const { registry } = s;
    const gone = await image(registry, 'p/app', 'v1', ['young']);
    await registry.deleteManifest('p/app', gone);
    await blob(registry, 'p/app', 'pushed, manifest not yet');
    const before = await snapshot(s, ['p/app']);
    const report = await registry.collectGarbage(); // default grace: one hour
    assert.deepEqual([report.linksRemoved, report.blobsDeleted], [0, 0]);
    assert.equal(await snapshot(s, ['p/app']), before);
  });

  it('keeps an old layer a pushing client has just checked with HEAD, and renews it once a minute at most', async () => {
    let offset = 0;
    const s = await setup({ now: () => Date.now() + offset });
    const { registry } = s;
    const gone = await image(registry, 'p/app', 'v1', ['checked layer', 'unchecked layer']);
    await registry.deleteManifest('p/app', gone);
    offset = 2 * 60 * 60 * 1000; // two hours later, on the registry's clock
    const linkTime = async (text: string): Promise<number | undefined> =>
      (await s.metadata.listBlobLinks('p/app')).find((link) => link.digest === digestOf(text))?.createdAt;
    const made = await linkTime('checked layer');
    const uncheckedMade = await linkTime('unchecked layer');
    assert.equal(await registry.statBlob('p/app', digestOf('checked layer'), true), 'checked layer'.length);
    const renewed = await linkTime('checked layer');
    assert.ok(
      renewed !== undefined && made !== undefined && renewed > made + offset / 2,
      'the HEAD renewed it',
    );
    // A GET (a pull) and a second HEAD within the minute write nothing.
    await registry.statBlob('p/app', digestOf('unchecked layer'));
    assert.equal(await linkTime('unchecked layer'), uncheckedMade);
    await registry.statBlob('p/app', digestOf('checked layer'), true);
    assert.equal(await linkTime('checked layer'), renewed);
    const report = await registry.collectGarbage(); // default grace: one hour
    assert.ok(await registry.statBlob('p/app', digestOf('checked layer')), 'the checked layer stays');
    await assert.rejects(registry.statBlob('p/app', digestOf('unchecked layer')), { code: 'BLOB_UNKNOWN' });
    assert.equal(report.linksRemoved, 2, "the unchecked layer and the deleted image's config");
    await assertWhole(s, ['p/app']);
  });

  it('keeps a link a HEAD renewed after the collector listed it as old', async () => {
    let offset = 0;
    const late = {} as { registry: Registry };
    const during = once(async () => {
      await late.registry.statBlob('p/app', digestOf('raced layer'), true);
    });
    const s = await setup({
      now: () => Date.now() + offset,
      wrap: (inner) =>
        hooked(inner, {
          listBlobLinks: (original) => async (repository) => {
            const listed = await original(repository);
            await during();
            return listed;
          },
        }),
    });
    late.registry = s.registry;
    const gone = await image(s.registry, 'p/app', 'v1', ['raced layer']);
    await s.registry.deleteManifest('p/app', gone);
    offset = 2 * 60 * 60 * 1000;
    const report = await s.registry.collectGarbage();
    assert.equal(report.linksRemoved, 1, "only the deleted image's config");
    assert.ok(await s.registry.statBlob('p/app', digestOf('raced layer')));
    assert.ok(await s.blobs.stat(digestOf('raced layer')));
    await assertWhole(s, ['p/app']);
  });

  it('reports in a dry run exactly what a real run then does, changing nothing', async () => {
    const s = await setup();
    const { registry } = s;
    await image(registry, 'p/app', 'v1', ['a']);
    const untagged = await image(registry, 'p/app', undefined, ['b']);
    const removed = await image(registry, 'p/app', 'v3', ['c']);
    await registry.deleteManifest('p/app', removed);
    await settle();
    const before = await snapshot(s, ['p/app']);
    const dry = await registry.collectGarbage({ graceMs: 0, deleteUntagged: true, dryRun: true });
    assert.equal(await snapshot(s, ['p/app']), before, 'a dry run changes nothing');
    assert.equal(dry.dryRun, true);
    assert.deepEqual(dry.manifestsDeleted, [{ repository: 'p/app', digest: untagged }]);
    const real = await registry.collectGarbage({ graceMs: 0, deleteUntagged: true });
    assert.deepEqual({ ...real, dryRun: true }, dry);
    assert.notEqual(await snapshot(s, ['p/app']), before);
  });

  it('with deleteUntagged keeps what tags reach (index children, referrers) and deletes the rest', async () => {
    const s = await setup();
    const { registry, blobs } = s;
    const amd64 = await image(registry, 'p/app', undefined, ['amd64 layer']);
    const arm64 = await image(registry, 'p/app', undefined, ['arm64 layer']);
    const multi = await index(registry, 'p/app', 'v1', [amd64, arm64]);
    const subject = (digest: Digest) => ({
      subject: { mediaType: MediaType.OciIndex, digest, size: 1 },
      artifactType: 'application/vnd.dev.cosign.artifact.sig.v1+json',
    });
    const signature = await image(registry, 'p/app', undefined, ['signature of v1'], subject(multi));
    const orphan = await image(registry, 'p/app', undefined, ['orphan layer']);
    const orphanSbom = await image(registry, 'p/app', undefined, ['sbom of orphan'], subject(orphan));
    // A tag moved away leaves its old manifest untagged.
    const old = await image(registry, 'p/app', 'latest', ['old layer']);
    await image(registry, 'p/app', 'latest', ['new layer']);
    await settle();

    const kept = await registry.collectGarbage({ graceMs: 0 });
    assert.equal(kept.manifestsDeleted.length, 0, 'untagged manifests stay unless asked');
    assert.ok(await blobs.stat(digestOf('orphan layer')));

    const report = await registry.collectGarbage({ graceMs: 0, deleteUntagged: true });
    assert.deepEqual(report.manifestsDeleted.map((m) => m.digest).sort(), [orphan, orphanSbom, old].sort());
    for (const digest of [amd64, arm64, multi, signature])
      assert.equal((await registry.getManifest('p/app', digest)).digest, digest);
    for (const text of ['amd64 layer', 'arm64 layer', 'signature of v1', 'new layer'])
      assert.ok(await blobs.stat(digestOf(text)), text);
    for (const text of ['orphan layer', 'sbom of orphan', 'old layer'])
      assert.equal(await blobs.stat(digestOf(text)), undefined, text);
    await assert.rejects(registry.getManifest('p/app', orphan), { code: 'MANIFEST_UNKNOWN' });
    assert.deepEqual(await registry.listReferrers('p/app', orphan), []);
    assert.equal((await registry.listReferrers('p/app', multi)).length, 1);
    await assertWhole(s, ['p/app']);
  });

  it('leaves a repository alone when one of its manifests cannot be read', async () => {
    const s = await setup();
    const { registry, blobs } = s;
    const gone = await image(registry, 'p/broken', 'v1', ['unused soon']);
    const lost = await image(registry, 'p/broken', 'v2', ['other']);
    await registry.deleteManifest('p/broken', gone);
    // The bytes of v2's manifest vanish (a disk problem): its layers can no longer be known.
    const { algorithm, hex } = parseDigest(lost);
    await unlink(join(s.dir, 'blobs', algorithm, hex.slice(0, 2), hex));
    const fresh = new Registry({ blobs, metadata: s.metadata });
    await settle();
    const report = await fresh.collectGarbage({ graceMs: 0, deleteUntagged: true });
    assert.equal(report.problems.length, 1);
    assert.match(report.problems[0] ?? '', /^p\/broken: /);
    assert.equal(report.linksRemoved, 0);
    assert.ok(await blobs.stat(digestOf('unused soon')), 'nothing is unlinked in that repository');
  });

  it('reads manifests past the cache (a collection does not flush what serves pulls)', async () => {
    const s = await setup();
    const digest = await image(s.registry, 'p/app', 'v1', ['cached?']);
    const fresh = new Registry({ blobs: s.blobs, metadata: s.metadata });
    await settle();
    await fresh.collectGarbage({ graceMs: 0 });
    assert.equal(fresh.cachedManifest('p/app', digest), undefined);
    await fresh.getManifest('p/app', digest);
    assert.ok(fresh.cachedManifest('p/app', digest), 'a pull still fills it');
  });

  it('runs one collection at a time', async () => {
    const { registry } = await setup();
    const first = registry.collectGarbage({ graceMs: 0 });
    await assert.rejects(registry.collectGarbage({ graceMs: 0 }), (error: Error & { status?: number }) => {
      assert.match(error.message, /already running/);
      return true;
    });
    await first;
    await registry.collectGarbage({ graceMs: 0 });
  });

  it('never deletes a blob that an upload is publishing meanwhile', async () => {
    const s = await setup();
    const { registry, blobs } = s;
    // An orphan file: stored once, its link since removed.
    const orphan = await blob(registry, 'p/app', 'orphan bytes');
    await registry.deleteBlob('p/app', orphan.digest);
    await settle();
    // An upload of the same bytes is on its way while the collector runs.
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const body = (async function* () {
      await gate;
      yield Buffer.from('orphan bytes');
    })();
    const upload = registry.putBlob('p/other', orphan.digest, body);
    const report = await registry.collectGarbage({ graceMs: 0 });
    assert.equal(report.blobsDeleted, 0, 'the pinned digest is skipped');
    release();
    await upload;
    assert.ok(await blobs.stat(orphan.digest));
    await assertWhole(s, ['p/app', 'p/other']);
  });

  it('makes a write that arrives during a removal wait for it, then store the blob again', async () => {
    // The collector is stopped after it claimed the digest and found no users, before it deletes.
    let release!: () => void;
    const hold = new Promise<void>((resolve) => (release = resolve));
    let reached!: () => void;
    const atUsers = new Promise<void>((resolve) => (reached = resolve));
    const s = await setup({
      wrap: (inner) =>
        hooked(inner, {
          blobUsers: (original) => async (digest) => {
            const users = await original(digest);
            reached();
            await hold;
            return users;
          },
        }),
    });
    const { registry, blobs } = s;
    const orphan = await blob(registry, 'p/app', 'claimed bytes');
    await registry.deleteBlob('p/app', orphan.digest);
    await settle();
    const collecting = registry.collectGarbage({ graceMs: 0 });
    await atUsers;
    // Both a mount and an upload of the digest start now; the file is still there.
    const mounted = registry.mountBlob('p/mounted', orphan.digest, 'p/app');
    const uploaded = registry.putBlob(
      'p/uploaded',
      orphan.digest,
      Readable.from([Buffer.from('claimed bytes')]),
    );
    await sleep(20);
    release();
    const report = await collecting;
    assert.equal(report.blobsDeleted, 1);
    assert.equal(await mounted, false, 'the mount falls back to an upload: its source is gone');
    await uploaded;
    assert.ok(await blobs.stat(orphan.digest), 'the upload stored the bytes again after the removal');
    assert.ok(await s.metadata.blobLink('p/uploaded', orphan.digest));
    await assertWhole(s, ['p/app', 'p/mounted', 'p/uploaded']);
  });
});

describe('garbage collection racing writes (review findings)', () => {
  it('keeps a blob re-uploaded and used after its link was removed, before the file phase', async () => {
    const late = {} as { registry: Registry };
    // Between the link phase and the file phase: the layer is uploaded again and a tagged image uses it.
    const during = once(async () => {
      await image(late.registry, 'p/a', 'v2', ['reused layer']);
    });
    const s = await setup({
      wrapBlobs: (inner) =>
        hooked(inner, {
          listBlobs: (original) => async () => {
            const listed = await original();
            await during();
            return listed;
          },
        }),
    });
    late.registry = s.registry;
    const gone = await image(s.registry, 'p/a', 'v1', ['reused layer']);
    await s.registry.deleteManifest('p/a', gone);
    await settle();
    const report = await s.registry.collectGarbage({ graceMs: 0 });
    assert.ok(report.linksRemoved >= 1, 'the link was removed first');
    assert.ok(await s.blobs.stat(digestOf('reused layer')), 'the file the new push relies on stays');
    await assertWhole(s, ['p/a']);
    assert.ok(await s.registry.statBlob('p/a', digestOf('reused layer')));
  });

  it('keeps the links of a manifest pushed after the repository was listed', async () => {
    const late = {} as { registry: Registry; layer: { digest: Digest; size: number } };
    // Between listing the manifests and removing links: a push whose layer the repository had (HEAD).
    const during = once(async () => {
      const { registry, layer } = late;
      const config = await blob(registry, 'p/a', '{"late":true}');
      const body = Buffer.from(
        JSON.stringify({
          schemaVersion: 2,
          mediaType: MediaType.OciManifest,
          config: { mediaType: MediaType.OciConfig, ...config },
          layers: [{ mediaType: MediaType.OciLayer, ...layer }],
        }),
      );
      await registry.putManifest('p/a', 'v1', { body, contentType: MediaType.OciManifest });
    });
    const s = await setup({
      wrap: (inner) =>
        hooked(inner, {
          listBlobLinks: (original) => async (repository) => {
            await during();
            return original(repository);
          },
        }),
    });
    late.registry = s.registry;
    const layer = await blob(s.registry, 'p/a', 'layer pushed long before its manifest');
    late.layer = layer;
    await settle();
    await s.registry.collectGarbage({ graceMs: 0 });
    assert.ok(await s.metadata.blobLink('p/a', layer.digest), 'the acknowledged manifest keeps its link');
    assert.ok(await s.blobs.stat(layer.digest));
    await assertWhole(s, ['p/a']);
  });

  it('keeps an untagged child of an index pushed by digest while the collector listed', async () => {
    const pending: { index?: Promise<Digest> } = {};
    let letIndexWrite!: () => void;
    const indexMayWrite = new Promise<void>((resolve) => (letIndexWrite = resolve));
    const s = await setup({
      wrap: (inner) =>
        hooked(inner, {
          // The index's row is held back until the collector has listed the repository...
          putManifest: (original) => async (repository, record, write) => {
            if (record.mediaType === MediaType.OciIndex) await indexMayWrite;
            return original(repository, record, write);
          },
          // ...which then lets it land and waits for the push to finish before going on.
          listManifests: (original) => async (repository) => {
            const listed = await original(repository);
            if (pending.index) {
              letIndexWrite();
              await pending.index;
            }
            return listed;
          },
        }),
    });
    const child = await image(s.registry, 'p/a', undefined, ['child layer']);
    await settle();
    // The index computes its time now, before the collection begins, and is written after the listing.
    const stored = await s.registry.getManifest('p/a', child);
    const body = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: MediaType.OciIndex,
        manifests: [{ mediaType: stored.mediaType, digest: child, size: stored.bytes.byteLength }],
      }),
    );
    pending.index = s.registry
      .putManifest('p/a', digestOf(body), { body, contentType: MediaType.OciIndex })
      .then((result) => result.digest);
    await sleep(15);
    await s.registry.collectGarbage({ graceMs: 0, deleteUntagged: true });
    const index = await pending.index;
    assert.equal((await s.registry.getManifest('p/a', child)).digest, child, 'the child stays');
    // The acknowledged index can still be tagged (its child is there).
    await s.registry.putManifest('p/a', 'v1', { body, contentType: MediaType.OciIndex });
    assert.equal((await s.registry.getManifest('p/a', 'v1')).digest, index);
    await assertWhole(s, ['p/a']);
  });

  it('counts the grace period of a manifest from its last push', async () => {
    let clock = Date.now() - 2 * 60 * 60 * 1000;
    const s = await setup({ now: () => clock });
    const child = await image(s.registry, 'p/a', undefined, ['child pushed long ago']);
    clock = Date.now();
    // The same child pushed again now (as a client does before pushing its index).
    const again = await s.registry.getManifest('p/a', child);
    await s.registry.putManifest('p/a', child, { body: again.bytes, contentType: again.mediaType });
    const report = await s.registry.collectGarbage({ deleteUntagged: true }); // grace: one hour
    assert.deepEqual(report.manifestsDeleted, []);
    await index(s.registry, 'p/a', 'v1', [child]);
  });
});

describe('DigestGuard', () => {
  it('refuses claims on pinned digests and makes pins wait for a claim under way', async () => {
    const guard = new DigestGuard();
    const pin = guard.pin(['a', 'b', 'a']);
    assert.equal(guard.claim('a'), undefined);
    pin.release();
    pin.release(); // once only
    assert.equal(guard.pinned('a'), false);
    const end = guard.claim('a');
    assert.ok(end);
    assert.equal(guard.claim('a'), undefined, 'one claim at a time');
    const waiting = guard.pin(['a']);
    let ready = false;
    void waiting.ready.then(() => (ready = true));
    await sleep(5);
    assert.equal(ready, false);
    end();
    await waiting.ready;
    assert.equal(ready, true);
    assert.equal(guard.claim('a'), undefined, 'still pinned');
    waiting.release();
    assert.ok(guard.claim('a'));
  });
});
