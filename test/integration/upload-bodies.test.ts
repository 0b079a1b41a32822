import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { stat } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { startTestRegistry, type TestRegistry } from '../helpers/in-process.js';
import { blob } from '../helpers/oci-fixtures.js';
import { TestClient, errorCode } from '../helpers/registry-client.js';

const KIB = 1024;
const MIB = 1024 * KIB;

/** A bare connection: what was answered, and whether (and when) the server closed it. */
interface Raw {
  readonly socket: Socket;
  text(): string;
  /** Resolves with what was answered once the server closed the connection; rejects after `ms`. */
  closedWithin(ms: number): Promise<string>;
}

function rawConnection(base: string, first: string | Buffer): Raw {
  const url = new URL(base);
  const socket = connect(Number(url.port), url.hostname);
  let answer = '';
  socket.on('data', (chunk: Buffer) => (answer += chunk.toString('latin1')));
  socket.on('error', () => undefined);
  const closed = new Promise<void>((resolve) => socket.on('close', () => resolve()));
  socket.write(first);
  return {
    socket,
    text: () => answer,
    closedWithin(ms) {
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          socket.destroy();
          reject(
            new Error(`The server did not close the connection within ${ms} ms; it answered "${answer}"`),
          );
        }, ms);
      });
      return Promise.race([closed.then(() => answer), late]).finally(() => clearTimeout(timer));
    },
  };
}

async function newUpload(c: TestClient, repo: string): Promise<{ location: string; id: string }> {
  const start = await c.request('POST', `/v2/${repo}/blobs/uploads/`);
  assert.equal(start.status, 202);
  const location = start.headers.get('location') ?? '';
  return { location, id: location.split('/').at(-1) ?? '' };
}

async function patch(c: TestClient, location: string, bytes: Buffer, from: number): Promise<Response> {
  return c.request('PATCH', location, {
    body: bytes,
    headers: {
      'content-type': 'application/octet-stream',
      'content-range': `${from}-${from + bytes.byteLength - 1}`,
    },
  });
}

async function statusRange(c: TestClient, location: string): Promise<string | null> {
  const res = await c.request('GET', location);
  assert.equal(res.status, 204);
  return res.headers.get('range');
}

/** The head of a PATCH whose body is `length` bytes from `from`. */
function patchHead(base: string, location: string, from: number, length: number): string {
  return (
    `PATCH ${location} HTTP/1.1\r\nHost: ${new URL(base).host}\r\n` +
    `Content-Type: application/octet-stream\r\nContent-Length: ${length}\r\n` +
    `Content-Range: ${from}-${from + length - 1}\r\n\r\n`
  );
}

/**
 * Waits until the registry has let go of every chunk: the connection of a stalled one closes first, then
 * the writes already under way settle and its bytes are cut off the file, a moment later.
 */
async function uploadsSettled(reg: TestRegistry): Promise<void> {
  const deadline = Date.now() + 5000;
  while (reg.registry.activeUploads > 0 && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  assert.equal(reg.registry.activeUploads, 0, 'the stalled chunk was let go');
}

/** Sends the rest of `content` from `from` and closes the upload; asserts the blob is whole. */
async function finish(c: TestClient, repo: string, location: string, content: Buffer, from: number) {
  const rest = await patch(c, location, content.subarray(from), from);
  assert.equal(rest.status, 202, await rest.text());
  assert.equal(rest.headers.get('range'), `0-${content.byteLength - 1}`);
  const whole = blob(content);
  const put = await c.request('PUT', `${location}?digest=${whole.digest}`);
  assert.equal(put.status, 201, await put.text());
  assert.equal(put.headers.get('docker-content-digest'), whole.digest);
  const get = await c.request('GET', `/v2/${repo}/blobs/${whole.digest}`);
  assert.ok(Buffer.from(await get.arrayBuffer()).equals(content), 'the blob is byte for byte');
}

describe('an upload chunk whose body stops arriving', () => {
  let reg: TestRegistry;
  let c: TestClient;
  before(async () => {
    reg = await startTestRegistry({}, { bodyIdleTimeoutMs: 300 });
    c = new TestClient(reg.url);
  });
  after(async () => reg.dispose());

  it('closes the connection, takes the chunk back and frees the session for a resumed PATCH and PUT', async () => {
    const content = randomBytes(MIB + 64 * KIB);
    const { location } = await newUpload(c, 'p/stall');
    const first = await patch(c, location, content.subarray(0, 64 * KIB), 0);
    assert.equal(first.status, 202);
    // 100 KiB of a 1 MiB chunk, then silence on a connection the client keeps open.
    const stalled = rawConnection(
      reg.url,
      Buffer.concat([
        Buffer.from(patchHead(reg.url, location, 64 * KIB, MIB)),
        content.subarray(64 * KIB, 164 * KIB),
      ]),
    );
    assert.equal(await stalled.closedWithin(5000), '', 'closed by the server, with no answer');
    await uploadsSettled(reg);
    assert.equal(await statusRange(c, location), `0-${64 * KIB - 1}`, 'only the first chunk counts');
    await finish(c, 'p/stall', location, content, 64 * KIB);
  });

  it('reports only committed bytes while a chunk is in flight, then lets the session go on', async () => {
    const content = randomBytes(9 * MIB);
    const { location, id } = await newUpload(c, 'p/inflight');
    assert.equal((await patch(c, location, content.subarray(0, 64 * KIB), 0)).status, 202);
    // 5 MiB of an 8 MiB chunk: most of it reaches the upload's file before the client goes quiet.
    const stalled = rawConnection(
      reg.url,
      Buffer.concat([
        Buffer.from(patchHead(reg.url, location, 64 * KIB, 8 * MIB)),
        content.subarray(64 * KIB, 64 * KIB + 5 * MIB),
      ]),
    );
    const file = join(reg.dataDir, 'uploads', id);
    const deadline = Date.now() + 5000;
    while ((await stat(file)).size < 64 * KIB + MIB && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    assert.ok((await stat(file)).size >= 64 * KIB + MIB, 'the chunk in flight reached the file');
    assert.equal(await statusRange(c, location), `0-${64 * KIB - 1}`, 'the chunk in flight is not counted');
    // The session is busy while the chunk is in flight...
    const busy = await patch(c, location, content.subarray(64 * KIB, 65 * KIB), 64 * KIB);
    assert.equal(busy.status, 416);
    assert.equal(await errorCode(busy), 'BLOB_UPLOAD_INVALID');
    // ...and free once the server gave up on it.
    await stalled.closedWithin(5000);
    await uploadsSettled(reg);
    assert.equal(await statusRange(c, location), `0-${64 * KIB - 1}`);
    assert.equal((await stat(file)).size, 64 * KIB, 'the partial chunk was cut off the file');
    await finish(c, 'p/inflight', location, content, 64 * KIB);
  });
});

describe('closing an upload with a digest that cannot be used', () => {
  let reg: TestRegistry;
  let c: TestClient;
  let location = '';
  before(async () => {
    reg = await startTestRegistry();
    c = new TestClient(reg.url);
    ({ location } = await newUpload(c, 'p/refused'));
    assert.equal((await patch(c, location, Buffer.from('abc'), 0)).status, 202);
  });
  after(async () => reg.dispose());

  const host = (): string => new URL(reg.url).host;
  /** A request head announcing 10 MiB and waiting for 100 Continue before it sends any. */
  const waitingHead = (method: string, target: string): string =>
    `${method} ${target} HTTP/1.1\r\nHost: ${host()}\r\nContent-Type: application/octet-stream\r\n` +
    `Content-Length: ${10 * MIB}\r\nExpect: 100-continue\r\n\r\n`;

  for (const [what, query] of [
    ['a malformed digest', '?digest=sha256:zz'],
    ['no digest', ''],
    ['an empty digest', '?digest='],
  ] as const) {
    it(`answers a PUT with ${what} and Expect: 100-continue with 400 DIGEST_INVALID before any body`, async () => {
      const exchange = rawConnection(reg.url, waitingHead('PUT', `${location}${query}`));
      const answer = await exchange.closedWithin(5000);
      assert.match(answer, /^HTTP\/1\.1 400 /);
      assert.doesNotMatch(answer, /100 Continue/);
      assert.match(answer, /"code":"DIGEST_INVALID"/);
      assert.match(answer, /connection: close\r\n/i);
      assert.equal(await statusRange(c, location), '0-2', 'the session is unchanged');
    });
  }

  it('answers a monolithic POST with a malformed digest the same way', async () => {
    const exchange = rawConnection(
      reg.url,
      waitingHead('POST', '/v2/p/refused/blobs/uploads/?digest=sha256:zz'),
    );
    const answer = await exchange.closedWithin(5000);
    assert.match(answer, /^HTTP\/1\.1 400 /);
    assert.doesNotMatch(answer, /100 Continue/);
    assert.match(answer, /"code":"DIGEST_INVALID"/);
  });

  it('opens a session for a POST with a body but no digest, ignoring the body as distribution does', async () => {
    const res = await c.request('POST', '/v2/p/lenient/blobs/uploads/', {
      body: Buffer.from('ignored'),
      headers: { 'content-type': 'application/octet-stream' },
    });
    assert.equal(res.status, 202);
    const opened = res.headers.get('location') ?? '';
    assert.equal(await statusRange(c, opened), '0-0', 'nothing of the body was taken');
  });

  it('answers a PUT to an unknown session with 404 before any body', async () => {
    const digest = blob('x').digest;
    const exchange = rawConnection(
      reg.url,
      waitingHead('PUT', `/v2/p/refused/blobs/uploads/nope?digest=${digest}`),
    );
    const answer = await exchange.closedWithin(5000);
    assert.match(answer, /^HTTP\/1\.1 404 /);
    assert.doesNotMatch(answer, /100 Continue/);
    assert.match(answer, /"code":"BLOB_UPLOAD_UNKNOWN"/);
  });

  it('closes the connection after refusing a PUT whose body is sent without Expect, and keeps the session', async () => {
    const body = randomBytes(MIB);
    const exchange = rawConnection(
      reg.url,
      Buffer.concat([
        Buffer.from(
          `PUT ${location}?digest=sha256:zz HTTP/1.1\r\nHost: ${host()}\r\n` +
            `Content-Type: application/octet-stream\r\nContent-Length: ${body.byteLength}\r\n\r\n`,
        ),
        body,
      ]),
    );
    const answer = await exchange.closedWithin(5000);
    // One answer: the unread body was never taken for another request.
    assert.equal(answer.match(/HTTP\/1\.1 /g)?.length, 1, answer);
    assert.match(answer, /^HTTP\/1\.1 400 /);
    assert.match(answer, /connection: close\r\n/i);
    assert.equal(await statusRange(c, location), '0-2');
  });

  it('leaves the session usable after the refusals', async () => {
    await finish(c, 'p/refused', location, Buffer.from('abcdef'), 3);
  });
});
