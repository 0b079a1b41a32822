import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { appendFile, mkdtemp, readdir, readFile, rm, stat, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { digestOf, hashThread, hashThreadAllowed, type BorrowedChunkSource } from '../oci/index.js';
import { FsBlobStore } from './blob-store-fs.js';
import type { StorageError } from './errors.js';
import { runBlobStoreContract } from './blob-store.contract.js';

runBlobStoreContract('filesystem', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'airlock-blobs-'));
  const store = new FsBlobStore(dir);
  await store.init();
  return {
    store,
    async reopen() {
      const again = new FsBlobStore(dir);
      await again.init();
      return again;
    },
    dispose: () => rm(dir, { recursive: true, force: true }),
  };
});

const MiB = 1024 * 1024;

/** A body lent in 256 KiB reads from one reused buffer, as the registry's HTTP server lends it. */
function lentOnce(bytes: Buffer): AsyncIterable<Uint8Array> & BorrowedChunkSource {
  const scratch = Buffer.alloc(256 * 1024);
  return {
    [Symbol.asyncIterator]: () => {
      throw new Error('read through pumpBorrowed only');
    },
    pumpBorrowed(onChunk) {
      let at = 0;
      let finish: () => void = () => undefined;
      const done = new Promise<void>((resolve) => (finish = resolve));
      const pump = (): void => {
        while (at < bytes.length) {
          const n = bytes.copy(scratch, 0, at, at + scratch.length);
          at += n;
          if (!onChunk(scratch.subarray(0, n))) return;
        }
        finish();
      };
      setImmediate(pump);
      return { done, resume: () => setImmediate(pump) };
    },
  };
}

/**
 * A body whose reads `feed` hands over one by one, as the registry's HTTP server does from a socket: it
 * goes on to its end whatever the writer answers.
 */
function readByRead(
  feed: (onChunk: (chunk: Uint8Array) => boolean) => Promise<void>,
): AsyncIterable<Uint8Array> & BorrowedChunkSource {
  return {
    [Symbol.asyncIterator]: () => {
      throw new Error('read through pumpBorrowed only');
    },
    pumpBorrowed: (onChunk) => ({ done: feed(onChunk), resume: () => undefined }),
  };
}

/** A body of two reads of `bytes` random bytes each, the second held back until `resume()`. */
function pausedBody(bytes: number): {
  body: AsyncIterable<Uint8Array> & BorrowedChunkSource;
  resume: () => void;
} {
  let resume: () => void = () => undefined;
  const gate = new Promise<void>((resolve) => (resume = resolve));
  const body = readByRead(async (onChunk) => {
    onChunk(randomBytes(bytes));
    await gate;
    onChunk(randomBytes(bytes));
  });
  return { body, resume };
}

/** Whether an operation succeeded, or the code it failed with. */
function outcome(p: Promise<unknown>): Promise<{ ok: true } | { ok: false; code: string }> {
  return p.then(
    () => ({ ok: true as const }),
    (error: StorageError) => ({ ok: false as const, code: error.code }),
  );
}

async function readBlob(store: FsBlobStore, digest: ReturnType<typeof digestOf>): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const piece of await store.read(digest)) chunks.push(piece as Buffer);
  return Buffer.concat(chunks);
}

describe('FsBlobStore on disk', () => {
  it('lays blobs out as blobs/<alg>/<2 hex>/<hex>, and lists only such files (stray ones are never offered for deletion)', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'airlock-blobs-'));
    try {
      const store = new FsBlobStore(dir);
      const digest = digestOf('x');
      await store.putBytes(Buffer.from('x'), digest);
      const hex = digest.slice('sha256:'.length);
      assert.deepEqual(await readdir(join(dir, 'blobs', 'sha256', hex.slice(0, 2))), [hex]);
      const other = digestOf('y').slice('sha256:'.length);
      await writeFile(join(dir, 'blobs', 'sha256', hex.slice(0, 2), 'notes.txt'), 'mine');
      await mkdir(join(dir, 'blobs', 'sha256', 'zz'));
      await writeFile(join(dir, 'blobs', 'sha256', 'zz', other), 'misfiled');
      await mkdir(join(dir, 'blobs', 'md5', hex.slice(0, 2)), { recursive: true });
      await writeFile(join(dir, 'blobs', 'md5', hex.slice(0, 2), hex), 'unknown algorithm');
      await writeFile(join(dir, 'blobs', 'README'), 'a file where folders are');
      assert.deepEqual(
        (await store.listBlobs()).map((b) => b.digest),
        [digest],
      );
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('chunked uploads of large PATCHes (hashed on the hash thread) commit the right digest, even when the hash thread stopped before the commit', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'airlock-blobs-'));
    try {
      const store = new FsBlobStore(dir);
      for (const stop of [false, true]) {
        const parts = [randomBytes(5 * MiB + 3), randomBytes(4 * MiB), randomBytes(1000)];
        const id = `chunked-${String(stop)}`;
        await store.createUpload(id);
        for (const part of parts) await store.appendUpload(id, lentOnce(part));
        // Once the last chunk's writes and hashing are done (it was answered before), the commit does not
        // need the thread any more.
        await store.flush();
        assert.equal((await stat(join(dir, 'uploads', id))).size, 9 * MiB + 1003);
        if (stop) await hashThread.terminate();
        const whole = Buffer.concat(parts);
        const digest = digestOf(whole);
        assert.deepEqual(await store.commitUpload(id, digest), { digest, size: whole.length });
        const stream = await store.read(digest);
        const chunks: Buffer[] = [];
        for await (const chunk of stream) chunks.push(chunk as Buffer);
        assert.ok(Buffer.concat(chunks).equals(whole));
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it(
    'answers a chunk once it is written; one whose hashing then fails (the hash thread stopped) is kept and hashed again from the file',
    { skip: !hashThreadAllowed() && 'needs the hash thread (AIRLOCK_HASH_THREAD=0, or one CPU)' },
    async () => {
      const dir = await mkdtemp(join(tmpdir(), 'airlock-blobs-'));
      try {
        const store = new FsBlobStore(dir);
        const [first, second] = [randomBytes(3 * MiB), randomBytes(5 * MiB)];
        const whole = Buffer.concat([first, second]);
        for (const next of ['status', 'commit', 'append'] as const) {
          const id = `unhashed-${next}`;
          await store.createUpload(id);
          assert.equal(await store.appendUpload(id, lentOnce(first)), first.length);
          assert.equal(await store.appendUpload(id, lentOnce(second)), whole.length);
          // Answered once written, while the hashing of its last buffers is under way (the thread's answers
          // arrive as messages, which cannot have been read yet): that hashing fails, the bytes are on disk.
          assert.equal((await stat(join(dir, 'uploads', id))).size, whole.length);
          await hashThread.terminate();
          let content = whole;
          if (next === 'status') assert.equal(await store.uploadSize(id), whole.length);
          if (next === 'append') {
            const more = randomBytes(1000);
            assert.equal(
              await store.appendUpload(id, lentOnce(more), { offset: whole.length }),
              whole.length + more.length,
            );
            content = Buffer.concat([whole, more]);
          }
          const digest = digestOf(content);
          assert.deepEqual(await store.commitUpload(id, digest), { digest, size: content.length });
          assert.ok((await readBlob(store, digest)).equals(content));
        }
        assert.deepEqual(await readdir(join(dir, 'uploads')), [], 'no upload file or size record left');
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    },
  );

  it(
    'hashes an upload again from its file when the hash thread went away between two chunks',
    { skip: !hashThreadAllowed() && 'needs the hash thread (AIRLOCK_HASH_THREAD=0, or one CPU)' },
    async () => {
      const dir = await mkdtemp(join(tmpdir(), 'airlock-blobs-'));
      try {
        const store = new FsBlobStore(dir);
        const [first, second] = [randomBytes(3 * MiB), randomBytes((5 * MiB) / 2)];
        await store.createUpload('between');
        await store.appendUpload('between', lentOnce(first));
        await store.flush();
        // Its hash state lived on that thread: the next chunk must not go on from it.
        await hashThread.terminate();
        // Read by read, as from a socket: a hash refused mid-chunk would fail it.
        const body = readByRead(async (onChunk) => {
          for (let at = 0; at < second.length; at += 256 * 1024) {
            await new Promise((resolve) => setImmediate(resolve));
            onChunk(second.subarray(at, at + 256 * 1024));
          }
        });
        assert.equal(await store.appendUpload('between', body), first.length + second.length);
        const whole = Buffer.concat([first, second]);
        assert.deepEqual(await store.commitUpload('between', digestOf(whole)), {
          digest: digestOf(whole),
          size: whole.length,
        });
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    },
  );

  it('a chunk still arriving when its upload is cancelled fails with UPLOAD_NOT_FOUND and leaves no size record', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'airlock-blobs-'));
    try {
      const store = new FsBlobStore(dir);
      await store.createUpload('cancelled');
      const { body, resume: resumeBody } = pausedBody(256 * 1024);
      const append = outcome(store.appendUpload('cancelled', body));
      await new Promise((resolve) => setTimeout(resolve, 20));
      assert.equal(await store.cancelUpload('cancelled'), true);
      resumeBody();
      assert.deepEqual(await append, { ok: false, code: 'UPLOAD_NOT_FOUND' });
      assert.deepEqual(await readdir(join(dir, 'uploads')), []);
      assert.equal(await store.uploadSize('cancelled'), undefined);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('flush says false when a chunk is still arriving at its deadline, and true once it is done', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'airlock-blobs-'));
    try {
      const store = new FsBlobStore(dir);
      await store.createUpload('slow');
      const { body, resume: resumeBody } = pausedBody(1000);
      const append = store.appendUpload('slow', body);
      assert.equal(await store.flush(30), false);
      resumeBody();
      await append;
      assert.equal(await store.flush(), true);
      assert.equal(await store.uploadSize('slow'), 2000);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('after a crash, cuts an upload back to its last whole chunk (a chunk cut off mid-write may have holes)', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'airlock-blobs-'));
    try {
      const first = randomBytes(3 * MiB + 5);
      const writer = new FsBlobStore(dir);
      await writer.createUpload('crashed');
      await writer.appendUpload('crashed', lentOnce(first));
      await writer.flush();
      // What a kill -9 in the middle of the next chunk leaves: its later buffers written, earlier ones not.
      await appendFile(join(dir, 'uploads', 'crashed'), Buffer.concat([Buffer.alloc(MiB), randomBytes(MiB)]));
      const store = new FsBlobStore(dir);
      await store.init();
      assert.equal(await store.uploadSize('crashed'), first.length, 'the status counts whole chunks only');
      assert.deepEqual(
        await outcome(
          store.appendUpload('crashed', lentOnce(randomBytes(10)), { offset: first.length + 2 * MiB }),
        ),
        {
          ok: false,
          code: 'UPLOAD_OFFSET_MISMATCH',
        },
      );
      assert.equal((await stat(join(dir, 'uploads', 'crashed'))).size, first.length, 'the rest is cut off');
      const second = randomBytes(2 * MiB);
      await store.appendUpload('crashed', lentOnce(second), { offset: first.length });
      const whole = Buffer.concat([first, second]);
      assert.deepEqual(await store.commitUpload('crashed', digestOf(whole)), {
        digest: digestOf(whole),
        size: whole.length,
      });
      // An upload from before size records (none beside it) is taken at its file's size.
      await writeFile(join(dir, 'uploads', 'old'), first);
      assert.equal(await store.uploadSize('old'), first.length);
      // A size record whose upload is gone is removed at start.
      await writeFile(join(dir, 'uploads', 'gone.size'), '12');
      await new FsBlobStore(dir).init();
      assert.deepEqual(await readdir(join(dir, 'uploads')), ['old']);
      assert.deepEqual(await store.listUploads(), ['old']);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("records an upload's size in place as 20 digits, reads the unpadded records of older versions, and takes a chunk back when its size cannot be recorded", async () => {
    const dir = await mkdtemp(join(tmpdir(), 'airlock-blobs-'));
    try {
      const store = new FsBlobStore(dir);
      const record = join(dir, 'uploads', 'rec.size');
      await store.createUpload('rec');
      assert.equal(await readFile(record, 'utf8'), '0'.repeat(20));
      const first = randomBytes(3 * MiB + 5);
      await store.appendUpload('rec', lentOnce(first));
      await store.flush();
      assert.equal(await readFile(record, 'utf8'), String(first.length).padStart(20, '0'));
      assert.deepEqual(await readdir(join(dir, 'uploads')), ['rec', 'rec.size'], 'no temp file is left');

      // An older version's record (unpadded, shorter) is read, then overwritten whole by the next chunk.
      await writeFile(record, String(first.length));
      const restarted = new FsBlobStore(dir);
      await restarted.init();
      assert.equal(await restarted.uploadSize('rec'), first.length);
      const second = randomBytes(MiB);
      await restarted.appendUpload('rec', lentOnce(second), { offset: first.length });
      await restarted.flush();
      assert.equal(await readFile(record, 'utf8'), String(first.length + MiB).padStart(20, '0'));

      // A record that cannot be written (a folder in its place): the chunk is refused and cut off again.
      await rm(record);
      await mkdir(record);
      const refused = await outcome(restarted.appendUpload('rec', lentOnce(randomBytes(MiB))));
      assert.equal(refused.ok, false);
      assert.equal(
        (await stat(join(dir, 'uploads', 'rec'))).size,
        first.length + MiB,
        'the chunk is taken back',
      );
      await rm(record, { recursive: true });
      const third = randomBytes(10);
      await restarted.appendUpload('rec', lentOnce(third), { offset: first.length + MiB });
      const whole = Buffer.concat([first, second, third]);
      assert.deepEqual(await restarted.commitUpload('rec', digestOf(whole)), {
        digest: digestOf(whole),
        size: whole.length,
      });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('never lets a chunk write into an upload being committed: one of the two is refused, the blob is whole', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'airlock-blobs-'));
    try {
      // The commit publishes the upload's file itself (a hard link); a chunk that got in after it began
      // used to append to the published blob (6 MiB on disk under a 4 MiB digest). With a store that
      // knows the upload, and with a fresh one that rebuilds its state from the file (after a restart or
      // a failed chunk), where two callers used to rebuild side by side and both go on.
      for (const [size, fresh] of [
        [4 * MiB, false],
        [16 * MiB, false],
        [4 * MiB, true],
        [16 * MiB, true],
      ] as const) {
        const id = `commit-race-${size}-${String(fresh)}`;
        const first = randomBytes(size);
        const late = randomBytes(2 * MiB);
        const writer = new FsBlobStore(dir);
        await writer.createUpload(id);
        await writer.appendUpload(id, lentOnce(first));
        // A fresh store stands for a restart: the one before it has finished its writes.
        if (fresh) await writer.flush();
        const store = fresh ? new FsBlobStore(dir) : writer;
        const digest = digestOf(first);
        const [commit, chunk] = await Promise.all([
          outcome(store.commitUpload(id, digest)),
          outcome(store.appendUpload(id, lentOnce(late), { offset: first.length })),
        ]);
        if (commit.ok) {
          assert.deepEqual(chunk, { ok: false, code: 'UPLOAD_NOT_FOUND' });
        } else {
          // The chunk got there first: the commit is refused while it is written, and can be sent again.
          assert.deepEqual(commit, { ok: false, code: 'UPLOAD_OFFSET_MISMATCH' });
          assert.deepEqual(chunk, { ok: true });
          const whole = Buffer.concat([first, late]);
          assert.deepEqual(await store.commitUpload(id, digestOf(whole)), {
            digest: digestOf(whole),
            size: whole.length,
          });
          continue;
        }
        assert.ok(
          (await readBlob(store, digest)).equals(first),
          `the ${size / MiB} MiB blob is what was committed`,
        );
        assert.equal(await store.uploadSize(id), undefined, 'no upload file was made again');
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('takes one chunk at a time: a second one at the same offset is refused, even while state is rebuilt', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'airlock-blobs-'));
    try {
      const first = randomBytes(3 * MiB);
      const writer = new FsBlobStore(dir);
      await writer.createUpload('twice');
      await writer.appendUpload('twice', lentOnce(first));
      await writer.flush();
      // A fresh store (as after a restart) has to rebuild the upload's hash from the file for each caller.
      const store = new FsBlobStore(dir);
      const a = randomBytes(2 * MiB);
      const b = randomBytes(2 * MiB);
      const results = await Promise.all([
        outcome(store.appendUpload('twice', lentOnce(a), { offset: first.length })),
        outcome(store.appendUpload('twice', lentOnce(b), { offset: first.length })),
      ]);
      assert.deepEqual(
        results.map((r) => (r.ok ? 'ok' : r.code)).sort(),
        ['UPLOAD_OFFSET_MISMATCH', 'ok'],
        'one chunk written, the other refused with 416',
      );
      const whole = Buffer.concat([first, results[0]?.ok ? a : b]);
      const digest = digestOf(whole);
      assert.deepEqual(await store.commitUpload('twice', digest), { digest, size: whole.length });
      assert.ok((await readBlob(store, digest)).equals(whole));
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('removes temp files a crash left behind when it starts', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'airlock-blobs-'));
    try {
      await mkdir(join(dir, 'uploads'), { recursive: true });
      await writeFile(join(dir, 'uploads', 'tmp-deadbeef'), 'partial');
      const store = new FsBlobStore(dir);
      await store.init();
      assert.deepEqual(await readdir(join(dir, 'uploads')), []);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
