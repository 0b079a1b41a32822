import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startTestRegistry, type TestRegistry } from '../helpers/in-process.js';
import { image, index, blob } from '../helpers/oci-fixtures.js';
import { TestClient, errorCode } from '../helpers/registry-client.js';
import { MediaType, digestOf } from '../../src/oci/index.js';
import type { RegistryEvent } from '../../src/registry/index.js';

describe('manifest API', () => {
  let reg: TestRegistry;
  let c: TestClient;
  before(async () => {
    reg = await startTestRegistry();
    c = new TestClient(reg.url);
  });
  after(async () => reg.dispose());

  it('stores an OCI manifest by tag and serves it by tag and digest with its headers', async () => {
    const img = image();
    await c.pushBlob('p/app', img.config);
    await c.pushBlob('p/app', img.layers[0]!);
    const put = await c.pushManifest('p/app', 'v1', img.manifest, img.mediaType);
    assert.equal(put.status, 201);
    assert.equal(put.headers.get('docker-content-digest'), img.digest);
    assert.equal(put.headers.get('location'), `/v2/p/app/manifests/${img.digest}`);
    for (const ref of ['v1', img.digest]) {
      const get = await c.request('GET', `/v2/p/app/manifests/${ref}`, {
        headers: { accept: MediaType.OciManifest },
      });
      assert.equal(get.status, 200);
      assert.equal(get.headers.get('content-type'), MediaType.OciManifest);
      assert.equal(get.headers.get('docker-content-digest'), img.digest);
      assert.deepEqual(Buffer.from(await get.arrayBuffer()), img.manifest);
      const head = await c.request('HEAD', `/v2/p/app/manifests/${ref}`);
      assert.equal(head.status, 200);
      assert.equal(head.headers.get('content-length'), String(img.manifest.length));
    }
  });

  it('stores Docker schema 2 manifests and manifest lists', async () => {
    const a = image({ mediaType: MediaType.DockerManifest });
    const b = image({ mediaType: MediaType.DockerManifest });
    await c.pushImage('p/docker', a);
    await c.pushImage('p/docker', b);
    const list = index([a, b], MediaType.DockerManifestList);
    const put = await c.pushManifest('p/docker', 'latest', list.manifest, list.mediaType);
    assert.equal(put.status, 201);
    const get = await c.request('GET', '/v2/p/docker/manifests/latest');
    assert.equal(get.headers.get('content-type'), MediaType.DockerManifestList);
    await get.arrayBuffer();
  });

  it('refuses an index whose children are not in the repository with MANIFEST_BLOB_UNKNOWN', async () => {
    const child = image();
    const idx = index([child]);
    const res = await c.pushManifest('p/idx', 'v1', idx.manifest, idx.mediaType);
    assert.equal(res.status, 400);
    assert.equal(await errorCode(res), 'MANIFEST_BLOB_UNKNOWN');
    await c.pushImage('p/idx', child);
    assert.equal((await c.pushManifest('p/idx', 'v1', idx.manifest, idx.mediaType)).status, 201);
  });

  it('refuses a manifest whose layer is unknown in the repository with MANIFEST_BLOB_UNKNOWN', async () => {
    const img = image();
    await c.pushBlob('p/partial', img.config);
    const res = await c.pushManifest('p/partial', 'v1', img.manifest, img.mediaType);
    assert.equal(res.status, 400);
    assert.equal(await errorCode(res), 'MANIFEST_BLOB_UNKNOWN');
    assert.equal((await c.request('HEAD', '/v2/p/partial/manifests/v1')).status, 404);
  });

  it('refuses a PUT by digest whose body has another digest with DIGEST_INVALID', async () => {
    const img = image();
    await c.pushBlob('p/dig', img.config);
    await c.pushBlob('p/dig', img.layers[0]!);
    const res = await c.pushManifest('p/dig', digestOf('other'), img.manifest, img.mediaType);
    assert.equal(res.status, 400);
    assert.equal(await errorCode(res), 'DIGEST_INVALID');
  });

  it('answers a manifest with a subject with OCI-Subject and lists it as a referrer', async () => {
    const subject = image();
    await c.pushImage('p/ref', subject, 'v1');
    const sig = image({
      artifactType: 'application/vnd.dev.cosign.artifact.sig.v1+json',
      subject: { digest: subject.digest, size: subject.manifest.length },
      annotations: { k: 'v' },
    });
    const sbom = image({
      artifactType: 'application/spdx+json',
      subject: { digest: subject.digest, size: subject.manifest.length },
    });
    await c.pushBlob('p/ref', sig.config);
    await c.pushBlob('p/ref', sig.layers[0]!);
    const put = await c.pushManifest('p/ref', sig.digest, sig.manifest, sig.mediaType);
    assert.equal(put.status, 201);
    assert.equal(put.headers.get('oci-subject'), subject.digest);
    await c.pushImage('p/ref', sbom);
    const all = await c.json<{
      manifests: Array<{ digest: string; artifactType: string; annotations?: Record<string, string> }>;
      mediaType: string;
    }>(`/v2/p/ref/referrers/${subject.digest}`);
    assert.equal(all.status, 200);
    assert.equal(all.headers.get('content-type'), MediaType.OciIndex);
    assert.equal(all.body.mediaType, MediaType.OciIndex);
    assert.deepEqual(all.body.manifests.map((m) => m.digest).sort(), [sig.digest, sbom.digest].sort());
    assert.deepEqual(all.body.manifests.find((m) => m.digest === sig.digest)?.annotations, { k: 'v' });
    const filtered = await c.json<{ manifests: Array<{ digest: string }> }>(
      `/v2/p/ref/referrers/${subject.digest}?artifactType=application/spdx%2Bjson`,
    );
    assert.equal(filtered.headers.get('oci-filters-applied'), 'artifactType');
    assert.deepEqual(
      filtered.body.manifests.map((m) => m.digest),
      [sbom.digest],
    );
    const page = await c.request('GET', `/v2/p/ref/referrers/${subject.digest}?n=1`);
    assert.match(page.headers.get('link') ?? '', /rel="next"/);
    assert.equal(((await page.json()) as { manifests: unknown[] }).manifests.length, 1);
  });

  it('lists a referrer whose artifactType is empty under its config media type', async () => {
    const subject = image();
    await c.pushImage('p/empty-type', subject, 'v1');
    const body = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: MediaType.OciManifest,
        artifactType: '',
        config: {
          mediaType: 'application/vnd.example.config',
          digest: subject.config.digest,
          size: subject.config.bytes.length,
        },
        layers: [],
        subject: { mediaType: MediaType.OciManifest, digest: subject.digest, size: subject.manifest.length },
      }),
    );
    assert.equal(
      (await c.pushManifest('p/empty-type', digestOf(body), body, MediaType.OciManifest)).status,
      201,
    );
    const filtered = await c.json<{ manifests: Array<{ digest: string; artifactType: string }> }>(
      `/v2/p/empty-type/referrers/${subject.digest}?artifactType=application/vnd.example.config`,
    );
    assert.deepEqual(
      filtered.body.manifests.map((m) => [m.digest, m.artifactType]),
      [[digestOf(body), 'application/vnd.example.config']],
    );
  });

  it('answers each repository with the media type it was pushed with, also after a restart', async () => {
    // Without a mediaType field the type comes from Content-Type: the same bytes can be either.
    let current = await startTestRegistry();
    let client = new TestClient(current.url);
    const img = image();
    const { mediaType: _omit, ...bare } = JSON.parse(img.manifest.toString()) as Record<string, unknown>;
    const body = Buffer.from(JSON.stringify(bare));
    const pushes: Array<[string, string]> = [
      ['p/as-oci', MediaType.OciManifest],
      ['p/as-docker', MediaType.DockerManifest],
    ];
    try {
      for (const [repo, type] of pushes) {
        await client.pushBlob(repo, img.config);
        await client.pushBlob(repo, img.layers[0]!);
        assert.equal((await client.pushManifest(repo, 'v1', body, type)).status, 201);
      }
      for (const round of ['before the restart', 'after it']) {
        for (const [repo, type] of pushes) {
          for (const ref of ['v1', digestOf(body), 'v1']) {
            const res = await client.request('GET', `/v2/${repo}/manifests/${ref}`);
            assert.equal(res.headers.get('content-type'), type, `${repo} ${ref} ${round}`);
            assert.deepEqual(Buffer.from(await res.arrayBuffer()), body);
          }
        }
        if (round === 'after it') break;
        await current.close();
        current = await startTestRegistry({ data: current.dataDir });
        client = new TestClient(current.url);
      }
      // Pushed again with the other type: the last push decides.
      assert.equal((await client.pushManifest('p/as-oci', 'v1', body, MediaType.DockerManifest)).status, 201);
      const res = await client.request('HEAD', '/v2/p/as-oci/manifests/v1');
      assert.equal(res.headers.get('content-type'), MediaType.DockerManifest);
    } finally {
      await current.dispose();
    }
  });

  it('answers 304 to If-None-Match with the manifest digest', async () => {
    const img = image();
    await c.pushImage('p/etag', img, 'v1');
    for (const ref of ['v1', img.digest]) {
      for (const method of ['GET', 'HEAD']) {
        const res = await c.request(method, `/v2/p/etag/manifests/${ref}`, {
          headers: { 'if-none-match': `"${img.digest}"` },
        });
        assert.equal(res.status, 304, `${method} ${ref}`);
        assert.equal(res.headers.get('etag'), `"${img.digest}"`);
        assert.equal(await res.text(), '');
      }
    }
    const moved = await c.request('GET', '/v2/p/etag/manifests/v1', {
      headers: { 'if-none-match': `"${digestOf('an older manifest')}"` },
    });
    assert.equal(moved.status, 200);
    assert.deepEqual(Buffer.from(await moved.arrayBuffer()), img.manifest);
  });

  it('answers an empty index, not 404, for a subject without referrers', async () => {
    const res = await c.json<{ manifests: unknown[] }>(`/v2/p/ref/referrers/${digestOf('nothing')}`);
    assert.equal(res.status, 200);
    assert.deepEqual(res.body.manifests, []);
    const bad = await c.request('GET', '/v2/p/ref/referrers/sha256:nothex');
    assert.equal(bad.status, 400);
    assert.equal(await errorCode(bad), 'DIGEST_INVALID');
  });

  it('deletes by tag (the tag only) and by digest (manifest and its tags)', async () => {
    const img = image();
    await c.pushImage('p/del', img, 'a');
    await c.pushManifest('p/del', 'b', img.manifest, img.mediaType);
    assert.equal((await c.request('DELETE', '/v2/p/del/manifests/a')).status, 202);
    assert.equal((await c.request('HEAD', '/v2/p/del/manifests/a')).status, 404);
    assert.equal((await c.request('HEAD', `/v2/p/del/manifests/${img.digest}`)).status, 200);
    assert.equal((await c.request('DELETE', `/v2/p/del/manifests/${img.digest}`)).status, 202);
    assert.equal((await c.request('HEAD', '/v2/p/del/manifests/b')).status, 404);
    const again = await c.request('DELETE', `/v2/p/del/manifests/${img.digest}`);
    assert.equal(again.status, 404);
    assert.equal(await errorCode(again), 'MANIFEST_UNKNOWN');
  });

  it('moves a tag to a new manifest and serves the new one at once', async () => {
    const first = image();
    const second = image();
    await c.pushImage('p/move', first, 'latest');
    assert.equal(
      (await c.request('GET', '/v2/p/move/manifests/latest')).headers.get('docker-content-digest'),
      first.digest,
    );
    await c.pushImage('p/move', second, 'latest');
    assert.equal(
      (await c.request('GET', '/v2/p/move/manifests/latest')).headers.get('docker-content-digest'),
      second.digest,
    );
  });

  it('answers from memory only what the repository holds: other repositories, deletes and bad references miss', async () => {
    const img = image();
    await c.pushImage('p/mem-a', img, 'v1');
    await c.pushImage('p/mem-b', image(), 'v1');
    // Warm every cache: tag, the repository's link and the bytes.
    for (let i = 0; i < 2; i++) {
      for (const ref of ['v1', img.digest]) {
        assert.equal((await c.request('GET', `/v2/p/mem-a/manifests/${ref}`)).status, 200);
      }
    }
    // The warm GETs are answered from memory (the synchronous path), by tag and by digest.
    for (const ref of ['v1', img.digest]) {
      const hit = reg.registry.cachedManifest('p/mem-a', ref);
      assert.equal(hit?.digest, img.digest, ref);
      assert.deepEqual(hit?.bytes, img.manifest);
    }
    assert.equal(reg.registry.cachedManifest('p/mem-b', img.digest), undefined);
    assert.equal(reg.registry.cachedManifest('p/mem-a', 'sha256:nothex'), undefined);
    // The same digest in another repository is not served, cached bytes or not.
    const other = await c.request('GET', `/v2/p/mem-b/manifests/${img.digest}`);
    assert.equal(other.status, 404);
    assert.equal(await errorCode(other), 'MANIFEST_UNKNOWN');
    const missingTag = await c.request('GET', '/v2/p/mem-c/manifests/v1');
    assert.equal(missingTag.status, 404);
    assert.equal(await errorCode(missingTag), 'MANIFEST_UNKNOWN');
    // A reference that is neither a tag nor a digest.
    const bad = await c.request('GET', '/v2/p/mem-a/manifests/sha256:nothex');
    assert.equal(bad.status, 400);
    assert.equal(await errorCode(bad), 'DIGEST_INVALID');
    // A delete is seen at once by tag and by digest.
    assert.equal((await c.request('DELETE', `/v2/p/mem-a/manifests/${img.digest}`)).status, 202);
    assert.equal(reg.registry.cachedManifest('p/mem-a', 'v1'), undefined);
    assert.equal(reg.registry.cachedManifest('p/mem-a', img.digest), undefined);
    for (const ref of ['v1', img.digest]) {
      const gone = await c.request('GET', `/v2/p/mem-a/manifests/${ref}`);
      assert.equal(gone.status, 404, ref);
      assert.equal(await errorCode(gone), 'MANIFEST_UNKNOWN');
    }
  });

  it('announces pushes and deletes as events', async () => {
    const seen: RegistryEvent[] = [];
    reg.registry.events.on('event', (e) => seen.push(e));
    const img = image();
    await c.pushImage('p/events', img, 'v1');
    await c.request('DELETE', '/v2/p/events/manifests/v1');
    assert.deepEqual(
      seen.map((e) => [e.action, e.repository, e.tag]),
      [
        ['push', 'p/events', 'v1'],
        ['delete', 'p/events', 'v1'],
      ],
    );
  });

  it('lists tags in lexical order with n, last and a Link header', async () => {
    const img = image();
    await c.pushBlob('p/tags', img.config);
    await c.pushBlob('p/tags', img.layers[0]!);
    for (const tag of ['c', 'a', 'b', 'd']) await c.pushManifest('p/tags', tag, img.manifest, img.mediaType);
    const all = await c.json<{ name: string; tags: string[] }>('/v2/p/tags/tags/list');
    assert.deepEqual(all.body, { name: 'p/tags', tags: ['a', 'b', 'c', 'd'] });
    const page = await c.json<{ tags: string[] }>('/v2/p/tags/tags/list?n=2');
    assert.deepEqual(page.body.tags, ['a', 'b']);
    assert.equal(page.headers.get('link'), '</v2/p/tags/tags/list?last=b&n=2>; rel="next"');
    const next = await c.json<{ tags: string[] }>('/v2/p/tags/tags/list?n=2&last=b');
    assert.deepEqual(next.body.tags, ['c', 'd']);
    const unknown = await c.request('GET', '/v2/p/nothing/tags/list');
    assert.equal(unknown.status, 404);
    assert.equal(await errorCode(unknown), 'NAME_UNKNOWN');
  });

  it('lists repositories in the catalog with the same pagination', async () => {
    await c.pushBlob('zz/one', blob());
    await c.pushBlob('zz/two', blob());
    const all = await c.json<{ repositories: string[] }>('/v2/_catalog');
    assert.ok(all.body.repositories.includes('zz/one'));
    assert.deepEqual([...all.body.repositories].sort(), all.body.repositories);
    const page = await c.json<{ repositories: string[] }>('/v2/_catalog?n=1&last=zz/one');
    assert.deepEqual(page.body.repositories, ['zz/two']);
    assert.match(page.headers.get('link') ?? '', /^<\/v2\/_catalog\?last=zz%2Ftwo&n=1>; rel="next"$/);
  });
});

describe('operational endpoints', () => {
  let reg: TestRegistry;
  before(async () => {
    reg = await startTestRegistry();
  });
  after(async () => reg.dispose());

  it('answers /healthz and /readyz', async () => {
    assert.equal((await fetch(`${reg.url}/healthz`)).status, 200);
    assert.equal((await fetch(`${reg.url}/readyz`)).status, 200);
  });

  it('exposes Prometheus metrics for requests, bytes, uploads and storage', async () => {
    const c = new TestClient(reg.url);
    const scrape = async (): Promise<{ text: string; sent: number }> => {
      const text = await (await fetch(`${reg.url}/metrics`)).text();
      return { text, sent: Number(/^airlock_http_sent_bytes_total (\d+)$/m.exec(text)?.[1]) };
    };
    const before = await scrape();
    await c.pushBlob('m/x', blob('metrics'));
    const got = await fetch(`${reg.url}/v2/m/x/blobs/${blob('metrics').digest}`);
    assert.equal(got.status, 200);
    await got.arrayBuffer();
    const brew = await fetch(`${reg.url}/v2/`, { method: 'BREW' });
    assert.equal(brew.status, 405);
    const errorBytes = (await brew.arrayBuffer()).byteLength;
    // A download is counted once its answer is complete on the server, which can be just after the
    // client has every byte: scrape until it shows, counting what the earlier scrapes sent.
    let scraped = Buffer.byteLength(before.text);
    let { text, sent } = await scrape();
    for (let i = 0; i < 50 && !/route="blobs",status="200"/.test(text); i++) {
      await new Promise((resolve) => setTimeout(resolve, 20));
      scraped += Buffer.byteLength(text);
      ({ text, sent } = await scrape());
    }
    assert.match(text, /airlock_http_requests_total\{method="POST",route="uploads",status="201"\} 1\n/);
    assert.match(text, /airlock_http_requests_total\{method="GET",route="blobs",status="200"\} 1\n/);
    // Methods outside the HTTP set are counted together, so clients cannot add label values.
    assert.match(text, /airlock_http_requests_total\{method="other",route="base",status="405"\} 1\n/);
    assert.match(text, /airlock_http_request_duration_seconds_count\{route="uploads"\} 1\n/);
    assert.match(text, /airlock_http_request_duration_seconds_bucket\{le="\+Inf",route="blobs"\} 1\n/);
    assert.match(text, /airlock_http_received_bytes_total 7\n/);
    // Body bytes sent since the first scrape: the scrapes before the last, the blob, the error document.
    assert.equal(sent - before.sent, scraped + 7 + errorBytes);
    assert.match(text, /airlock_upload_sessions_active 0/);
    assert.match(text, /airlock_storage_blob_bytes 7/);
  });

  it('echoes a request id or makes one', async () => {
    const res = await fetch(`${reg.url}/v2/`, { headers: { 'x-request-id': 'abc-123' } });
    assert.equal(res.headers.get('x-request-id'), 'abc-123');
    assert.ok((await fetch(`${reg.url}/v2/`)).headers.get('x-request-id'));
  });
});
