import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { EventEmitter, once } from 'node:events';
import { mkdtemp, open, rm, writeFile, type FileHandle } from 'node:fs/promises';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { Worker } from 'node:worker_threads';
import { join } from 'node:path';
import {
  kernelSend,
  kernelSendEnabled,
  reserveKernelSend,
  KernelSendError,
  MAX_KERNEL_SENDS,
  socketIsIdle,
  SendMeter,
  METERED_SEND_BYTES,
  SAMPLES_PER_WAY,
  COPY_MARGIN,
  type SendWay,
} from './kernel-send.js';
import { sendFileTo, type DirectSocket, type FileSink } from './file-source.js';

/** A connected pair on loopback: `client` is ours to send on, `peer` the server's end. */
async function socketPair(server: Server): Promise<{ client: Socket; peer: Socket }> {
  const accepted = once(server, 'connection') as Promise<[Socket]>;
  const address = server.address() as { port: number };
  const client = connect(address.port, '127.0.0.1');
  await once(client, 'connect');
  const [peer] = await accepted;
  return { client, peer };
}

async function readAllFrom(socket: Socket, bytes: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of socket) {
    chunks.push(chunk as Buffer);
    total += (chunk as Buffer).byteLength;
    if (total >= bytes) break;
  }
  return Buffer.concat(chunks);
}

/**
 * A sink over `client`: bytes given to `write` go to it (and are counted in `written`), and
 * `directSocket` says what the sink hands over for a kernel send.
 */
function socketSink(
  client: Socket,
  directSocket: () => Promise<DirectSocket | undefined>,
): FileSink & { written: number } {
  const sink = {
    written: 0,
    write: (chunk: Uint8Array, done: (error?: Error | null) => void) => {
      sink.written += chunk.byteLength;
      return client.write(chunk, done);
    },
    once: (event: 'close', listener: () => void) => client.once(event, listener),
    off: (event: 'close', listener: () => void) => client.off(event, listener),
    directSocket,
  };
  return sink;
}

// Built by `npm run build`; on a machine without a C compiler or node's headers it is missing and
// files go through buffers. CI builds it (AIRLOCK_NATIVE=required), so there it must be here.
const available = kernelSendEnabled({});
const skip =
  available || process.env.CI ? false : 'dist/native/sendfile.node was not built (no C compiler here?)';

describe('kernelSend (sendfile through the native addon)', { skip }, () => {
  let dir: string;
  let server: Server;
  let file: FileHandle;
  // Not a multiple of any page or call size, larger than a socket buffer many times over.
  const bytes = randomBytes(24 * 1024 * 1024 + 4321);

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'airlock-kernel-send-'));
    await writeFile(join(dir, 'blob'), bytes);
    file = await open(join(dir, 'blob'), 'r');
    server = createServer();
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
  });
  after(async () => {
    await file.close();
    server.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('is built here when CI runs (the build must not quietly fall back)', () => {
    assert.equal(available, true);
  });

  it('reads AIRLOCK_SENDFILE: 0 turns it off, 1 requires it, anything else is refused', () => {
    assert.equal(kernelSendEnabled({ AIRLOCK_SENDFILE: '0' }), false);
    assert.equal(kernelSendEnabled({ AIRLOCK_SENDFILE: '1' }), true);
    assert.throws(
      () => kernelSendEnabled({ AIRLOCK_SENDFILE: 'off' }),
      /AIRLOCK_SENDFILE must be 0 .* not "off"/,
    );
  });

  it('is off in worker threads, whose teardown would free what a running send uses', async () => {
    const url = new URL('./kernel-send.js', import.meta.url).href;
    const worker = new Worker(
      `import(${JSON.stringify(url)}).then((m) => require('node:worker_threads').parentPort.postMessage(m.kernelSendEnabled({})))`,
      { eval: true },
    );
    const [enabled] = (await once(worker, 'message')) as [boolean];
    await worker.terminate();
    assert.equal(enabled, false);
  });

  for (const way of ['sendfile', 'copy'] as const) {
    it(`${way}: sends a range of a file, from an offset, byte for byte`, async () => {
      const { client, peer } = await socketPair(server);
      const start = 1_000_003;
      const length = bytes.byteLength - start - 17;
      // Everything the peer receives until the client ends the connection.
      const received = readAllFrom(peer, Infinity);
      await kernelSend(
        client,
        { fileFd: file.fd, position: start, length, way },
        new AbortController().signal,
      );
      assert.ok(socketIsIdle(client), 'node has nothing queued on the socket afterwards');
      // The socket is still node's: a write after the send arrives after the file's bytes.
      client.end(Buffer.from('tail'));
      const all = await received;
      assert.ok(all.subarray(0, length).equals(bytes.subarray(start, start + length)));
      assert.equal(all.subarray(length).toString(), 'tail');
      peer.destroy();
    });

    it(`${way}: fails with EOF and the count sent when the file ends before the range`, async () => {
      const { client, peer } = await socketPair(server);
      peer.resume();
      const error = await kernelSend(
        client,
        { fileFd: file.fd, position: bytes.byteLength - 1000, length: 5000, way },
        new AbortController().signal,
      ).catch((e: unknown) => e);
      assert.ok(error instanceof KernelSendError);
      assert.equal(error.code, 'EOF');
      assert.equal(error.sent, 1000);
      client.destroy();
      peer.destroy();
    });

    it(`${way}: stops on abort while the reader is not reading, and leaves the socket to its owner`, async () => {
      const { client, peer } = await socketPair(server);
      peer.pause();
      const controller = new AbortController();
      const sending = kernelSend(
        client,
        { fileFd: file.fd, position: 0, length: bytes.byteLength, way },
        controller.signal,
      );
      await new Promise((resolve) => setTimeout(resolve, 100));
      const started = Date.now();
      controller.abort();
      const error = await sending.catch((e: unknown) => e);
      assert.ok(error instanceof KernelSendError);
      assert.equal(error.code, 'ECANCELED');
      assert.ok(error.sent > 0 && error.sent < bytes.byteLength, `sent ${error.sent}`);
      assert.ok(Date.now() - started < 2000, 'the send stops within its poll slice');
      assert.equal(client.destroyed, false);
      client.destroy();
      peer.destroy();
    });

    it(`${way}: fails with the socket error when the reader goes away mid-send`, async () => {
      const { client, peer } = await socketPair(server);
      client.on('error', () => undefined);
      peer.once('data', () => peer.resetAndDestroy());
      const error = await kernelSend(
        client,
        { fileFd: file.fd, position: 0, length: bytes.byteLength, way },
        new AbortController().signal,
      ).catch((e: unknown) => e);
      assert.ok(error instanceof KernelSendError);
      assert.match(error.code, /^(EPIPE|ECONNRESET)$/);
      client.destroy();
    });
  }

  it('gives at most MAX_KERNEL_SENDS places at once, each back once released (twice is once)', () => {
    const slots = Array.from({ length: MAX_KERNEL_SENDS }, () => reserveKernelSend());
    assert.ok(slots.every((slot) => slot !== undefined));
    assert.equal(reserveKernelSend(), undefined, 'every place is taken');
    slots[0]?.release();
    slots[0]?.release();
    const again = reserveKernelSend();
    assert.ok(again);
    assert.equal(reserveKernelSend(), undefined, 'a second release gave nothing back');
    again.release();
    for (const slot of slots) slot?.release();
    const fresh = reserveKernelSend();
    assert.ok(fresh);
    fresh.release();
  });

  it('sendFileTo keeps to the cap when many start at once, and sends the rest through buffers', async () => {
    // Each sink hands over its socket one turn of the loop later, as the client's does after its head.
    const pairs: Array<{ client: Socket; peer: Socket }> = [];
    const count = MAX_KERNEL_SENDS + 6;
    for (let index = 0; index < count; index++) pairs.push(await socketPair(server));
    let direct = 0;
    let peak = 0;
    let running = 0;
    const length = 512 * 1024;
    const results = await Promise.all(
      pairs.map(async ({ client, peer }) => {
        const received = readAllFrom(peer, length);
        const sink = socketSink(client, async () => {
          await new Promise((resolve) => setImmediate(resolve));
          direct++;
          running++;
          peak = Math.max(peak, running);
          return {
            socket: client,
            sent: () => {
              running--;
            },
          };
        });
        const sent = await sendFileTo({ file: join(dir, 'blob'), start: 0, length }, sink);
        const ok = (await received).subarray(0, length).equals(bytes.subarray(0, length));
        client.destroy();
        peer.destroy();
        return sent && ok;
      }),
    );
    assert.ok(results.every(Boolean), 'every send delivered its bytes');
    assert.equal(
      direct,
      MAX_KERNEL_SENDS,
      'only as many sinks were asked for their socket as there are places',
    );
    assert.ok(peak <= MAX_KERNEL_SENDS);
  });

  it('keeps many concurrent sends apart (each on its own thread and socket)', async () => {
    const pairs: Array<{ client: Socket; peer: Socket }> = [];
    for (let index = 0; index < 16; index++) pairs.push(await socketPair(server));
    await Promise.all(
      pairs.map(async ({ client, peer }, index) => {
        const start = index * 65_537;
        const length = 3 * 1024 * 1024 + index;
        const received = readAllFrom(peer, length);
        await kernelSend(client, { fileFd: file.fd, position: start, length }, new AbortController().signal);
        assert.ok((await received).equals(bytes.subarray(start, start + length)), `pair ${index}`);
        client.destroy();
        peer.destroy();
      }),
    );
  });

  it('refuses arguments of the wrong kind, and a closed descriptor, without sending', async () => {
    const { client, peer } = await socketPair(server);
    const bad = new AbortController().signal;
    await assert.rejects(
      kernelSend(client, { fileFd: -1, position: 0, length: 1 }, bad),
      /socketFd and fileFd must be open descriptors/,
    );
    await assert.rejects(
      kernelSend(client, { fileFd: file.fd, position: -5, length: 1 }, bad),
      /position and length must be non-negative/,
    );
    await assert.rejects(kernelSend(client, { fileFd: 987_654, position: 0, length: 1 }, bad), {
      code: 'EBADF',
    });
    client.destroy();
    peer.destroy();
    await assert.rejects(
      kernelSend(client, { fileFd: file.fd, position: 0, length: 1 }, bad),
      /The socket has no descriptor/,
    );
  });

  it('is what sendFileTo uses for a sink that hands over its socket; the sink counts the bytes', async () => {
    const { client, peer } = await socketPair(server);
    const length = 5 * 1024 * 1024;
    let counted = 0;
    const sink = socketSink(client, () =>
      Promise.resolve({ socket: client, sent: (n: number) => (counted += n) }),
    );
    const received = readAllFrom(peer, length);
    assert.equal(await sendFileTo({ file: join(dir, 'blob'), start: 7, length }, sink), true);
    assert.ok((await received).equals(bytes.subarray(7, 7 + length)));
    assert.equal(counted, length);
    assert.equal(sink.written, 0, 'no byte went through write');
    client.destroy();
    peer.destroy();
  });

  it('sendFileTo reports false, and the socket is destroyed, when the reader resets', async () => {
    const { client, peer } = await socketPair(server);
    // Either node's reader sees the reset first (it destroys the socket, maybe with its own error) or the
    // send does (it destroys the socket with "Sending to the socket failed (EPIPE)").
    const errors: Error[] = [];
    client.on('error', (error) => errors.push(error));
    peer.once('data', () => peer.resetAndDestroy());
    const sink = socketSink(client, () => Promise.resolve({ socket: client, sent: () => undefined }));
    assert.equal(
      await sendFileTo({ file: join(dir, 'blob'), start: 0, length: bytes.byteLength }, sink),
      false,
    );
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(client.destroyed, true);
    for (const error of errors) assert.match(error.message, /EPIPE|ECONNRESET/);
  });

  it('sendFileTo sends through write when the kernel send cannot start (here: no descriptor to copy)', async () => {
    const { client, peer } = await socketPair(server);
    // Looks idle and plain, but its descriptor is not open: the addon's dup fails with EBADF before
    // anything is written, as it would with EMFILE, and so would a thread that cannot be created.
    const broken = Object.assign(new EventEmitter(), {
      destroyed: false,
      writable: true,
      writableLength: 0,
      _handle: { fd: 987_654, writeQueueSize: 0 },
    }) as unknown as Socket;
    const sink = socketSink(client, () => Promise.resolve({ socket: broken, sent: () => undefined }));
    const length = 2 * 1024 * 1024;
    const received = readAllFrom(peer, length);
    assert.equal(await sendFileTo({ file: join(dir, 'blob'), start: 0, length }, sink), true);
    assert.ok((await received).subarray(0, length).equals(bytes.subarray(0, length)));
    assert.equal(sink.written, length);
    assert.ok(reserveKernelSend()?.release() === undefined, 'its place was given back');
    client.destroy();
    peer.destroy();
  });

  it('sendFileTo falls back to write when AIRLOCK_SENDFILE=0 or the range is small', async () => {
    const saved = process.env.AIRLOCK_SENDFILE;
    try {
      for (const [setting, length] of [
        ['0', 2 * 1024 * 1024],
        [undefined, 100 * 1024],
      ] as const) {
        if (setting === undefined) delete process.env.AIRLOCK_SENDFILE;
        else process.env.AIRLOCK_SENDFILE = setting;
        const { client, peer } = await socketPair(server);
        let asked = false;
        const sink = socketSink(client, () => {
          asked = true;
          return Promise.resolve({ socket: client, sent: () => undefined });
        });
        const received = readAllFrom(peer, length);
        assert.equal(await sendFileTo({ file: join(dir, 'blob'), start: 0, length }, sink), true);
        assert.ok((await received).equals(bytes.subarray(0, length)));
        assert.equal(asked, false, `AIRLOCK_SENDFILE=${setting ?? ''}, ${length} bytes`);
        client.destroy();
        peer.destroy();
      }
    } finally {
      if (saved === undefined) delete process.env.AIRLOCK_SENDFILE;
      else process.env.AIRLOCK_SENDFILE = saved;
    }
  });

  it('sendFileTo with a meter sends the way the meter says and tells it how long the send took', async () => {
    const asked: SendWay[] = [];
    const told: Array<{ way: SendWay; bytes: number }> = [];
    // A meter that always says copy, and logs what it is told.
    const meter = new (class extends SendMeter {
      override next(): SendWay {
        asked.push('copy');
        return 'copy';
      }
      override record(way: SendWay, bytes: number, ms: number): void {
        assert.ok(ms > 0);
        told.push({ way, bytes });
      }
    })();
    const { client, peer } = await socketPair(server);
    let sent = 0;
    const sink = socketSink(client, () =>
      Promise.resolve({ socket: client, sent: (count: number) => (sent = count) }),
    );
    const received = readAllFrom(peer, bytes.byteLength);
    assert.equal(
      await sendFileTo({ file: join(dir, 'blob'), start: 0, length: bytes.byteLength }, sink, { meter }),
      true,
    );
    assert.ok((await received).equals(bytes));
    assert.equal(sink.written, 0, "nothing went through the sink's own writes");
    assert.equal(sent, bytes.byteLength);
    assert.deepEqual(asked, ['copy']);
    assert.deepEqual(told, [{ way: 'copy', bytes: bytes.byteLength }]);
    client.destroy();
    peer.destroy();
  });
});

describe('SendMeter', () => {
  const big = METERED_SEND_BYTES;

  it('alternates the ways until both are timed enough, then keeps copying only when clearly faster', () => {
    const meter = new SendMeter();
    const ways: SendWay[] = [];
    for (let index = 0; index < 2 * SAMPLES_PER_WAY; index++) {
      const way = meter.next();
      ways.push(way);
      assert.equal(meter.chosen, undefined);
      // Copying takes half the time.
      meter.record(way, big, way === 'copy' ? 10 : 20);
    }
    assert.deepEqual(ways, ['sendfile', 'copy', 'sendfile', 'copy', 'sendfile', 'copy']);
    assert.equal(meter.chosen, 'copy');
    assert.equal(meter.next(), 'copy');
    // Decided once: later sends do not change it.
    for (let index = 0; index < 10; index++) meter.record('copy', big, 1000);
    assert.equal(meter.next(), 'copy');
  });

  it('keeps sendfile on a tie or a small lead (it costs less CPU), and ignores short or untimed sends', () => {
    for (const copyMs of [20, 20 / COPY_MARGIN + 0.1]) {
      const meter = new SendMeter();
      meter.record('copy', big - 1, 1); // too short to say anything about the rate
      meter.record('copy', big, 0); // no time measured
      for (let index = 0; index < SAMPLES_PER_WAY; index++) {
        meter.record('sendfile', big, 20);
        meter.record('copy', big, copyMs);
      }
      assert.equal(meter.chosen, 'sendfile', `copy in ${copyMs} ms against 20`);
    }
  });

  it('decides on median rates, so one slow send does not decide', () => {
    const meter = new SendMeter();
    const sendfileMs = [20, 20, 200];
    const copyMs = [10, 400, 10];
    for (let index = 0; index < SAMPLES_PER_WAY; index++) {
      meter.record('sendfile', big, sendfileMs[index] as number);
      meter.record('copy', big, copyMs[index] as number);
    }
    assert.equal(meter.chosen, 'copy');
  });

  it('reports the median rate of each way in bytes per second, none before a way was timed', () => {
    const meter = new SendMeter();
    assert.deepEqual(meter.rates(), { sendfile: undefined, copy: undefined });
    meter.record('sendfile', big, 20);
    meter.record('sendfile', big, 40);
    meter.record('sendfile', big, 10);
    assert.deepEqual(meter.rates(), { sendfile: (big / 20) * 1000, copy: undefined });
    meter.record('copy', big, 8);
    meter.record('copy', big, 16);
    assert.deepEqual(meter.rates(), { sendfile: (big / 20) * 1000, copy: ((big / 8 + big / 16) / 2) * 1000 });
  });
});
