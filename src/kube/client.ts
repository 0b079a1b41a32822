import { readFileSync } from 'node:fs';
import type { IncomingMessage } from 'node:http';
import { Agent, request as httpsRequest } from 'node:https';
import { createInterface } from 'node:readline';
import type { KubeConnection } from './config.js';
import { KubeError, isStatus } from './errors.js';
import type { KubeObject, KubeList, ResourceInfo, WatchEvent } from './types.js';

export interface KubeClientOptions {
  /** Per-request timeout for non-watch calls. Default 30 s. */
  readonly timeoutMs?: number;
  /** User-Agent header. Default "airlock". */
  readonly userAgent?: string;
  /** Act as this user (Impersonate-User), so RBAC bound to it decides. Default: the connection's own. */
  readonly impersonate?: string;
}

export interface KubeRequestOptions {
  readonly body?: unknown;
  /** Content-Type of the body. Default application/json. */
  readonly contentType?: string;
  readonly query?: Readonly<Record<string, string | number | boolean | undefined>>;
  readonly signal?: AbortSignal | undefined;
}

export interface ApplyOptions {
  /** The field manager that owns the applied fields. */
  readonly fieldManager: string;
  /** Take fields owned by other managers. Default true (as a GitOps source of truth does). */
  readonly force?: boolean;
  readonly signal?: AbortSignal | undefined;
}

const MAX_RESPONSE_BYTES = 64 * 1024 * 1024;

function statusMessage(text: string, fallback: string): { message: string; reason?: string } {
  try {
    const status = JSON.parse(text) as { kind?: string; message?: string; reason?: string };
    if (status.kind === 'Status' && status.message)
      return { message: status.message, ...(status.reason ? { reason: status.reason } : {}) };
  } catch {
    // not a Status object
  }
  return { message: text.trim().slice(0, 500) || fallback };
}

/** Splits "group/version" (or "v1") into its parts. */
export function splitApiVersion(apiVersion: string): { group: string; version: string } {
  const slash = apiVersion.indexOf('/');
  return slash < 0
    ? { group: '', version: apiVersion }
    : { group: apiVersion.slice(0, slash), version: apiVersion.slice(slash + 1) };
}

/**
 * A small Kubernetes API client over node:https: JSON calls, discovery by group/version (cached, refreshed
 * when a kind is missing so new CRDs are found), server-side apply, watch streams and TokenRequest.
 */
export class KubeClient {
  readonly connection: KubeConnection;
  readonly #agent: Agent;
  readonly #timeoutMs: number;
  readonly #userAgent: string;
  readonly #impersonate: string | undefined;
  readonly #discovery = new Map<string, Promise<Map<string, ResourceInfo>>>();

  constructor(connection: KubeConnection, options: KubeClientOptions = {}) {
    this.connection = connection;
    this.#timeoutMs = options.timeoutMs ?? 30_000;
    this.#userAgent = options.userAgent ?? 'airlock';
    this.#impersonate = options.impersonate;
    this.#agent = new Agent({
      keepAlive: true,
      maxSockets: 32,
      ...(connection.ca ? { ca: connection.ca } : {}),
      ...(connection.cert ? { cert: connection.cert } : {}),
      ...(connection.key ? { key: connection.key } : {}),
      rejectUnauthorized: !connection.insecure,
    });
  }

  close(): void {
    this.#agent.destroy();
  }

  /** A client on the same connection acting as `user` (e.g. system:serviceaccount:NS:NAME). */
  impersonating(user: string): KubeClient {
    return new KubeClient(this.connection, {
      timeoutMs: this.#timeoutMs,
      userAgent: this.#userAgent,
      impersonate: user,
    });
  }

  #token(): string | undefined {
    if (this.connection.tokenFile) return readFileSync(this.connection.tokenFile, 'utf8').trim();
    return this.connection.token;
  }

  #open(
    method: string,
    path: string,
    options: KubeRequestOptions & { watch?: boolean },
  ): Promise<IncomingMessage> {
    const url = new URL(path, `${this.connection.server}/`);
    for (const [key, value] of Object.entries(options.query ?? {}))
      if (value !== undefined) url.searchParams.set(key, String(value));
    const headers: Record<string, string> = { accept: 'application/json', 'user-agent': this.#userAgent };
    const token = this.#token();
    if (token) headers.authorization = `Bearer ${token}`;
    if (this.#impersonate) headers['impersonate-user'] = this.#impersonate;
    let payload: Buffer | undefined;
    if (options.body !== undefined) {
      payload = Buffer.from(typeof options.body === 'string' ? options.body : JSON.stringify(options.body));
      headers['content-type'] = options.contentType ?? 'application/json';
      headers['content-length'] = String(payload.byteLength);
    }
    return new Promise((resolveOpen, reject) => {
      const req = httpsRequest(
        url,
        {
          method,
          headers,
          agent: this.#agent,
          ...(options.signal ? { signal: options.signal } : {}),
          ...(options.watch ? {} : { timeout: this.#timeoutMs }),
        },
        resolveOpen,
      );
      req.on('timeout', () =>
        req.destroy(
          new KubeError('TIMEOUT', `${method} ${url.pathname} timed out after ${this.#timeoutMs} ms`),
        ),
      );
      req.on('error', (error) =>
        reject(
          error instanceof KubeError || (error as { name?: string }).name === 'AbortError'
            ? error
            : new KubeError(
                'NETWORK',
                `Cannot reach the API server ${this.connection.server}: ${error.message}`,
                {
                  cause: error,
                },
              ),
        ),
      );
      req.end(payload);
    });
  }

  async #read(res: IncomingMessage): Promise<string> {
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of res) {
      size += (chunk as Buffer).byteLength;
      if (size > MAX_RESPONSE_BYTES) {
        res.destroy();
        throw new KubeError('API', `API server response is larger than ${MAX_RESPONSE_BYTES} bytes`);
      }
      chunks.push(chunk as Buffer);
    }
    return Buffer.concat(chunks).toString('utf8');
  }

  /** One API call; the JSON answer, or a KubeError carrying the Status message. */
  async request<T = unknown>(method: string, path: string, options: KubeRequestOptions = {}): Promise<T> {
    const res = await this.#open(method, path, options);
    const text = await this.#read(res);
    const status = res.statusCode ?? 0;
    if (status < 200 || status >= 300) {
      const { message, reason } = statusMessage(text, `${method} ${path} answered ${status}`);
      throw new KubeError('API', message, { status, ...(reason ? { reason } : {}) });
    }
    return (text ? JSON.parse(text) : undefined) as T;
  }

  /**
   * Events of a watch on a collection path, until the server ends the stream or `signal` aborts. The
   * caller resumes from the last resourceVersion it saw (a 410 Gone error event means list again).
   */
  async *watch(path: string, options: KubeRequestOptions = {}): AsyncGenerator<WatchEvent> {
    const res = await this.#open('GET', path, {
      ...options,
      query: { ...options.query, watch: 1, allowWatchBookmarks: true },
      watch: true,
    });
    const status = res.statusCode ?? 0;
    if (status !== 200) {
      const { message, reason } = statusMessage(await this.#read(res), `watch ${path} answered ${status}`);
      throw new KubeError('API', message, { status, ...(reason ? { reason } : {}) });
    }
    const lines = createInterface({ input: res, crlfDelay: Infinity });
    try {
      for await (const line of lines) {
        if (!line.trim()) continue;
        yield JSON.parse(line) as WatchEvent;
      }
    } finally {
      lines.close();
      res.destroy();
    }
  }

  /** Resources of one group/version, by kind (cached). */
  async #groupVersion(apiVersion: string, refresh: boolean): Promise<Map<string, ResourceInfo>> {
    if (refresh) this.#discovery.delete(apiVersion);
    let found = this.#discovery.get(apiVersion);
    if (!found) {
      const { group, version } = splitApiVersion(apiVersion);
      const path = group ? `/apis/${group}/${version}` : `/api/${version}`;
      found = this.request<{
        resources?: { name: string; kind: string; namespaced: boolean; verbs?: string[] }[];
      }>('GET', path).then(
        (list) => {
          const byKind = new Map<string, ResourceInfo>();
          for (const r of list.resources ?? []) {
            if (r.name.includes('/')) continue; // subresources
            byKind.set(r.kind, { group, version, kind: r.kind, plural: r.name, namespaced: r.namespaced });
          }
          return byKind;
        },
        (error: unknown) => {
          if (isStatus(error, 404)) return new Map<string, ResourceInfo>();
          throw error;
        },
      );
      this.#discovery.set(apiVersion, found);
      found.catch(() => this.#discovery.delete(apiVersion));
    }
    return found;
  }

  /**
   * Where `kind` of `apiVersion` is served and whether it is namespaced, or undefined when the API server
   * does not serve it (discovery is asked again once before saying so, so a CRD created since is found).
   */
  async findResource(apiVersion: string, kind: string): Promise<ResourceInfo | undefined> {
    const cached = (await this.#groupVersion(apiVersion, false)).get(kind);
    if (cached) return cached;
    return (await this.#groupVersion(apiVersion, true)).get(kind);
  }

  /** Like findResource, but an unknown kind is a KubeError with code UNKNOWN_KIND. */
  async resource(apiVersion: string, kind: string): Promise<ResourceInfo> {
    const info = await this.findResource(apiVersion, kind);
    if (!info)
      throw new KubeError('UNKNOWN_KIND', `The API server does not serve kind "${kind}" of "${apiVersion}"`);
    return info;
  }

  /** Forget cached discovery (after CRDs change). */
  forgetDiscovery(): void {
    this.#discovery.clear();
  }

  /** The REST path of a resource collection (namespace omitted: all namespaces) or of one object. */
  static path(
    info: ResourceInfo,
    where: { namespace?: string | undefined; name?: string | undefined } = {},
  ): string {
    const base = info.group ? `/apis/${info.group}/${info.version}` : `/api/${info.version}`;
    const ns = info.namespaced && where.namespace ? `/namespaces/${encodeURIComponent(where.namespace)}` : '';
    const name = where.name ? `/${encodeURIComponent(where.name)}` : '';
    return `${base}${ns}/${info.plural}${name}`;
  }

  /** The object, or undefined when it does not exist. */
  async get<T extends KubeObject = KubeObject>(
    info: ResourceInfo,
    where: { namespace?: string | undefined; name: string },
    signal?: AbortSignal,
  ): Promise<T | undefined> {
    try {
      return await this.request<T>('GET', KubeClient.path(info, where), { signal });
    } catch (error) {
      if (isStatus(error, 404)) return undefined;
      throw error;
    }
  }

  async list<T extends KubeObject = KubeObject>(
    info: ResourceInfo,
    options: { namespace?: string | undefined; labelSelector?: string; signal?: AbortSignal } = {},
  ): Promise<KubeList<T>> {
    return this.request<KubeList<T>>('GET', KubeClient.path(info, { namespace: options.namespace }), {
      query: { labelSelector: options.labelSelector },
      signal: options.signal,
    });
  }

  /** Server-side apply of a whole object; the object as stored afterwards. */
  async apply<T extends KubeObject = KubeObject>(object: KubeObject, options: ApplyOptions): Promise<T> {
    const info = await this.resource(object.apiVersion, object.kind);
    const path = KubeClient.path(info, { namespace: object.metadata.namespace, name: object.metadata.name });
    return this.request<T>('PATCH', path, {
      body: object,
      contentType: 'application/apply-patch+yaml',
      query: { fieldManager: options.fieldManager, force: options.force ?? true },
      signal: options.signal,
    });
  }

  /** A JSON merge patch (RFC 7386), optionally of a subresource such as "status". */
  async mergePatch<T extends KubeObject = KubeObject>(
    info: ResourceInfo,
    where: { namespace?: string | undefined; name: string; subresource?: string },
    patch: unknown,
  ): Promise<T> {
    const path = KubeClient.path(info, where) + (where.subresource ? `/${where.subresource}` : '');
    return this.request<T>('PATCH', path, { body: patch, contentType: 'application/merge-patch+json' });
  }

  /** Deletes an object (background propagation); false when it was already gone. */
  async delete(
    info: ResourceInfo,
    where: { namespace?: string | undefined; name: string; uid?: string },
    signal?: AbortSignal,
  ): Promise<boolean> {
    try {
      await this.request('DELETE', KubeClient.path(info, where), {
        body: {
          apiVersion: 'v1',
          kind: 'DeleteOptions',
          propagationPolicy: 'Background',
          ...(where.uid ? { preconditions: { uid: where.uid } } : {}),
        },
        signal,
      });
      return true;
    } catch (error) {
      if (isStatus(error, 404)) return false;
      throw error;
    }
  }

  /** A token for a service account (TokenRequest API). */
  async createToken(
    where: { namespace: string; serviceAccount: string },
    options: { audiences?: readonly string[]; expirationSeconds?: number; signal?: AbortSignal } = {},
  ): Promise<{ token: string; expiresAt: Date }> {
    const path = `/api/v1/namespaces/${encodeURIComponent(where.namespace)}/serviceaccounts/${encodeURIComponent(
      where.serviceAccount,
    )}/token`;
    const result = await this.request<{ status: { token: string; expirationTimestamp: string } }>(
      'POST',
      path,
      {
        body: {
          apiVersion: 'authentication.k8s.io/v1',
          kind: 'TokenRequest',
          spec: {
            audiences: options.audiences ?? [],
            expirationSeconds: options.expirationSeconds ?? 3600,
          },
        },
        signal: options.signal,
      },
    );
    return { token: result.status.token, expiresAt: new Date(result.status.expirationTimestamp) };
  }
}
