import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { returnBufferSet, takeBufferSet, takePooledBufferSet, type BufferSet } from './direct-io.js';
import { fileSourceOf, fileStream, sendFile } from './file-source.js';

describe('fileStream and sendFile', () => {
  let dir: string;
  let path: string;
  // Larger than a buffer set (4 x 2 MiB), and not a multiple of any buffer or page size.
  const bytes = randomBytes(9 * 1024 * 1024 + 12_345);
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'airlock-file-source-'));
    path = join(dir, 'blob');
    await writeFile(path, bytes);
  });
  after(() => rm(dir, { recursive: true, force: true }));

  it('tells the file of a fresh file stream, and nothing once it was read or for other streams', async () => {
    const stream = fileStream(path);
    assert.deepEqual(fileSourceOf(stream), { path, start: 0 });
    const fresh = fileStream(path);
    for await (const chunk of fresh) {
      assert.ok((chunk as Buffer).byteLength > 0);
      break;
    }
    assert.equal(fileSourceOf(fresh), undefined);
    assert.equal(fileSourceOf(Readable.from([Buffer.from('x')])), undefined);
    stream.destroy();
    assert.equal(fileSourceOf(stream), undefined);
    // Read as a stream, it gives the file's bytes.
    const chunks: Buffer[] = [];
    for await (const chunk of fileStream(path)) chunks.push(chunk as Buffer);
    assert.ok(Buffer.concat(chunks).equals(bytes));
  });

  it('sends the bytes asked for, reusing a buffer only after its write called back', async () => {
    for (const [start, length] of [
      [0, bytes.byteLength],
      [1, 5 * 1024 * 1024 + 7],
      [bytes.byteLength - 10, 10],
      [0, 0],
    ] as const) {
      const received: Buffer[] = [];
      let inFlight = 0;
      let maxInFlight = 0;
      await sendFile(
        { file: path, start, length },
        (chunk, done) => {
          inFlight++;
          maxInFlight = Math.max(maxInFlight, inFlight);
          // Copy only when calling back: had the buffer been refilled before, the copy would differ.
          setTimeout(() => {
            received.push(Buffer.from(chunk));
            inFlight--;
            done();
          }, 2);
        },
        new AbortController().signal,
      );
      assert.ok(Buffer.concat(received).equals(bytes.subarray(start, start + length)), `${start}+${length}`);
      assert.ok(maxInFlight <= 4, `at most one write per buffer in flight (${maxInFlight})`);
    }
  });

  it('fails, naming the file, when it ends before the length to send', async () => {
    await assert.rejects(
      sendFile(
        { file: path, start: 0, length: bytes.byteLength + 1 },
        (_chunk, done) => done(),
        new AbortController().signal,
      ),
      (error: Error) => error.message.includes(path) && error.message.includes('ended 1 bytes before'),
    );
    await assert.rejects(
      sendFile(
        { file: join(dir, 'missing'), start: 0, length: 1 },
        (_chunk, done) => done(),
        new AbortController().signal,
      ),
      { code: 'ENOENT' },
    );
  });

  it('fails with the error of a write, and at once on abort when writes never call back', async () => {
    await assert.rejects(
      sendFile(
        { file: path, start: 0, length: bytes.byteLength },
        (_chunk, done) => done(new Error('socket gone')),
        new AbortController().signal,
      ),
      /socket gone/,
    );
    const stop = new AbortController();
    const sending = sendFile(
      { file: path, start: 0, length: bytes.byteLength },
      () => undefined,
      stop.signal,
    );
    setTimeout(() => stop.abort(new Error('request closed')), 20);
    await assert.rejects(sending, /request closed/);
  });

  it('gives its buffers back only when no write can still read them', async () => {
    const length = 4 * 1024 * 1024;
    const used = new Set<ArrayBufferLike>();
    await sendFile(
      { file: path, start: 0, length },
      (chunk, done) => {
        used.add(chunk.buffer);
        done();
      },
      new AbortController().signal,
    );
    const next = takeBufferSet();
    assert.ok(used.has(next.buffers[0]!.buffer), 'a finished send returns its set');
    returnBufferSet(next);

    const held = new Set<ArrayBufferLike>();
    const stop = new AbortController();
    const sending = sendFile(
      { file: path, start: 0, length },
      (chunk) => held.add(chunk.buffer), // never calls back: the socket may still be reading it
      stop.signal,
    );
    setTimeout(() => stop.abort(new Error('closed')), 20);
    await assert.rejects(sending, /closed/);
    const after = takeBufferSet();
    assert.ok(!held.has(after.buffers[0]!.buffer), 'an aborted send with writes in flight keeps its set out');
    returnBufferSet(after);
  });

  it('sends a small range from one buffer of its own, not a set', async () => {
    const chunks: Buffer[] = [];
    await sendFile(
      { file: path, start: 3, length: 1000 },
      (chunk, done) => {
        chunks.push(Buffer.from(chunk));
        done();
      },
      new AbortController().signal,
    );
    assert.equal(chunks.length, 1);
    assert.ok(chunks[0]!.equals(bytes.subarray(3, 1003)));
  });

  it('sends from two ordinary 1 MiB buffers when every aligned set is in use', async () => {
    const held: BufferSet[] = [];
    for (let set = takePooledBufferSet(); set; set = takePooledBufferSet()) held.push(set);
    try {
      const chunks: Buffer[] = [];
      await sendFile(
        { file: path, start: 5, length: 3 * 1024 * 1024 },
        (chunk, done) => {
          assert.ok(chunk.byteLength <= 1024 * 1024);
          assert.ok(!(chunk.buffer instanceof SharedArrayBuffer));
          chunks.push(Buffer.from(chunk));
          setImmediate(done);
        },
        new AbortController().signal,
      );
      assert.ok(Buffer.concat(chunks).equals(bytes.subarray(5, 5 + 3 * 1024 * 1024)));
    } finally {
      for (const set of held) returnBufferSet(set);
    }
  });
});
