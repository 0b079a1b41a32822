// airlock append against crane append: each reads what the other pushed, and the same gzip layer gives
// byte-identical manifests and configs (a plain tar differs only in how it was gzipped).
import assert from 'node:assert/strict';
import { lstat, mkdir, readdir, readFile, readlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { gunzipSync, gzipSync } from 'node:zlib';
import { extract } from 'tar-stream';
import { Readable } from 'node:stream';
import { MediaType } from '../../src/oci/index.js';
import { airlockBytes, airlockOk, cliEnv, type CliEnv } from '../helpers/cli.js';
import {
  buildImage,
  fetchBlob,
  fetchManifest,
  nonce,
  pushArtifact,
  runForBytes,
  runToolOk,
  sha256,
  startAirlockForTest,
  tarArchive,
  tempDirForTest,
  TEST_TIMEOUT_MS,
  type TarFile,
} from '../helpers/interop.js';
import { requirePeer } from '../helpers/peers.js';
import type { CommandResult } from '../helpers/processes.js';

interface Crane {
  run(args: readonly string[]): Promise<CommandResult>;
  bytes(args: readonly string[]): Promise<Buffer>;
}

/** crane with plain HTTP allowed and the test's private DOCKER_CONFIG. */
function craneFor(t: TestContext, env: CliEnv): Crane | undefined {
  const bin = requirePeer(t, 'crane');
  if (!bin) return undefined;
  return {
    run: (args) => runToolOk(bin, [...args, '--insecure'], { env: env.env }),
    bytes: (args) => runForBytes(bin, [...args, '--insecure'], { env: env.env }),
  };
}

interface Manifest {
  readonly mediaType: string;
  readonly config: { readonly mediaType: string; readonly digest: string };
  readonly layers: readonly { readonly mediaType: string; readonly digest: string }[];
}

function parse<T>(bytes: Buffer): T {
  return JSON.parse(bytes.toString('utf8')) as T;
}

/** Files of a tar (plain), by name. */
async function tarFiles(tar: Buffer): Promise<Map<string, Buffer>> {
  const files = new Map<string, Buffer>();
  const ex = extract();
  const done = new Promise<void>((resolve, reject) => {
    ex.on('entry', (header, stream, next) => {
      const chunks: Buffer[] = [];
      stream.on('data', (c: unknown) => chunks.push(c as Buffer));
      stream.on('end', () => {
        if (header.type === 'file') files.set(header.name, Buffer.concat(chunks));
        next();
      });
    });
    ex.on('finish', resolve);
    ex.on('error', reject);
  });
  Readable.from([tar]).pipe(ex);
  await done;
  return files;
}

describe('airlock append and crane', () => {
  it(
    'crane reads what airlock append pushed, and airlock reads what crane append pushed',
    { timeout: TEST_TIMEOUT_MS },
    async (t) => {
      const env = await cliEnv(t);
      const crane = craneFor(t, env);
      if (!crane) return;
      const airlock = await startAirlockForTest(t);
      const work = await tempDirForTest(t, 'cli-crane-');
      const script = `echo ${nonce()}\n`;
      const tar = tarArchive([{ path: 'app/' }, { path: 'app/run.sh', content: script, mode: 0o755 }]);
      await writeFile(join(work, 'layer.tar'), tar);

      const ours = `${airlock.host}/cli/crane-reads:v1`;
      await airlockOk(env, ['append', '-f', join(work, 'layer.tar'), '-t', ours]);
      const craneManifest = await crane.bytes(['manifest', ours]);
      assert.deepEqual(craneManifest, (await fetchManifest(airlock.url, 'cli/crane-reads', 'v1')).bytes);
      assert.deepEqual(await crane.bytes(['config', ours]), await airlockBytes(env, ['config', ours]));
      assert.equal((await crane.run(['digest', ours])).stdout.trim(), sha256(craneManifest));
      const exported = await tarFiles(await crane.bytes(['export', ours, '-']));
      assert.equal(exported.get('app/run.sh')?.toString(), script);
      await crane.run(['pull', '--format', 'oci', ours, join(work, 'pulled')]);

      const theirs = `${airlock.host}/cli/airlock-reads:v1`;
      await crane.run(['append', '-f', join(work, 'layer.tar'), '-t', theirs]);
      assert.deepEqual(
        await airlockBytes(env, ['manifest', theirs]),
        await crane.bytes(['manifest', theirs]),
      );
      assert.deepEqual(await airlockBytes(env, ['config', theirs]), await crane.bytes(['config', theirs]));
      assert.equal(
        (await airlockOk(env, ['digest', theirs])).stdout.trim(),
        (await crane.run(['digest', theirs])).stdout.trim(),
      );
      const layer = parse<Manifest>(await airlockBytes(env, ['manifest', theirs])).layers[0];
      assert.ok(layer);
      const blob = await airlockBytes(env, ['blob', `${airlock.host}/cli/airlock-reads@${layer.digest}`]);
      assert.deepEqual(blob, await fetchBlob(airlock.url, 'cli/airlock-reads', layer.digest));
    },
  );

  it(
    'writes the manifest and config crane writes for a gzip layer: empty base, OCI empty base, crane-made base',
    { timeout: TEST_TIMEOUT_MS },
    async (t) => {
      const env = await cliEnv(t);
      const crane = craneFor(t, env);
      if (!crane) return;
      const airlock = await startAirlockForTest(t);
      const work = await tempDirForTest(t, 'cli-crane-same-');
      const gz = gzipSync(tarArchive([{ path: 'etc/' }, { path: 'etc/motd', content: `hi ${nonce()}\n` }]));
      const top = gzipSync(tarArchive([{ path: 'top.txt', content: `top ${nonce()}\n` }]));
      await writeFile(join(work, 'layer.tar.gz'), gz);
      await writeFile(join(work, 'top.tar.gz'), top);
      const repo = `${airlock.host}/cli/same`;
      await crane.run(['append', '-f', join(work, 'layer.tar.gz'), '-t', `${repo}:crane-base`]);

      const cases = [
        { name: 'empty', flags: [], file: 'layer.tar.gz', manifestType: MediaType.DockerManifest },
        {
          name: 'oci-empty',
          flags: ['--oci-empty-base'],
          file: 'layer.tar.gz',
          manifestType: MediaType.OciManifest,
        },
        {
          name: 'based',
          flags: ['-b', `${repo}:crane-base`],
          file: 'top.tar.gz',
          manifestType: MediaType.DockerManifest,
        },
      ];
      for (const c of cases) {
        const file = join(work, c.file);
        await crane.run(['append', '-f', file, '-t', `${repo}:crane-${c.name}`, ...c.flags]);
        const printed = await airlockOk(env, [
          'append',
          '-f',
          file,
          '-t',
          `${repo}:airlock-${c.name}`,
          ...c.flags,
        ]);
        const craneManifest = await crane.bytes(['manifest', `${repo}:crane-${c.name}`]);
        const ourManifest = await airlockBytes(env, ['manifest', `${repo}:airlock-${c.name}`]);
        assert.equal(ourManifest.toString(), craneManifest.toString(), c.name);
        assert.equal(parse<Manifest>(ourManifest).mediaType, c.manifestType);
        assert.match(printed.stdout, new RegExp(`@${sha256(craneManifest)}$`, 'm'));
        assert.deepEqual(
          await airlockBytes(env, ['config', `${repo}:airlock-${c.name}`]),
          await crane.bytes(['config', `${repo}:crane-${c.name}`]),
          c.name,
        );
      }
      assert.equal(
        parse<Manifest>(await airlockBytes(env, ['manifest', `${repo}:airlock-based`])).layers.length,
        2,
      );
    },
  );

  it(
    'for a plain tar writes the same media types and config as crane; only the gzipped layer differs',
    { timeout: TEST_TIMEOUT_MS },
    async (t) => {
      const env = await cliEnv(t);
      const crane = craneFor(t, env);
      if (!crane) return;
      const airlock = await startAirlockForTest(t);
      const work = await tempDirForTest(t, 'cli-crane-plain-');
      const tar = tarArchive([{ path: 'plain.txt', content: `plain ${nonce()}\n`.repeat(50) }]);
      await writeFile(join(work, 'layer.tar'), tar);
      const repo = `${airlock.host}/cli/plain`;
      const variants: readonly (readonly string[])[] = [[], ['--oci-empty-base']];
      for (const flags of variants) {
        const tag = flags.length ? 'oci' : 'docker';
        await crane.run(['append', '-f', join(work, 'layer.tar'), '-t', `${repo}:crane-${tag}`, ...flags]);
        await airlockOk(env, [
          'append',
          '-f',
          join(work, 'layer.tar'),
          '-t',
          `${repo}:airlock-${tag}`,
          ...flags,
        ]);
        const theirs: Manifest = parse<Manifest>(await crane.bytes(['manifest', `${repo}:crane-${tag}`]));
        const ours: Manifest = parse<Manifest>(
          await airlockBytes(env, ['manifest', `${repo}:airlock-${tag}`]),
        );
        assert.equal(ours.mediaType, theirs.mediaType);
        assert.deepEqual(ours.config, theirs.config, 'same config descriptor, so the same config bytes');
        assert.deepEqual(
          ours.layers.map((l) => l.mediaType),
          theirs.layers.map((l) => l.mediaType),
        );
        const config = parse<{ rootfs: { diff_ids: string[] } }>(
          await airlockBytes(env, ['config', `${repo}:airlock-${tag}`]),
        );
        assert.deepEqual(config.rootfs.diff_ids, [sha256(tar)]);
        // Both layers are gzip of the same tar; the bytes (and so the digests) depend on the compressor.
        const layer = ours.layers[0];
        assert.ok(layer);
        const ourLayer = await fetchBlob(airlock.url, 'cli/plain', layer.digest);
        assert.deepEqual(gunzipSync(ourLayer), tar);
      }
    },
  );
});

/** What a folder holds, one line per path: folders end in "/", symlinks show their target, files their content. */
async function describeFolder(root: string): Promise<string[]> {
  const lines: string[] = [];
  const walk = async (dir: string, rel: string): Promise<void> => {
    for (const name of (await readdir(dir)).sort()) {
      const path = join(dir, name);
      const shown = rel ? `${rel}/${name}` : name;
      const info = await lstat(path);
      if (info.isSymbolicLink()) lines.push(`${shown} -> ${await readlink(path)}`);
      else if (info.isDirectory()) {
        lines.push(`${shown}/`);
        await walk(path, shown);
      } else lines.push(`${shown} = ${await readFile(path, 'utf8')}`);
    }
  };
  await walk(root, '');
  return lines;
}

/**
 * Layer stacks as docker writes them, from a seeded generator: files, folders (each with its parents) and
 * symlinks over a few names, whiteouts and opaque folders for what lower layers left. No layer removes and
 * re-creates a path, which crane export would flatten wrongly (it drops what a layer writes under a path it
 * also whites out, which image-spec keeps).
 */
function dockerLikeStacks(count: number, seed: number): TarFile[][][] {
  let state = seed;
  const random = (n: number): number => {
    state = (state * 1103515245 + 12345) & 0x7fffffff;
    return state % n;
  };
  const names = ['a', 'b', 'c'];
  const stacks: TarFile[][][] = [];
  for (let s = 0; s < count; s++) {
    // What the layers so far left: path → 'file' | 'dir' | 'link'.
    const tree = new Map<string, 'file' | 'dir' | 'link'>();
    const stack: TarFile[][] = [];
    for (let l = 2 + random(3); l > 0; l--) {
      const layer: TarFile[] = [];
      const touched = new Set<string>();
      const removed = new Set<string>();
      const within = (path: string, set: Set<string>): boolean =>
        [...set].some((p) => p === path || path.startsWith(`${p}/`) || p.startsWith(`${path}/`));
      const folder = (path: string): void => {
        if (tree.get(path) === 'dir') return;
        layer.push({ path: `${path}/` });
        tree.set(path, 'dir');
        touched.add(path);
      };
      for (let n = 1 + random(5); n > 0; n--) {
        const parts = Array.from({ length: 1 + random(3) }, () => names[random(names.length)] ?? 'a');
        const path = parts.join('/');
        const parents = parts.slice(0, -1).map((_, i) => parts.slice(0, i + 1).join('/'));
        const kind = random(10);
        const current = tree.get(path);
        if (touched.has(path)) continue;
        if (kind < 7) {
          // A write: never below a file or symlink, never where this layer removed something.
          if (parents.some((p) => (tree.get(p) ?? 'dir') !== 'dir') || within(path, removed)) continue;
          if (kind < 4 && current !== 'dir') {
            parents.forEach(folder);
            layer.push({ path, content: `${path} ${random(1000)}` });
            tree.set(path, 'file');
            touched.add(path);
          } else if (kind < 6 && current !== 'file' && current !== 'link') {
            parents.forEach(folder);
            folder(path);
          } else if (kind === 6 && current !== 'dir') {
            parents.forEach(folder);
            layer.push({ path, symlink: names[random(names.length)] ?? 'a' });
            tree.set(path, 'link');
            touched.add(path);
          }
          continue;
        }
        // A removal of something lower layers left, untouched by this layer.
        const lower = [...tree.keys()].filter((p) => !within(p, touched));
        const gone = lower[random(lower.length)];
        if (gone === undefined) continue;
        const opaque = kind >= 8 && tree.get(gone) === 'dir';
        const slash = gone.lastIndexOf('/');
        layer.push({
          path: opaque ? `${gone}/.wh..wh..opq` : `${gone.slice(0, slash + 1)}.wh.${gone.slice(slash + 1)}`,
        });
        for (const p of [...tree.keys()])
          if ((!opaque && p === gone) || p.startsWith(`${gone}/`)) tree.delete(p);
        touched.add(gone);
        removed.add(gone);
      }
      stack.push(layer);
    }
    stacks.push(stack);
  }
  return stacks;
}

describe('airlock extract and crane export', () => {
  it(
    'flatten 30 layer stacks with whiteouts, opaque folders and symlinks into the same tree',
    { timeout: TEST_TIMEOUT_MS },
    async (t) => {
      const env = await cliEnv(t);
      const crane = craneFor(t, env);
      if (!crane) return;
      const airlock = await startAirlockForTest(t);
      const work = await tempDirForTest(t, 'cli-crane-extract-');
      const stacks = dockerLikeStacks(30, 20261203);
      let removals = 0;
      let opaque = 0;
      for (const [i, layers] of stacks.entries()) {
        removals += layers.flat().filter((file) => file.path.includes('.wh.')).length;
        opaque += layers.flat().filter((file) => file.path.endsWith('.wh..wh..opq')).length;
        const image = buildImage({ layers });
        await pushArtifact(airlock.url, { repository: 'cli/extract', tag: `s${i}` }, image);
        const ref = `${airlock.host}/cli/extract:s${i}`;
        await airlockOk(env, ['extract', ref, join(work, `${i}-airlock`)]);
        await crane.run(['export', ref, join(work, `${i}.tar`)]);
        await mkdir(join(work, `${i}-crane`));
        await runToolOk('tar', ['-xf', join(work, `${i}.tar`), '-C', join(work, `${i}-crane`)]);
        assert.deepEqual(
          await describeFolder(join(work, `${i}-airlock`)),
          await describeFolder(join(work, `${i}-crane`)),
          `stack ${i}: ${JSON.stringify(layers.map((layer) => layer.map((f) => f.path)))}`,
        );
      }
      // This seed's stacks hold 30 whiteouts, 14 of them opaque folders: enough to test them.
      assert.ok(removals >= 20 && opaque >= 3, `the stacks hold ${removals} whiteouts, ${opaque} opaque`);
    },
  );
});
