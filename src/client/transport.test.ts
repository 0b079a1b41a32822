import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type IncomingHttpHeaders, type RequestListener } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileStream, kernelSendEnabled } from '../oci/index.js';
import type { ClientError } from './errors.js';
import { HttpTransport } from './transport.js';

/** A server on 127.0.0.1:0 that records request headers; closed when the file's tests end. */
async function serve(handler: RequestListener): Promise<{ url: string; seen: IncomingHttpHeaders[] }> {
  const seen: IncomingHttpHeaders[] = [];
  const server = createServer((req, res) => {
    seen.push(req.headers);
    handler(req, res);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  after(() => {
    server.closeAllConnections();
    server.close();
  });
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, seen };
}

describe('HttpTransport', () => {
  it('frees the keep-alive socket when a complete but unread response is drained', async () => {
    const { url } = await serve((req, res) => {
      res.writeHead(req.method === 'HEAD' ? 200 : 404, {
        'content-type': 'application/json',
        'content-length': 2,
      });
      res.end(req.method === 'HEAD' ? undefined : '{}');
    });
    // One socket: each request waits for the previous one's socket, so a leaked socket hangs the loop.
    const transport = new HttpTransport({ maxSockets: 1 });
    try {
      const run = async (): Promise<void> => {
        for (let i = 0; i < 40; i++) {
          const res = await transport.send({
            method: i % 2 === 0 ? 'HEAD' : 'GET',
            url: new URL(`${url}/v2/x/${i}`),
          });
          // Let the whole response arrive before draining, as a caller busy elsewhere would.
          await new Promise((r) => setTimeout(r, 1));
          await res.drain();
        }
      };
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new Error('requests stalled: a drained response kept its socket')),
          5000,
        );
      });
      await Promise.race([run(), timeout]).finally(() => clearTimeout(timer));
    } finally {
      transport.close();
    }
  });

  it('drops the Authorization header when a redirect leaves the host, and keeps it on the same host', async () => {
    const storage = await serve((_req, res) => res.end('blob bytes'));
    const registry = await serve((req, res) => {
      if (req.url === '/same') {
        res.writeHead(307, { location: '/final' });
        res.end();
      } else if (req.url === '/final') {
        res.end('same host');
      } else {
        res.writeHead(302, { location: `${storage.url}/blob` });
        res.end();
      }
    });
    const transport = new HttpTransport();
    try {
      const away = await transport.send({
        method: 'GET',
        url: new URL(`${registry.url}/v2/x/blobs/sha256:1`),
        headers: { authorization: 'Bearer secret' },
      });
      assert.equal(await away.text(), 'blob bytes');
      assert.equal(away.url.toString(), `${storage.url}/blob`);
      assert.equal(storage.seen[0]?.authorization, undefined);
      assert.equal(registry.seen[0]?.authorization, 'Bearer secret');

      const same = await transport.send({
        method: 'GET',
        url: new URL(`${registry.url}/same`),
        headers: { authorization: 'Bearer secret' },
      });
      assert.equal(await same.text(), 'same host');
      assert.equal(registry.seen.at(-1)?.authorization, 'Bearer secret');
    } finally {
      transport.close();
    }
  });

  it('returns redirects of PUT to the caller instead of replaying the body elsewhere', async () => {
    const { url, seen } = await serve((_req, res) => {
      res.writeHead(307, { location: 'http://127.0.0.1:1/elsewhere' });
      res.end();
    });
    const transport = new HttpTransport();
    try {
      const res = await transport.send({
        method: 'PUT',
        url: new URL(`${url}/v2/x/manifests/v1`),
        body: Buffer.from('{}'),
      });
      assert.equal(res.status, 307);
      await res.drain();
      assert.equal(seen.length, 1);
    } finally {
      transport.close();
    }
  });

  it('caps what bytes() reads and says how much was allowed', async () => {
    const { url } = await serve((_req, res) => res.end(Buffer.alloc(4096, 1)));
    const transport = new HttpTransport();
    try {
      const res = await transport.send({ method: 'GET', url: new URL(url) });
      await assert.rejects(
        res.bytes(1024),
        (e: unknown) => e instanceof Error && /larger than 1024 bytes/.test(e.message),
      );
    } finally {
      transport.close();
    }
  });

  it('names the host and the cause when it cannot connect', async () => {
    const transport = new HttpTransport();
    try {
      await assert.rejects(
        transport.send({ method: 'GET', url: new URL('http://127.0.0.1:1/v2/') }),
        (e: unknown) => e instanceof Error && /^Cannot reach 127\.0\.0\.1:1: .*ECONNREFUSED/.test(e.message),
      );
    } finally {
      transport.close();
    }
  });

  it('says in one line that a plain-HTTP server was asked for HTTPS, and to use --plain-http', async () => {
    const plain = await serve((_req, res) => res.end('{}'));
    const transport = new HttpTransport();
    try {
      await assert.rejects(
        transport.send({ method: 'GET', url: new URL(plain.url.replace('http:', 'https:') + '/v2/') }),
        (e: unknown) =>
          e instanceof Error &&
          !e.message.includes('\n') &&
          /TLS handshake with 127\.0\.0\.1:\d+ failed: the server answers plain HTTP, not HTTPS \(use --plain-http\)$/.test(
            e.message,
          ),
      );
    } finally {
      transport.close();
    }
  });

  // With sendfile (when the addon is built) and through buffers (AIRLOCK_SENDFILE=0).
  for (const sendfile of kernelSendEnabled({}) ? ['sendfile', 'buffers'] : ['buffers']) {
    describe(`a file stream as the body (${sendfile})`, () => {
      let dir: string;
      let path: string;
      const bytes = randomBytes(5 * 1024 * 1024 + 333);
      const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
      const saved = process.env.AIRLOCK_SENDFILE;
      before(async () => {
        if (sendfile === 'buffers') process.env.AIRLOCK_SENDFILE = '0';
        dir = await mkdtemp(join(tmpdir(), 'airlock-transport-'));
        path = join(dir, 'blob');
        await writeFile(path, bytes);
      });
      after(async () => {
        if (saved === undefined) delete process.env.AIRLOCK_SENDFILE;
        else process.env.AIRLOCK_SENDFILE = saved;
        await rm(dir, { recursive: true, force: true });
      });

      it('sends the file, with and without a Content-Length, and again on a second request', async () => {
        const got: string[] = [];
        const { url } = await serve((req, res) => {
          const hash = createHash('sha256');
          req.on('data', (chunk: Buffer) => hash.update(chunk));
          req.on('end', () => {
            got.push(hash.digest('hex'));
            res.writeHead(202, { 'content-length': 0 });
            res.end();
          });
        });
        const transport = new HttpTransport();
        try {
          for (const headers of [
            { 'content-length': String(bytes.byteLength) },
            {},
            { 'content-length': String(bytes.byteLength) },
          ]) {
            const res = await transport.send({
              method: 'PATCH',
              url: new URL(`${url}/upload`),
              headers,
              body: () => fileStream(path),
            });
            assert.equal(res.status, 202);
            await res.drain();
          }
          assert.deepEqual(got, [sha(bytes), sha(bytes), sha(bytes)]);
        } finally {
          transport.close();
        }
      });

      it('fails, and does not hang, when the file is shorter than the Content-Length or the server goes away', async () => {
        const { url } = await serve((req, res) => {
          if (req.url === '/drop') {
            req.once('data', () => req.socket.destroy());
            return;
          }
          req.resume();
          req.on('end', () => res.end());
        });
        const transport = new HttpTransport();
        try {
          await assert.rejects(
            transport.send({
              method: 'PATCH',
              url: new URL(`${url}/short`),
              headers: { 'content-length': String(bytes.byteLength + 10) },
              body: () => fileStream(path),
            }),
            (error: ClientError) =>
              error.code === 'INVALID_INPUT' &&
              error.message.startsWith(
                `Cannot send the body to ${new URL(url).host}: ${path} ended 10 bytes before`,
              ),
          );
          // A file that is gone by the time the request is sent: a one-line error, and no crash from the
          // stream's own failed open (an unheard 'error' event would end the process).
          await assert.rejects(
            transport.send({
              method: 'PATCH',
              url: new URL(`${url}/missing`),
              headers: { 'content-length': '10' },
              body: () => fileStream(join(dir, 'missing')),
            }),
            (error: ClientError) => error.code === 'INVALID_INPUT' && /ENOENT/.test(error.message),
          );
          await new Promise((resolve) => setTimeout(resolve, 50));
          await assert.rejects(
            transport.send({
              method: 'PATCH',
              url: new URL(`${url}/drop`),
              headers: { 'content-length': String(bytes.byteLength) },
              body: () => fileStream(path),
            }),
            (error: ClientError) =>
              error.code === 'NETWORK' && /socket hang up|ECONNRESET|EPIPE/.test(error.message),
          );
        } finally {
          transport.close();
        }
      });
    });
  }
});
