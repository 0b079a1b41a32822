import type { Blob, Image } from './oci-fixtures.js';

/** A thin fetch wrapper for tests that speak the distribution API by hand. */
export class TestClient {
  constructor(readonly base: string) {}

  request(
    method: string,
    path: string,
    init: { body?: Buffer | string; headers?: Record<string, string> } = {},
  ): Promise<Response> {
    return fetch(`${this.base}${path}`, {
      method,
      redirect: 'manual',
      ...(init.body === undefined ? {} : { body: init.body }),
      ...(init.headers ? { headers: init.headers } : {}),
    });
  }

  /** Monolithic upload (POST ?digest=); asserts 201. */
  async pushBlob(repo: string, b: Blob): Promise<void> {
    const res = await this.request('POST', `/v2/${repo}/blobs/uploads/?digest=${b.digest}`, {
      body: b.bytes,
      headers: { 'content-type': 'application/octet-stream' },
    });
    await res.arrayBuffer();
    if (res.status !== 201) throw new Error(`push blob ${b.digest} to ${repo}: ${res.status}`);
  }

  async pushManifest(repo: string, reference: string, bytes: Buffer, mediaType: string): Promise<Response> {
    return this.request('PUT', `/v2/${repo}/manifests/${reference}`, {
      body: bytes,
      headers: { 'content-type': mediaType },
    });
  }

  /** Pushes config, layers and manifest; asserts success. */
  async pushImage(repo: string, img: Image, reference: string = img.digest): Promise<void> {
    await this.pushBlob(repo, img.config);
    for (const layer of img.layers) await this.pushBlob(repo, layer);
    const res = await this.pushManifest(repo, reference, img.manifest, img.mediaType);
    const text = await res.text();
    if (res.status !== 201) throw new Error(`push manifest to ${repo}:${reference}: ${res.status} ${text}`);
  }

  async json<T>(path: string): Promise<{ status: number; body: T; headers: Headers }> {
    const res = await this.request('GET', path);
    return { status: res.status, body: (await res.json()) as T, headers: res.headers };
  }
}

/** The first error code of a spec error body. */
export async function errorCode(res: Response): Promise<string | undefined> {
  const text = await res.text();
  try {
    return (JSON.parse(text) as { errors?: Array<{ code: string }> }).errors?.[0]?.code;
  } catch {
    return undefined;
  }
}
