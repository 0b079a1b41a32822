import { describe, it, beforeEach, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { digestOf, type Digest } from '../oci/index.js';
import type { ManifestRecord, MetadataStore } from './metadata-store.js';

const d = (text: string): Digest => digestOf(text);

function manifest(text: string, extra: Partial<ManifestRecord> = {}): ManifestRecord {
  return {
    digest: d(text),
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    size: text.length,
    createdAt: 1000,
    ...extra,
  };
}

/** Behaviour every MetadataStore implementation must share. */
export function runMetadataStoreContract(
  name: string,
  create: () => Promise<{ store: MetadataStore; dispose: () => Promise<void> }>,
): void {
  describe(`MetadataStore contract: ${name}`, () => {
    let store: MetadataStore;
    let dispose: () => Promise<void>;
    beforeEach(async () => {
      ({ store, dispose } = await create());
    });
    afterEach(async () => dispose());

    it('lists repositories in lexical order with n and last', async () => {
      for (const repo of ['b/x', 'a', 'c', 'a/b']) await store.ensureRepository(repo);
      await store.ensureRepository('a');
      assert.deepEqual(await store.listRepositories(), ['a', 'a/b', 'b/x', 'c']);
      assert.deepEqual(await store.listRepositories({ n: 2 }), ['a', 'a/b']);
      assert.deepEqual(await store.listRepositories({ n: 2, last: 'a/b' }), ['b/x', 'c']);
      assert.equal(await store.repositoryExists('a/b'), true);
      assert.equal(await store.repositoryExists('zz'), false);
    });

    it('links blobs per repository', async () => {
      await store.linkBlob('r1', d('blob'), 4);
      await store.linkBlob('r1', d('blob'), 4);
      assert.equal(await store.blobLink('r1', d('blob')), 4);
      assert.equal(await store.blobLink('r2', d('blob')), undefined);
      assert.deepEqual(await store.repositoriesWithBlob(d('blob')), ['r1']);
      assert.equal(await store.repositoryExists('r1'), true);
      assert.equal(await store.unlinkBlob('r1', d('blob')), true);
      assert.equal(await store.unlinkBlob('r1', d('blob')), false);
    });

    it('renews an old blob link when asked and removes links by age', async () => {
      await store.linkBlob('r', d('old'), 3);
      const made = (await store.listBlobLinks('r'))[0]?.createdAt ?? NaN;
      // Not made before renew.before: answered, not renewed; an unlink of older links keeps it.
      assert.equal(await store.blobLink('r', d('old'), { before: made, at: made + 5000 }), 3);
      assert.equal((await store.listBlobLinks('r'))[0]?.createdAt, made);
      assert.equal(await store.unlinkBlob('r', d('old'), made), false);
      // Made before: renewed, so an unlink of links made before the renewal leaves it.
      assert.equal(await store.blobLink('r', d('old'), { before: made + 1, at: made + 5000 }), 3);
      assert.equal((await store.listBlobLinks('r'))[0]?.createdAt, made + 5000);
      assert.equal(await store.unlinkBlob('r', d('old'), made + 5000), false);
      assert.equal(await store.blobLink('r', d('missing'), { before: made + 1, at: made + 5000 }), undefined);
      assert.equal(await store.unlinkBlob('r', d('old'), made + 5001), true);
      assert.equal(await store.blobLink('r', d('old')), undefined);
    });

    it('stores manifests with their tag atomically and moves tags', async () => {
      await store.putManifest('r', manifest('m1', { annotations: { a: 'b' } }), { tag: 'v1' });
      await store.putManifest('r', manifest('m2'), { tag: 'v1' });
      await store.putManifest('r', manifest('m2'), { tag: 'v2' });
      assert.equal(await store.resolveTag('r', 'v1'), d('m2'));
      assert.deepEqual((await store.getManifest('r', d('m1')))?.annotations, { a: 'b' });
      assert.deepEqual(
        (await store.listTags('r')).map((t) => t.name),
        ['v1', 'v2'],
      );
      assert.deepEqual(
        (await store.listTags('r', { n: 1, last: 'v1' })).map((t) => t.name),
        ['v2'],
      );
      assert.equal(await store.getManifest('other', d('m1')), undefined);
    });

    it('writes a manifest only while the blobs and children it requires are in the repository', async () => {
      const requires = { blobs: [d('cfg'), d('layer')], manifests: [d('child')] };
      assert.equal(await store.putManifest('r', manifest('m1'), { tag: 'v1', requires }), d('cfg'));
      await store.linkBlob('r', d('cfg'), 2);
      await store.linkBlob('r', d('layer'), 3);
      assert.equal(await store.putManifest('r', manifest('m1'), { tag: 'v1', requires }), d('child'));
      assert.equal(await store.repositoryExists('r'), true, 'made by linkBlob');
      assert.equal(await store.getManifest('r', d('m1')), undefined, 'nothing written');
      assert.equal(await store.resolveTag('r', 'v1'), undefined);
      await store.putManifest('r', manifest('child'));
      assert.equal(await store.putManifest('r', manifest('m1'), { tag: 'v1', requires }), undefined);
      assert.equal(await store.resolveTag('r', 'v1'), d('m1'));
      await store.deleteRepository('r');
      assert.equal(await store.putManifest('r', manifest('m2'), { tag: 'v2', requires }), d('cfg'));
      assert.equal(await store.repositoryExists('r'), false, 'a refused write does not make the repository');
    });

    it('checks what a manifest requires in batches, repeated digests included', async () => {
      const digests = Array.from({ length: 1200 }, (_, i) => d(`layer-${i}`));
      for (const digest of digests) await store.linkBlob('r', digest, 1);
      // 40,000 entries, more than SQLite binds in one statement: the same layers, many times over.
      const blobs = Array.from({ length: 40_000 }, (_, i) => digests[i % digests.length] ?? d('x'));
      assert.equal(
        await store.putManifest('r', manifest('big'), { tag: 'v1', requires: { blobs, manifests: [] } }),
        undefined,
      );
      const last = d('not-linked');
      assert.equal(
        await store.putManifest('r', manifest('big2'), {
          requires: { blobs: [...blobs, last], manifests: [] },
        }),
        last,
      );
    });

    it('lists tags case-insensitively, then by bytes, and pages through each exactly once', async () => {
      for (const tag of ['b', 'A', 'v1', 'a', '_x', 'B', '10', '9', 'V1', 'a.b', 'a-b']) {
        await store.putManifest('r', manifest('m1'), { tag });
      }
      const order = ['10', '9', '_x', 'A', 'a', 'a-b', 'a.b', 'B', 'b', 'V1', 'v1'];
      assert.deepEqual(
        (await store.listTags('r')).map((t) => t.name),
        order,
      );
      const paged: string[] = [];
      for (;;) {
        const last = paged.at(-1);
        const page = await store.listTags('r', { n: 3, ...(last === undefined ? {} : { last }) });
        paged.push(...page.map((t) => t.name));
        if (page.length < 3) break;
      }
      assert.deepEqual(paged, order);
      assert.deepEqual(
        (await store.listTags('r', { n: 2, last: 'a' })).map((t) => t.name),
        ['a-b', 'a.b'],
      );
      assert.deepEqual(
        (await store.listTags('r', { n: 2, last: 'A' })).map((t) => t.name),
        ['a', 'a-b'],
      );
    });

    it('deletes a manifest with every tag that points at it', async () => {
      await store.putManifest('r', manifest('m1'), { tag: 'a' });
      await store.putManifest('r', manifest('m1'), { tag: 'b' });
      await store.putManifest('r', manifest('m2'), { tag: 'c' });
      assert.equal(await store.deleteManifest('r', d('m1')), true);
      assert.equal(await store.deleteManifest('r', d('m1')), false);
      assert.deepEqual(
        (await store.listTags('r')).map((t) => t.name),
        ['c'],
      );
      assert.equal(await store.deleteTag('r', 'c'), true);
      assert.equal(await store.deleteTag('r', 'c'), false);
      assert.ok(await store.getManifest('r', d('m2')));
    });

    it('lists blob links and who uses a blob, for garbage collection', async () => {
      const before = Date.now();
      await store.linkBlob('r1', d('b'), 1);
      await store.linkBlob('r1', d('a'), 2);
      await store.linkBlob('r2', d('a'), 2);
      const links = await store.listBlobLinks('r1');
      assert.deepEqual(
        links.map((l) => [l.digest, l.size]),
        [
          [d('a'), 2],
          [d('b'), 1],
        ].sort((x, y) => String(x[0]).localeCompare(String(y[0]))),
      );
      assert.ok(links.every((l) => l.createdAt >= before && l.createdAt <= Date.now()));
      // Linking again renews the time (a re-push restarts the grace period of garbage collection).
      const first = links.find((l) => l.digest === d('b'))?.createdAt ?? 0;
      await new Promise((resolve) => setTimeout(resolve, 5));
      await store.linkBlob('r1', d('b'), 1);
      const renewed = (await store.listBlobLinks('r1')).find((l) => l.digest === d('b'))?.createdAt ?? 0;
      assert.ok(renewed > first, `${renewed} > ${first}`);
      await store.putManifest('r3', manifest('a'));
      const users = await store.blobUsers(d('a'));
      assert.deepEqual([...users.links].sort(), ['r1', 'r2']);
      assert.deepEqual(users.manifests, ['r3']);
      assert.deepEqual(await store.blobUsers(d('none')), { links: [], manifests: [] });
    });

    it("renews a manifest's time when it is pushed again (its other fields stay)", async () => {
      await store.putManifest('r', manifest('m', { createdAt: 1000, annotations: { a: 'b' } }));
      await store.putManifest('r', manifest('m', { createdAt: 5000 }));
      const record = await store.getManifest('r', d('m'));
      assert.equal(record?.createdAt, 5000);
      assert.deepEqual(record?.annotations, { a: 'b' });
    });

    it('deletes an untagged manifest only if nothing was pushed or tagged since', async () => {
      await store.putManifest('r', manifest('old', { createdAt: 1000 }));
      await store.putManifest('r', manifest('tagged', { createdAt: 1000 }), { tag: 'v1' });
      const since = Date.now() + 60_000;
      assert.equal(await store.deleteManifestIfUnchanged('r', d('tagged'), since), false, 'tagged');
      assert.ok(await store.getManifest('r', d('tagged')));
      // A manifest pushed at or after `since` (an index that may name the old one) stops it.
      await store.putManifest('r', manifest('new', { createdAt: since }));
      assert.equal(await store.deleteManifestIfUnchanged('r', d('old'), since), false, 'push since');
      assert.equal(await store.deleteManifest('r', d('new')), true);
      // A tag moved at or after `since` stops it too (the tag store uses the wall clock).
      const beforeTag = Date.now();
      await store.putManifest('r', manifest('tagged', { createdAt: 1000 }), { tag: 'v2' });
      assert.equal(await store.deleteManifestIfUnchanged('r', d('old'), beforeTag), false, 'tag since');
      assert.equal(await store.deleteManifestIfUnchanged('r', d('old'), since), true);
      assert.equal(await store.getManifest('r', d('old')), undefined);
      assert.equal(await store.deleteManifestIfUnchanged('r', d('old'), since), false, 'gone already');
    });

    it('lists referrers of a subject, filtered by artifact type', async () => {
      await store.putManifest('r', manifest('sig', { subject: d('img'), artifactType: 'application/x.sig' }));
      await store.putManifest(
        'r',
        manifest('sbom', { subject: d('img'), artifactType: 'application/x.sbom' }),
      );
      await store.putManifest(
        'r2',
        manifest('other', { subject: d('img'), artifactType: 'application/x.sig' }),
      );
      assert.equal((await store.listReferrers('r', d('img'))).length, 2);
      assert.deepEqual(
        (await store.listReferrers('r', d('img'), 'application/x.sig')).map((m) => m.digest),
        [d('sig')],
      );
      assert.deepEqual(await store.listReferrers('r', d('nothing')), []);
    });

    it('keeps upload sessions until deleted and finds old ones', async () => {
      await store.createUpload({ id: 'u1', repository: 'r', createdAt: 100 });
      await store.createUpload({ id: 'u2', repository: 'r', createdAt: 200 });
      assert.deepEqual(await store.getUpload('u1'), { id: 'u1', repository: 'r', createdAt: 100 });
      assert.deepEqual(
        (await store.listUploads(150)).map((u) => u.id),
        ['u1'],
      );
      assert.equal(await store.deleteUpload('u1'), true);
      assert.equal(await store.getUpload('u1'), undefined);
      await assert.rejects(store.createUpload({ id: 'u2', repository: 'r', createdAt: 1 }));
    });
  });
}
