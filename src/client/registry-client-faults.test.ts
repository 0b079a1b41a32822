import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import { text } from 'node:stream/consumers';
import { digestOf, MediaType, type Descriptor, type Digest } from '../oci/index.js';
import { copyImage } from './copy.js';
import { ClientError } from './errors.js';
import type { ImageSource, ImageTarget, PutBlobResult } from './image-store.js';
import { RegistryClient, type ManifestResult } from './registry-client.js';
import { HttpTransport } from './transport.js';

// How the client gets past a registry or network that fails halfway: each test makes one fault happen
// at a chosen request and checks what the client did about it.

type Handler = (req: IncomingMessage, res: ServerResponse, body: Buffer, n: number) => void;

/** A server on 127.0.0.1:0 that hands every request (numbered from 1, body read) to `handle`. */
async function serve(handle: Handler): Promise<{ host: string; seen: string[] }> {
  const seen: string[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      seen.push(`${req.method ?? ''} ${req.url ?? ''}${req.headers.range ? ` ${req.headers.range}` : ''}`);
      handle(req, res, Buffer.concat(chunks), seen.length);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  after(() => {
    server.closeAllConnections();
    server.close();
  });
  return { host: `127.0.0.1:${(server.address() as AddressInfo).port}`, seen };
}

const noWait = { sleep: () => Promise.resolve(), random: () => 0 };

function client(host: string, options: { plainHttp?: boolean; transport?: HttpTransport } = {}) {
  return new RegistryClient(host, { plainHttp: true, retry: noWait, ...options });
}

/**
 * A registry's upload endpoints in memory: POST opens session N, PATCH appends, PUT commits when the
 * digest matches. `fault` may answer a request itself (return true) after the normal handling.
 */
function uploads(fault: (req: IncomingMessage, res: ServerResponse, n: number) => boolean): {
  handler: Handler;
  blobs: Map<string, Buffer>;
  sessions: Map<string, Buffer>;
} {
  const blobs = new Map<string, Buffer>();
  const sessions = new Map<string, Buffer>();
  let next = 0;
  const handler: Handler = (req, res, body, n) => {
    const url = new URL(req.url ?? '/', 'http://x');
    const blob = /\/blobs\/(sha256:[0-9a-f]{64})$/.exec(url.pathname);
    const session = /\/blobs\/uploads\/(\d+)$/.exec(url.pathname)?.[1];
    if (req.method === 'HEAD' && blob) {
      const found = blobs.get(blob[1] ?? '');
      res.writeHead(found ? 200 : 404, { 'content-length': found?.length ?? 0 }).end();
      return;
    }
    if (req.method === 'POST') {
      next += 1;
      sessions.set(String(next), Buffer.alloc(0));
      if (fault(req, res, n)) return;
      res.writeHead(202, { location: `/v2/r/blobs/uploads/${next}?_state=${'x'.repeat(300)}` }).end();
      return;
    }
    const held = session === undefined ? undefined : sessions.get(session);
    if (held === undefined) {
      res.writeHead(404, { 'content-type': 'application/json' });
      res.end('{"errors":[{"code":"BLOB_UPLOAD_UNKNOWN","message":"no such upload"}]}');
      return;
    }
    const all = Buffer.concat([held, body]);
    sessions.set(session ?? '', all);
    if (req.method === 'PUT') {
      const digest = url.searchParams.get('digest') ?? '';
      if (digestOf(all) !== digest) {
        res.writeHead(400, { 'content-type': 'application/json' });
        res.end('{"errors":[{"code":"DIGEST_INVALID","message":"digest did not match"}]}');
        return;
      }
      blobs.set(digest, all);
      sessions.delete(session ?? '');
    }
    if (fault(req, res, n)) return;
    res.writeHead(req.method === 'PUT' ? 201 : 202, { location: req.url ?? '' }).end();
  };
  return { handler, blobs, sessions };
}

const big = Buffer.alloc(3 * 1024 * 1024, 7);
const blobOf = (bytes: Buffer) => ({
  digest: digestOf(bytes),
  size: bytes.length,
  open: () => Readable.from([bytes]),
});

describe('uploads that fail halfway start over from the HEAD', () => {
  it('a PATCH the registry took but answered 503 is not sent into the same session again', async () => {
    let patches = 0;
    const fake = uploads((req, res) => {
      if (req.method !== 'PATCH' || patches++ > 0) return false;
      res.writeHead(503).end();
      return true;
    });
    const server = await serve(fake.handler);
    const c = new RegistryClient(server.host, { plainHttp: true, retry: noWait, monolithicMaxBytes: 1024 });
    try {
      assert.equal(await c.pushBlob('r', blobOf(big)), 'uploaded');
      assert.deepEqual(fake.blobs.get(digestOf(big)), big);
      const methods = server.seen.map((line) => line.split(' ')[0]);
      // HEAD, POST, PATCH (503), DELETE of that session, then again from the HEAD in a new session.
      assert.deepEqual(methods, ['HEAD', 'POST', 'PATCH', 'DELETE', 'HEAD', 'POST', 'PATCH', 'PUT']);
      assert.notEqual(
        server.seen[2]?.split(' ')[1]?.split('?')[0],
        server.seen[6]?.split(' ')[1]?.split('?')[0],
      );
    } finally {
      c.close();
    }
  });

  it('a PUT that committed the blob but lost its answer ends as "exists", found by the HEAD', async () => {
    let resets = 0;
    const fake = uploads((req, _res) => {
      if (req.method !== 'PUT' || resets++ > 0) return false;
      req.socket.destroy();
      return true;
    });
    const server = await serve(fake.handler);
    const c = client(server.host);
    try {
      const small = Buffer.from('small blob');
      assert.equal(await c.pushBlob('r', blobOf(small)), 'exists');
      assert.deepEqual(
        server.seen.map((line) => line.split(' ')[0]),
        ['HEAD', 'POST', 'PUT', 'HEAD'],
      );
    } finally {
      c.close();
    }
  });

  it("an upload error is one line, without the session's query string", async () => {
    const server = await serve((req, res) => {
      if (req.method === 'HEAD') return void res.writeHead(404).end();
      if (req.method === 'POST')
        return void res.writeHead(202, { location: `/v2/r/blobs/uploads/1?_state=${'s'.repeat(300)}` }).end();
      res.writeHead(400, { 'content-type': 'application/json' });
      res.end(
        JSON.stringify({ errors: [{ code: 'BLOB_UPLOAD_INVALID', message: 'line one\nline two\n\tthree' }] }),
      );
    });
    const c = client(server.host);
    try {
      await assert.rejects(c.pushBlob('r', blobOf(Buffer.from('x'))), (error: unknown) => {
        assert.ok(error instanceof ClientError);
        assert.equal(
          error.message,
          `PUT ${server.host}/v2/r/blobs/uploads/1 answered HTTP 400: BLOB_UPLOAD_INVALID line one line two three`,
        );
        return true;
      });
    } finally {
      c.close();
    }
  });
});

const manifestBytes = Buffer.from(
  JSON.stringify({
    schemaVersion: 2,
    mediaType: MediaType.OciManifest,
    config: { mediaType: MediaType.OciEmpty, digest: digestOf('{}'), size: 2 },
    layers: [],
  }),
);

describe('answers that break off are asked for again', () => {
  it('a manifest whose body is cut off is fetched again', async () => {
    const server = await serve((_req, res, _body, n) => {
      res.writeHead(200, {
        'content-type': MediaType.OciManifest,
        'content-length': manifestBytes.length,
        'docker-content-digest': digestOf(manifestBytes),
      });
      if (n === 1) {
        res.write(manifestBytes.subarray(0, 20));
        setTimeout(() => res.socket?.destroy(), 20);
      } else res.end(manifestBytes);
    });
    const c = client(server.host);
    try {
      const got = await c.getManifest('r', 'v1');
      assert.deepEqual(got.bytes, manifestBytes);
      assert.equal(server.seen.length, 2);
    } finally {
      c.close();
    }
  });

  it('a manifest by tag that does not match its Docker-Content-Digest is refused', async () => {
    const server = await serve((_req, res) => {
      res.writeHead(200, {
        'content-type': MediaType.OciManifest,
        'docker-content-digest': digestOf('something else'),
      });
      res.end(manifestBytes);
    });
    const c = client(server.host);
    try {
      await assert.rejects(c.getManifest('r', 'v1'), (error: unknown) => {
        assert.ok(error instanceof ClientError);
        assert.equal(error.code, 'DIGEST_MISMATCH');
        assert.match(
          error.message,
          /^Manifest r:v1 from .* arrived with digest sha256:\w+, not the sha256:\w+ the registry gave/,
        );
        return true;
      });
    } finally {
      c.close();
    }
  });

  for (const honoursRange of [true, false]) {
    it(`a verified blob download that breaks off resumes at its offset (${honoursRange ? 'Range honoured' : 'Range ignored'})`, async () => {
      const bytes = Buffer.alloc(2 * 1024 * 1024);
      for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 31) % 251;
      const server = await serve((req, res, _body, n) => {
        const range = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
        if (n === 1) {
          res.writeHead(200, { 'content-length': bytes.length });
          res.write(bytes.subarray(0, 700_000), () => setTimeout(() => res.socket?.destroy(), 20));
          return;
        }
        if (range && honoursRange) {
          const start = Number(range[1]);
          res.writeHead(206, {
            'content-length': bytes.length - start,
            'content-range': `bytes ${start}-${bytes.length - 1}/${bytes.length}`,
          });
          res.end(bytes.subarray(start));
          return;
        }
        res.writeHead(200, { 'content-length': bytes.length }).end(bytes);
      });
      const c = client(server.host);
      try {
        const stream = await c.getBlob('r', digestOf(bytes), { size: bytes.length });
        const chunks: Buffer[] = [];
        for await (const chunk of stream) chunks.push(chunk as Buffer);
        assert.deepEqual(Buffer.concat(chunks), bytes);
        assert.equal(server.seen.length, 2);
        assert.match(server.seen[1] ?? '', /bytes=\d+-$/);
      } finally {
        c.close();
      }
    });
  }

  it('a blob download that keeps breaking off fails with one line naming the blob and the registry', async () => {
    const bytes = Buffer.alloc(100_000, 3);
    const server = await serve((_req, res) => {
      res.writeHead(200, { 'content-length': bytes.length });
      res.write(bytes.subarray(0, 10), () => setTimeout(() => res.socket?.destroy(), 10));
    });
    const c = client(server.host);
    try {
      const stream = await c.getBlob('r', digestOf(bytes));
      await assert.rejects(text(stream), (error: unknown) => {
        assert.ok(error instanceof ClientError);
        assert.match(
          error.message,
          new RegExp(`^Reading blob ${digestOf(bytes)} from ${server.host}/r failed: `),
        );
        assert.doesNotMatch(error.message, /\n/);
        return true;
      });
      assert.equal(server.seen.length, 5, 'the first request and four more');
    } finally {
      c.close();
    }
  });
});

describe('plain HTTP or HTTPS on a local host', () => {
  it('a reset on the first request to a plain-HTTP server does not switch the client to HTTPS', async () => {
    const server = await serve((req, res, _body, n) => {
      if (n === 1) return void req.socket.destroy();
      res.writeHead(200, { 'content-type': 'application/json' }).end('{"tags":["v1"]}');
    });
    const c = new RegistryClient(server.host, { retry: noWait });
    try {
      assert.deepEqual(await c.listTags('r'), ['v1']);
      assert.equal(c.baseUrl, `http://${server.host}`);
    } finally {
      c.close();
    }
  });

  it('management calls settle the scheme first, as registry calls do', async () => {
    const server = await serve((req, res) => {
      if (req.url === '/v2/') return void res.writeHead(200).end('{}');
      res.writeHead(200, { 'content-type': 'application/json' }).end('{"repositories":[]}');
    });
    const c = new RegistryClient(server.host, { retry: noWait });
    try {
      assert.deepEqual(await c.api('GET', '/api/v1/repositories'), { repositories: [] });
      assert.deepEqual(server.seen, ['GET /v2/', 'GET /api/v1/repositories']);
    } finally {
      c.close();
    }
  });

  it('management reads are retried on a 503; creations are not', async () => {
    const server = await serve((_req, res, _body, n) => {
      if (n === 1 || n === 3) return void res.writeHead(503).end();
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    });
    const c = client(server.host);
    try {
      assert.deepEqual(await c.api('GET', '/api/v1/repositories'), {});
      await assert.rejects(c.api('POST', '/api/v1/repositories', { name: 'x' }), /answered HTTP 503/);
      assert.equal(server.seen.length, 3);
    } finally {
      c.close();
    }
  });
});

describe('a server that stops answering', () => {
  for (const large of [false, true]) {
    it(`fails after the idle timeout, once, naming the host (${large ? 'raw blob reader' : 'node client'})`, async () => {
      const server = await serve(() => undefined);
      const transport = new HttpTransport({ idleTimeoutMs: 150 });
      const c = client(server.host, { transport });
      try {
        const started = Date.now();
        const call = large
          ? c.getBlob('r', digestOf('x'), { size: 8 * 1024 * 1024, verify: false })
          : c.getManifest('r', 'v1');
        await assert.rejects(call, (error: unknown) => {
          assert.ok(error instanceof ClientError);
          assert.equal(error.message, `${server.host} sent nothing for 0.15 s; giving up`);
          return true;
        });
        assert.equal(server.seen.length, 1, 'not retried');
        assert.ok(Date.now() - started < 5000);
      } finally {
        c.close();
        transport.close();
      }
    });
  }
});

/** A source whose blob reads fail as `fail` says, then give the bytes. */
class FlakySource implements ImageSource {
  readonly name = 'flaky:src';
  readonly reads: number[] = [];
  constructor(
    private readonly bytes: Buffer,
    private readonly fail: (attempt: number) => 'reset' | 'wrong' | undefined,
  ) {}
  root(): Promise<ManifestResult> {
    return Promise.reject(new Error('unused'));
  }
  manifest(): Promise<ManifestResult> {
    return Promise.reject(new Error('unused'));
  }
  blob(): Promise<Readable> {
    const attempt = this.reads.push(1);
    const how = this.fail(attempt);
    if (how === 'wrong') return Promise.resolve(Readable.from([Buffer.from('not the bytes')]));
    if (how === 'reset') {
      const stream = new Readable({ read() {} });
      stream.push(this.bytes.subarray(0, 3));
      setTimeout(
        () => stream.destroy(Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' })),
        5,
      );
      return Promise.resolve(stream);
    }
    return Promise.resolve(Readable.from([this.bytes]));
  }
  referrers(): Promise<Descriptor[]> {
    return Promise.resolve([]);
  }
  close(): Promise<void> {
    return Promise.resolve();
  }
}

/** A target that checks digests as a registry does (DIGEST_INVALID) and keeps what it stored. */
class CheckingTarget implements ImageTarget {
  readonly name = 'checking:dst';
  readonly tag = 'v1';
  readonly stored = new Map<Digest, Buffer>();
  async putBlob(descriptor: Descriptor, open: () => Promise<Readable>): Promise<PutBlobResult> {
    const chunks: Buffer[] = [];
    for await (const chunk of await open()) chunks.push(chunk as Buffer);
    const bytes = Buffer.concat(chunks);
    if (digestOf(bytes) !== descriptor.digest)
      throw new ClientError('HTTP', 'PUT dst answered HTTP 400: DIGEST_INVALID', {
        status: 400,
        registryCode: 'DIGEST_INVALID',
      });
    this.stored.set(descriptor.digest, bytes);
    return 'uploaded';
  }
  putManifest(): Promise<void> {
    return Promise.resolve();
  }
  close(): Promise<void> {
    return Promise.resolve();
  }
}

function imageWith(layer: Buffer): ManifestResult {
  const bytes = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MediaType.OciManifest,
      config: { mediaType: MediaType.OciEmpty, digest: digestOf(layer), size: layer.length },
      layers: [],
    }),
  );
  return { bytes, mediaType: MediaType.OciManifest, digest: digestOf(bytes) };
}

describe('a copy whose source fails', () => {
  const layer = Buffer.from('{"layer":"bytes"}');
  const withRoot = (source: FlakySource): FlakySource =>
    Object.assign(source, { root: () => Promise.resolve(imageWith(layer)) });

  it('reads a blob again when the source broke off, and stores the right bytes', async () => {
    const source = withRoot(new FlakySource(layer, (n) => (n === 1 ? 'reset' : undefined)));
    const target = new CheckingTarget();
    await copyImage(source, target);
    assert.deepEqual(target.stored.get(digestOf(layer)), layer);
    assert.equal(source.reads.length, 2);
  });

  it('blames the source, not the target, for bytes that do not match their digest', async () => {
    const source = withRoot(new FlakySource(layer, () => 'wrong'));
    await assert.rejects(copyImage(source, new CheckingTarget()), (error: unknown) => {
      assert.ok(error instanceof ClientError);
      assert.equal(error.code, 'DIGEST_MISMATCH');
      assert.match(
        error.message,
        new RegExp(`^Blob ${digestOf(layer)} from flaky:src does not match its digest`),
      );
      return true;
    });
  });

  it('names the source and the blob when the source keeps breaking off', async () => {
    const source = withRoot(new FlakySource(layer, () => 'reset'));
    await assert.rejects(copyImage(source, new CheckingTarget()), (error: unknown) => {
      assert.ok(error instanceof ClientError);
      assert.equal(error.message, `Cannot read blob ${digestOf(layer)} from flaky:src: read ECONNRESET`);
      return true;
    });
    assert.equal(source.reads.length, 5);
  });
});
