import { createHash } from 'node:crypto';
import { Agent, request, type IncomingHttpHeaders } from 'node:http';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { rawGet } from '../src/client/index.js';
import type { BlobSource } from './payload.js';

export const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';

interface Response {
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  readonly body: Buffer;
}

interface RequestOptions {
  readonly method: string;
  readonly headers?: Record<string, string | number>;
  /** A small body sent whole, or a stream of chunks (then `content-length` must be given). */
  readonly body?: Buffer | Iterable<Buffer> | AsyncIterable<Buffer>;
}

/**
 * The one client both registries are driven with: plain node:http over a keep-alive agent, bodies
 * streamed with back-pressure, response bodies buffered (they are small here except for downloads).
 */
export class RegistryClient {
  readonly label: string;
  readonly base: string;
  /** Whether `POST …/uploads/?digest=` with a body stores the blob in one request (probed). */
  monolithicPost = true;
  readonly #agent = new Agent({ keepAlive: true, maxSockets: 4 });

  constructor(label: string, base: string) {
    this.label = label;
    this.base = base;
  }

  close(): void {
    this.#agent.destroy();
  }

  async #send(url: URL, options: RequestOptions): Promise<Response> {
    return new Promise<Response>((resolve, reject) => {
      const req = request(
        url,
        { method: options.method, headers: options.headers ?? {}, agent: this.#agent },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (chunk: Buffer) => chunks.push(chunk));
          res.on('error', reject);
          res.on('end', () =>
            resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }),
          );
        },
      );
      req.on('error', reject);
      const body = options.body;
      if (body === undefined || Buffer.isBuffer(body)) {
        req.end(body);
      } else {
        // A failed body stream surfaces through the request's error (or the early response).
        pipeline(Readable.from(body, { objectMode: false }), req).catch(reject);
      }
    });
  }

  async #expect(url: URL, options: RequestOptions, status: number): Promise<Response> {
    const res = await this.#send(url, options);
    if (res.status !== status) {
      throw new Error(
        `${this.label}: ${options.method} ${url.pathname} answered ${res.status}, expected ${status}: ${res.body.toString().slice(0, 500)}`,
      );
    }
    return res;
  }

  #url(path: string): URL {
    return new URL(path, this.base);
  }

  #location(res: Response): URL {
    const location = res.headers.location;
    if (!location) throw new Error(`${this.label}: upload response has no Location header`);
    return new URL(location, this.base);
  }

  #checkDigest(res: Response, blob: BlobSource): void {
    const got = res.headers['docker-content-digest'];
    if (got !== undefined && got !== blob.digest) {
      throw new Error(`${this.label}: stored digest "${String(got)}", expected "${blob.digest}"`);
    }
  }

  /**
   * Finds out whether the registry honours `POST ?digest=` with a body (a spec MAY). distribution 2.8
   * does not: it answers 202 and opens a session, so its monolithic upload is POST then PUT ?digest=.
   */
  async probeMonolithicPost(repo: string, blob: BlobSource): Promise<boolean> {
    const url = this.#url(`/v2/${repo}/blobs/uploads/?digest=${blob.digest}`);
    const res = await this.#send(url, {
      method: 'POST',
      headers: { 'content-type': 'application/octet-stream', 'content-length': blob.size },
      body: blob.stream(),
    });
    if (res.status === 201) {
      this.#checkDigest(res, blob);
      this.monolithicPost = true;
    } else if (res.status === 202) {
      await this.#send(this.#location(res), { method: 'DELETE' });
      this.monolithicPost = false;
    } else {
      throw new Error(
        `${this.label}: probe POST answered ${res.status}: ${res.body.toString().slice(0, 500)}`,
      );
    }
    return this.monolithicPost;
  }

  /** Monolithic upload: one `POST ?digest=` with the body, or POST then `PUT ?digest=` with the body. */
  async uploadMonolithic(repo: string, blob: BlobSource): Promise<void> {
    const headers = { 'content-type': 'application/octet-stream', 'content-length': blob.size };
    if (this.monolithicPost) {
      const url = this.#url(`/v2/${repo}/blobs/uploads/?digest=${blob.digest}`);
      this.#checkDigest(await this.#expect(url, { method: 'POST', headers, body: blob.stream() }, 201), blob);
      return;
    }
    const started = await this.#expect(this.#url(`/v2/${repo}/blobs/uploads/`), { method: 'POST' }, 202);
    const url = this.#location(started);
    url.searchParams.set('digest', blob.digest);
    this.#checkDigest(await this.#expect(url, { method: 'PUT', headers, body: blob.stream() }, 201), blob);
  }

  /** Chunked upload: POST, PATCH with Content-Range per chunk (following Location), then `PUT ?digest=`. */
  async uploadChunked(repo: string, blob: BlobSource, options: { chunkBytes: number }): Promise<void> {
    let res = await this.#expect(this.#url(`/v2/${repo}/blobs/uploads/`), { method: 'POST' }, 202);
    for (let start = 0; start < blob.size; start += options.chunkBytes) {
      const end = Math.min(start + options.chunkBytes, blob.size);
      res = await this.#expect(
        this.#location(res),
        {
          method: 'PATCH',
          headers: {
            'content-type': 'application/octet-stream',
            'content-length': end - start,
            'content-range': `${start}-${end - 1}`,
          },
          body: blob.stream(start, end),
        },
        202,
      );
    }
    const url = this.#location(res);
    url.searchParams.set('digest', blob.digest);
    this.#checkDigest(
      await this.#expect(url, { method: 'PUT', headers: { 'content-length': 0 } }, 201),
      blob,
    );
  }

  /**
   * GETs a blob and discards it; returns the byte count. With `verify`, also checks the digest. The body
   * is read into one reused buffer (Airlock's client `rawGet`, one connection per download): node's HTTP
   * client allocates a buffer per read and would be what limits the rate measured.
   */
  async download(repo: string, digest: string, options: { verify?: boolean } = {}): Promise<number> {
    const res = await rawGet(this.#url(`/v2/${repo}/blobs/${digest}`), {});
    if (!res || res.status !== 200) {
      res?.body.destroy();
      throw new Error(
        `${this.label}: GET blob answered ${res?.status ?? 'a response rawGet does not frame'}`,
      );
    }
    const hash = options.verify ? createHash('sha256') : undefined;
    let bytes = 0;
    await res.body.pumpBorrowed((chunk) => {
      bytes += chunk.byteLength;
      hash?.update(chunk);
      return true;
    }).done;
    if (hash && `sha256:${hash.digest('hex')}` !== digest) {
      throw new Error(`${this.label}: downloaded bytes do not match "${digest}"`);
    }
    return bytes;
  }

  async putManifest(repo: string, tag: string, manifest: Buffer): Promise<void> {
    await this.#expect(
      this.#url(`/v2/${repo}/manifests/${tag}`),
      {
        method: 'PUT',
        headers: { 'content-type': OCI_MANIFEST, 'content-length': manifest.byteLength },
        body: manifest,
      },
      201,
    );
  }

  async getManifest(repo: string, tag: string): Promise<Buffer> {
    const res = await this.#expect(
      this.#url(`/v2/${repo}/manifests/${tag}`),
      { method: 'GET', headers: { accept: OCI_MANIFEST } },
      200,
    );
    return res.body;
  }
}
