import { describe, it, beforeEach, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { digestOf, type Digest } from '../oci/index.js';
import type { BlobStore } from './blob-store.js';
import { StorageError } from './errors.js';

async function readAll(stream: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(Buffer.from(chunk));
  return Buffer.concat(chunks);
}

function isStorageError(code: string): (error: unknown) => boolean {
  return (error: unknown) => error instanceof StorageError && error.code === code;
}

export interface BlobStoreFixture {
  readonly store: BlobStore;
  /** Opens a second store over the same data, as a restarted process would. */
  reopen(): Promise<BlobStore>;
  dispose(): Promise<void>;
}

/** Behaviour every BlobStore implementation must share. */
export function runBlobStoreContract(name: string, create: () => Promise<BlobStoreFixture>): void {
  describe(`BlobStore contract: ${name}`, () => {
    let fixture: BlobStoreFixture;
    let store: BlobStore;
    beforeEach(async () => {
      fixture = await create();
      store = fixture.store;
    });
    afterEach(async () => fixture.dispose());

    it('stores bytes under their digest and streams them back whole and by range', async () => {
      const bytes = Buffer.from('hello world');
      const digest = digestOf(bytes);
      assert.deepEqual(await store.put([bytes], digest), { digest, size: 11 });
      assert.deepEqual(await store.stat(digest), { digest, size: 11 });
      assert.equal((await readAll(await store.read(digest))).toString(), 'hello world');
      assert.equal((await readAll(await store.read(digest, { start: 6, end: 10 }))).toString(), 'world');
      assert.equal((await store.readBytes(digest, 100)).toString(), 'hello world');
    });

    it('stores the empty blob', async () => {
      const digest = digestOf('');
      await store.putBytes(new Uint8Array(), digest);
      assert.equal((await store.stat(digest))?.size, 0);
    });

    it('rejects content whose digest differs and keeps nothing', async () => {
      const wrong = digestOf('other');
      await assert.rejects(store.put([Buffer.from('hello')], wrong), isStorageError('DIGEST_MISMATCH'));
      assert.equal(await store.stat(wrong), undefined);
    });

    it('rejects content over maxBytes and keeps nothing', async () => {
      const bytes = Buffer.alloc(100, 1);
      const digest = digestOf(bytes);
      await assert.rejects(store.put([bytes], digest, { maxBytes: 50 }), isStorageError('TOO_LARGE'));
      assert.equal(await store.stat(digest), undefined);
    });

    it('answers BLOB_NOT_FOUND for unknown blobs and RANGE_NOT_SATISFIABLE for ranges past the end', async () => {
      const missing = digestOf('missing');
      await assert.rejects(store.read(missing), isStorageError('BLOB_NOT_FOUND'));
      await assert.rejects(store.readBytes(missing, 10), isStorageError('BLOB_NOT_FOUND'));
      const digest = digestOf('abc');
      await store.putBytes(Buffer.from('abc'), digest);
      await assert.rejects(store.read(digest, { start: 2, end: 3 }), isStorageError('RANGE_NOT_SATISFIABLE'));
      await assert.rejects(store.readBytes(digest, 2), isStorageError('TOO_LARGE'));
    });

    it('deletes blobs and tracks usage', async () => {
      const before = await store.usage();
      const digest = digestOf('12345');
      await store.putBytes(Buffer.from('12345'), digest);
      assert.equal(await store.usage(), before + 5);
      assert.equal(await store.delete(digest), true);
      assert.equal(await store.delete(digest), false);
      assert.equal(await store.usage(), before);
    });

    it('lists stored blobs with size and time, but not uploads in progress', async () => {
      const before = Date.now() - 1000;
      await store.putBytes(Buffer.from('one'), digestOf('one'));
      await store.putBytes(Buffer.from('three'), digestOf('three'));
      await store.createUpload('pending');
      await store.appendUpload('pending', [Buffer.from('not a blob yet')]);
      const listed = await store.listBlobs();
      assert.deepEqual(
        listed.map((b) => [b.digest, b.size]).sort(),
        [
          [digestOf('one'), 3],
          [digestOf('three'), 5],
        ].sort(),
      );
      assert.ok(listed.every((b) => b.modifiedAt >= before && b.modifiedAt <= Date.now() + 1000));
      await store.delete(digestOf('one'));
      assert.deepEqual(
        (await store.listBlobs()).map((b) => b.digest),
        [digestOf('three')],
      );
    });

    it('counts a blob once when the same bytes are stored concurrently', async () => {
      const before = await store.usage();
      const bytes = Buffer.alloc(64 * 1024, 9);
      const digest = digestOf(bytes);
      await Promise.all(Array.from({ length: 8 }, () => store.putBytes(bytes, digest)));
      assert.equal(await store.usage(), before + bytes.length);
    });

    it('builds a blob from appended chunks and verifies it on commit', async () => {
      await store.createUpload('u1');
      assert.equal(await store.uploadSize('u1'), 0);
      assert.equal(await store.appendUpload('u1', [Buffer.from('hel')], { offset: 0 }), 3);
      assert.equal(await store.appendUpload('u1', [Buffer.from('lo')]), 5);
      const digest = digestOf('hello');
      assert.deepEqual(await store.commitUpload('u1', digest), { digest, size: 5 });
      assert.equal(await store.uploadSize('u1'), undefined);
      assert.equal((await store.readBytes(digest, 10)).toString(), 'hello');
    });

    it('refuses a chunk at the wrong offset without changing the upload', async () => {
      await store.createUpload('u2');
      await store.appendUpload('u2', [Buffer.from('abc')]);
      await assert.rejects(
        store.appendUpload('u2', [Buffer.from('x')], { offset: 1 }),
        isStorageError('UPLOAD_OFFSET_MISMATCH'),
      );
      assert.equal(await store.uploadSize('u2'), 3);
    });

    it('discards an upload whose digest does not match on commit', async () => {
      await store.createUpload('u3');
      await store.appendUpload('u3', [Buffer.from('abc')]);
      await assert.rejects(store.commitUpload('u3', digestOf('abd')), isStorageError('DIGEST_MISMATCH'));
      assert.equal(await store.uploadSize('u3'), undefined);
      assert.equal(await store.stat(digestOf('abd')), undefined);
    });

    it('resumes an upload after a restart and still verifies the digest', async () => {
      await store.createUpload('u4');
      await store.appendUpload('u4', [Buffer.from('resum')]);
      const again = await fixture.reopen();
      assert.equal(await again.uploadSize('u4'), 5);
      assert.equal(await again.appendUpload('u4', [Buffer.from('able')], { offset: 5 }), 9);
      const digest: Digest = digestOf('resumable');
      assert.equal((await again.commitUpload('u4', digest)).size, 9);
    });

    it('counts a chunk in the upload size only once it is appended whole, and never one that failed', async () => {
      await store.createUpload('u7');
      await store.appendUpload('u7', [Buffer.from('first')]);
      // A restarted process knows the upload only from storage.
      const again = await fixture.reopen();
      let wrote: () => void = () => undefined;
      const written = new Promise<void>((resolve) => (wrote = resolve));
      let fail: () => void = () => undefined;
      const failing = new Promise<void>((resolve) => (fail = resolve));
      // A client that sends part of a chunk, then goes away.
      async function* stalling(): AsyncGenerator<Buffer> {
        // More than a write stream buffers: written before the next piece is asked for.
        yield Buffer.alloc(3 * 1024 * 1024, 1);
        wrote();
        await failing;
        throw new Error('The client went away');
      }
      const appending = again.appendUpload('u7', stalling());
      await written;
      assert.equal(await again.uploadSize('u7'), 5, 'a chunk being written is not counted');
      fail();
      await assert.rejects(appending, /went away/);
      assert.equal(await again.uploadSize('u7'), 5, 'a failed chunk is not counted');
      assert.equal(await again.appendUpload('u7', [Buffer.from('second')], { offset: 5 }), 11);
      const digest = digestOf('firstsecond');
      assert.deepEqual(await again.commitUpload('u7', digest), { digest, size: 11 });
    });

    it('cancels uploads and lists open ones', async () => {
      await store.createUpload('u5');
      await store.createUpload('u6');
      assert.deepEqual((await store.listUploads()).sort(), ['u5', 'u6']);
      assert.equal(await store.cancelUpload('u5'), true);
      assert.equal(await store.cancelUpload('u5'), false);
      assert.deepEqual(await store.listUploads(), ['u6']);
      await assert.rejects(store.appendUpload('u5', [Buffer.from('x')]), isStorageError('UPLOAD_NOT_FOUND'));
    });

    it('treats upload ids that could escape the folder as unknown', async () => {
      await assert.rejects(
        store.appendUpload('../../etc/passwd', [Buffer.from('x')]),
        isStorageError('UPLOAD_NOT_FOUND'),
      );
      assert.equal(await store.uploadSize('../x'), undefined);
    });
  });
}
