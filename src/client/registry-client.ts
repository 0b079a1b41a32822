import { Readable, Transform, type TransformCallback } from 'node:stream';
import {
  Digester,
  digestOf,
  digestTag,
  parseDigest,
  Header,
  MediaType,
  MANIFEST_MEDIA_TYPES,
  MAX_MANIFEST_BYTES,
  type Descriptor,
  type Digest,
} from '../oci/index.js';
import { Authenticator, unauthorizedHint } from './auth.js';
import type { Credentials } from './credentials.js';
import { ClientError, type ClientErrorCode } from './errors.js';
import {
  isRetryableError,
  isRetryableStatus,
  parseRetryAfter,
  withRetry,
  type RetryPolicy,
} from './retry.js';
import { answersPlainHttp, HttpTransport, type HttpResponse, type RequestBody } from './transport.js';

/** Registry hosts that are spoken to over plain HTTP unless told otherwise, as crane does. */
export function isLocalHost(host: string): boolean {
  const name = host.startsWith('[') ? host.slice(1, host.indexOf(']')) : (host.split(':')[0] ?? '');
  return name === 'localhost' || name.startsWith('127.') || name === '::1' || name.endsWith('.localhost');
}

export interface RegistryClientOptions {
  readonly credentials?: Credentials | undefined;
  /**
   * Use http:// (true) or https:// (false). Default: decided by the first call for localhost,
   * `*.localhost`, 127.0.0.0/8 and [::1] (plain HTTP unless the server speaks TLS); https:// for others.
   */
  readonly plainHttp?: boolean;
  /** A shared transport (TLS settings, connection pool). Default: a new one from `insecure`/`ca`. */
  readonly transport?: HttpTransport;
  readonly insecure?: boolean;
  readonly ca?: string | Buffer;
  readonly retry?: RetryPolicy;
  /** Blobs up to this size are uploaded in one PUT; larger ones are streamed in a PATCH. Default: 16 MiB. */
  readonly monolithicMaxBytes?: number;
  /** Send large blobs in PATCH chunks of this size with Content-Range. Default: one streamed PATCH. */
  readonly chunkBytes?: number;
}

export interface ManifestResult {
  readonly bytes: Buffer;
  readonly mediaType: string;
  readonly digest: Digest;
}

/** One event of Airlock's event stream. */
export interface RegistryPushEvent {
  readonly action: 'push' | 'delete';
  readonly repository: string;
  readonly digest: string;
  readonly tag?: string;
  readonly mediaType?: string;
}

export interface ManifestHead {
  readonly digest: Digest;
  readonly mediaType: string;
  readonly size: number;
}

export interface BlobSource {
  readonly digest: Digest;
  readonly size: number;
  /** Makes a fresh stream of the bytes (called again on a retry). */
  readonly open: () => Readable | Promise<Readable>;
}

export type BlobPushResult = 'exists' | 'mounted' | 'uploaded';

interface CallOptions {
  readonly method: string;
  readonly path: string;
  readonly scopes: readonly string[];
  readonly headers?: Record<string, string>;
  readonly body?: RequestBody;
  /** Statuses that are answers, not failures. */
  readonly ok: readonly number[];
  readonly signal?: AbortSignal | undefined;
  /** A large body is expected (see `HttpRequest.large`). */
  readonly large?: boolean;
  /**
   * Send once, without retries: for requests that move an upload session on (a PATCH or PUT with
   * bytes), which a registry may have applied although its answer was lost; `pushBlob` starts over.
   */
  readonly once?: boolean;
}

/** Blobs at least this large are downloaded with the transport's raw reader over plain HTTP. */
const LARGE_BLOB = 4 * 1024 * 1024;

const ERROR_CODES: Record<number, ClientErrorCode> = { 401: 'UNAUTHORIZED', 403: 'DENIED', 404: 'NOT_FOUND' };
const MANIFEST_ACCEPT = [...MANIFEST_MEDIA_TYPES, 'application/vnd.oci.artifact.manifest.v1+json'].join(', ');

export function pullScope(repository: string): string {
  return `repository:${repository}:pull`;
}
export function pushScope(repository: string): string {
  return `repository:${repository}:pull,push`;
}

/** Checks bytes against a digest while they stream; the stream errors at its end on a mismatch. */
export function verifyingStream(expected: Digest, expectedSize?: number): Transform {
  const digester = new Digester(parseDigest(expected).algorithm);
  return new Transform({
    transform(chunk: Buffer, _encoding, done: TransformCallback) {
      digester.update(chunk);
      done(null, chunk);
    },
    flush(done: TransformCallback) {
      if (expectedSize !== undefined && digester.size !== expectedSize) {
        done(
          new ClientError(
            'DIGEST_MISMATCH',
            `Blob ${expected} should be ${expectedSize} bytes but ${digester.size} arrived`,
          ),
        );
        return;
      }
      const actual = digester.digest();
      done(
        actual === expected
          ? null
          : new ClientError('DIGEST_MISMATCH', `Blob ${expected} arrived with digest ${actual}`),
      );
    },
  });
}

/** A client for one registry host, speaking the OCI Distribution API with auth, retries and streaming. */
export class RegistryClient {
  readonly host: string;
  /** `http(s)://host`; for a local host without --plain-http it may switch to https after the first call. */
  baseUrl: string;
  /** Local hosts start on plain HTTP and move to HTTPS when the server turns out to speak TLS. */
  #schemeUndecided: boolean;
  readonly #transport: HttpTransport;
  readonly #ownsTransport: boolean;
  readonly #auth: Authenticator;
  readonly #credentials: Credentials | undefined;
  readonly #retry: RetryPolicy;
  readonly #monolithicMax: number;
  readonly #chunkBytes: number | undefined;

  constructor(host: string, options: RegistryClientOptions = {}) {
    this.host = host === 'docker.io' ? 'registry-1.docker.io' : host;
    const plain = options.plainHttp ?? isLocalHost(this.host);
    this.baseUrl = `${plain ? 'http' : 'https'}://${this.host}`;
    this.#schemeUndecided = options.plainHttp === undefined && plain;
    this.#ownsTransport = options.transport === undefined;
    this.#transport =
      options.transport ??
      new HttpTransport({
        ...(options.insecure ? { insecure: true } : {}),
        ...(options.ca ? { ca: options.ca } : {}),
      });
    this.#auth = new Authenticator(this.#transport, {
      credentials: options.credentials,
      retry: options.retry,
    });
    this.#credentials = options.credentials;
    this.#retry = options.retry ?? {};
    this.#monolithicMax = options.monolithicMaxBytes ?? 16 * 1024 * 1024;
    this.#chunkBytes = options.chunkBytes;
  }

  close(): void {
    if (this.#ownsTransport) this.#transport.close();
  }

  /** Sends one API call with auth, retries and error mapping; the caller reads or drains the body. */
  #call(options: CallOptions): Promise<HttpResponse> {
    return this.#request(options, (res) => Promise.resolve(res));
  }

  /**
   * Sends an API call and reads its answer with `read` inside the same attempt, so an answer that breaks
   * off halfway (a reset, a cut-off body) is asked for again like a failed request.
   */
  async #request<T>(options: CallOptions, read: (res: HttpResponse) => Promise<T>): Promise<T> {
    if (!this.#schemeUndecided) return this.#attempts(options, read);
    try {
      const result = await this.#attempts(options, read, true);
      this.#schemeUndecided = false;
      return result;
    } catch (error) {
      // A TLS server hangs up on plain HTTP: speak HTTPS to it from now on (crane does the same).
      if (!looksLikeTlsHangUp(error)) throw error;
      this.#schemeUndecided = false;
      this.baseUrl = `https://${this.host}`;
      try {
        return await this.#attempts(options, read);
      } catch (tlsError) {
        // It was a plain-HTTP server after all, and the hang-up a fault of that one connection.
        if (!answersPlainHttp(tlsError)) throw tlsError;
        this.baseUrl = `http://${this.host}`;
        return this.#attempts(options, read);
      }
    }
  }

  /**
   * Decides between plain HTTP and HTTPS for a local host before a call that does not go through
   * `#request` (the management API): one `GET /v2/`, as the first registry call would.
   */
  async #settleScheme(): Promise<void> {
    if (this.#schemeUndecided) await this.ping();
  }

  /** `probing`: the first plain-HTTP call to a host that may speak TLS, whose hang-up is not retried. */
  async #attempts<T>(
    options: CallOptions,
    read: (res: HttpResponse) => Promise<T>,
    probing = false,
  ): Promise<T> {
    const url = new URL(options.path, this.baseUrl);
    try {
      return await withRetry<T>(
        async () => {
          const send = (authorization: string | undefined): Promise<HttpResponse> =>
            this.#transport.send({
              method: options.method,
              url,
              headers: { ...options.headers, ...(authorization ? { authorization } : {}) },
              ...(options.body === undefined ? {} : { body: options.body }),
              ...(options.signal ? { signal: options.signal } : {}),
              ...(options.large ? { large: true } : {}),
            });
          let response = await send(this.#auth.header(options.scopes));
          if (response.status === 401) {
            const authorization = await this.#auth.respond(response, options.scopes, options.signal);
            // Unanswerable: the body (the registry's error) is left for the failure message.
            if (authorization !== undefined) {
              await response.drain();
              response = await send(authorization);
            }
          }
          if (options.ok.includes(response.status)) return { done: await read(response) };
          const failure = await this.#failure(response, options);
          if (!isRetryableStatus(response.status)) throw failure;
          return { retry: failure, afterMs: failure.retryAfterMs };
        },
        {
          ...this.#retry,
          ...(options.once ? { retries: 0 } : {}),
          ...(options.signal ? { signal: options.signal } : {}),
          ...(probing
            ? { retryError: (error: unknown) => isRetryableError(error) && !looksLikeTlsHangUp(error) }
            : {}),
        },
      );
    } catch (error) {
      throw this.#brokenAnswer(error, options);
    }
  }

  /** Names the call an answer broke off in (node says only "aborted" or "read ECONNRESET"). */
  #brokenAnswer(error: unknown, options: CallOptions): unknown {
    if (error instanceof ClientError || !(error instanceof Error) || options.signal?.aborted) return error;
    const wrapped = new ClientError(
      'NETWORK',
      `${options.method} ${this.host}${displayPath(options.path)}: the answer broke off (${error.message})`,
      { cause: error },
    );
    return Object.assign(wrapped, { errno: (error as { code?: unknown }).code });
  }

  async #failure(res: HttpResponse, options: CallOptions): Promise<ClientError> {
    let detail = '';
    let registryCode: string | undefined;
    try {
      const text = options.method === 'HEAD' ? '' : await res.text(64 * 1024);
      const body = text ? (JSON.parse(text) as { errors?: Array<{ code?: string; message?: string }> }) : {};
      const first = body.errors?.[0];
      registryCode = first?.code;
      if (first) detail = `: ${oneLine(`${first.code ?? ''}${first.message ? ` ${first.message}` : ''}`)}`;
    } catch {
      await res.drain().catch(() => undefined);
    }
    const code = ERROR_CODES[res.status] ?? 'HTTP';
    const hint = unauthorizedHint(res, this.#credentials);
    const retryAfterMs = parseRetryAfter(res.header('retry-after'));
    return new ClientError(
      code,
      `${options.method} ${this.host}${displayPath(options.path)} answered HTTP ${res.status}${detail}${hint}`,
      {
        status: res.status,
        ...(registryCode ? { registryCode } : {}),
        ...(retryAfterMs === undefined ? {} : { retryAfterMs }),
      },
    );
  }

  /**
   * The Authorization header Airlock's own endpoints (`/api/…`) get up front, without a token round trip:
   * Basic for a user name and password; with `bearer`, an identity token as Bearer.
   */
  #upfrontAuthorization(options: { bearer?: boolean } = {}): string | undefined {
    const credentials = this.#credentials;
    if (!credentials) return undefined;
    if ('username' in credentials)
      return `Basic ${Buffer.from(`${credentials.username}:${credentials.password}`).toString('base64')}`;
    return options.bearer ? `Bearer ${credentials.identityToken}` : undefined;
  }

  /**
   * Calls Airlock's management API (`/api/…`) with a JSON body, sending Basic credentials up front
   * (management calls are made by people and robots with passwords, not with scoped tokens).
   */
  async api<T = unknown>(method: string, path: string, body?: unknown): Promise<T> {
    await this.#settleScheme();
    const url = new URL(path, this.baseUrl);
    const authorization = this.#upfrontAuthorization();
    const send = (): Promise<HttpResponse> =>
      this.#transport.send({
        method,
        url,
        headers: {
          accept: 'application/json',
          ...(authorization ? { authorization } : {}),
          ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        },
        ...(body === undefined ? {} : { body: Buffer.from(JSON.stringify(body)) }),
      });
    // Reads, replacements and deletions are retried like registry calls; a POST (a creation) is not.
    const res = await withRetry<HttpResponse>(
      async () => {
        const answer = await send();
        if (!isRetryableStatus(answer.status)) return { done: answer };
        const failure = await this.#failure(answer, { method, path, scopes: [], ok: [] });
        return { retry: failure, afterMs: failure.retryAfterMs };
      },
      { ...this.#retry, ...(method === 'POST' ? { retries: 0 } : {}) },
    );
    if (res.status >= 400) {
      const failure = await this.#failure(res, { method, path, scopes: [], ok: [] });
      // Airlock answers its own errors in the registry's JSON shape; a bare 404 is another registry.
      if (res.status !== 404 || failure.registryCode !== undefined) throw failure;
      throw new ClientError(
        'NOT_FOUND',
        `${failure.message}: ${this.host} has no Airlock management API (is it an Airlock registry?)`,
        { status: 404 },
      );
    }
    const text = await res.text(16 * 1024 * 1024);
    return (text ? JSON.parse(text) : undefined) as T;
  }

  /**
   * Airlock's push/delete event stream (`/api/v1/events`, server-sent events) for some repositories:
   * yields each event until the server ends the stream or `signal` aborts. A registry without the stream
   * (not Airlock) fails with a NOT_FOUND ClientError; callers then poll.
   */
  async *events(
    options: { repositories?: readonly string[]; signal?: AbortSignal; onOpen?: () => void } = {},
  ): AsyncGenerator<RegistryPushEvent> {
    await this.#settleScheme();
    const url = new URL('/api/v1/events', this.baseUrl);
    for (const name of options.repositories ?? []) url.searchParams.append('repository', name);
    const authorization = this.#upfrontAuthorization({ bearer: true });
    const res = await this.#transport.send({
      method: 'GET',
      url,
      headers: { accept: 'text/event-stream', ...(authorization ? { authorization } : {}) },
      ...(options.signal ? { signal: options.signal } : {}),
    });
    if (res.status !== 200 || !(res.header('content-type') ?? '').startsWith('text/event-stream'))
      throw await this.#failure(res, { method: 'GET', path: '/api/v1/events', scopes: [], ok: [] });
    options.onOpen?.();
    let buffer = '';
    try {
      for await (const chunk of res.body) {
        buffer += (chunk as Buffer).toString('utf8');
        let end: number;
        while ((end = buffer.indexOf('\n\n')) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const data = block
            .split('\n')
            .filter((line) => line.startsWith('data:'))
            .map((line) => line.slice(5).trimStart())
            .join('\n');
          if (!data) continue; // a comment (subscribed, heartbeat)
          try {
            yield JSON.parse(data) as RegistryPushEvent;
          } catch {
            // not JSON: skip the event rather than end the stream
          }
        }
        if (buffer.length > 1024 * 1024)
          throw new ClientError('TOO_LARGE', 'Event stream sent an event larger than 1 MiB');
      }
    } finally {
      res.body.destroy();
    }
  }

  /** GET /v2/: true when the registry answers (with or without auth). */
  async ping(signal?: AbortSignal): Promise<void> {
    const res = await this.#call({ method: 'GET', path: '/v2/', scopes: [], ok: [200], signal });
    await res.drain();
  }

  async headManifest(
    repository: string,
    reference: string,
    signal?: AbortSignal,
  ): Promise<ManifestHead | undefined> {
    const res = await this.#call({
      method: 'HEAD',
      path: `/v2/${repository}/manifests/${reference}`,
      scopes: [pullScope(repository)],
      headers: { accept: MANIFEST_ACCEPT },
      ok: [200, 404],
      signal,
    });
    await res.drain();
    if (res.status === 404) return undefined;
    const digest = res.header('docker-content-digest');
    if (!digest) return undefined;
    return {
      digest: parseDigest(digest).digest,
      mediaType: res.header('content-type') ?? '',
      size: Number(res.header('content-length') ?? 0),
    };
  }

  /**
   * Fetches a manifest (4 MiB cap) and checks its digest: against the reference when it is a digest,
   * else against the registry's `Docker-Content-Digest`, when it sends one.
   */
  async getManifest(repository: string, reference: string, signal?: AbortSignal): Promise<ManifestResult> {
    const { res, bytes } = await this.#request(
      {
        method: 'GET',
        path: `/v2/${repository}/manifests/${reference}`,
        scopes: [pullScope(repository)],
        headers: { accept: MANIFEST_ACCEPT },
        ok: [200],
        signal,
      },
      async (answer) => ({ res: answer, bytes: await answer.bytes(MAX_MANIFEST_BYTES) }),
    );
    const byDigest = reference.includes(':');
    const expected = byDigest ? reference : declaredDigest(res.header('docker-content-digest'));
    const actual = expected ? digestOf(bytes, parseDigest(expected).algorithm) : undefined;
    if (expected && actual !== expected) {
      throw new ClientError(
        'DIGEST_MISMATCH',
        byDigest
          ? `Manifest ${repository}@${reference} arrived with digest ${actual}`
          : `Manifest ${repository}:${reference} from ${this.host} arrived with digest ${actual}, not the ${expected} the registry gave for it`,
      );
    }
    // By tag, the manifest is known by the SHA-256 of what arrived, whatever the registry's algorithm.
    const digest = byDigest || actual?.startsWith('sha256:') ? (actual as Digest) : digestOf(bytes);
    let mediaType = (res.header('content-type') ?? '').split(';')[0]?.trim() ?? '';
    try {
      const declared = (JSON.parse(bytes.toString('utf8')) as { mediaType?: unknown }).mediaType;
      if (typeof declared === 'string') mediaType = declared;
    } catch {
      // Left for the caller's parser to report.
    }
    return { bytes, mediaType: mediaType || MediaType.OciManifest, digest };
  }

  async putManifest(
    repository: string,
    reference: string,
    manifest: { bytes: Buffer; mediaType: string; signal?: AbortSignal | undefined },
  ): Promise<Digest> {
    const { signal } = manifest;
    const res = await this.#call({
      method: 'PUT',
      path: `/v2/${repository}/manifests/${reference}`,
      scopes: [pushScope(repository)],
      headers: { 'content-type': manifest.mediaType },
      body: manifest.bytes,
      ok: [200, 201, 202],
      signal,
    });
    await res.drain();
    const digest = digestOf(manifest.bytes);
    if (!res.header(Header.OciSubject))
      await this.#updateReferrersTag(repository, { ...manifest, digest }, signal);
    return digest;
  }

  /**
   * A registry without the referrers API stores a manifest with a subject but answers no OCI-Subject;
   * the spec then asks the client to list it in the fallback index tagged `sha256-<hex>`.
   */
  async #updateReferrersTag(
    repository: string,
    manifest: { bytes: Buffer; mediaType: string; digest: Digest },
    signal?: AbortSignal,
  ): Promise<void> {
    const { digest } = manifest;
    let body: {
      subject?: { digest?: string };
      artifactType?: string;
      config?: { mediaType?: string };
      annotations?: Record<string, string>;
    };
    try {
      body = JSON.parse(manifest.bytes.toString('utf8')) as typeof body;
    } catch {
      return;
    }
    const subject = body.subject?.digest;
    if (typeof subject !== 'string' || !subject.includes(':')) return;
    const tag = digestTag(subject);
    let manifests: Descriptor[] = [];
    if (await this.headManifest(repository, tag, signal)) {
      const existing = await this.getManifest(repository, tag, signal);
      manifests =
        (JSON.parse(existing.bytes.toString('utf8')) as { manifests?: Descriptor[] }).manifests ?? [];
    }
    if (manifests.some((m) => m.digest === digest)) return;
    const artifactType = body.artifactType ?? body.config?.mediaType;
    manifests.push({
      mediaType: manifest.mediaType,
      digest,
      size: manifest.bytes.length,
      ...(artifactType ? { artifactType } : {}),
      ...(body.annotations ? { annotations: body.annotations } : {}),
    });
    const bytes = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MediaType.OciIndex, manifests }));
    await this.putManifest(repository, tag, { bytes, mediaType: MediaType.OciIndex, signal });
  }

  async deleteManifest(repository: string, reference: string, signal?: AbortSignal): Promise<void> {
    const res = await this.#call({
      method: 'DELETE',
      path: `/v2/${repository}/manifests/${reference}`,
      scopes: [`repository:${repository}:delete`, pushScope(repository)],
      ok: [200, 202, 204],
      signal,
    });
    await res.drain();
  }

  /** Size of a blob in the repository, or undefined when it is not there. */
  async statBlob(repository: string, digest: Digest, signal?: AbortSignal): Promise<number | undefined> {
    const res = await this.#call({
      method: 'HEAD',
      path: `/v2/${repository}/blobs/${digest}`,
      scopes: [pullScope(repository)],
      ok: [200, 404],
      signal,
    });
    await res.drain();
    return res.status === 200 ? Number(res.header('content-length') ?? 0) : undefined;
  }

  /**
   * Streams a blob, verifying its digest (and size, when given) as it arrives. A verified stream that
   * breaks off is resumed where it stopped (a `Range` request), as often as a request is retried.
   */
  async getBlob(
    repository: string,
    digest: Digest,
    options: { size?: number; signal?: AbortSignal; verify?: boolean } = {},
  ): Promise<Readable> {
    const { signal } = options;
    const res = await this.#call({
      method: 'GET',
      path: `/v2/${repository}/blobs/${digest}`,
      scopes: [pullScope(repository)],
      ok: [200],
      signal,
      large: options.size !== undefined && options.size >= LARGE_BLOB,
    });
    // verify: false is for callers whose destination checks the digest itself (a copy's target).
    if (options.verify === false) return res.body;
    const verify = verifyingStream(digest, options.size);
    const body = Readable.from(this.#resumed(res, { repository, digest, signal }), { objectMode: false });
    body.on('error', (error) => verify.destroy(error));
    return body.pipe(verify);
  }

  /** A blob's bytes from `first`, and after a break the rest of them from a new request. */
  async *#resumed(
    first: HttpResponse,
    blob: { repository: string; digest: Digest; signal: AbortSignal | undefined },
  ): AsyncGenerator<Buffer> {
    const { repository, digest, signal } = blob;
    let res = first;
    let offset = 0;
    // Bytes a registry that ignores Range sends again from the start.
    let skip = 0;
    for (let attempt = 0; ; attempt++) {
      try {
        for await (const chunk of res.body) {
          let piece = chunk as Buffer;
          if (skip > 0) {
            const cut = Math.min(skip, piece.byteLength);
            skip -= cut;
            piece = piece.subarray(cut);
            if (piece.byteLength === 0) continue;
          }
          offset += piece.byteLength;
          yield piece;
        }
        return;
      } catch (error) {
        const where = `blob ${digest} from ${this.host}/${repository}`;
        if (!isRetryableError(error) || attempt >= (this.#retry.retries ?? 4) || signal?.aborted) {
          if (error instanceof ClientError && error.code !== 'NETWORK') throw error;
          throw new ClientError('NETWORK', `Reading ${where} failed: ${(error as Error).message}`, {
            cause: error,
          });
        }
        res = await this.#call({
          method: 'GET',
          path: `/v2/${repository}/blobs/${digest}`,
          scopes: [pullScope(repository)],
          headers: { range: `bytes=${offset}-` },
          ok: [200, 206],
          signal,
        });
        if (res.status === 200) skip = offset;
        else if (!new RegExp(`^bytes ${offset}-`).test(res.header('content-range') ?? '')) {
          res.body.destroy();
          throw new ClientError(
            'INVALID_RESPONSE',
            `Reading ${where} broke off at byte ${offset}, and the registry answered the request for the rest with Content-Range "${res.header('content-range') ?? ''}"`,
          );
        }
      }
    }
  }

  /** Reads a small blob (a config) whole, verified, failing past `limit` bytes. */
  async getBlobBytes(repository: string, digest: Digest, limit: number): Promise<Buffer> {
    const bytes = await this.#request(
      {
        method: 'GET',
        path: `/v2/${repository}/blobs/${digest}`,
        scopes: [pullScope(repository)],
        ok: [200],
      },
      (res) => res.bytes(limit),
    );
    if (digestOf(bytes, parseDigest(digest).algorithm) !== digest) {
      throw new ClientError(
        'DIGEST_MISMATCH',
        `Blob ${digest} from ${this.host}/${repository} does not match its digest`,
      );
    }
    return bytes;
  }

  async deleteBlob(repository: string, digest: Digest, signal?: AbortSignal): Promise<void> {
    const res = await this.#call({
      method: 'DELETE',
      path: `/v2/${repository}/blobs/${digest}`,
      scopes: [`repository:${repository}:delete`, pushScope(repository)],
      ok: [200, 202, 204],
      signal,
    });
    await res.drain();
  }

  /**
   * Makes sure the repository has a blob: skips it when present, mounts it from `mountFrom` (same
   * registry) when possible, else uploads it — in one PUT when small, else as a streamed PATCH.
   */
  async pushBlob(
    repository: string,
    blob: BlobSource,
    options: { mountFrom?: string; signal?: AbortSignal } = {},
  ): Promise<BlobPushResult> {
    const { signal, mountFrom } = options;
    const scopes =
      mountFrom && mountFrom !== repository
        ? [pushScope(repository), pullScope(mountFrom)]
        : [pushScope(repository)];
    const query =
      mountFrom && mountFrom !== repository
        ? `?mount=${blob.digest}&from=${encodeURIComponent(mountFrom)}`
        : '';
    // The source's own failures (a file, another registry) are its own: not a reason to upload again.
    let sourceFailed = false;
    const source: BlobSource = {
      ...blob,
      open: async () => {
        try {
          const stream = await blob.open();
          stream.once('error', () => (sourceFailed = true));
          return stream;
        } catch (error) {
          sourceFailed = true;
          throw error;
        }
      },
    };
    // A failed upload starts over, from the HEAD (crane does the same): a registry may have taken some
    // or all of the bytes it did not acknowledge, so the session's state is unknown; a blob that did
    // get in is found by the HEAD.
    return withRetry<BlobPushResult>(
      async () => {
        if ((await this.statBlob(repository, blob.digest, signal)) !== undefined) return { done: 'exists' };
        const start = await this.#call({
          method: 'POST',
          path: `/v2/${repository}/blobs/uploads/${query}`,
          scopes,
          ok: [201, 202],
          signal,
        });
        await start.drain();
        if (start.status === 201) return { done: 'mounted' };
        // The session's latest URL (a registry may hand out a new one with every answer).
        const session = { location: this.#location(start, repository) };
        try {
          await this.#upload(session, source, { repository, scopes, signal });
        } catch (error) {
          await this.#cancelUpload(session.location, scopes, error);
          if (sourceFailed || signal?.aborted || !isRetryableFailure(error)) throw error;
          return { retry: error, afterMs: error instanceof ClientError ? error.retryAfterMs : undefined };
        }
        return { done: 'uploaded' };
      },
      { ...this.#retry, ...(signal ? { signal } : {}), retryError: () => false },
    );
  }

  /**
   * Ends an upload session that failed on an answer from the registry (a 507, a digest it refused), so
   * its staged bytes do not wait for the registry's purge. Best effort: one try, at most 5 s, and never
   * after a network failure or an abort (the registry is then not there to answer).
   */
  async #cancelUpload(location: string, scopes: readonly string[], cause: unknown): Promise<void> {
    if (!(cause instanceof ClientError) || cause.status === undefined) return;
    const authorization = this.#auth.header(scopes);
    try {
      const url = new URL(location, this.baseUrl);
      const res = await this.#transport.send({
        method: 'DELETE',
        url,
        headers: authorization ? { authorization } : {},
        signal: AbortSignal.timeout(5000),
      });
      await res.drain();
    } catch {
      // the failure being reported is the one that matters
    }
  }

  /** Sends a blob into an open upload session, then closes it with its digest; keeps `session` current. */
  async #upload(
    session: { location: string },
    blob: BlobSource,
    options: { repository: string; scopes: readonly string[]; signal: AbortSignal | undefined },
  ): Promise<void> {
    const { repository, scopes, signal } = options;
    const stream = async (): Promise<Readable> => blob.open();
    if (blob.size <= this.#monolithicMax || this.#chunkBytes === undefined) {
      if (blob.size > this.#monolithicMax) {
        // A fresh stream per attempt, so a retried PATCH sends the bytes again from the start.
        const patch = await this.#call({
          method: 'PATCH',
          path: session.location,
          scopes,
          headers: { 'content-type': 'application/octet-stream', 'content-length': String(blob.size) },
          body: stream,
          ok: [202, 204],
          signal,
          once: true,
        });
        await patch.drain();
        session.location = this.#location(patch, repository);
        await this.#finish(session.location, blob.digest, { scopes, signal });
        return;
      }
      const bytes = await readAll(await stream(), blob.size);
      await this.#finish(session.location, blob.digest, { scopes, signal, body: bytes });
      return;
    }
    let offset = 0;
    const source = await stream();
    for await (const chunk of chunked(source, this.#chunkBytes)) {
      const patch = await this.#call({
        method: 'PATCH',
        path: session.location,
        scopes,
        headers: {
          'content-type': 'application/octet-stream',
          'content-range': `${offset}-${offset + chunk.length - 1}`,
        },
        body: chunk,
        ok: [202, 204],
        signal,
        once: true,
      });
      await patch.drain();
      offset += chunk.length;
      session.location = this.#location(patch, repository);
    }
    await this.#finish(session.location, blob.digest, { scopes, signal });
  }

  async #finish(
    location: string,
    digest: Digest,
    options: { scopes: readonly string[]; signal?: AbortSignal | undefined; body?: Buffer },
  ): Promise<void> {
    const url = new URL(location, this.baseUrl);
    url.searchParams.set('digest', digest);
    const res = await this.#call({
      method: 'PUT',
      path: `${url.pathname}${url.search}`,
      scopes: options.scopes,
      headers: { 'content-type': 'application/octet-stream' },
      ...(options.body ? { body: options.body } : {}),
      ok: [201, 204],
      signal: options.signal,
      once: true,
    });
    await res.drain();
  }

  #location(res: HttpResponse, repository: string): string {
    const location = res.header('location');
    if (!location)
      throw new ClientError(
        'INVALID_RESPONSE',
        `${this.host} opened an upload to ${repository} without a Location`,
      );
    const url = new URL(location, this.baseUrl);
    if (url.host !== new URL(this.baseUrl).host) {
      throw new ClientError(
        'INVALID_RESPONSE',
        `${this.host} sent an upload Location on another host (${url.host}); not following it`,
      );
    }
    return `${url.pathname}${url.search}`;
  }

  /** All tags, following `Link` pagination. */
  async listTags(repository: string, signal?: AbortSignal): Promise<string[]> {
    return this.#paginate(`/v2/${repository}/tags/list`, {
      scopes: [pullScope(repository)],
      pick: (body) => (body as { tags?: string[] | null }).tags ?? [],
      signal,
    });
  }

  /** All repositories in the catalog, following `Link` pagination. */
  async catalog(signal?: AbortSignal): Promise<string[]> {
    return this.#paginate('/v2/_catalog', {
      scopes: ['registry:catalog:*'],
      pick: (body) => (body as { repositories?: string[] }).repositories ?? [],
      signal,
    });
  }

  async #paginate(
    first: string,
    how: { scopes: readonly string[]; pick: (body: unknown) => string[]; signal?: AbortSignal | undefined },
  ): Promise<string[]> {
    const { scopes, pick, signal } = how;
    const out: string[] = [];
    let path: string | undefined = first;
    for (let page = 0; path && page < 10_000; page++) {
      const { res, text } = await this.#request(
        { method: 'GET', path, scopes, ok: [200], signal },
        async (answer) => ({ res: answer, text: await answer.text(16 * 1024 * 1024) }),
      );
      const body = JSON.parse(text) as unknown;
      out.push(...pick(body));
      const link = /<([^>]+)>\s*;\s*rel="?next"?/.exec(res.header('link') ?? '');
      path = link?.[1]
        ? `${new URL(link[1], this.baseUrl).pathname}${new URL(link[1], this.baseUrl).search}`
        : undefined;
    }
    return out;
  }

  /**
   * Manifests that refer to `digest`: the referrers API, or where a registry lacks it (404), the
   * fallback tag `sha256-<hex>` that older clients maintain.
   */
  async referrers(
    repository: string,
    digest: Digest,
    options: { artifactType?: string; signal?: AbortSignal } = {},
  ): Promise<Descriptor[]> {
    const query = options.artifactType ? `?artifactType=${encodeURIComponent(options.artifactType)}` : '';
    const text = await this.#request(
      {
        method: 'GET',
        path: `/v2/${repository}/referrers/${digest}${query}`,
        scopes: [pullScope(repository)],
        ok: [200, 404],
        signal: options.signal,
      },
      async (res) => (res.status === 200 ? res.text(MAX_MANIFEST_BYTES) : res.drain().then(() => undefined)),
    );
    let manifests: Descriptor[];
    if (text !== undefined) {
      manifests = (JSON.parse(text) as { manifests?: Descriptor[] }).manifests ?? [];
    } else {
      const tag = digestTag(digest);
      const head = await this.headManifest(repository, tag, options.signal);
      if (!head) return [];
      const index = await this.getManifest(repository, tag, options.signal);
      manifests = (JSON.parse(index.bytes.toString('utf8')) as { manifests?: Descriptor[] }).manifests ?? [];
    }
    return options.artifactType
      ? manifests.filter((m) => m.artifactType === options.artifactType)
      : manifests;
  }
}

async function readAll(stream: Readable, expected: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of stream) {
    size += (chunk as Buffer).byteLength;
    chunks.push(chunk as Buffer);
  }
  if (size !== expected)
    throw new ClientError('INVALID_INPUT', `Blob source gave ${size} bytes where ${expected} were expected`);
  return Buffer.concat(chunks, size);
}

/** Re-cuts a stream into buffers of exactly `size` bytes (the last may be shorter). */
async function* chunked(source: Readable, size: number): AsyncGenerator<Buffer> {
  let pending: Buffer[] = [];
  let pendingSize = 0;
  for await (const piece of source) {
    let chunk = piece as Buffer;
    while (pendingSize + chunk.length >= size) {
      const take = size - pendingSize;
      pending.push(chunk.subarray(0, take));
      yield Buffer.concat(pending, size);
      chunk = chunk.subarray(take);
      pending = [];
      pendingSize = 0;
    }
    if (chunk.length > 0) {
      pending.push(chunk);
      pendingSize += chunk.length;
    }
  }
  if (pendingSize > 0) yield Buffer.concat(pending, pendingSize);
}

/** What a TLS server does to a plain-HTTP request: hang up (or answer bytes that are not HTTP). */
function looksLikeTlsHangUp(error: unknown): boolean {
  return (
    error instanceof ClientError &&
    error.code === 'NETWORK' &&
    /hang up|ECONNRESET|EPROTO|HPE_/i.test(`${error.message} ${String((error as { errno?: unknown }).errno)}`)
  );
}

/** A request path for messages: without its query, which for uploads is a long opaque state token. */
function displayPath(path: string): string {
  const query = path.indexOf('?');
  return query < 0 ? path : path.slice(0, query);
}

/** A registry's own text, fit for one line of a message: whitespace folded, at most 300 characters. */
function oneLine(text: string): string {
  const folded = text.replace(/\s+/g, ' ').trim();
  return folded.length > 300 ? `${folded.slice(0, 297)}...` : folded;
}

/** A `Docker-Content-Digest` worth checking against: well formed, of an algorithm Airlock hashes. */
function declaredDigest(header: string | undefined): Digest | undefined {
  if (!header) return undefined;
  try {
    return parseDigest(header.trim()).digest;
  } catch {
    return undefined;
  }
}

/** A failure another attempt may get past: a network error, or an answer such as 503 or 429. */
export function isRetryableFailure(error: unknown): boolean {
  if (isRetryableError(error)) return true;
  return error instanceof ClientError && error.status !== undefined && isRetryableStatus(error.status);
}
