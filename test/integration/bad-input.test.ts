import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, readdir, rm, stat } from 'node:fs/promises';
import { request } from 'node:http';
import { connect } from 'node:net';
import { join } from 'node:path';
import { startTestRegistry, type TestRegistry } from '../helpers/in-process.js';
import { image, blob } from '../helpers/oci-fixtures.js';
import { TestClient, errorCode } from '../helpers/registry-client.js';
import { MediaType, digestOf } from '../../src/oci/index.js';

/** Every file under a folder with its size, to prove a rejected request changed nothing on disk. */
async function snapshot(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (d: string): Promise<void> => {
    for (const entry of await readdir(d, { withFileTypes: true })) {
      const path = join(d, entry.name);
      if (entry.isDirectory()) await walk(path);
      else if (!entry.name.startsWith('airlock.db'))
        out.push(`${path.slice(dir.length)}:${(await stat(path)).size}`);
    }
  };
  await walk(dir);
  return out.sort();
}

/** Sends a request with the path exactly as written (fetch would normalise "/../" away). */
function rawRequest(
  base: string,
  method: string,
  path: string,
  body?: string | Buffer,
  headers: Record<string, string> = {},
): Promise<Response> {
  return new Promise((resolve, reject) => {
    const url = new URL(base);
    const req = request({ host: url.hostname, port: url.port, path, method, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => {
        const h = new Headers();
        for (const [k, v] of Object.entries(res.headers)) if (typeof v === 'string') h.set(k, v);
        resolve(
          new Response(res.statusCode === 204 ? null : Buffer.concat(chunks), {
            status: res.statusCode ?? 0,
            headers: h,
          }),
        );
      });
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** Writes bytes on a bare connection and returns everything answered until the server closes it. */
async function rawExchange(base: string, bytes: string | Buffer): Promise<string> {
  const url = new URL(base);
  const socket = connect(Number(url.port), url.hostname);
  let answer = '';
  socket.on('data', (chunk: Buffer) => (answer += chunk.toString('latin1')));
  const closed = new Promise<void>((resolve) => socket.on('close', () => resolve()));
  socket.write(bytes);
  await closed;
  return answer;
}

interface BadRequest {
  readonly what: string;
  readonly method: string;
  readonly path: string | (() => string);
  readonly body?: string | Buffer;
  readonly headers?: Record<string, string>;
  readonly status: number;
  readonly code: string;
  /** The Allow header a 405 must carry. */
  readonly allow?: string;
}

describe('malformed requests', () => {
  let reg: TestRegistry;
  let c: TestClient;
  const img = image();
  const okBlob = blob('present');
  let uploadLocation = '';

  before(async () => {
    reg = await startTestRegistry();
    c = new TestClient(reg.url);
    await c.pushImage('good/repo', img, 'v1');
    await c.pushBlob('good/repo', okBlob);
    const start = await c.request('POST', '/v2/good/repo/blobs/uploads/');
    uploadLocation = start.headers.get('location') ?? '';
    await c.request('PATCH', uploadLocation, { body: 'abc', headers: { 'content-range': '0-2' } });
  });
  after(async () => reg.dispose());

  const manifestWith = (body: unknown): string => JSON.stringify(body);
  const cases: BadRequest[] = [
    {
      what: 'a name with ".." components',
      method: 'GET',
      path: '/v2/a/../x/tags/list',
      status: 400,
      code: 'NAME_INVALID',
    },
    {
      what: 'a name with upper case',
      method: 'GET',
      path: '/v2/Good/Repo/tags/list',
      status: 400,
      code: 'NAME_INVALID',
    },
    {
      what: 'a name with an empty component',
      method: 'POST',
      path: '/v2/good//repo/blobs/uploads/',
      status: 400,
      code: 'NAME_INVALID',
    },
    {
      what: 'a name that is too long',
      method: 'GET',
      path: `/v2/${'a'.repeat(256)}/tags/list`,
      status: 400,
      code: 'NAME_INVALID',
    },
    {
      what: 'bad percent-encoding in a name',
      method: 'GET',
      path: '/v2/a%zz/tags/list',
      status: 400,
      code: 'NAME_INVALID',
    },
    {
      what: 'a malformed blob digest',
      method: 'GET',
      path: '/v2/good/repo/blobs/sha256:xyz',
      status: 400,
      code: 'DIGEST_INVALID',
    },
    {
      what: 'an unsupported digest algorithm',
      method: 'GET',
      path: '/v2/good/repo/blobs/md5:d41d8cd98f00b204e9800998ecf8427e',
      status: 400,
      code: 'DIGEST_INVALID',
    },
    {
      what: 'a monolithic upload whose bytes do not match the digest',
      method: 'POST',
      path: `/v2/good/repo/blobs/uploads/?digest=${digestOf('x')}`,
      body: 'not x',
      status: 400,
      code: 'DIGEST_INVALID',
    },
    {
      what: 'a monolithic upload with a malformed digest',
      method: 'POST',
      path: '/v2/good/repo/blobs/uploads/?digest=sha256:short',
      body: 'x',
      status: 400,
      code: 'DIGEST_INVALID',
    },
    {
      what: 'a chunk that does not start where the upload ends',
      method: 'PATCH',
      path: () => uploadLocation,
      body: 'zz',
      headers: { 'content-range': '10-11' },
      status: 416,
      code: 'BLOB_UPLOAD_INVALID',
    },
    {
      what: 'a Content-Range that is not start-end',
      method: 'PATCH',
      path: () => uploadLocation,
      body: 'zz',
      headers: { 'content-range': 'garbage' },
      status: 416,
      code: 'BLOB_UPLOAD_INVALID',
    },
    {
      what: 'a Content-Range whose length differs from Content-Length',
      method: 'PATCH',
      path: () => uploadLocation,
      body: 'zz',
      headers: { 'content-range': '3-9' },
      status: 416,
      code: 'BLOB_UPLOAD_INVALID',
    },
    {
      what: 'an unknown upload id',
      method: 'PATCH',
      path: '/v2/good/repo/blobs/uploads/doesnotexist',
      body: 'x',
      status: 404,
      code: 'BLOB_UPLOAD_UNKNOWN',
    },
    {
      what: 'an upload id that tries to escape the folder',
      method: 'GET',
      path: '/v2/good/repo/blobs/uploads/..%2F..%2Fairlock.db',
      status: 404,
      code: 'BLOB_UPLOAD_UNKNOWN',
    },
    {
      what: 'closing an upload without a digest',
      method: 'PUT',
      path: () => uploadLocation,
      status: 400,
      code: 'DIGEST_INVALID',
    },
    {
      what: 'a manifest that is not JSON',
      method: 'PUT',
      path: '/v2/good/repo/manifests/bad',
      body: '{not json',
      headers: { 'content-type': MediaType.OciManifest },
      status: 400,
      code: 'MANIFEST_INVALID',
    },
    {
      what: 'a manifest whose media type disagrees with Content-Type',
      method: 'PUT',
      path: '/v2/good/repo/manifests/bad',
      body: img.manifest,
      headers: { 'content-type': MediaType.DockerManifest },
      status: 400,
      code: 'MANIFEST_INVALID',
    },
    {
      what: 'a schema 1 manifest',
      method: 'PUT',
      path: '/v2/good/repo/manifests/bad',
      body: manifestWith({ schemaVersion: 1, name: 'x' }),
      headers: { 'content-type': 'application/vnd.docker.distribution.manifest.v1+prettyjws' },
      status: 400,
      code: 'MANIFEST_INVALID',
    },
    {
      what: 'a manifest with a malformed layer digest',
      method: 'PUT',
      path: '/v2/good/repo/manifests/bad',
      body: manifestWith({
        schemaVersion: 2,
        mediaType: MediaType.OciManifest,
        config: { mediaType: MediaType.OciConfig, digest: img.config.digest, size: img.config.bytes.length },
        layers: [{ mediaType: MediaType.OciLayerGzip, digest: 'sha256:12', size: 1 }],
      }),
      headers: { 'content-type': MediaType.OciManifest },
      status: 400,
      code: 'MANIFEST_INVALID',
    },
    {
      what: 'a manifest whose layer size disagrees with the stored blob',
      method: 'PUT',
      path: '/v2/good/repo/manifests/bad',
      body: manifestWith({
        schemaVersion: 2,
        mediaType: MediaType.OciManifest,
        config: {
          mediaType: MediaType.OciConfig,
          digest: img.config.digest,
          size: img.config.bytes.length + 1,
        },
        layers: [],
      }),
      headers: { 'content-type': MediaType.OciManifest },
      status: 400,
      code: 'MANIFEST_INVALID',
    },
    {
      what: 'a manifest whose config is unknown',
      method: 'PUT',
      path: '/v2/good/repo/manifests/bad',
      body: manifestWith({
        schemaVersion: 2,
        mediaType: MediaType.OciManifest,
        config: { mediaType: MediaType.OciConfig, digest: digestOf('nope'), size: 4 },
        layers: [],
      }),
      headers: { 'content-type': MediaType.OciManifest },
      status: 400,
      code: 'MANIFEST_BLOB_UNKNOWN',
    },
    {
      what: 'a manifest over 4 MiB',
      method: 'PUT',
      path: '/v2/good/repo/manifests/big',
      body: Buffer.alloc(4 * 1024 * 1024 + 1, 32),
      headers: { 'content-type': MediaType.OciManifest },
      status: 413,
      code: 'MANIFEST_INVALID',
    },
    {
      what: 'a manifest PUT under an invalid tag',
      method: 'PUT',
      path: '/v2/good/repo/manifests/-bad-tag',
      body: img.manifest,
      headers: { 'content-type': MediaType.OciManifest },
      status: 400,
      code: 'MANIFEST_INVALID',
    },
    {
      what: 'a manifest PUT by a digest that does not match',
      method: 'PUT',
      path: `/v2/good/repo/manifests/${digestOf('no')}`,
      body: img.manifest,
      headers: { 'content-type': MediaType.OciManifest },
      status: 400,
      code: 'DIGEST_INVALID',
    },
    {
      what: 'an unknown manifest',
      method: 'GET',
      path: '/v2/good/repo/manifests/nope',
      status: 404,
      code: 'MANIFEST_UNKNOWN',
    },
    {
      what: 'an unknown manifest digest',
      method: 'GET',
      path: `/v2/good/repo/manifests/${digestOf('nope')}`,
      status: 404,
      code: 'MANIFEST_UNKNOWN',
    },
    {
      what: 'a method the route does not have',
      method: 'POST',
      path: '/v2/good/repo/manifests/v1',
      status: 405,
      code: 'UNSUPPORTED',
      allow: 'GET, HEAD, PUT, DELETE',
    },
    {
      what: 'a method the version check does not have',
      method: 'DELETE',
      path: '/v2/',
      status: 405,
      code: 'UNSUPPORTED',
      allow: 'GET, HEAD',
    },
    {
      what: 'a negative page size',
      method: 'GET',
      path: '/v2/good/repo/tags/list?n=-1',
      status: 400,
      code: 'UNSUPPORTED',
    },
    {
      what: 'a path that is not part of the API',
      method: 'GET',
      path: '/v2/good/repo/nothing',
      status: 404,
      code: 'NAME_UNKNOWN',
    },
  ];

  for (const bad of cases) {
    it(`answers ${bad.what} with ${bad.status} ${bad.code} and changes nothing stored`, async () => {
      const before = await snapshot(reg.dataDir);
      const tagsBefore = await c.json<unknown>('/v2/good/repo/tags/list');
      const path = typeof bad.path === 'function' ? bad.path() : bad.path;
      const res = await rawRequest(reg.url, bad.method, path, bad.body, bad.headers);
      assert.equal(res.status, bad.status);
      if (bad.allow !== undefined)
        assert.equal(res.headers.get('allow'), bad.allow, 'a 405 lists what is allowed');
      assert.equal(await errorCode(res), bad.code);
      assert.deepEqual(await snapshot(reg.dataDir), before);
      assert.deepEqual(await c.json<unknown>('/v2/good/repo/tags/list'), tagsBefore);
      const still = await c.request('GET', `/v2/good/repo/blobs/${okBlob.digest}`);
      assert.equal(await still.text(), 'present');
    });
  }

  it('keeps the open upload intact after the rejected chunks', async () => {
    const status = await c.request('GET', uploadLocation);
    assert.equal(status.status, 204);
    assert.equal(status.headers.get('range'), '0-2');
  });

  it('answers a chunked PATCH whose framing breaks mid-body with 400 and keeps the upload as it was', async () => {
    const answer = await rawExchange(
      reg.url,
      `PATCH ${uploadLocation} HTTP/1.1\r\nHost: ${new URL(reg.url).host}\r\n` +
        'Content-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\nZZ\r\n',
    );
    assert.match(answer, /^HTTP\/1\.1 400 /);
    assert.match(answer, /"code":"UNSUPPORTED"/);
    assert.match(answer, /Malformed chunk size/);
    const status = await c.request('GET', uploadLocation);
    assert.equal(status.status, 204);
    assert.equal(status.headers.get('range'), '0-2');
  });

  it('answers a TLS handshake on the plain-HTTP port with 400 at once, as Go clients expect before they retry over HTTP', async () => {
    const answer = await rawExchange(
      reg.url,
      Buffer.from([0x16, 0x03, 0x01, 0x00, 0xa5, 0x01, 0x00, 0x00, 0xa1, 0x03, 0x03]),
    );
    assert.match(answer, /^HTTP\/1\.1 400 /);
  });

  it('answers an unexpected storage failure with a generic 500 that leaks no internals', async () => {
    const own = await startTestRegistry();
    const client = new TestClient(own.url);
    const broken = image();
    await client.pushImage('x/broken', broken, 'v1');
    await own.close();
    // Replace the manifest's bytes by a folder: reading it fails in a way no handler expects.
    const hex = broken.digest.slice('sha256:'.length);
    const file = join(own.dataDir, 'blobs', 'sha256', hex.slice(0, 2), hex);
    await rm(file);
    await mkdir(file);
    const again = await startTestRegistry({ data: own.dataDir });
    try {
      const res = await new TestClient(again.url).request('GET', '/v2/x/broken/manifests/v1');
      assert.equal(res.status, 500);
      const text = await res.text();
      assert.match(text, /"code":"UNKNOWN"/);
      assert.doesNotMatch(text, /EISDIR|\/blobs\/|at .*\.js/);
    } finally {
      await again.dispose();
    }
  });
});
