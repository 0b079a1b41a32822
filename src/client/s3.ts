import { createHash, createHmac } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { ClientError } from './errors.js';
import { HttpTransport } from './transport.js';

/** Where an S3-compatible object store is and how to sign for it. */
export interface S3Config {
  /** e.g. http://127.0.0.1:9000 or https://objects.example. */
  readonly endpoint: string;
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
  /** Default: us-east-1. */
  readonly region?: string;
  /** Temporary credentials' token. Default: none. */
  readonly sessionToken?: string;
}

export interface S3Location {
  readonly bucket: string;
  readonly key: string;
}

/** Parses `s3://BUCKET/KEY`. */
export function parseS3Url(text: string): S3Location {
  const match = /^s3:\/\/([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])\/(.+)$/.exec(text);
  if (!match?.[1] || !match[2])
    throw new ClientError(
      'INVALID_INPUT',
      `"${text}" is not s3://BUCKET/KEY (bucket names are 3–63 lower-case letters, digits, dots and dashes)`,
    );
  return { bucket: match[1], key: match[2] };
}

/**
 * Reads the S3 settings: flags win, then AIRLOCK_S3_* / AWS_* variables, then the file
 * `~/.config/airlock/s3.json` ({"endpoint","accessKeyId","secretAccessKey","region"}).
 */
export async function loadS3Config(
  flags: Partial<S3Config> = {},
  env: NodeJS.ProcessEnv = process.env,
): Promise<S3Config> {
  let file: Partial<S3Config> = {};
  const path =
    env.AIRLOCK_S3_CONFIG ?? join(env.AIRLOCK_CONFIG_DIR ?? join(homedir(), '.config', 'airlock'), 's3.json');
  try {
    file = JSON.parse(await readFile(path, 'utf8')) as Partial<S3Config>;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') {
      throw new ClientError('INVALID_INPUT', `Cannot read S3 config "${path}": ${(error as Error).message}`);
    }
  }
  const pick = (flag: string | undefined, ...names: string[]): string | undefined =>
    flag ?? names.map((n) => env[n]).find((v) => v !== undefined && v !== '');
  const endpoint =
    pick(flags.endpoint, 'AIRLOCK_S3_ENDPOINT', 'AWS_ENDPOINT_URL_S3', 'AWS_ENDPOINT_URL') ?? file.endpoint;
  const accessKeyId =
    pick(flags.accessKeyId, 'AIRLOCK_S3_ACCESS_KEY', 'AWS_ACCESS_KEY_ID') ?? file.accessKeyId;
  const secretAccessKey =
    pick(flags.secretAccessKey, 'AIRLOCK_S3_SECRET_KEY', 'AWS_SECRET_ACCESS_KEY') ?? file.secretAccessKey;
  const region =
    pick(flags.region, 'AIRLOCK_S3_REGION', 'AWS_REGION', 'AWS_DEFAULT_REGION') ?? file.region ?? 'us-east-1';
  const sessionToken = pick(flags.sessionToken, 'AWS_SESSION_TOKEN') ?? file.sessionToken;
  if (!endpoint)
    throw new ClientError('INVALID_INPUT', 'No S3 endpoint: pass --s3-endpoint or set AIRLOCK_S3_ENDPOINT');
  if (!accessKeyId || !secretAccessKey) {
    throw new ClientError(
      'INVALID_INPUT',
      'No S3 credentials: set AIRLOCK_S3_ACCESS_KEY and AIRLOCK_S3_SECRET_KEY (or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY)',
    );
  }
  return { endpoint, accessKeyId, secretAccessKey, region, ...(sessionToken ? { sessionToken } : {}) };
}

const sha256 = (data: string | Buffer): string => createHash('sha256').update(data).digest('hex');
const hmac = (key: Buffer | string, data: string): Buffer => createHmac('sha256', key).update(data).digest();

/** RFC 3986 encoding as SigV4 wants it (each path segment separately). */
function encodePath(key: string): string {
  return key
    .split('/')
    .map((part) =>
      encodeURIComponent(part).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`),
    )
    .join('/');
}

/** Signs a request with AWS Signature Version 4 (unsigned payload, as for GETs). */
export function signV4(
  request: { method: string; url: URL; headers: Record<string, string>; payloadHash?: string },
  config: S3Config,
  now = new Date(),
): Record<string, string> {
  const payloadHash = request.payloadHash ?? 'UNSIGNED-PAYLOAD';
  const amzDate = now.toISOString().replace(/[:-]|\.\d{3}/g, '');
  const day = amzDate.slice(0, 8);
  const region = config.region ?? 'us-east-1';
  const headers: Record<string, string> = {
    ...request.headers,
    host: request.url.host,
    'x-amz-date': amzDate,
    'x-amz-content-sha256': payloadHash,
    ...(config.sessionToken ? { 'x-amz-security-token': config.sessionToken } : {}),
  };
  const names = Object.keys(headers)
    .map((h) => h.toLowerCase())
    .sort();
  const lower = Object.fromEntries(Object.entries(headers).map(([k, v]) => [k.toLowerCase(), v.trim()]));
  const canonicalQuery = [...request.url.searchParams.entries()]
    .map(([k, v]) => [encodeURIComponent(k), encodeURIComponent(v)])
    .sort(([a], [b]) => (a! < b! ? -1 : 1))
    .map(([k, v]) => `${k}=${v}`)
    .join('&');
  const canonical = [
    request.method,
    request.url.pathname,
    canonicalQuery,
    names.map((n) => `${n}:${lower[n]}\n`).join(''),
    names.join(';'),
    payloadHash,
  ].join('\n');
  const scope = `${day}/${region}/s3/aws4_request`;
  const toSign = ['AWS4-HMAC-SHA256', amzDate, scope, sha256(canonical)].join('\n');
  const key = hmac(hmac(hmac(hmac(`AWS4${config.secretAccessKey}`, day), region), 's3'), 'aws4_request');
  const signature = createHmac('sha256', key).update(toSign).digest('hex');
  return {
    ...headers,
    authorization: `AWS4-HMAC-SHA256 Credential=${config.accessKeyId}/${scope}, SignedHeaders=${names.join(';')}, Signature=${signature}`,
  };
}

/** Streams an object from an S3-compatible store (path-style addressing, as on-prem stores need). */
export async function getS3Object(
  location: S3Location,
  config: S3Config,
  options: { transport?: HttpTransport; signal?: AbortSignal } = {},
): Promise<{ size: number; body: Readable }> {
  const base = new URL(config.endpoint);
  const url = new URL(
    `${base.pathname.replace(/\/$/, '')}/${encodePath(location.bucket)}/${encodePath(location.key)}`,
    base,
  );
  const transport = options.transport ?? new HttpTransport();
  const headers = signV4({ method: 'GET', url, headers: {} }, config);
  const res = await transport.send({
    method: 'GET',
    url,
    headers,
    ...(options.signal ? { signal: options.signal } : {}),
  });
  if (res.status !== 200) {
    const text = await res.text(64 * 1024).catch(() => '');
    const code = /<Code>([^<]+)<\/Code>/.exec(text)?.[1];
    const what = `s3://${location.bucket}/${location.key}`;
    if (res.status === 404)
      throw new ClientError('NOT_FOUND', `${what} does not exist${code ? ` (${code})` : ''}`, {
        status: 404,
      });
    if (res.status === 403)
      throw new ClientError(
        'DENIED',
        `${what}: access denied${code ? ` (${code})` : ''}; check the S3 access key and secret`,
        { status: 403 },
      );
    throw new ClientError(
      'HTTP',
      `${what}: the object store answered HTTP ${res.status}${code ? ` (${code})` : ''}`,
      { status: res.status },
    );
  }
  return { size: Number(res.header('content-length') ?? 0), body: res.body };
}
