import {
  createFolders,
  isDigest,
  makeTempDir,
  OciLayout,
  parseReference,
  processRuns,
  releaseCreatedFolders,
  removeEmptyFolders,
  removeTempPath,
  trackTempPath,
  type Reference,
} from '../oci/index.js';
import { ClientError } from './errors.js';
import type { ImageSource, ImageTarget } from './image-store.js';
import type { RegistryClient } from './registry-client.js';
import { createWriteStream, statSync, type Stats } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { getS3Object, loadS3Config, parseS3Url, type S3Config } from './s3.js';
import {
  openArchiveSource,
  openDockerArchiveSource,
  openOciArchiveSource,
  openOciArchiveTarget,
} from './stores/archive-store.js';
import { DockerArchiveTarget } from './stores/docker-archive-target.js';
import { LayoutStore } from './stores/layout-store.js';
import { RegistryStore } from './stores/registry-store.js';

/** One end of a copy, as written on the command line (skopeo's transport syntax). */
export type ImageLocation =
  | { readonly kind: 'registry'; readonly ref: Reference }
  | { readonly kind: 'oci'; readonly dir: string; readonly tag?: string }
  | { readonly kind: 'oci-archive'; readonly file: string; readonly tag?: string }
  | { readonly kind: 'docker-archive'; readonly file: string; readonly name?: string }
  | { readonly kind: 's3'; readonly bucket: string; readonly key: string };

/**
 * `PATH[:TAG]`, where a colon followed by text without a slash starts the tag, or `PATH@DIGEST` (an
 * entry chosen by its digest, e.g. one of several untagged images).
 */
function pathAndTag(rest: string): { path: string; tag?: string } {
  const at = rest.lastIndexOf('@');
  const digest = rest.slice(at + 1);
  if (at > 0 && isDigest(digest)) return { path: rest.slice(0, at), tag: digest };
  const colon = rest.lastIndexOf(':');
  if (colon > 0 && !rest.slice(colon + 1).includes('/')) {
    const tag = rest.slice(colon + 1);
    return tag ? { path: rest.slice(0, colon), tag } : { path: rest.slice(0, colon) };
  }
  return { path: rest };
}

export interface ParseImageLocationOptions {
  /**
   * Take only a registry reference (`HOST/REPO[:TAG|@DIGEST]`, or the same after `docker://`), for the
   * commands that work on a registry alone; every other transport is refused. Default: false.
   */
  readonly registryOnly?: boolean;
  /**
   * Read a text without a transport that names a folder holding an OCI layout (its `oci-layout` file) as
   * `oci:FOLDER`, as gdcloud's `artifacts tree` and `extract` take a bundle's folder; a text that can only
   * be a path (`/…`, `./…`, `../…`) must then name one. For sources: it looks at the file system, and
   * a destination folder may not exist yet. Default: false.
   */
  readonly layoutFolders?: boolean;
}

const OWN_TRANSPORT = /^(oci|oci-archive|docker-archive):/;
// skopeo's transports Airlock does not read. Followed by digits and a slash, the word is a host and port
// (`dir:5000/team/app`), not a transport.
const SKOPEO_TRANSPORT = /^(containers-storage|docker-daemon|dir|ostree|sif|tarball|atomic):(?!\d+\/)/;

/**
 * The transport `text` starts with (`oci:`, `s3://`, `dir:` …), or undefined for a plain reference. Each
 * of these would otherwise read as a Docker Hub name (`dir:foo` as `docker.io/library/dir:foo`).
 */
function transportOf(text: string): string | undefined {
  const found = OWN_TRANSPORT.exec(text) ?? /^[a-z0-9-]+:\/\//.exec(text) ?? SKOPEO_TRANSPORT.exec(text);
  return found?.[0];
}

/**
 * Parses `oci:DIR[:TAG]`, `oci-archive:FILE[:TAG]`, `docker-archive:FILE[:NAME:TAG]`, `s3://BUCKET/KEY`,
 * `docker://REF` or a plain registry reference. The one place a command-line image argument is read, so
 * every command refuses the transports it does not take in the same words.
 */
export function parseImageLocation(text: string, options: ParseImageLocationOptions = {}): ImageLocation {
  const fail = (why: string): never => {
    throw new ClientError('INVALID_INPUT', `Cannot use "${text}": ${why}`);
  };
  const transport = transportOf(text);
  if (options.registryOnly && transport !== undefined && transport !== 'docker://')
    fail(
      `transport "${transport}" is not supported here; this command takes a registry reference (HOST/REPO[:TAG], HOST/REPO@DIGEST or docker://HOST/REPO…)`,
    );
  if (transport === 'oci:') {
    const { path, tag } = pathAndTag(text.slice(4));
    if (!path) fail('the layout folder is empty');
    return { kind: 'oci', dir: path, ...(tag ? { tag } : {}) };
  }
  if (transport === 'oci-archive:') {
    const { path, tag } = pathAndTag(text.slice(12));
    if (!path) fail('the archive file is empty');
    return { kind: 'oci-archive', file: path, ...(tag ? { tag } : {}) };
  }
  if (transport === 'docker-archive:') {
    const rest = text.slice(15);
    const colon = rest.indexOf(':');
    const file = colon < 0 ? rest : rest.slice(0, colon);
    const name = colon < 0 ? undefined : rest.slice(colon + 1);
    if (!file) fail('the archive file is empty');
    return { kind: 'docker-archive', file, ...(name ? { name } : {}) };
  }
  if (transport === 's3://') return { kind: 's3', ...parseS3Url(text) };
  if (transport === undefined && options.layoutFolders && !options.registryOnly) {
    if (statOrNothing(join(text, 'oci-layout'))?.isFile()) return { kind: 'oci', dir: text };
    // No reference starts like a path (its first part would be the host): say what the folder lacks.
    if (/^(\/|\.\.?(\/|$))/.test(text)) {
      const found = statOrNothing(text);
      if (!found) fail('no such file or folder');
      if (found?.isFile()) fail('it is a file: name it oci-archive:FILE or docker-archive:FILE');
      fail('the folder holds no OCI layout (no oci-layout file in it)');
    }
  }
  if (transport !== undefined && transport !== 'docker://') {
    if (transport.endsWith('://'))
      fail('unknown transport (use oci:, oci-archive:, docker-archive: or docker://)');
    fail(`transport "${transport}" is not supported (use oci:, oci-archive:, docker-archive: or docker://)`);
  }
  try {
    return { kind: 'registry', ref: parseReference(text.replace(/^docker:\/\//, '')) };
  } catch (error) {
    // Its message already quotes the reference.
    throw new ClientError('INVALID_INPUT', (error as Error).message, { cause: error });
  }
}

/** A path's stat, or undefined when there is nothing to stat there (missing, or below a file). */
function statOrNothing(path: string): Stats | undefined {
  try {
    return statSync(path);
  } catch {
    return undefined;
  }
}

/** Makes registry clients for hosts; the CLI passes one that applies its flags. */
export type ClientFactory = (host: string) => Promise<RegistryClient>;

export interface OpenSourceOptions {
  /** S3 settings for `s3://` sources. Default: from the environment and ~/.config/airlock/s3.json. */
  readonly s3?: Partial<S3Config>;
}

/** Downloads an s3:// image tarball to a temp file and opens it as an archive (OCI or docker). */
async function openS3Source(
  location: { bucket: string; key: string },
  options: OpenSourceOptions,
): Promise<ImageSource> {
  const config = await loadS3Config(options.s3 ?? {});
  const work = await makeTempDir(join(tmpdir(), 'airlock-s3-'));
  try {
    const file = join(work, 'object.tar');
    const { body } = await getS3Object(location, config);
    await pipeline(body, createWriteStream(file));
    const source = await openArchiveSource(file, `s3://${location.bucket}/${location.key}`);
    const close = source.close.bind(source);
    return Object.assign(source, {
      async close() {
        await close();
        await removeTempPath(work);
      },
    });
  } catch (error) {
    await removeTempPath(work);
    throw error;
  }
}

export async function openSource(
  location: ImageLocation,
  clients: ClientFactory,
  options: OpenSourceOptions = {},
): Promise<ImageSource> {
  switch (location.kind) {
    case 'registry':
      return new RegistryStore(await clients(location.ref.registry), location.ref);
    case 'oci':
      return new LayoutStore(await OciLayout.open(location.dir), location.tag);
    case 'oci-archive':
      return openOciArchiveSource(location.file, location.tag);
    case 'docker-archive':
      return openDockerArchiveSource(location.file, location.name);
    case 's3':
      return openS3Source(location, options);
  }
}

/** Where a copy builds a new layout inside its folder before moving it into place. */
const STAGING_PREFIX = '.airlock-staging-';
/** The file in a staging folder that says which process on which machine is writing it. */
const STAGING_OWNER = 'owner';

/**
 * A layout target. An existing layout is written in place (blobs are content-addressed and index.json
 * changes last, so a failed copy leaves it as it was, give or take unreferenced blobs). A new layout, in
 * a folder that does not exist or is empty, is built in a staging folder inside it and moved into place
 * once the copy succeeded (OciLayout.publish): a failed or interrupted copy removes its staging folder
 * and the folders it created while they are empty, never what another copy finished there meanwhile.
 */
async function openLayoutTarget(dir: string, tag: string | undefined): Promise<ImageTarget> {
  const existing = await readdir(dir).catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT') return undefined;
    throw error;
  });
  const stagings = (existing ?? []).filter((name) => name.startsWith(STAGING_PREFIX));
  await removeAbandonedStagings(dir, stagings);
  // Another copy's staging folder does not make a layout: that copy may still fail.
  if (existing?.some((name) => !name.startsWith(STAGING_PREFIX)))
    return new LayoutStore(await OciLayout.open(dir, { create: true }), tag);
  const created = await createFolders(dir);
  const staging = join(dir, `${STAGING_PREFIX}${randomBytes(6).toString('hex')}`);
  trackTempPath(staging);
  let layout: OciLayout;
  try {
    await mkdir(staging);
    await writeFile(join(staging, STAGING_OWNER), `${process.pid}\n${hostname()}\n`);
    layout = await OciLayout.open(staging, { create: true });
  } catch (error) {
    await removeTempPath(staging);
    await removeEmptyFolders(created);
    throw error;
  }
  return Object.assign(new LayoutStore(layout, tag, `oci:${dir}${tag ? `:${tag}` : ''}`), {
    async close(ok: boolean) {
      let published = false;
      try {
        if (ok) {
          await OciLayout.publish(layout, dir);
          published = true;
        }
      } finally {
        await removeTempPath(staging);
        if (published) releaseCreatedFolders(created);
        else await removeEmptyFolders(created);
      }
    },
  });
}

/**
 * Removes staging folders left in `dir` by copies on this machine that are no longer running (killed,
 * or the machine restarted); those of running copies, and of other machines', stay.
 */
async function removeAbandonedStagings(dir: string, names: readonly string[]): Promise<void> {
  for (const name of names) {
    const path = join(dir, name);
    const [pid, host] = (await readFile(join(path, STAGING_OWNER), 'utf8').catch(() => '')).split('\n');
    const owner = Number(pid);
    if (host !== hostname() || !Number.isSafeInteger(owner) || owner <= 0 || processRuns(owner)) continue;
    await rm(path, { recursive: true, force: true });
  }
}

export async function openTarget(location: ImageLocation, clients: ClientFactory): Promise<ImageTarget> {
  switch (location.kind) {
    case 'registry':
      return new RegistryStore(await clients(location.ref.registry), location.ref);
    case 'oci':
      return openLayoutTarget(location.dir, location.tag);
    case 'oci-archive':
      return openOciArchiveTarget(location.file, location.tag);
    case 'docker-archive':
      return DockerArchiveTarget.open(location.file, location.name);
    case 's3':
      throw new ClientError(
        'INVALID_INPUT',
        's3:// can only be read from; copy to oci-archive:FILE and upload that',
      );
  }
}
