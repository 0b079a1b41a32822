import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import { digestOf, MediaType, type Descriptor, type Digest } from '../oci/index.js';
import { ClientError } from './errors.js';
import { RegistryClient } from './registry-client.js';

interface Recorded {
  readonly method: string;
  readonly url: string;
}

type Handler = (req: IncomingMessage, res: ServerResponse, body: Buffer) => boolean | void;

/** A fake registry on 127.0.0.1:0 that keeps manifests and blobs in memory; `extra` runs first. */
async function fakeRegistry(options: { ociSubject?: boolean; extra?: Handler } = {}): Promise<{
  host: string;
  requests: Recorded[];
  manifests: Map<string, Buffer>;
  blobs: Map<string, Buffer>;
}> {
  const requests: Recorded[] = [];
  const manifests = new Map<string, Buffer>();
  const blobs = new Map<string, Buffer>();
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const url = new URL(req.url ?? '/', 'http://fake');
      requests.push({ method: req.method ?? '', url: url.pathname + url.search });
      if (options.extra?.(req, res, body)) return;
      const manifest = /^\/v2\/(.+)\/manifests\/([^/]+)$/.exec(url.pathname);
      if (manifest) {
        const key = `${manifest[1]}:${manifest[2]}`;
        if (req.method === 'PUT') {
          manifests.set(key, body);
          manifests.set(`${manifest[1]}:${digestOf(body)}`, body);
          const subject = (JSON.parse(body.toString()) as { subject?: { digest: string } }).subject;
          res.writeHead(201, {
            'docker-content-digest': digestOf(body),
            ...(options.ociSubject && subject ? { 'oci-subject': subject.digest } : {}),
          });
          res.end();
          return;
        }
        const found = manifests.get(key);
        if (!found) {
          res.writeHead(404, { 'content-type': 'application/json' });
          res.end(
            req.method === 'HEAD' ? undefined : '{"errors":[{"code":"MANIFEST_UNKNOWN","message":"no"}]}',
          );
          return;
        }
        const mediaType = (JSON.parse(found.toString()) as { mediaType?: string }).mediaType ?? '';
        res.writeHead(200, {
          'content-type': mediaType,
          'docker-content-digest': digestOf(found),
          'content-length': found.length,
        });
        res.end(req.method === 'HEAD' ? undefined : found);
        return;
      }
      const blob = /^\/v2\/(.+)\/blobs\/(sha256:[0-9a-f]+)$/.exec(url.pathname);
      if (blob) {
        const found = blobs.get(blob[2] ?? '');
        res.writeHead(found ? 200 : 404, { 'content-length': found?.length ?? 0 });
        res.end(req.method === 'HEAD' ? undefined : found);
        return;
      }
      res.writeHead(404, { 'content-type': 'application/json' });
      res.end('{"errors":[{"code":"NAME_UNKNOWN","message":"unknown"}]}');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  after(() => {
    server.closeAllConnections();
    server.close();
  });
  return { host: `127.0.0.1:${(server.address() as AddressInfo).port}`, requests, manifests, blobs };
}

function referrer(subject: Digest, artifactType: string): { bytes: Buffer; mediaType: string } {
  const bytes = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MediaType.OciManifest,
      artifactType,
      config: { mediaType: MediaType.OciEmpty, digest: digestOf('{}'), size: 2 },
      layers: [],
      subject: { mediaType: MediaType.OciManifest, digest: subject, size: 100 },
      annotations: { 'org.example.kind': artifactType },
    }),
  );
  return { bytes, mediaType: MediaType.OciManifest };
}

const noWait = { sleep: () => Promise.resolve(), random: () => 0 };

/** A plain-HTTP client whose retries record how long they would have waited (100 ms base, no jitter). */
function clientRecordingWaits(host: string): { client: RegistryClient; waits: number[] } {
  const waits: number[] = [];
  const client = new RegistryClient(host, {
    plainHttp: true,
    retry: { sleep: (ms) => (waits.push(ms), Promise.resolve()), random: () => 0, baseDelayMs: 100 },
  });
  return { client, waits };
}

describe('RegistryClient.putManifest with a subject', () => {
  it('keeps the sha256-<hex> referrers tag when the registry answers without OCI-Subject', async () => {
    const fake = await fakeRegistry();
    const client = new RegistryClient(fake.host, { plainHttp: true, retry: noWait });
    try {
      const subject = digestOf('the image');
      const sig = referrer(subject, 'application/vnd.example.sig');
      const sbom = referrer(subject, 'application/vnd.example.sbom');
      await client.putManifest('org/app', digestOf(sig.bytes), sig);
      await client.putManifest('org/app', digestOf(sbom.bytes), sbom);
      await client.putManifest('org/app', digestOf(sig.bytes), sig);

      const tag = fake.manifests.get(`org/app:${subject.replace(':', '-')}`);
      assert.ok(tag, 'the fallback tag exists');
      const index = JSON.parse(tag.toString()) as { mediaType: string; manifests: Descriptor[] };
      assert.equal(index.mediaType, MediaType.OciIndex);
      assert.deepEqual(index.manifests, [
        {
          mediaType: MediaType.OciManifest,
          digest: digestOf(sig.bytes),
          size: sig.bytes.length,
          artifactType: 'application/vnd.example.sig',
          annotations: { 'org.example.kind': 'application/vnd.example.sig' },
        },
        {
          mediaType: MediaType.OciManifest,
          digest: digestOf(sbom.bytes),
          size: sbom.bytes.length,
          artifactType: 'application/vnd.example.sbom',
          annotations: { 'org.example.kind': 'application/vnd.example.sbom' },
        },
      ]);
      // The referrers API is missing (404), so referrers() reads that tag.
      assert.deepEqual(
        (await client.referrers('org/app', subject)).map((d) => d.digest),
        [digestOf(sig.bytes), digestOf(sbom.bytes)],
      );
      assert.deepEqual(
        (await client.referrers('org/app', subject, { artifactType: 'application/vnd.example.sbom' })).map(
          (d) => d.digest,
        ),
        [digestOf(sbom.bytes)],
      );
    } finally {
      client.close();
    }
  });

  it('leaves the tag alone when the registry answers OCI-Subject (it has the referrers API)', async () => {
    const fake = await fakeRegistry({ ociSubject: true });
    const client = new RegistryClient(fake.host, { plainHttp: true, retry: noWait });
    try {
      const subject = digestOf('the image');
      const sig = referrer(subject, 'application/vnd.example.sig');
      await client.putManifest('org/app', 'sig', sig);
      assert.deepEqual(
        fake.requests.map((r) => `${r.method} ${r.url}`),
        ['PUT /v2/org/app/manifests/sig'],
      );
    } finally {
      client.close();
    }
  });
});

describe('RegistryClient blobs', () => {
  it('fails the blob stream with DIGEST_MISMATCH when the bytes or their size differ', async () => {
    const fake = await fakeRegistry();
    const client = new RegistryClient(fake.host, { plainHttp: true, retry: noWait });
    try {
      const wanted = Buffer.from('the real bytes');
      fake.blobs.set(digestOf(wanted), Buffer.from('other bytes!!!'));
      const read = async (size?: number): Promise<Buffer> => {
        const chunks: Buffer[] = [];
        const stream = await client.getBlob('org/app', digestOf(wanted), size === undefined ? {} : { size });
        for await (const chunk of stream) chunks.push(chunk as Buffer);
        return Buffer.concat(chunks);
      };
      const mismatch = (pattern: RegExp) => (e: unknown) =>
        e instanceof ClientError && e.code === 'DIGEST_MISMATCH' && pattern.test(e.message);
      await assert.rejects(read(), mismatch(/arrived with digest/));
      await assert.rejects(read(wanted.length + 1), mismatch(/should be 15 bytes but 14 arrived/));
      await assert.rejects(
        client.getBlobBytes('org/app', digestOf(wanted), 1024),
        mismatch(/does not match/),
      );

      fake.blobs.set(digestOf(wanted), wanted);
      assert.deepEqual(await read(wanted.length), wanted);
    } finally {
      client.close();
    }
  });

  it('reads a large blob behind a Bearer challenge over plain HTTP, verified (the raw reader)', async () => {
    const tokens: string[] = [];
    const fake = await fakeRegistry({
      extra: (req, res) => {
        const url = new URL(req.url ?? '/', 'http://fake');
        if (url.pathname === '/token') {
          tokens.push(url.searchParams.get('scope') ?? '');
          res.writeHead(200, { 'content-type': 'application/json' });
          res.end('{"token":"t0k"}');
          return true;
        }
        if (req.headers.authorization !== 'Bearer t0k') {
          res.writeHead(401, {
            'www-authenticate': `Bearer realm="http://${req.headers.host ?? ''}/token",service="fake"`,
            'content-type': 'application/json',
          });
          res.end('{"errors":[{"code":"UNAUTHORIZED","message":"token needed"}]}');
          return true;
        }
        return false;
      },
    });
    const client = new RegistryClient(fake.host, { plainHttp: true, retry: noWait });
    try {
      const big = Buffer.alloc(6 * 1024 * 1024, 7);
      fake.blobs.set(digestOf(big), big);
      const stream = await client.getBlob('org/app', digestOf(big), { size: big.length });
      const chunks: Buffer[] = [];
      for await (const chunk of stream) chunks.push(chunk as Buffer);
      assert.deepEqual(Buffer.concat(chunks), big);
      assert.deepEqual(tokens, ['repository:org/app:pull']);

      const other = Buffer.alloc(big.length, 8);
      fake.blobs.set(digestOf(other), big);
      const wrong = await client.getBlob('org/app', digestOf(other), { size: big.length });
      await assert.rejects(
        (async () => {
          for await (const _chunk of wrong) void _chunk;
        })(),
        (e: unknown) => e instanceof ClientError && e.code === 'DIGEST_MISMATCH',
      );
    } finally {
      client.close();
    }
  });

  it('skips a blob that is there, mounts from another repository, else uploads it in one PUT', async () => {
    const fake = await fakeRegistry({
      extra: (req, res, body) => {
        const url = new URL(req.url ?? '/', 'http://fake');
        if (req.method === 'POST' && url.searchParams.has('mount')) {
          res.writeHead(201, { location: `/v2/org/app/blobs/${url.searchParams.get('mount')}` });
          res.end();
          return true;
        }
        if (req.method === 'POST') {
          res.writeHead(202, { location: '/v2/org/app/blobs/uploads/1?state=x' });
          res.end();
          return true;
        }
        if (req.method === 'PUT' && url.pathname.includes('/blobs/uploads/')) {
          assert.equal(digestOf(body), url.searchParams.get('digest'));
          res.writeHead(201);
          res.end();
          return true;
        }
        return false;
      },
    });
    const client = new RegistryClient(fake.host, { plainHttp: true, retry: noWait });
    try {
      const present = Buffer.from('present');
      fake.blobs.set(digestOf(present), present);
      const source = (bytes: Buffer) => ({
        digest: digestOf(bytes),
        size: bytes.length,
        open: () => Readable.from([bytes]),
      });
      assert.equal(await client.pushBlob('org/app', source(present)), 'exists');
      assert.equal(
        await client.pushBlob('org/app', source(Buffer.from('elsewhere')), { mountFrom: 'org/base' }),
        'mounted',
      );
      assert.equal(await client.pushBlob('org/app', source(Buffer.from('new bytes'))), 'uploaded');
      const mount = fake.requests.find((r) => r.url.includes('mount='));
      assert.equal(mount?.url, `/v2/org/app/blobs/uploads/?mount=${digestOf('elsewhere')}&from=org%2Fbase`);
      assert.ok(
        fake.requests.some(
          (r) => r.method === 'PUT' && r.url.startsWith('/v2/org/app/blobs/uploads/1?state=x&digest='),
        ),
      );
    } finally {
      client.close();
    }
  });
  it('cancels its upload session when the registry refuses the bytes (507), but not after a network failure', async () => {
    let dropPatch = false;
    const fake = await fakeRegistry({
      extra: (req, res) => {
        const url = new URL(req.url ?? '/', 'http://fake');
        if (req.method === 'POST') {
          res.writeHead(202, { location: '/v2/org/app/blobs/uploads/1?state=a' });
          res.end();
          return true;
        }
        if (req.method === 'PATCH') {
          if (dropPatch) {
            req.socket.destroy();
            return true;
          }
          // A new URL with the answer: the cancel must use the latest one.
          res.writeHead(202, { location: '/v2/org/app/blobs/uploads/1?state=b' });
          res.end();
          return true;
        }
        if (req.method === 'PUT' && url.pathname.includes('/blobs/uploads/')) {
          res.writeHead(507, { 'content-type': 'application/json' });
          res.end(
            '{"errors":[{"code":"UNKNOWN","message":"The registry cannot store this: its disk is full (ENOSPC)"}]}',
          );
          return true;
        }
        if (req.method === 'DELETE') {
          res.writeHead(204);
          res.end();
          return true;
        }
        return false;
      },
    });
    const client = new RegistryClient(fake.host, {
      plainHttp: true,
      retry: noWait,
      monolithicMaxBytes: 4,
    });
    try {
      const bytes = Buffer.from('more than four bytes');
      const source = { digest: digestOf(bytes), size: bytes.length, open: () => Readable.from([bytes]) };
      await assert.rejects(client.pushBlob('org/app', source), (error: ClientError) => {
        assert.equal(error.status, 507);
        assert.match(error.message, /disk is full \(ENOSPC\)/);
        return true;
      });
      const writes = fake.requests.filter((r) => r.method !== 'HEAD').map((r) => `${r.method} ${r.url}`);
      assert.equal(writes.filter((w) => w.startsWith('PUT')).length, 1, 'a 507 is not retried');
      assert.equal(writes.at(-1), 'DELETE /v2/org/app/blobs/uploads/1?state=b');

      fake.requests.length = 0;
      dropPatch = true;
      await assert.rejects(client.pushBlob('org/app', source), { code: 'NETWORK' });
      assert.equal(fake.requests.filter((r) => r.method === 'DELETE').length, 0);
    } finally {
      client.close();
    }
  });
});

describe('RegistryClient errors, retries and pagination', () => {
  it('retries 429 and 503, waiting what Retry-After says, then returns the answer', async () => {
    let calls = 0;
    const fake = await fakeRegistry({
      extra: (_req, res) => {
        calls++;
        if (calls === 1) res.writeHead(429, { 'retry-after': '2' });
        else if (calls === 2) res.writeHead(503);
        else res.writeHead(200, { 'content-type': 'application/json' });
        res.end(calls <= 2 ? undefined : JSON.stringify({ tags: ['v1'] }));
        return true;
      },
    });
    const { client, waits } = clientRecordingWaits(fake.host);
    try {
      assert.deepEqual(await client.listTags('org/app'), ['v1']);
      assert.deepEqual(waits, [2000, 100]);
    } finally {
      client.close();
    }
  });

  it('retries a request whose connection was reset, with backoff, then returns the answer', async () => {
    let calls = 0;
    const fake = await fakeRegistry({
      extra: (req, res) => {
        calls++;
        if (calls <= 2) {
          req.socket.destroy();
          return true;
        }
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ tags: ['v1'] }));
        return true;
      },
    });
    const { client, waits } = clientRecordingWaits(fake.host);
    try {
      assert.deepEqual(await client.listTags('org/app'), ['v1']);
      assert.equal(calls, 3);
      assert.deepEqual(waits, [50, 100]);
    } finally {
      client.close();
    }
  });

  it("maps 401, 403 and 404 to error codes and keeps the registry's own code and message", async () => {
    const fake = await fakeRegistry({
      extra: (req, res) => {
        const status = Number(/\/v2\/s(\d+)\//.exec(req.url ?? '')?.[1] ?? 0);
        if (!status) return false;
        res.writeHead(status, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ errors: [{ code: `CODE_${status}`, message: `said ${status}` }] }));
        return true;
      },
    });
    const client = new RegistryClient(fake.host, { plainHttp: true, retry: noWait });
    try {
      for (const [status, code] of [
        [401, 'UNAUTHORIZED'],
        [403, 'DENIED'],
        [404, 'NOT_FOUND'],
        [400, 'HTTP'],
      ] as const) {
        await assert.rejects(client.listTags(`s${status}/app`), (e: unknown) => {
          assert.ok(e instanceof ClientError);
          assert.equal(e.code, code);
          assert.equal(e.status, status);
          assert.equal(e.registryCode, `CODE_${status}`);
          assert.match(
            e.message,
            new RegExp(
              `^GET ${fake.host}/v2/s${status}/app/tags/list answered HTTP ${status}: CODE_${status} said ${status}`,
            ),
          );
          return true;
        });
      }
    } finally {
      client.close();
    }
  });

  it('follows Link headers through every page of tags and of the catalog', async () => {
    const fake = await fakeRegistry({
      extra: (req, res) => {
        const url = new URL(req.url ?? '/', 'http://fake');
        const page = Number(url.searchParams.get('page') ?? 0);
        const isCatalog = url.pathname === '/v2/_catalog';
        if (!isCatalog && url.pathname !== '/v2/org/app/tags/list') return false;
        const items = [`item-${page}a`, `item-${page}b`];
        res.writeHead(200, {
          'content-type': 'application/json',
          ...(page < 2 ? { link: `<${url.pathname}?page=${page + 1}>; rel="next"` } : {}),
        });
        res.end(JSON.stringify(isCatalog ? { repositories: items } : { tags: items }));
        return true;
      },
    });
    const client = new RegistryClient(fake.host, { plainHttp: true, retry: noWait });
    try {
      const all = ['item-0a', 'item-0b', 'item-1a', 'item-1b', 'item-2a', 'item-2b'];
      assert.deepEqual(await client.listTags('org/app'), all);
      assert.deepEqual(await client.catalog(), all);
    } finally {
      client.close();
    }
  });

  it('refuses a manifest asked for by digest whose bytes hash to something else', async () => {
    const fake = await fakeRegistry();
    const client = new RegistryClient(fake.host, { plainHttp: true, retry: noWait });
    try {
      const claimed = digestOf('what was asked for');
      fake.manifests.set(
        `org/app:${claimed}`,
        Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MediaType.OciManifest })),
      );
      await assert.rejects(
        client.getManifest('org/app', claimed),
        (e: unknown) => e instanceof ClientError && e.code === 'DIGEST_MISMATCH',
      );
    } finally {
      client.close();
    }
  });
});
