import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { createServer, type RequestListener, type Server } from 'node:http';
import { createServer as createNetServer, type Server as NetServer, type Socket } from 'node:net';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Digester, writeHashed } from '../oci/index.js';
import { rawGet } from './raw-get.js';
import { HttpTransport } from './transport.js';

async function listen(server: Server | NetServer): Promise<URL> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (!address || typeof address === 'string') throw new Error('no port');
  return new URL(`http://127.0.0.1:${address.port}/`);
}

async function withHttp(handler: RequestListener, fn: (base: URL) => Promise<void>): Promise<void> {
  const server = createServer(handler);
  const base = await listen(server);
  try {
    await fn(base);
  } finally {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }
}

/** A TCP server that answers every connection with `answer` (for responses node would not send). */
async function withRaw(answer: (socket: Socket) => void, fn: (base: URL) => Promise<void>): Promise<void> {
  const sockets = new Set<Socket>();
  const server = createNetServer((socket) => {
    sockets.add(socket);
    socket.once('data', () => answer(socket));
    socket.on('error', () => undefined);
  });
  const base = await listen(server);
  try {
    await fn(base);
  } finally {
    for (const socket of sockets) socket.destroy();
    await new Promise((resolve) => server.close(resolve));
  }
}

async function withTransport(fn: (transport: HttpTransport) => Promise<void>): Promise<void> {
  const transport = new HttpTransport();
  try {
    await fn(transport);
  } finally {
    transport.close();
  }
}

const big = randomBytes(9 * 1024 * 1024 + 17);
const bigDigest = `sha256:${createHash('sha256').update(big).digest('hex')}`;

async function readAll(stream: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const chunk of stream) parts.push(Buffer.from(chunk));
  return Buffer.concat(parts);
}

test('a 200 body read as a stream arrives whole, with the request headers sent', async () => {
  let seen: Record<string, unknown> = {};
  await withHttp(
    (req, res) => {
      seen = req.headers;
      res.setHeader('content-length', big.length);
      res.setHeader('docker-content-digest', bigDigest);
      res.end(big);
    },
    async (base) => {
      const res = await rawGet(new URL('/v2/a/blobs/x?ns=y', base), { authorization: 'Bearer t' });
      assert.ok(res);
      assert.equal(res.status, 200);
      assert.equal(res.headers['docker-content-digest'], bigDigest);
      assert.deepEqual(await readAll(res.body), big);
      assert.equal(seen.authorization, 'Bearer t');
      assert.equal(seen.connection, 'close');
    },
  );
});

/** Answers with `big` in several writes, so reads and write buffers do not line up. */
const servesBig: RequestListener = (_req, res) => {
  res.setHeader('content-length', big.length);
  for (let offset = 0; offset < big.length; offset += 700_001)
    res.write(big.subarray(offset, offset + 700_001));
  res.end();
};

test('a 200 body lent to writeHashed is hashed and written without loss', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'airlock-raw-'));
  try {
    await withHttp(servesBig, async (base) => {
      const res = await rawGet(new URL('/blob', base), {});
      assert.ok(res);
      const digester = new Digester();
      await writeHashed(res.body, join(dir, 'blob'), { digester });
      assert.equal(digester.digest(), bigDigest);
      assert.deepEqual(await readFile(join(dir, 'blob')), big);
    });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('a reader that offers its memory gets the body read straight into it, and a short body fails', async () => {
  await withHttp(servesBig, async (base) => {
    const res = await rawGet(new URL('/blob', base), {});
    assert.ok(res);
    const into = Buffer.alloc(big.length);
    let at = 0;
    let direct = 0;
    await res.body.pumpBorrowed(
      (chunk) => {
        into.set(chunk, at);
        at += chunk.byteLength;
        return true;
      },
      {
        target: (max) => into.subarray(at, at + Math.min(max, 123_457)),
        filled: (bytes) => {
          at += bytes;
          direct += bytes;
          return true;
        },
      },
    ).done;
    assert.ok(into.equals(big));
    assert.ok(direct > big.length / 2, `${direct} of ${big.length} bytes read directly`);
  });
  await withRaw(
    (socket) => {
      socket.write('HTTP/1.1 200 OK\r\ncontent-length: 1000000\r\n\r\n');
      setTimeout(() => socket.end(Buffer.alloc(400_000)), 20);
    },
    async (base) => {
      const res = await rawGet(new URL('/blob', base), {});
      assert.ok(res);
      const into = Buffer.alloc(1_000_000);
      let at = 0;
      const reading = res.body.pumpBorrowed(() => true, {
        target: (max) => into.subarray(at, at + max),
        filled: (bytes) => {
          at += bytes;
          return true;
        },
      }).done;
      await assert.rejects(reading, /closed the connection after 400000 of 1000000 bytes/);
    },
  );
});

test('an error status keeps its (small) body, for the caller to read', async () => {
  await withHttp(
    (_req, res) => {
      res.statusCode = 401;
      res.setHeader('www-authenticate', 'Bearer realm="http://x/token"');
      res.setHeader('content-type', 'application/json');
      res.end('{"errors":[{"code":"UNAUTHORIZED"}]}');
    },
    async (base) => {
      const res = await rawGet(new URL('/blob', base), {});
      assert.ok(res);
      assert.equal(res.status, 401);
      assert.match(String(res.headers['www-authenticate']), /realm/);
      assert.equal((await readAll(res.body)).toString(), '{"errors":[{"code":"UNAUTHORIZED"}]}');
    },
  );
});

test('chunked or unframed responses are left to node (undefined)', async () => {
  await withHttp(
    (_req, res) => {
      res.write('part one');
      res.end('part two');
    },
    async (base) => {
      assert.equal(await rawGet(new URL('/blob', base), {}), undefined);
    },
  );
});

test('the transport falls back to node for responses the raw reader does not frame', async () => {
  await withHttp(
    (_req, res) => {
      res.write('chunk a, ');
      res.end('chunk b');
    },
    async (base) =>
      withTransport(async (transport) => {
        const res = await transport.send({ method: 'GET', url: new URL('/blob', base), large: true });
        assert.equal(res.status, 200);
        assert.equal(await res.text(), 'chunk a, chunk b');
      }),
  );
});

test('the transport follows a redirect from the raw reader', async () => {
  await withHttp(
    (req, res) => {
      if (req.url === '/blob') {
        res.statusCode = 307;
        res.setHeader('location', '/storage/blob');
        res.end();
        return;
      }
      res.setHeader('content-length', big.length);
      res.end(big);
    },
    async (base) =>
      withTransport(async (transport) => {
        const res = await transport.send({ method: 'GET', url: new URL('/blob', base), large: true });
        assert.equal(res.status, 200);
        assert.equal(res.url.pathname, '/storage/blob');
        assert.deepEqual(await res.bytes(big.length), big);
      }),
  );
});

test('a connection that closes mid-body is an error naming how much arrived', async () => {
  await withRaw(
    (socket) => {
      socket.end('HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n' + 'x'.repeat(400));
    },
    async (base) => {
      const res = await rawGet(new URL('/blob', base), {});
      assert.ok(res);
      await assert.rejects(readAll(res.body), /closed the connection after 400 of 1000 bytes/);
    },
  );
});

test('a malformed status line is an INVALID_RESPONSE error', async () => {
  await withRaw(
    (socket) => {
      socket.end('SMTP ready\r\n\r\n');
    },
    async (base) => {
      await assert.rejects(rawGet(new URL('/blob', base), {}), /malformed status line "SMTP ready"/);
    },
  );
});

test('an unreachable host is a network error from the transport', async () => {
  const server = createNetServer();
  const base = await listen(server);
  await new Promise((resolve) => server.close(resolve));
  await withTransport((transport) =>
    assert.rejects(
      transport.send({ method: 'GET', url: new URL('/blob', base), large: true }),
      /Cannot reach 127\.0\.0\.1/,
    ),
  );
});

test('a header value with a line break is refused before anything is sent', async () => {
  let connections = 0;
  await withRaw(
    () => connections++,
    async (base) => {
      await assert.rejects(
        rawGet(new URL('/blob', base), { authorization: 'Bearer x\r\nx-injected: 1' }),
        /Refusing to send the header "authorization"/,
      );
      assert.equal(connections, 0);
    },
  );
});

test('an abort signal stops the request', async () => {
  await withRaw(
    () => undefined, // never answers
    async (base) => {
      const controller = new AbortController();
      const pending = rawGet(new URL('/blob', base), {}, { signal: controller.signal });
      setTimeout(() => controller.abort(new Error('stopped')), 50);
      await assert.rejects(pending, /stopped/);
    },
  );
});
