// `airlock push` and `airlock pull` with files and folders that are already there, symlinks, special files
// and the current folder ".", against an Airlock in this process (and oras, where installed, for what it
// writes and reads). Each test names the bad input it covers and what the CLI does with it.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { lstat, mkdir, readdir, readFile, readlink, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { gunzipSync, gzipSync } from 'node:zlib';
import { extract, pack } from 'tar-stream';
import { digestOf, MediaType } from '../../src/oci/index.js';
import { airlock, airlockOk, assertOneLineError, cliEnv, orasFor, seedArtifact } from '../helpers/cli.js';
import { startTestRegistry, type TestRegistry } from '../helpers/in-process.js';
import { fetchBlob, fetchManifest, nonce, tempDirForTest } from '../helpers/interop.js';

const TITLE = 'org.opencontainers.image.title';
const UNPACK = 'io.deis.oras.content.unpack';

let registry: TestRegistry;
/** host:port, as written in references. */
let host: string;

before(async () => {
  registry = await startTestRegistry();
  host = new URL(registry.url).host;
});
after(async () => {
  await registry.dispose();
});

/** A reference in a repository of the test's own. */
function refFor(name: string): { ref: string; repository: string } {
  const repository = `files/${name}-${nonce(4)}`;
  return { ref: `${host}/${repository}:v1`, repository };
}

interface ArtifactManifest {
  readonly artifactType?: string;
  readonly layers: readonly { readonly digest: string; readonly annotations?: Record<string, string> }[];
}

async function manifestOf(repository: string): Promise<ArtifactManifest> {
  return JSON.parse(
    (await fetchManifest(registry.url, repository, 'v1')).bytes.toString(),
  ) as ArtifactManifest;
}

/** Whether the registry has any tag in `repository` (a refused push must leave none). */
async function tagged(repository: string): Promise<boolean> {
  const res = await fetch(`${registry.url}/v2/${repository}/tags/list`);
  const body = (await res.json()) as { tags?: string[] | null };
  return res.status === 200 && (body.tags ?? []).length > 0;
}

/** `name type[ -> target]` for each entry of a tar+gzip layer. */
async function tarEntries(layer: Buffer): Promise<string[]> {
  const entries: string[] = [];
  const reader = extract();
  const done = (async () => {
    for await (const entry of reader) {
      const { name, type, linkname } = entry.header;
      entries.push(linkname ? `${name} ${type} -> ${linkname}` : `${name} ${type}`);
      entry.resume();
    }
  })();
  reader.end(gunzipSync(layer));
  await done;
  return entries;
}

/** A tar+gzip of directories (no body), files (body) and symlinks (link). */
async function tarGz(entries: readonly { name: string; body?: string; link?: string }[]): Promise<Buffer> {
  const p = pack();
  for (const e of entries) {
    if (e.link !== undefined) p.entry({ name: e.name, type: 'symlink', linkname: e.link });
    else if (e.body === undefined) p.entry({ name: e.name, type: 'directory', mode: 0o755 });
    else p.entry({ name: e.name, mode: 0o644 }, e.body);
  }
  p.finalize();
  const chunks: Buffer[] = [];
  for await (const chunk of p as AsyncIterable<Buffer>) chunks.push(chunk);
  return gzipSync(Buffer.concat(chunks));
}

/** Seeds `repository:v1` with an artifact of titled layers, as oras lays them out. */
async function seedLayers(
  repository: string,
  layers: readonly { title: string; bytes: Buffer; unpack?: boolean }[],
): Promise<void> {
  const config = Buffer.from('{}');
  const bytes = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MediaType.OciManifest,
      artifactType: 'application/vnd.unknown.artifact.v1',
      config: { mediaType: MediaType.OciEmpty, digest: digestOf(config), size: 2, data: 'e30=' },
      layers: layers.map((l) => ({
        mediaType: l.unpack ? MediaType.OciLayerGzip : MediaType.OciLayer,
        digest: digestOf(l.bytes),
        size: l.bytes.length,
        annotations: { [TITLE]: l.title, ...(l.unpack ? { [UNPACK]: 'true' } : {}) },
      })),
    }),
  );
  const blobs = new Map<string, Buffer>([[digestOf(config), config]]);
  for (const l of layers) blobs.set(digestOf(l.bytes), l.bytes);
  await seedArtifact(
    registry.url,
    { repository, tag: 'v1' },
    { descriptor: { mediaType: MediaType.OciManifest, digest: digestOf(bytes) }, bytes, blobs, children: [] },
  );
}

/** Every path under `dir` with its kind and content (file text, link target), for "left as it was" checks. */
async function snapshot(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (rel: string): Promise<void> => {
    for (const name of (await readdir(join(dir, rel))).sort()) {
      const path = rel ? `${rel}/${name}` : name;
      const info = await lstat(join(dir, path));
      if (info.isDirectory()) {
        out.push(`${path}/`);
        await walk(path);
      } else if (info.isSymbolicLink()) out.push(`${path} -> ${await readlink(join(dir, path))}`);
      else out.push(`${path}: ${await readFile(join(dir, path), 'utf8')}`);
    }
  };
  await walk('');
  return out;
}

describe('airlock pull into a folder that already has files', () => {
  // Bad input: an output folder that already holds the artifact's folder with files of the user's own.
  // Pull used to delete the folder first; now it merges, as oras does.
  it('merges a folder layer into the existing folder: same-named files are replaced, the others stay', async (t) => {
    const env = await cliEnv(t);
    const src = await tempDirForTest(t, 'cli-files-src-');
    const out = await tempDirForTest(t, 'cli-files-out-');
    await mkdir(join(src, 'pushdir', 'sub'), { recursive: true });
    await writeFile(join(src, 'pushdir', 'a.txt'), 'new a');
    await writeFile(join(src, 'pushdir', 'sub', 'b.txt'), 'new b');
    const { ref } = refFor('merge');
    await airlockOk(env, ['push', ref, 'pushdir'], { cwd: src });

    await mkdir(join(out, 'pushdir', 'sub'), { recursive: true });
    await writeFile(join(out, 'pushdir', 'a.txt'), 'old a');
    await writeFile(join(out, 'pushdir', 'mine.txt'), 'mine');
    await writeFile(join(out, 'pushdir', 'sub', 'c.txt'), 'mine too');
    await airlockOk(env, ['pull', ref, '-d', out]);
    assert.deepEqual(await snapshot(out), [
      'pushdir/',
      'pushdir/a.txt: new a',
      'pushdir/mine.txt: mine',
      'pushdir/sub/',
      'pushdir/sub/b.txt: new b',
      'pushdir/sub/c.txt: mine too',
    ]);
  });

  // Bad input: a file layer whose title is an existing folder. Pull used to delete the folder; now it
  // fails with one line naming it (exit 1) and downloads nothing.
  it('refuses a file layer whose title is an existing folder with one line naming it, leaving it alone', async (t) => {
    const env = await cliEnv(t);
    const out = await tempDirForTest(t, 'cli-files-out-');
    const { ref, repository } = refFor('file-over-folder');
    await seedLayers(repository, [
      { title: 'first.txt', bytes: Buffer.from('first') },
      { title: 'data', bytes: Buffer.from('a file named like the folder') },
    ]);
    await mkdir(join(out, 'data'));
    await writeFile(join(out, 'data', 'keep.txt'), 'keep');
    assertOneLineError(await airlock(env, ['pull', ref, '-d', out]), {
      code: 1,
      pattern: /Cannot restore "data": ".*\/data" is a folder where the artifact has a file/,
    });
    assert.deepEqual(await snapshot(out), ['data/', 'data/keep.txt: keep']);
  });

  // Bad input: an artifact whose last layer conflicts with the output folder after earlier layers were
  // placed. The earlier moves are undone: no half-merged folder, no staging folder left.
  it('leaves the output folder exactly as it was when a later layer conflicts', async (t) => {
    const env = await cliEnv(t);
    const out = await tempDirForTest(t, 'cli-files-out-');
    const { ref, repository } = refFor('undo');
    await seedLayers(repository, [
      { title: 'notes.txt', bytes: Buffer.from('new notes') },
      {
        title: 'conf',
        bytes: await tarGz([
          { name: 'conf/' },
          { name: 'conf/a.yaml', body: 'new a' },
          { name: 'conf/new/' },
          { name: 'conf/new/b.yaml', body: 'b' },
        ]),
        unpack: true,
      },
      {
        title: 'later',
        bytes: await tarGz([{ name: 'later/' }, { name: 'later/x', body: 'x' }]),
        unpack: true,
      },
    ]);
    await mkdir(join(out, 'conf'));
    await writeFile(join(out, 'conf', 'a.yaml'), 'old a');
    await writeFile(join(out, 'notes.txt'), 'old notes');
    await mkdir(join(out, 'later', 'x'), { recursive: true });
    const before = await snapshot(out);
    assertOneLineError(await airlock(env, ['pull', ref, '-d', out]), {
      pattern: /Cannot restore "later\/x": ".*\/later\/x" is a folder where the artifact has a file/,
    });
    assert.deepEqual(await snapshot(out), before);
  });
});

describe('airlock push and pull of folders with symlinks and special files', () => {
  // Bad input: symlinks in a pushed folder. Push used to drop them silently; now they are symlink entries
  // with their target text, and pull restores them.
  it('keeps symlinks as symlink entries and pull restores them', async (t) => {
    const env = await cliEnv(t);
    const src = await tempDirForTest(t, 'cli-files-src-');
    const out = await tempDirForTest(t, 'cli-files-out-');
    await mkdir(join(src, 'pushdir', 'sub'), { recursive: true });
    await writeFile(join(src, 'pushdir', 'a.txt'), 'a');
    await symlink('a.txt', join(src, 'pushdir', 'link'));
    await symlink('../a.txt', join(src, 'pushdir', 'sub', 'up'));
    const { ref, repository } = refFor('symlinks');
    await airlockOk(env, ['push', ref, 'pushdir'], { cwd: src });
    const layer = (await manifestOf(repository)).layers[0];
    assert.deepEqual(await tarEntries(await fetchBlob(registry.url, repository, layer?.digest ?? '')), [
      'pushdir/ directory',
      'pushdir/a.txt file',
      'pushdir/link symlink -> a.txt',
      'pushdir/sub/ directory',
      'pushdir/sub/up symlink -> ../a.txt',
    ]);
    await airlockOk(env, ['pull', ref, '-d', out]);
    assert.deepEqual(await snapshot(out), [
      'pushdir/',
      'pushdir/a.txt: a',
      'pushdir/link -> a.txt',
      'pushdir/sub/',
      'pushdir/sub/up -> ../a.txt',
    ]);
  });

  // Bad input: a symlink that points out of the output folder. Push keeps it (as oras does); pull refuses
  // the layer with one line and writes nothing.
  it('refuses on pull a symlink that points out of the output folder, writing nothing', async (t) => {
    const env = await cliEnv(t);
    const src = await tempDirForTest(t, 'cli-files-src-');
    const out = await tempDirForTest(t, 'cli-files-out-');
    await mkdir(join(src, 'pushdir'));
    await symlink('../../outside', join(src, 'pushdir', 'far'));
    const { ref } = refFor('far-link');
    await airlockOk(env, ['push', ref, 'pushdir'], { cwd: src });
    assertOneLineError(await airlock(env, ['pull', ref, '-d', join(out, 'new')]), {
      pattern: /Cannot unpack layer "pushdir": Symlink "pushdir\/far" points outside the target/,
    });
    assert.deepEqual(await readdir(out), []);
  });

  // Bad input: a FIFO in a pushed folder. Push used to drop it silently; now it fails with one line naming
  // it (exit 1) before anything is pushed.
  it('refuses a folder holding a FIFO with one line naming it, and pushes nothing', async (t) => {
    const env = await cliEnv(t);
    const src = await tempDirForTest(t, 'cli-files-src-');
    await mkdir(join(src, 'pushdir'));
    await writeFile(join(src, 'pushdir', 'a.txt'), 'a');
    execFileSync('mkfifo', [join(src, 'pushdir', 'pipe')]);
    const { ref, repository } = refFor('fifo');
    assertOneLineError(await airlock(env, ['push', ref, 'pushdir'], { cwd: src }), {
      pattern:
        /Cannot push "pushdir\/pipe": it is a FIFO; a folder can hold only files, folders and symlinks/,
    });
    assert.equal(await tagged(repository), false);
  });
});

describe('airlock push and pull of the current folder "."', () => {
  // Bad input: the title "." (what `oras push REF .` writes). Pull used to refuse it; now the folder's
  // content is restored into the output folder itself.
  it('restores a folder layer titled "." into the output folder, keeping files already there', async (t) => {
    const env = await cliEnv(t);
    const out = await tempDirForTest(t, 'cli-files-out-');
    const { ref, repository } = refFor('dot-pull');
    await seedLayers(repository, [
      {
        title: '.',
        bytes: await tarGz([
          { name: '.' },
          { name: 'a.txt', body: 'a' },
          { name: 'link', link: 'a.txt' },
          { name: 'sub' },
          { name: 'sub/b.txt', body: 'b' },
        ]),
        unpack: true,
      },
    ]);
    await writeFile(join(out, 'mine.txt'), 'mine');
    const pulled = await airlockOk(env, ['pull', ref, '-d', out, '-o', 'json']);
    assert.deepEqual(
      (JSON.parse(pulled.stdout) as { title: string; unpacked: boolean }[]).map((f) => [f.title, f.unpacked]),
      [['.', true]],
    );
    assert.deepEqual(await snapshot(out), [
      'a.txt: a',
      'link -> a.txt',
      'mine.txt: mine',
      'sub/',
      'sub/b.txt: b',
    ]);
  });

  // Bad input: `airlock push REF .`, which used to be refused ('"." names no file').
  it('pushes "." as oras does: one folder layer titled "." with entries named relative to the folder', async (t) => {
    const env = await cliEnv(t);
    const src = await tempDirForTest(t, 'cli-files-src-');
    await writeFile(join(src, 'a.txt'), 'a');
    await mkdir(join(src, 'sub'));
    await writeFile(join(src, 'sub', 'b.txt'), 'b');
    const { ref, repository } = refFor('dot-push');
    await airlockOk(env, ['push', ref, '.'], { cwd: src });
    const [layer, ...rest] = (await manifestOf(repository)).layers;
    assert.equal(rest.length, 0);
    assert.equal(layer?.annotations?.[TITLE], '.');
    assert.equal(layer.annotations[UNPACK], 'true');
    assert.deepEqual(await tarEntries(await fetchBlob(registry.url, repository, layer.digest)), [
      '. directory',
      'a.txt file',
      'sub/ directory',
      'sub/b.txt file',
    ]);
  });
});

describe('airlock push --artifact-type', () => {
  // Bad input: an empty or malformed artifact type, which used to be written into the manifest as is
  // ("artifactType": ""). Refused with one line before anything is pushed. The exit code is 1 because the
  // client library reports it as ClientError INVALID_INPUT; the CLI would have to turn it into a UsageError
  // for exit code 2.
  it('refuses an empty or malformed artifact type with one line and pushes nothing', async (t) => {
    const env = await cliEnv(t);
    const src = await tempDirForTest(t, 'cli-files-src-');
    await writeFile(join(src, 'a.txt'), 'a');
    const { ref, repository } = refFor('artifact-type');
    for (const type of ['', 'foo', 'application/', 'application/x; charset=utf-8']) {
      const result = await airlock(env, ['push', ref, 'a.txt', '--artifact-type', type], { cwd: src });
      // A usage error (exit 2): the flag is wrong, before anything is read or sent.
      assertOneLineError(result, {
        code: 2,
        pattern: new RegExp(
          `--artifact-type "${type.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}" is not a media type`,
        ),
      });
    }
    assert.equal(await tagged(repository), false);
    await airlockOk(env, ['push', ref, 'a.txt', '--artifact-type', 'application/vnd.acme.config+json'], {
      cwd: src,
    });
    assert.equal((await manifestOf(repository)).artifactType, 'application/vnd.acme.config+json');
  });
});

describe('airlock and oras with the current folder "."', () => {
  it('airlock pull restores what `oras push REF .` wrote, and oras pull restores `airlock push REF .`', async (t) => {
    const env = await cliEnv(t);
    const oras = orasFor(t, env);
    if (!oras) return;
    const src = await tempDirForTest(t, 'cli-files-src-');
    await writeFile(join(src, 'a.txt'), `a ${nonce()}`);
    await mkdir(join(src, 'sub'));
    await writeFile(join(src, 'sub', 'b.txt'), 'b');
    await symlink('a.txt', join(src, 'link'));
    const want = await snapshot(src);

    const byOras = refFor('dot-oras');
    await oras(['push', byOras.ref, '.'], src);
    const orasLayer = (await manifestOf(byOras.repository)).layers[0];
    assert.equal(orasLayer?.annotations?.[TITLE], '.');
    const fromOras = await tempDirForTest(t, 'cli-files-out-');
    await airlockOk(env, ['pull', byOras.ref, '-d', fromOras]);
    assert.deepEqual(await snapshot(fromOras), want);

    const byAirlock = refFor('dot-airlock');
    await airlockOk(env, ['push', byAirlock.ref, '.'], { cwd: src });
    const airlockLayer = (await manifestOf(byAirlock.repository)).layers[0];
    // The same title, annotations and entries (names, types, link targets) as oras's layer.
    assert.deepEqual(Object.keys(airlockLayer?.annotations ?? {}), Object.keys(orasLayer.annotations));
    assert.equal(airlockLayer?.annotations?.[TITLE], '.');
    const entries = async (repository: string, digest: string): Promise<string[]> =>
      (await tarEntries(await fetchBlob(registry.url, repository, digest))).map((e) =>
        e.replace(/\/ directory$/, ' directory'),
      );
    assert.deepEqual(
      await entries(byAirlock.repository, airlockLayer?.digest ?? ''),
      await entries(byOras.repository, orasLayer.digest),
    );
    const fromAirlock = await tempDirForTest(t, 'cli-files-out-');
    await oras(['pull', byAirlock.ref, '-o', fromAirlock]);
    assert.deepEqual(await snapshot(fromAirlock), want);
  });
});
