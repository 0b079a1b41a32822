import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startTestRegistry, type TestRegistry } from '../helpers/in-process.js';
import { blob } from '../helpers/oci-fixtures.js';
import { TestClient, errorCode } from '../helpers/registry-client.js';
import { digestOf } from '../../src/oci/index.js';

describe('blob API', () => {
  let reg: TestRegistry;
  let c: TestClient;
  before(async () => {
    reg = await startTestRegistry();
    c = new TestClient(reg.url);
  });
  after(async () => reg.dispose());

  it('GET /v2/ answers 200 with the API version header', async () => {
    const res = await c.request('GET', '/v2/');
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('docker-distribution-api-version'), 'registry/2.0');
    assert.deepEqual(await res.json(), {});
  });

  it('stores a monolithic POST ?digest= upload and serves it with HEAD, GET and Range', async () => {
    const b = blob('0123456789');
    const res = await c.request('POST', `/v2/p/r/img/blobs/uploads/?digest=${b.digest}`, { body: b.bytes });
    assert.equal(res.status, 201);
    assert.equal(res.headers.get('location'), `/v2/p/r/img/blobs/${b.digest}`);
    assert.equal(res.headers.get('docker-content-digest'), b.digest);
    const head = await c.request('HEAD', `/v2/p/r/img/blobs/${b.digest}`);
    assert.equal(head.status, 200);
    assert.equal(head.headers.get('content-length'), '10');
    const get = await c.request('GET', `/v2/p/r/img/blobs/${b.digest}`);
    assert.equal(await get.text(), '0123456789');
    const range = await c.request('GET', `/v2/p/r/img/blobs/${b.digest}`, {
      headers: { range: 'bytes=2-4' },
    });
    assert.equal(range.status, 206);
    assert.equal(range.headers.get('content-range'), 'bytes 2-4/10');
    assert.equal(await range.text(), '234');
    const suffix = await c.request('GET', `/v2/p/r/img/blobs/${b.digest}`, {
      headers: { range: 'bytes=-3' },
    });
    assert.equal(await suffix.text(), '789');
    const outside = await c.request('GET', `/v2/p/r/img/blobs/${b.digest}`, {
      headers: { range: 'bytes=20-30' },
    });
    assert.equal(outside.status, 416);
    assert.equal(outside.headers.get('content-range'), 'bytes */10', 'a 416 tells the length');
    await outside.arrayBuffer();
    // RFC 9110: another unit is ignored, several ranges may be; spaces after "bytes=" are allowed.
    for (const [header, status, text] of [
      ['items=0-3', 200, '0123456789'],
      ['bytes=0-1,5-6', 200, '0123456789'],
      ['bytes= 3-5', 206, '345'],
      ['bytes=5-', 206, '56789'],
    ] as const) {
      const res = await c.request('GET', `/v2/p/r/img/blobs/${b.digest}`, { headers: { range: header } });
      assert.equal(res.status, status, header);
      assert.equal(await res.text(), text, header);
    }
    for (const header of ['bytes=abc', 'bytes=5-2', 'bytes=-0']) {
      const res = await c.request('GET', `/v2/p/r/img/blobs/${b.digest}`, { headers: { range: header } });
      assert.equal(res.status, 416, header);
      assert.equal(res.headers.get('content-range'), 'bytes */10', header);
      await res.arrayBuffer();
    }
  });

  it('answers 304 to If-None-Match with the digest, and lets caches keep blobs', async () => {
    const b = blob('cache me');
    await c.pushBlob('p/cache', b);
    const path = `/v2/p/cache/blobs/${b.digest}`;
    const get = await c.request('GET', path);
    assert.equal(get.headers.get('etag'), `"${b.digest}"`);
    assert.equal(get.headers.get('cache-control'), 'max-age=31536000');
    await get.arrayBuffer();
    for (const method of ['GET', 'HEAD']) {
      for (const tag of [`"${b.digest}"`, `W/"${b.digest}"`, `"other", "${b.digest}"`, '*']) {
        const res = await c.request(method, path, { headers: { 'if-none-match': tag } });
        assert.equal(res.status, 304, `${method} ${tag}`);
        assert.equal(await res.text(), '');
      }
    }
    const other = await c.request('GET', path, { headers: { 'if-none-match': `"${digestOf('x')}"` } });
    assert.equal(other.status, 200);
    assert.equal(await other.text(), 'cache me');
  });

  it('builds a blob from POST, chunked PATCHes with Content-Range and a final PUT', async () => {
    const b = blob('abcdefghij');
    const start = await c.request('POST', '/v2/p/chunked/blobs/uploads/');
    assert.equal(start.status, 202);
    const location = start.headers.get('location') ?? '';
    assert.match(location, /^\/v2\/p\/chunked\/blobs\/uploads\/[A-Za-z0-9_-]+$/);
    assert.ok(start.headers.get('docker-upload-uuid'));
    const p1 = await c.request('PATCH', location, {
      body: b.bytes.subarray(0, 4),
      headers: { 'content-range': '0-3', 'content-type': 'application/octet-stream' },
    });
    assert.equal(p1.status, 202);
    assert.equal(p1.headers.get('range'), '0-3');
    const status = await c.request('GET', location);
    assert.equal(status.status, 204);
    assert.equal(status.headers.get('range'), '0-3');
    const outOfOrder = await c.request('PATCH', location, {
      body: b.bytes.subarray(6),
      headers: { 'content-range': '6-9' },
    });
    assert.equal(outOfOrder.status, 416);
    assert.equal(await errorCode(outOfOrder), 'BLOB_UPLOAD_INVALID');
    const p2 = await c.request('PATCH', location, {
      body: b.bytes.subarray(4, 8),
      headers: { 'content-range': '4-7' },
    });
    assert.equal(p2.headers.get('range'), '0-7');
    const put = await c.request('PUT', `${location}?digest=${b.digest}`, { body: b.bytes.subarray(8) });
    assert.equal(put.status, 201);
    assert.equal(await (await c.request('GET', `/v2/p/chunked/blobs/${b.digest}`)).text(), 'abcdefghij');
    const gone = await c.request('GET', location);
    assert.equal(gone.status, 404);
    assert.equal(await errorCode(gone), 'BLOB_UPLOAD_UNKNOWN');
  });

  it('accepts a streamed PATCH without Content-Range', async () => {
    const b = blob('streamed-bytes');
    const start = await c.request('POST', '/v2/p/stream/blobs/uploads/');
    const location = start.headers.get('location') ?? '';
    const patch = await c.request('PATCH', location, { body: b.bytes });
    assert.equal(patch.status, 202);
    const put = await c.request('PUT', `${location}?digest=${b.digest}`);
    assert.equal(put.status, 201);
  });

  it('rejects a final PUT whose digest does not match and keeps no blob', async () => {
    const start = await c.request('POST', '/v2/p/bad/blobs/uploads/');
    const location = start.headers.get('location') ?? '';
    const wrong = digestOf('something else');
    const put = await c.request('PUT', `${location}?digest=${wrong}`, { body: 'actual content' });
    assert.equal(put.status, 400);
    assert.equal(await errorCode(put), 'DIGEST_INVALID');
    const head = await c.request('HEAD', `/v2/p/bad/blobs/${wrong}`);
    assert.equal(head.status, 404);
    assert.equal((await c.request('GET', location)).status, 404);
  });

  it('refuses a final PUT with a malformed digest without touching the session, so a retry succeeds', async () => {
    const b = blob('0123456789');
    const start = await c.request('POST', '/v2/p/retry/blobs/uploads/');
    const location = start.headers.get('location') ?? '';
    const first = await c.request('PATCH', location, { body: b.bytes.subarray(0, 4) });
    assert.equal(first.status, 202);
    const hex = b.digest.slice('sha256:'.length);
    for (const digest of ['sha256:BAD', `sha256:${hex.toUpperCase()}`, `blake3:${hex}`]) {
      const put = await c.request('PUT', `${location}?digest=${digest}`, { body: b.bytes.subarray(4) });
      assert.equal(put.status, 400, digest);
      assert.equal(await errorCode(put), 'DIGEST_INVALID', digest);
      const status = await c.request('GET', location);
      assert.equal(status.status, 204, digest);
      assert.equal(status.headers.get('range'), '0-3', `${digest}: the final chunk was not appended`);
      assert.equal(status.headers.get('content-length'), null, 'a 204 has no Content-Length');
    }
    const put = await c.request('PUT', `${location}?digest=${b.digest}`, { body: b.bytes.subarray(4) });
    assert.equal(put.status, 201);
    assert.equal(await (await c.request('GET', `/v2/p/retry/blobs/${b.digest}`)).text(), '0123456789');
  });

  it('cancels an upload with DELETE', async () => {
    const start = await c.request('POST', '/v2/p/cancel/blobs/uploads/');
    const location = start.headers.get('location') ?? '';
    const cancelled = await c.request('DELETE', location);
    assert.equal(cancelled.status, 204);
    assert.equal(cancelled.headers.get('content-length'), null, 'a 204 has no Content-Length');
    const again = await c.request('GET', location);
    assert.equal(again.status, 404);
    assert.equal(await errorCode(again), 'BLOB_UPLOAD_UNKNOWN');
  });

  it('answers BLOB_UPLOAD_UNKNOWN for an upload id of another repository', async () => {
    const start = await c.request('POST', '/v2/p/one/blobs/uploads/');
    const id = (start.headers.get('location') ?? '').split('/').pop() ?? '';
    const res = await c.request('GET', `/v2/p/two/blobs/uploads/${id}`);
    assert.equal(res.status, 404);
    assert.equal(await errorCode(res), 'BLOB_UPLOAD_UNKNOWN');
  });

  it('mounts a blob from another repository with 201, and falls back to a 202 session when it cannot', async () => {
    const b = blob('mount me');
    await c.pushBlob('p/source', b);
    const mounted = await c.request('POST', `/v2/p/target/blobs/uploads/?mount=${b.digest}&from=p/source`);
    assert.equal(mounted.status, 201);
    assert.equal(mounted.headers.get('location'), `/v2/p/target/blobs/${b.digest}`);
    assert.equal((await c.request('HEAD', `/v2/p/target/blobs/${b.digest}`)).status, 200);
    const missing = digestOf('not anywhere');
    const fallback = await c.request('POST', `/v2/p/target/blobs/uploads/?mount=${missing}&from=p/source`);
    assert.equal(fallback.status, 202);
    assert.match(fallback.headers.get('location') ?? '', /\/blobs\/uploads\//);
    const noFrom = await c.request('POST', `/v2/p/target2/blobs/uploads/?mount=${b.digest}`);
    assert.equal(noFrom.status, 202);
    const malformed = await c.request('POST', '/v2/p/target3/blobs/uploads/?mount=sha256:xyz&from=p/source');
    assert.equal(malformed.status, 202, 'a digest that cannot be mounted opens a session too');
    assert.match(malformed.headers.get('location') ?? '', /\/blobs\/uploads\//);
  });

  it('serves a blob only from repositories it was pushed or mounted to', async () => {
    const b = blob('private');
    await c.pushBlob('p/a', b);
    const res = await c.request('GET', `/v2/p/b/blobs/${b.digest}`);
    assert.equal(res.status, 404);
    assert.equal(await errorCode(res), 'BLOB_UNKNOWN');
  });

  it('deletes a blob from a repository with 202, then answers 404', async () => {
    const b = blob('delete me');
    await c.pushBlob('p/del', b);
    assert.equal((await c.request('DELETE', `/v2/p/del/blobs/${b.digest}`)).status, 202);
    assert.equal((await c.request('HEAD', `/v2/p/del/blobs/${b.digest}`)).status, 404);
    const again = await c.request('DELETE', `/v2/p/del/blobs/${b.digest}`);
    assert.equal(again.status, 404);
    assert.equal(await errorCode(again), 'BLOB_UNKNOWN');
  });

  it("ignores containerd's ?ns= parameter", async () => {
    const b = blob('ns');
    await c.pushBlob('p/ns', b);
    assert.equal((await c.request('HEAD', `/v2/p/ns/blobs/${b.digest}?ns=docker.io`)).status, 200);
  });

  it('serves large blobs byte for byte, whole, by ranges across buffer edges, and to concurrent readers', async () => {
    const { randomBytes } = await import('node:crypto');
    // Larger than a set of send buffers (4 x 2 MiB), not a multiple of any buffer or page size.
    const big = blob(randomBytes(19 * 1024 * 1024 + 4321));
    await c.pushBlob('p/large', big);
    const url = `/v2/p/large/blobs/${big.digest}`;
    const whole = await Promise.all(
      [0, 1, 2, 3, 4, 5].map(async () => Buffer.from(await (await c.request('GET', url)).arrayBuffer())),
    );
    for (const bytes of whole) assert.equal(digestOf(bytes), big.digest);
    const mib = 1024 * 1024;
    for (const [start, end] of [
      [2 * mib - 1, 2 * mib],
      [1, 8 * mib + 1],
      [big.bytes.length - 5000, big.bytes.length - 1],
    ] as const) {
      const res = await c.request('GET', url, { headers: { range: `bytes=${start}-${end}` } });
      assert.equal(res.status, 206);
      assert.ok(
        Buffer.from(await res.arrayBuffer()).equals(big.bytes.subarray(start, end + 1)),
        `${start}-${end}`,
      );
    }
  });

  it('sends no more than the recorded size, even if the blob file on disk grew', async () => {
    const grown = blob(Buffer.alloc(600 * 1024, 7));
    await c.pushBlob('p/grown', grown);
    const hex = grown.digest.slice('sha256:'.length);
    const fs = await import('node:fs/promises');
    const path = await import('node:path');
    await fs.appendFile(
      path.join(reg.dataDir, 'blobs', 'sha256', hex.slice(0, 2), hex),
      Buffer.alloc(100_000, 1),
    );
    // Read raw, to the connection's close: an HTTP client would stop at the Content-Length and drop the rest.
    const net = await import('node:net');
    const url = new URL(reg.url);
    const socket = net.connect(Number(url.port), url.hostname);
    socket.end(`GET /v2/p/grown/blobs/${grown.digest} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
    const chunks: Buffer[] = [];
    for await (const chunk of socket) chunks.push(chunk as Buffer);
    const raw = Buffer.concat(chunks);
    const body = raw.subarray(raw.indexOf('\r\n\r\n') + 4);
    const head = raw.subarray(0, raw.indexOf('\r\n\r\n')).toString('latin1');
    assert.match(head, new RegExp(`content-length: ${grown.bytes.length}\r\n`));
    assert.equal(body.length, grown.bytes.length, 'exactly the announced length went out');
    assert.ok(body.equals(grown.bytes));
  });

  it('survives clients that hang up in the middle of a large download, leaking no file handles', async () => {
    const big = blob(Buffer.alloc(32 * 1024 * 1024, 5));
    await c.pushBlob('p/big', big);
    const { request } = await import('node:http');
    const { readdir } = await import('node:fs/promises');
    const fds = async () => (await readdir('/proc/self/fd')).length;
    const before = await fds();
    for (let i = 0; i < 5; i++) {
      await new Promise<void>((resolve) => {
        const req = request(`${reg.url}/v2/p/big/blobs/${big.digest}`, (res) => {
          res.once('data', () => {
            req.destroy();
            resolve();
          });
        });
        req.on('error', () => resolve());
        req.end();
      });
    }
    await new Promise((r) => setTimeout(r, 200));
    const res = await c.request('GET', `/v2/p/big/blobs/${big.digest}`);
    assert.equal(res.status, 200);
    assert.equal((await res.arrayBuffer()).byteLength, big.bytes.length);
    // Released, not at once: a download's last bytes can reach this client (in the same process) before
    // the server has closed its file and the sendfile thread its copies of the descriptors. A leak never
    // comes down.
    const deadline = Date.now() + 3000;
    while ((await fds()) > before + 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    assert.ok((await fds()) <= before + 2, 'file handles were released');
    // Each abandoned download is counted once, as 499, with the bytes it had handed to the socket.
    const metrics = await (await fetch(`${reg.url}/metrics`)).text();
    assert.match(metrics, /^airlock_http_requests_total\{method="GET",route="blobs",status="499"\} 5$/m);
  });

  it('keeps upload sessions across a restart', async () => {
    const own = await startTestRegistry();
    const dataDir = own.dataDir;
    const client = new TestClient(own.url);
    const b = blob('survives restart');
    const start = await client.request('POST', '/v2/p/restart/blobs/uploads/');
    const location = start.headers.get('location') ?? '';
    await client.request('PATCH', location, {
      body: b.bytes.subarray(0, 5),
      headers: { 'content-range': '0-4' },
    });
    await own.close();
    const again = await startTestRegistry({ data: dataDir });
    try {
      const c2 = new TestClient(again.url);
      const status = await c2.request('GET', location);
      assert.equal(status.status, 204);
      assert.equal(status.headers.get('range'), '0-4');
      const put = await c2.request('PUT', `${location}?digest=${b.digest}`, {
        body: b.bytes.subarray(5),
        headers: { 'content-range': `5-${b.bytes.length - 1}` },
      });
      assert.equal(put.status, 201);
    } finally {
      await again.dispose();
    }
  });
});
