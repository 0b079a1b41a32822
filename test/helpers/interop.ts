// Helpers for the interop suite: hand-built OCI image layouts (real tar+gzip layers that container
// runtimes can unpack), reads of Airlock over plain HTTP to compare what peers pushed, and an Airlock
// child process tied to one test's lifetime.
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, open, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { gzipSync } from 'node:zlib';
import { MediaType } from '../../src/oci/index.js';
import {
  startAirlockProcess,
  tempDir,
  type CommandResult,
  type RunningProcess,
  type StartAirlockOptions,
} from './processes.js';

/** Upper bound for one peer command; the suite must stay bounded even when a peer hangs. */
export const PEER_TIMEOUT_MS = 90_000;
/** Upper bound for one interop test. */
export const TEST_TIMEOUT_MS = 180_000;

/** The `sha256:<hex>` digest of `bytes`. */
export function sha256(bytes: Uint8Array | string): string {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
}

/** Random text, so each run pushes blobs no client cache has seen before. */
export function nonce(bytes = 8): string {
  return randomBytes(bytes).toString('hex');
}

// ---- tar (ustar) ----

export interface TarFile {
  /** Relative path without a leading slash; directories end with "/". */
  readonly path: string;
  readonly content?: Buffer | string;
  /** Default 0o644 for files, 0o755 for directories, 0o777 for symlinks. */
  readonly mode?: number;
  /** Makes the entry a symlink to this target (no content). */
  readonly symlink?: string;
}

function octal(value: number, width: number): string {
  return `${value.toString(8).padStart(width - 1, '0')}\0`;
}

function tarHeader(file: TarFile, size: number): Buffer {
  const header = Buffer.alloc(512);
  const isDir = file.path.endsWith('/');
  if (Buffer.byteLength(file.path) > 100) throw new Error(`Tar path "${file.path}" is longer than 100 bytes`);
  header.write(file.path, 0, 100, 'utf8');
  const mode = file.mode ?? (isDir ? 0o755 : file.symlink === undefined ? 0o644 : 0o777);
  header.write(octal(mode, 8), 100, 'ascii');
  header.write(octal(0, 8), 108, 'ascii'); // uid
  header.write(octal(0, 8), 116, 'ascii'); // gid
  header.write(octal(size, 12), 124, 'ascii');
  header.write(octal(0, 12), 136, 'ascii'); // mtime: fixed, so layers are reproducible
  header.write('        ', 148, 'ascii'); // checksum placeholder (8 spaces)
  header.write(isDir ? '5' : file.symlink === undefined ? '0' : '2', 156, 'ascii');
  if (file.symlink !== undefined) header.write(file.symlink, 157, 100, 'utf8');
  header.write('ustar\0', 257, 'ascii');
  header.write('00', 263, 'ascii');
  header.write('root', 265, 'ascii');
  header.write('root', 297, 'ascii');
  let sum = 0;
  for (const byte of header) sum += byte;
  header.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'ascii');
  return header;
}

/** A POSIX ustar archive of `files`, in the given order. */
export function tarArchive(files: readonly TarFile[]): Buffer {
  const parts: Buffer[] = [];
  for (const file of files) {
    const empty = file.path.endsWith('/') || file.symlink !== undefined;
    const body = empty ? Buffer.alloc(0) : Buffer.from(file.content ?? '');
    parts.push(tarHeader(file, body.byteLength), body);
    const pad = (512 - (body.byteLength % 512)) % 512;
    if (pad > 0) parts.push(Buffer.alloc(pad));
  }
  parts.push(Buffer.alloc(1024));
  return Buffer.concat(parts);
}

// ---- OCI images and layouts ----

export interface Descriptor {
  readonly mediaType: string;
  readonly digest: string;
  readonly size: number;
  readonly platform?: Platform;
  readonly annotations?: Record<string, string>;
  readonly artifactType?: string;
}

export interface Platform {
  readonly os: string;
  readonly architecture: string;
  readonly variant?: string;
}

/** A manifest (image or index) with every blob it needs, by digest. */
export interface BuiltArtifact {
  readonly descriptor: Descriptor;
  readonly bytes: Buffer;
  /** Config and layer blobs of this artifact and of its children, by digest. */
  readonly blobs: ReadonlyMap<string, Buffer>;
  /** The manifests an index lists (none for an image). */
  readonly children: readonly BuiltArtifact[];
}

export interface BuiltImage extends BuiltArtifact {
  readonly config: Descriptor;
  readonly layers: readonly Descriptor[];
}

export interface ImageOptions {
  /** Files of each layer, one archive per entry. */
  readonly layers: readonly (readonly TarFile[])[];
  /** Default linux/amd64. */
  readonly platform?: Platform;
  /** Default ["/hello"]. */
  readonly cmd?: readonly string[];
}

function blobDescriptor(mediaType: string, bytes: Buffer): Descriptor {
  return { mediaType, digest: sha256(bytes), size: bytes.byteLength };
}

/** An OCI image manifest with gzip layers and a config whose diff_ids match them. */
export function buildImage(options: ImageOptions): BuiltImage {
  const platform = options.platform ?? { os: 'linux', architecture: 'amd64' };
  const blobs = new Map<string, Buffer>();
  const layers: Descriptor[] = [];
  const diffIds: string[] = [];
  for (const files of options.layers) {
    const tar = tarArchive(files);
    const gz = gzipSync(tar);
    diffIds.push(sha256(tar));
    const layer = blobDescriptor(MediaType.OciLayerGzip, gz);
    layers.push(layer);
    blobs.set(layer.digest, gz);
  }
  const configBytes = Buffer.from(
    JSON.stringify({
      created: '2024-01-01T00:00:00Z',
      architecture: platform.architecture,
      os: platform.os,
      ...(platform.variant === undefined ? {} : { variant: platform.variant }),
      config: { Cmd: options.cmd ?? ['/hello'], Env: ['PATH=/usr/bin:/bin'] },
      rootfs: { type: 'layers', diff_ids: diffIds },
      history: diffIds.map(() => ({ created: '2024-01-01T00:00:00Z', created_by: 'airlock interop test' })),
    }),
  );
  const config = blobDescriptor(MediaType.OciConfig, configBytes);
  blobs.set(config.digest, configBytes);
  const bytes = Buffer.from(
    JSON.stringify({ schemaVersion: 2, mediaType: MediaType.OciManifest, config, layers }),
  );
  const descriptor: Descriptor = { ...blobDescriptor(MediaType.OciManifest, bytes), platform };
  return { descriptor, bytes, blobs, children: [], config, layers };
}

/** A one-layer image holding `/hello.txt` (unique per call) and, optionally, a file of random bytes. */
export function buildSimpleImage(options: { platform?: Platform; randomBytes?: number } = {}): BuiltImage {
  const files: TarFile[] = [
    { path: 'hello.txt', content: `hello from airlock interop ${nonce()}\n` },
    { path: 'etc/' },
    { path: 'etc/os-release', content: 'NAME=airlock-test\n' },
  ];
  if (options.randomBytes) files.push({ path: 'random.bin', content: randomBytes(options.randomBytes) });
  return buildImage({ layers: [files], ...(options.platform ? { platform: options.platform } : {}) });
}

/** An OCI image index over `images` (each child keeps its platform). */
export function buildIndex(images: readonly BuiltImage[]): BuiltArtifact {
  const bytes = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MediaType.OciIndex,
      manifests: images.map((image) => image.descriptor),
    }),
  );
  const blobs = new Map<string, Buffer>();
  for (const image of images) {
    for (const [digest, blob] of image.blobs) blobs.set(digest, blob);
  }
  const { mediaType, digest, size } = blobDescriptor(MediaType.OciIndex, bytes);
  return { descriptor: { mediaType, digest, size }, bytes, blobs, children: images };
}

function blobPath(dir: string, digest: string): string {
  const [algorithm, hex] = digest.split(':');
  if (!algorithm || !hex) throw new Error(`Cannot use digest "${digest}" as a blob path`);
  return join(dir, 'blobs', algorithm, hex);
}

/** Writes an OCI image layout at `dir` whose index.json names `artifact` with the tag `tag`. */
export async function writeOciLayout(
  dir: string,
  tagged: { tag: string; artifact: BuiltArtifact },
): Promise<void> {
  const { tag, artifact } = tagged;
  await mkdir(join(dir, 'blobs', 'sha256'), { recursive: true });
  await writeFile(join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  const all = new Map(artifact.blobs);
  for (const manifest of [artifact, ...artifact.children])
    all.set(manifest.descriptor.digest, manifest.bytes);
  for (const [digest, bytes] of all) await writeFile(blobPath(dir, digest), bytes);
  const { mediaType, digest, size } = artifact.descriptor;
  const entry = { mediaType, digest, size, annotations: { 'org.opencontainers.image.ref.name': tag } };
  await writeFile(join(dir, 'index.json'), JSON.stringify({ schemaVersion: 2, manifests: [entry] }));
}

/** The descriptor index.json of an OCI layout gives for `tag`. */
export async function layoutEntry(dir: string, tag: string): Promise<Descriptor> {
  const index = JSON.parse(await readFile(join(dir, 'index.json'), 'utf8')) as { manifests?: Descriptor[] };
  const entry = index.manifests?.find((m) => m.annotations?.['org.opencontainers.image.ref.name'] === tag);
  if (!entry) throw new Error(`OCI layout "${dir}" has no manifest tagged "${tag}"`);
  return entry;
}

/** A blob's bytes from the OCI layout at `dir`. */
export function readLayoutBlob(dir: string, digest: string): Promise<Buffer> {
  return readFile(blobPath(dir, digest));
}

// ---- reading Airlock over HTTP ----

const MANIFEST_ACCEPT = [
  MediaType.OciManifest,
  MediaType.OciIndex,
  MediaType.DockerManifest,
  MediaType.DockerManifestList,
].join(', ');

export interface FetchedManifest {
  readonly digest: string;
  readonly mediaType: string;
  readonly bytes: Buffer;
}

/** GETs a manifest; throws unless the registry answers 200. */
export async function fetchManifest(
  base: string,
  repository: string,
  reference: string,
): Promise<FetchedManifest> {
  const res = await fetch(`${base}/v2/${repository}/manifests/${reference}`, {
    headers: { accept: MANIFEST_ACCEPT },
  });
  const bytes = Buffer.from(await res.arrayBuffer());
  if (res.status !== 200)
    throw new Error(`GET manifest ${repository}:${reference} answered ${res.status}: ${bytes.toString()}`);
  return {
    digest: res.headers.get('docker-content-digest') ?? '',
    mediaType: res.headers.get('content-type') ?? '',
    bytes,
  };
}

/** Status of a manifest HEAD (200 when present, 404 when not). */
export async function manifestStatus(base: string, repository: string, reference: string): Promise<number> {
  const res = await fetch(`${base}/v2/${repository}/manifests/${reference}`, {
    method: 'HEAD',
    headers: { accept: MANIFEST_ACCEPT },
  });
  return res.status;
}

/** GETs a blob's bytes; throws unless the registry answers 200. */
export async function fetchBlob(base: string, repository: string, digest: string): Promise<Buffer> {
  const res = await fetch(`${base}/v2/${repository}/blobs/${digest}`);
  const bytes = Buffer.from(await res.arrayBuffer());
  if (res.status !== 200)
    throw new Error(`GET blob ${repository}@${digest} answered ${res.status}: ${bytes.toString()}`);
  return bytes;
}

/** The tags the registry lists for a repository. */
export async function fetchTags(base: string, repository: string): Promise<string[]> {
  const res = await fetch(`${base}/v2/${repository}/tags/list`);
  const body = (await res.json()) as { tags?: string[] | null };
  if (res.status !== 200) throw new Error(`GET tags of ${repository} answered ${res.status}`);
  return body.tags ?? [];
}

/** The referrers API's answer for `digest`, optionally filtered by artifact type. */
export async function fetchReferrers(
  base: string,
  subject: { repository: string; digest: string },
  artifactType?: string,
): Promise<Descriptor[]> {
  const query = artifactType === undefined ? '' : `?artifactType=${encodeURIComponent(artifactType)}`;
  const res = await fetch(`${base}/v2/${subject.repository}/referrers/${subject.digest}${query}`);
  const body = (await res.json()) as { manifests?: Descriptor[] };
  if (res.status !== 200) throw new Error(`GET referrers of ${subject.digest} answered ${res.status}`);
  return body.manifests ?? [];
}

/**
 * Differences between `artifact` (its manifest, child manifests and blobs) and what `repository`
 * serves; empty when every byte matches.
 */
export async function artifactDifferences(
  base: string,
  repository: string,
  artifact: BuiltArtifact,
): Promise<string[]> {
  const problems: string[] = [];
  for (const manifest of [artifact, ...artifact.children]) {
    const { digest } = manifest.descriptor;
    const served = await fetchManifest(base, repository, digest);
    if (!served.bytes.equals(manifest.bytes)) problems.push(`manifest ${digest} differs`);
    if (served.digest !== digest) problems.push(`manifest ${digest} is served as "${served.digest}"`);
  }
  for (const [digest, bytes] of artifact.blobs) {
    if (!(await fetchBlob(base, repository, digest)).equals(bytes)) problems.push(`blob ${digest} differs`);
  }
  return problems;
}

async function expectStatus(res: Response, expected: number, what: string): Promise<void> {
  const text = await res.text();
  if (res.status !== expected)
    throw new Error(`${what} answered ${res.status}, expected ${expected}: ${text}`);
}

/**
 * Seeds a registry over plain HTTP (monolithic blob uploads, children before parents), for tests of
 * clients that only pull. Tags the root manifest with `tag`.
 */
export async function pushArtifact(
  base: string,
  target: { repository: string; tag: string },
  artifact: BuiltArtifact,
): Promise<void> {
  const { repository, tag } = target;
  for (const [digest, bytes] of artifact.blobs) {
    const res = await fetch(`${base}/v2/${repository}/blobs/uploads/?digest=${digest}`, {
      method: 'POST',
      headers: { 'content-type': 'application/octet-stream' },
      body: bytes,
    });
    await expectStatus(res, 201, `upload of blob ${digest}`);
  }
  const put = async (reference: string, manifest: BuiltArtifact): Promise<void> => {
    const res = await fetch(`${base}/v2/${repository}/manifests/${reference}`, {
      method: 'PUT',
      headers: { 'content-type': manifest.descriptor.mediaType },
      body: manifest.bytes,
    });
    await expectStatus(res, 201, `PUT manifest ${repository}:${reference}`);
  };
  for (const child of artifact.children) await put(child.descriptor.digest, child);
  await put(tag, artifact);
}

// ---- Airlock request log ----

export interface LoggedRequest {
  readonly method: string;
  readonly path: string;
  readonly route: string;
  readonly status: number;
}

/** The request lines Airlock logged (at --log-level info and below: every write request). */
export function loggedRequests(output: string): LoggedRequest[] {
  const requests: LoggedRequest[] = [];
  for (const line of output.split('\n')) {
    if (!line.startsWith('{')) continue;
    try {
      const entry = JSON.parse(line) as Partial<LoggedRequest> & { msg?: string };
      if (entry.msg !== 'request' || entry.method === undefined || entry.path === undefined) continue;
      requests.push({
        method: entry.method,
        path: entry.path,
        route: entry.route ?? '',
        status: entry.status ?? 0,
      });
    } catch {
      // not a log line
    }
  }
  return requests;
}

export interface ToolOptions {
  readonly env?: NodeJS.ProcessEnv;
  readonly cwd?: string;
  /** Default {@link PEER_TIMEOUT_MS}; the command is killed (SIGKILL) after it. */
  readonly timeoutMs?: number;
  /** A file to connect to the command's stdin. Default: none (stdin is closed). */
  readonly stdinFile?: string;
}

/**
 * Runs a peer tool to completion, capturing output; never throws on a non-zero exit. Stdin is closed
 * (`ignore`) or a file: nothing is written to a pipe, so a child that exits at once cannot fail the
 * test with EPIPE.
 */
export async function runTool(
  command: string,
  args: readonly string[],
  options: ToolOptions = {},
): Promise<CommandResult> {
  const input = options.stdinFile === undefined ? undefined : await open(options.stdinFile, 'r');
  try {
    return await spawnTool(command, args, { ...options, stdin: input?.fd ?? 'ignore' });
  } finally {
    await input?.close();
  }
}

function spawnTool(
  command: string,
  args: readonly string[],
  options: ToolOptions & { readonly stdin: number | 'ignore' },
): Promise<CommandResult> {
  return new Promise((done, reject) => {
    const child = spawn(command, args, {
      cwd: options.cwd,
      env: { ...process.env, ...options.env },
      stdio: [options.stdin, 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout?.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? PEER_TIMEOUT_MS);
    child.once('error', reject);
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      done({ code, stdout, stderr: signal ? `${stderr}\n(killed by ${signal})` : stderr });
    });
  });
}

/** Like {@link runTool}, but throws with the command's output when it exits non-zero. */
export async function runToolOk(
  command: string,
  args: readonly string[],
  options: ToolOptions = {},
): Promise<CommandResult> {
  const result = await runTool(command, args, options);
  if (result.code !== 0) {
    throw new Error(`${command} ${args.join(' ')} exited ${result.code}\n${result.stdout}\n${result.stderr}`);
  }
  return result;
}

/** Runs a command and returns its standard output as bytes (for binary output); throws on a non-zero exit. */
export function runForBytes(
  command: string,
  args: readonly string[],
  options: ToolOptions = {},
): Promise<Buffer> {
  return new Promise((done, reject) => {
    const child = spawn(command, args, {
      cwd: options.cwd,
      env: { ...process.env, ...options.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const chunks: Buffer[] = [];
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => chunks.push(chunk));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? PEER_TIMEOUT_MS);
    child.once('error', reject);
    child.once('close', (code) => {
      clearTimeout(timer);
      if (code === 0) done(Buffer.concat(chunks));
      else reject(new Error(`${command} ${args.join(' ')} exited ${code}\n${stderr}`));
    });
  });
}

// ---- lifetimes ----

/**
 * Waits until the child itself says it listens on its URL. `startAirlockProcess` picks a free port and
 * then polls it; if another process took that port in between, the poll is answered by that process
 * while our child fails to bind, so "something answers" is not proof enough.
 */
async function ownsItsPort(airlock: RunningProcess, timeoutMs = 10_000): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (airlock.output().includes(`listening on ${airlock.url} `)) return true;
    if (airlock.child.exitCode !== null || airlock.child.signalCode !== null) return false;
    await new Promise((r) => setTimeout(r, 25));
  }
  return false;
}

/**
 * Starts Airlock on a fresh data folder for one test and stops it (and deletes the folder) when the
 * test ends. Request logging is on (`--log-level info`) so tests can see which calls a client made.
 */
export async function startAirlockForTest(
  t: TestContext,
  options: StartAirlockOptions = {},
): Promise<RunningProcess> {
  const attempts = options.port === undefined ? 3 : 1;
  for (let attempt = 1; ; attempt++) {
    const airlock = await startAirlockProcess({
      ...options,
      extraArgs: ['--log-level', 'info', ...(options.extraArgs ?? [])],
    });
    const dispose = async (): Promise<void> => {
      await airlock.stop();
      if (options.dataDir === undefined) await rm(airlock.dataDir, { recursive: true, force: true });
    };
    if (await ownsItsPort(airlock)) {
      t.after(dispose);
      return airlock;
    }
    await dispose();
    if (attempt >= attempts) {
      throw new Error(`Airlock did not start listening on ${airlock.url}:\n${airlock.output()}`);
    }
  }
}

/** A temp folder removed when the test ends. */
export async function tempDirForTest(t: TestContext, prefix: string): Promise<string> {
  const dir = await tempDir(prefix);
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}
