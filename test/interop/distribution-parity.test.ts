// The same requests to Airlock and to distribution 2.8 (the reference registry), side by side: where the
// two answer alike, and every place where they do not, with the reason Airlock answers as it does. A
// difference that is not in the table fails the test, and so does a listed one that went away, on
// either side, so that the table stays true.
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { describe, it } from 'node:test';
import { digestOf, MediaType } from '../../src/oci/index.js';
import { startDistributionForTest } from '../helpers/cli.js';
import { startAirlockForTest, TEST_TIMEOUT_MS } from '../helpers/interop.js';
import { blob, image, index, type Blob } from '../helpers/oci-fixtures.js';
import { TestClient } from '../helpers/registry-client.js';

/** What a probe saw: the status, the spec error code if any, then the headers or facts it looks at. */
type Observation = string;

interface Probe {
  readonly what: string;
  /** Runs against a registry, in a repository of its own, and says what came back. */
  run(c: TestClient, repo: string): Promise<Observation>;
  /** Set when the two answer differently: each one's observation and why Airlock's is what it is. */
  readonly differs?: {
    readonly airlock: Observation;
    readonly distribution: Observation;
    readonly why: string;
  };
}

/** "STATUS CODE" of an answer (the first code of a spec error body), and the named headers as k=v. */
async function observe(res: Response, headers: readonly string[] = []): Promise<Observation> {
  const text = await res.text();
  let code = '';
  try {
    code = (JSON.parse(text) as { errors?: Array<{ code: string }> }).errors?.[0]?.code ?? '';
  } catch {
    // not a spec error body
  }
  const shown = headers.map((name) => `${name}=${res.headers.get(name) ?? '-'}`);
  return [String(res.status), code, ...shown].filter((part) => part !== '').join(' ');
}

/**
 * A blob GET with a Range header over node:http, which (unlike fetch) reports a response that breaks
 * off before its declared length as "aborted" instead of failing the test.
 */
function rangeGet(c: TestClient, path: string, range: string): Promise<Observation> {
  return new Promise((resolve, reject) => {
    const req = request(`${c.base}${path}`, { headers: { range } }, (res) => {
      let bytes = 0;
      res.on('data', (chunk: Buffer) => (bytes += chunk.length));
      res.on('aborted', () => resolve('aborted'));
      res.on('error', () => resolve('aborted'));
      res.on('end', () => {
        const contentRange = res.headers['content-range'] ?? '-';
        // An error's body is the registry's own text; only a 2xx body's length is compared.
        const body = (res.statusCode ?? 0) < 300 ? ` bytes=${bytes}` : '';
        resolve(`${res.statusCode} content-range=${contentRange}${body}`);
      });
    });
    req.on('error', reject);
    req.end();
  });
}

/** Opens an upload session; its Location (path and query). */
async function startUpload(c: TestClient, repo: string): Promise<string> {
  const res = await c.request('POST', `/v2/${repo}/blobs/uploads/`);
  await res.arrayBuffer();
  assert.equal(res.status, 202, `POST /v2/${repo}/blobs/uploads/`);
  const location = new URL(res.headers.get('location') ?? '', c.base);
  return location.pathname + location.search;
}

/** `location` with `?digest=` (or `&digest=`) appended. */
function withDigest(location: string, digest: string): string {
  return `${location}${location.includes('?') ? '&' : '?'}digest=${digest}`;
}

/** Uploads a blob the way every registry takes it (POST, then PUT with the body and the digest). */
async function putBlob(c: TestClient, repo: string, b: Blob): Promise<void> {
  const res = await c.request('PUT', withDigest(await startUpload(c, repo), b.digest), { body: b.bytes });
  await res.arrayBuffer();
  assert.equal(res.status, 201, `PUT blob ${b.digest} to ${repo}`);
}

/** Pushes an image's blobs (not its manifest); returns the manifest as a mutable object. */
async function imageBlobs(c: TestClient, repo: string): Promise<{ body: ManifestBody; bytes: Buffer }> {
  const img = image();
  await putBlob(c, repo, img.config);
  for (const layer of img.layers) await putBlob(c, repo, layer);
  return { body: JSON.parse(img.manifest.toString('utf8')) as ManifestBody, bytes: img.manifest };
}

interface ManifestBody {
  schemaVersion: number;
  mediaType?: string;
  config?: { digest: string; size: number };
  layers?: Array<{ digest: string; size: number }>;
}

/** A manifest request that accepts OCI manifests (distribution hides them from others: see below). */
async function manifestAnswer(
  c: TestClient,
  method: string,
  repo: string,
  reference: string,
): Promise<string> {
  const res = await c.request(method, `/v2/${repo}/manifests/${reference}`, {
    headers: { accept: MediaType.OciManifest },
  });
  return observe(res);
}

/** Pushes a whole image under `tag`; returns its manifest's bytes. */
async function pushTagged(c: TestClient, repo: string, tag: string): Promise<Buffer> {
  const { bytes } = await imageBlobs(c, repo);
  const res = await c.pushManifest(repo, tag, bytes, MediaType.OciManifest);
  await res.arrayBuffer();
  assert.equal(res.status, 201, `PUT manifest ${repo}:${tag}`);
  return bytes;
}

/** PUTs a manifest object under `reference` with the given Content-Type (none when undefined). */
async function putManifest(
  c: TestClient,
  repo: string,
  reference: string,
  body: unknown,
  contentType: string | undefined = MediaType.OciManifest,
): Promise<Response> {
  return c.request('PUT', `/v2/${repo}/manifests/${reference}`, {
    // A Buffer, so that fetch adds no Content-Type of its own (it would say text/plain for a string).
    body: Buffer.isBuffer(body) ? body : Buffer.from(typeof body === 'string' ? body : JSON.stringify(body)),
    ...(contentType === undefined ? {} : { headers: { 'content-type': contentType } }),
  });
}

const UNKNOWN = digestOf(Buffer.from('no registry holds this'));
const SIXTEEN = blob('0123456789abcdef');
const ROUTER_404 =
  "distribution's router has no route for the path and answers a plain 404 without the spec's error body";

const probes: Probe[] = [
  // The version check.
  { what: 'GET /v2/', run: async (c) => observe(await c.request('GET', '/v2/')) },
  {
    what: 'POST /v2/',
    run: async (c) => observe(await c.request('POST', '/v2/'), ['allow']),
    differs: {
      airlock: '405 UNSUPPORTED allow=GET, HEAD',
      distribution: '200 allow=-',
      why: 'the version check is defined for GET (and HEAD); distribution answers any method there',
    },
  },

  // Listing.
  { what: 'catalog with n=0', run: async (c) => observe(await c.request('GET', '/v2/_catalog?n=0')) },
  {
    what: 'catalog with n=-1',
    run: async (c) => observe(await c.request('GET', '/v2/_catalog?n=-1')),
    differs: {
      airlock: '400 UNSUPPORTED',
      distribution: '200',
      why: 'a page size must be a number of entries; distribution ignores a malformed n and lists everything',
    },
  },
  {
    what: 'tags of an unknown repository',
    run: async (c) => observe(await c.request('GET', '/v2/parity/none/tags/list')),
  },
  {
    what: 'tags, one per page',
    run: async (c, repo) => {
      await pushTagged(c, repo, 'v1');
      await pushTagged(c, repo, 'v2');
      const res = await c.request('GET', `/v2/${repo}/tags/list?n=1`);
      const link = res.headers.get('link') ?? '';
      const body = (await res.json()) as { tags: string[] };
      return `${res.status} tags=${body.tags.join(',')} next=${/[?&]last=v1\b/.test(link)}`;
    },
    differs: {
      airlock: '200 tags=v1 next=true',
      distribution: '200 tags=v1,v2 next=false',
      why: 'distribution-spec pages tags with n and a Link to the next page; distribution 2.8 lists them all',
    },
  },
  {
    what: 'tags with n=abc',
    run: async (c, repo) => {
      await pushTagged(c, repo, 'v1');
      return observe(await c.request('GET', `/v2/${repo}/tags/list?n=abc`));
    },
    differs: {
      airlock: '400 UNSUPPORTED',
      distribution: '200',
      why: 'a page size must be a number of entries; distribution ignores a malformed n and lists everything',
    },
  },

  // Manifests.
  {
    what: 'a manifest in an unknown repository',
    run: async (c) => observe(await c.request('GET', '/v2/parity/none/manifests/latest')),
  },
  {
    what: 'a manifest by a malformed digest',
    run: async (c, repo) => observe(await c.request('GET', `/v2/${repo}/manifests/sha256:xyz`)),
    differs: {
      airlock: '400 DIGEST_INVALID',
      distribution: '500 UNKNOWN',
      why: "the digest is the client's mistake, so a 4xx with the spec's code; distribution fails inside",
    },
  },
  {
    what: 'a manifest by an unknown sha512 digest',
    run: async (c, repo) =>
      observe(await c.request('GET', `/v2/${repo}/manifests/sha512:${'a'.repeat(128)}`)),
  },
  {
    what: 'a manifest by a tag that is not a valid tag',
    run: async (c, repo) => observe(await c.request('GET', `/v2/${repo}/manifests/-bad`)),
    differs: { airlock: '404 MANIFEST_UNKNOWN', distribution: '404', why: ROUTER_404 },
  },
  {
    what: 'PUT a manifest, then HEAD it',
    run: async (c, repo) => {
      const { bytes } = await imageBlobs(c, repo);
      const put = await c.pushManifest(repo, 'v1', bytes, MediaType.OciManifest);
      await put.arrayBuffer();
      const location = new URL(put.headers.get('location') ?? '', c.base).pathname;
      const head = await c.request('HEAD', `/v2/${repo}/manifests/v1`, {
        headers: { accept: MediaType.OciManifest },
      });
      return [
        put.status,
        location === `/v2/${repo}/manifests/${digestOf(bytes)}`,
        put.headers.get('docker-content-digest') === digestOf(bytes),
        head.status,
        head.headers.get('content-type'),
        head.headers.get('content-length') === String(bytes.length),
        head.headers.get('docker-content-digest') === digestOf(bytes),
      ].join(' ');
    },
  },
  {
    what: "an OCI manifest asked for with only Docker's media type accepted",
    run: async (c, repo) => {
      await pushTagged(c, repo, 'v1');
      const res = await c.request('GET', `/v2/${repo}/manifests/v1`, {
        headers: { accept: MediaType.DockerManifest },
      });
      return observe(res, ['content-type']);
    },
    differs: {
      airlock: `200 content-type=${MediaType.OciManifest}`,
      distribution: '404 MANIFEST_UNKNOWN content-type=application/json; charset=utf-8',
      why:
        'a manifest is served as stored, with its own media type (its digest depends on its bytes, so it ' +
        'cannot be converted); distribution hides OCI manifests from clients that do not accept them',
    },
  },
  {
    what: 'PUT a manifest without a Content-Type',
    run: async (c, repo) => {
      const { body } = await imageBlobs(c, repo);
      return observe(await putManifest(c, repo, 'v1', body, undefined));
    },
  },
  {
    what: 'PUT a manifest whose Content-Type is not its mediaType',
    run: async (c, repo) => {
      const { body } = await imageBlobs(c, repo);
      return observe(await putManifest(c, repo, 'v1', body, MediaType.DockerManifest));
    },
  },
  {
    what: 'PUT a manifest that is not JSON',
    run: async (c, repo) => observe(await putManifest(c, repo, 'v1', '{')),
  },
  {
    what: 'PUT a manifest with schemaVersion 3',
    run: async (c, repo) => {
      const { body } = await imageBlobs(c, repo);
      return observe(await putManifest(c, repo, 'v1', { ...body, schemaVersion: 3 }));
    },
    differs: {
      airlock: '400 MANIFEST_INVALID',
      distribution: '500 UNKNOWN',
      why: "the manifest is the client's mistake, so a 4xx with the spec's code; distribution fails inside",
    },
  },
  {
    what: 'PUT a manifest whose layer the repository lacks',
    run: async (c, repo) => {
      const { body } = await imageBlobs(c, repo);
      const layers = (body.layers ?? []).map((layer) => ({ ...layer, digest: UNKNOWN }));
      return observe(await putManifest(c, repo, 'v1', { ...body, layers }));
    },
  },
  {
    what: "PUT a manifest whose layer's size is not the blob's",
    run: async (c, repo) => {
      const { body } = await imageBlobs(c, repo);
      const layers = (body.layers ?? []).map((layer) => ({ ...layer, size: layer.size + 1 }));
      return observe(await putManifest(c, repo, 'v1', { ...body, layers }));
    },
    differs: {
      airlock: '400 MANIFEST_INVALID',
      distribution: '201',
      why:
        "a descriptor's size must be its content's (image-spec); a client that trusts it would read too " +
        'much or too little, so Airlock checks it against the blob',
    },
  },
  {
    what: 'PUT a manifest by a digest that is not its own',
    run: async (c, repo) => {
      const { body } = await imageBlobs(c, repo);
      return observe(await putManifest(c, repo, UNKNOWN, body));
    },
  },
  {
    what: 'PUT a manifest over 4 MiB',
    run: async (c, repo) => observe(await putManifest(c, repo, 'big', Buffer.alloc(5 * 1024 * 1024, 32))),
    differs: {
      airlock: '413 MANIFEST_INVALID',
      distribution: '400 MANIFEST_INVALID',
      why: 'a manifest larger than the registry takes is answered 413 Payload Too Large (distribution-spec)',
    },
  },
  {
    what: 'PUT an index whose child the repository lacks',
    run: async (c, repo) => {
      const child = image();
      const idx = index([child]);
      return observe(await putManifest(c, repo, 'v1', idx.manifest, idx.mediaType));
    },
  },
  {
    what: 'DELETE a manifest by tag',
    run: async (c, repo) => {
      await pushTagged(c, repo, 'v1');
      const res = await c.request('DELETE', `/v2/${repo}/manifests/v1`);
      return `${await observe(res)}, then GET ${await manifestAnswer(c, 'GET', repo, 'v1')}`;
    },
    differs: {
      airlock: '202, then GET 404 MANIFEST_UNKNOWN',
      distribution: '400 DIGEST_INVALID, then GET 200',
      why: 'distribution-spec v1.1 deletes a tag with DELETE by tag; distribution 2.8 predates it',
    },
  },
  {
    what: 'DELETE a manifest by digest, then GET its tag',
    run: async (c, repo) => {
      const bytes = await pushTagged(c, repo, 'v1');
      const res = await c.request('DELETE', `/v2/${repo}/manifests/${digestOf(bytes)}`);
      return `${await observe(res)}, then GET ${await manifestAnswer(c, 'GET', repo, 'v1')}`;
    },
  },
  {
    what: 'DELETE an unknown manifest',
    run: async (c, repo) => observe(await c.request('DELETE', `/v2/${repo}/manifests/${UNKNOWN}`)),
  },

  // Blobs.
  {
    what: 'a blob by a malformed digest',
    run: async (c, repo) => observe(await c.request('GET', `/v2/${repo}/blobs/sha256:xyz`)),
  },
  {
    what: 'an unknown blob',
    run: async (c, repo) => observe(await c.request('GET', `/v2/${repo}/blobs/${UNKNOWN}`)),
  },
  {
    what: 'a blob pushed to another repository only',
    run: async (c, repo) => {
      await putBlob(c, `${repo}-other`, SIXTEEN);
      return observe(await c.request('GET', `/v2/${repo}/blobs/${SIXTEEN.digest}`));
    },
  },
  {
    what: 'a blob with Range: bytes=0-9',
    run: async (c, repo) => {
      await putBlob(c, repo, SIXTEEN);
      return rangeGet(c, `/v2/${repo}/blobs/${SIXTEEN.digest}`, 'bytes=0-9');
    },
  },
  {
    what: 'a blob with Range: bytes=-5',
    run: async (c, repo) => {
      await putBlob(c, repo, SIXTEEN);
      return rangeGet(c, `/v2/${repo}/blobs/${SIXTEEN.digest}`, 'bytes=-5');
    },
  },
  {
    what: 'a blob with a Range past its end',
    run: async (c, repo) => {
      await putBlob(c, repo, SIXTEEN);
      return rangeGet(c, `/v2/${repo}/blobs/${SIXTEEN.digest}`, 'bytes=100-200');
    },
    differs: {
      airlock: '416 content-range=bytes */16',
      distribution: 'aborted',
      why: 'RFC 9110: 416 with the current length; distribution breaks the response off',
    },
  },
  {
    what: 'a blob with two ranges',
    run: async (c, repo) => {
      await putBlob(c, repo, SIXTEEN);
      return rangeGet(c, `/v2/${repo}/blobs/${SIXTEEN.digest}`, 'bytes=0-1,3-4');
    },
    differs: {
      airlock: '200 content-range=- bytes=16',
      distribution: '206 content-range=- bytes=344',
      why: 'RFC 9110 lets a server ignore Range; registry clients ask for one range, so several get the whole blob',
    },
  },
  {
    what: 'DELETE a blob, then HEAD it',
    run: async (c, repo) => {
      await putBlob(c, repo, SIXTEEN);
      const res = await c.request('DELETE', `/v2/${repo}/blobs/${SIXTEEN.digest}`);
      const head = await c.request('HEAD', `/v2/${repo}/blobs/${SIXTEEN.digest}`);
      return `${await observe(res)}, then HEAD ${head.status}`;
    },
  },
  {
    what: 'DELETE an unknown blob',
    run: async (c, repo) => observe(await c.request('DELETE', `/v2/${repo}/blobs/${UNKNOWN}`)),
  },

  // Uploads.
  {
    what: 'POST ?digest= with the whole blob',
    run: async (c, repo) => {
      const res = await c.request('POST', `/v2/${repo}/blobs/uploads/?digest=${SIXTEEN.digest}`, {
        body: SIXTEEN.bytes,
      });
      return observe(res);
    },
    differs: {
      airlock: '201',
      distribution: '202',
      why: "distribution-spec's single-POST upload; distribution 2.8 ignores the body and opens a session",
    },
  },
  {
    what: 'POST ?digest= with a body of another digest',
    run: async (c, repo) => {
      const res = await c.request('POST', `/v2/${repo}/blobs/uploads/?digest=${UNKNOWN}`, { body: 'abc' });
      const head = await c.request('HEAD', `/v2/${repo}/blobs/${UNKNOWN}`);
      return `${await observe(res)}, then HEAD ${head.status}`;
    },
    differs: {
      airlock: '400 DIGEST_INVALID, then HEAD 404',
      distribution: '202, then HEAD 404',
      why: 'the body is checked against the digest it was sent with; distribution 2.8 ignores the body',
    },
  },
  {
    what: 'mount a blob from another repository',
    run: async (c, repo) => {
      await putBlob(c, `${repo}-from`, SIXTEEN);
      const path = `/v2/${repo}/blobs/uploads/?mount=${SIXTEEN.digest}&from=${repo}-from`;
      return observe(await c.request('POST', path), ['docker-content-digest']);
    },
  },
  {
    what: 'mount a blob the other repository lacks',
    run: async (c, repo) => {
      const path = `/v2/${repo}/blobs/uploads/?mount=${UNKNOWN}&from=${repo}-from`;
      return observe(await c.request('POST', path));
    },
  },
  {
    what: 'PATCH, then ask for the upload status',
    run: async (c, repo) => {
      const location = await startUpload(c, repo);
      const fresh = await c.request('GET', location);
      const patch = await c.request('PATCH', location, {
        body: 'abc',
        headers: { 'content-range': '0-2', 'content-type': 'application/octet-stream' },
      });
      const next = new URL(patch.headers.get('location') ?? '', c.base);
      const status = await c.request('GET', next.pathname + next.search);
      return [
        await observe(fresh, ['range']),
        await observe(patch, ['range']),
        await observe(status, ['range']),
      ].join(', ');
    },
  },
  {
    what: 'PATCH a chunk that does not start where the upload ends',
    run: async (c, repo) => {
      const location = await startUpload(c, repo);
      const res = await c.request('PATCH', location, {
        body: 'abc',
        headers: { 'content-range': '5-7', 'content-type': 'application/octet-stream' },
      });
      return observe(res);
    },
    differs: {
      airlock: '416 BLOB_UPLOAD_INVALID',
      distribution: '202',
      why: 'distribution-spec: a chunk out of order is answered 416 Requested Range Not Satisfiable',
    },
  },
  {
    what: 'PATCH an unknown session',
    run: async (c, repo) =>
      observe(await c.request('PATCH', `/v2/${repo}/blobs/uploads/00000000-0000-0000-0000-000000000000`)),
    differs: {
      airlock: '404 BLOB_UPLOAD_UNKNOWN',
      distribution: '404 BLOB_UPLOAD_INVALID',
      why: 'distribution-spec names an unknown upload BLOB_UPLOAD_UNKNOWN',
    },
  },
  {
    what: 'PUT to close an upload without a digest',
    run: async (c, repo) => observe(await c.request('PUT', await startUpload(c, repo), { body: 'abc' })),
  },
  {
    what: 'PUT to close an upload with the wrong digest',
    run: async (c, repo) => {
      const location = await startUpload(c, repo);
      return observe(await c.request('PUT', withDigest(location, UNKNOWN), { body: 'abc' }));
    },
  },
  {
    what: 'DELETE an upload twice, then PUT to it',
    run: async (c, repo) => {
      const location = await startUpload(c, repo);
      const first = await observe(await c.request('DELETE', location));
      const second = await observe(await c.request('DELETE', location));
      const put = await observe(
        await c.request('PUT', withDigest(location, SIXTEEN.digest), { body: SIXTEEN.bytes }),
      );
      return `${first}, ${second}, ${put}`;
    },
  },
  {
    what: 'PUT to an upload already closed',
    run: async (c, repo) => {
      const location = withDigest(await startUpload(c, repo), SIXTEEN.digest);
      const first = await observe(await c.request('PUT', location, { body: SIXTEEN.bytes }));
      return `${first}, ${await observe(await c.request('PUT', location, { body: SIXTEEN.bytes }))}`;
    },
  },

  // Names and queries.
  {
    what: 'a repository name with upper case',
    run: async (c) => observe(await c.request('GET', '/v2/Parity/tags/list')),
    differs: { airlock: '400 NAME_INVALID', distribution: '404', why: ROUTER_404 },
  },
  {
    what: 'a repository name of 256 characters',
    run: async (c) => observe(await c.request('GET', `/v2/${'a'.repeat(256)}/tags/list`)),
    differs: {
      airlock: '400 NAME_INVALID',
      distribution: '500 UNKNOWN',
      why: "the name is the client's mistake, so a 4xx with the spec's code; distribution fails inside",
    },
  },
  {
    what: "containerd's ?ns= query",
    run: async (c, repo) => {
      await pushTagged(c, repo, 'v1');
      return manifestAnswer(c, 'HEAD', repo, 'v1?ns=docker.io');
    },
  },
  {
    what: 'referrers of an unknown subject',
    run: async (c, repo) =>
      observe(await c.request('GET', `/v2/${repo}/referrers/${UNKNOWN}`), ['content-type']),
    differs: {
      airlock: `200 content-type=${MediaType.OciIndex}`,
      distribution: '404 content-type=text/plain; charset=utf-8',
      why:
        'distribution-spec v1.1: an empty index, not 404, for a subject with no referrers; distribution 2.8 ' +
        'has no referrers API (clients then fall back to the sha256-<hex> tag)',
    },
  },
];

describe('Airlock beside distribution 2.8 (interop)', { timeout: TEST_TIMEOUT_MS }, () => {
  it('answers as the reference registry does, apart from the differences listed with their reasons', async (t) => {
    const distribution = await startDistributionForTest(t);
    if (!distribution) return;
    const airlock = await startAirlockForTest(t);
    const clients = { airlock: new TestClient(airlock.url), distribution: new TestClient(distribution.url) };
    // One probe at a time, each in a repository of its own, so that no probe sees another's content.
    for (const [i, probe] of probes.entries()) {
      const repo = `parity/p${i}`;
      await t.test(
        probe.differs ? `${probe.what}: differs, on purpose` : `${probe.what}: alike`,
        async () => {
          const got = {
            airlock: await probe.run(clients.airlock, repo),
            distribution: await probe.run(clients.distribution, repo),
          };
          if (probe.differs) {
            const { airlock: a, distribution: d, why } = probe.differs;
            assert.deepEqual(got, { airlock: a, distribution: d }, why);
          } else {
            assert.equal(got.airlock, got.distribution, 'Airlock answers as distribution does');
          }
        },
      );
    }
  });
});
