import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { after, describe, it } from 'node:test';
import {
  buildFolder,
  ChunkLoader,
  codeCacheRoot,
  codeCacheSupported,
  decodeCache,
  encodeCache,
  KEPT_BUILDS,
  pruneBuilds,
} from './launcher.js';

const made: string[] = [];
after(() => {
  for (const dir of made) rmSync(dir, { recursive: true, force: true });
});

/** A new folder under the system's temp folder, removed when these tests end. */
function tempDirSync(prefix = 'airlock-launcher-test-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  made.push(dir);
  return dir;
}

const WRAPPER = '(function (exports, require, module, __filename, __dirname, __airlockUrl) {';
const chunk = (body: string): string => `${WRAPPER}${body}\n})\n`;

/** A folder of chunks as scripts/bundle-cli.mjs writes them: an entry that requires a shared chunk. */
function chunkFolder(): string {
  const dir = tempDirSync('airlock-launcher-');
  writeFileSync(
    join(dir, 'main.js'),
    chunk(`
      const shared = require('./shared.js');
      const { basename } = require('node:path');
      exports.answer = shared.twice(21);
      exports.url = __airlockUrl;
      exports.file = basename(__filename);
      exports.sameShared = shared === require('./shared.js');`),
  );
  writeFileSync(join(dir, 'shared.js'), chunk('exports.twice = (n) => 2 * n;'));
  return dir;
}

const loaderFor = (dir: string, cacheDir: string | undefined): ChunkLoader =>
  new ChunkLoader({ dir, cacheDir, externalRequire: createRequire(join(dir, 'main.js')) });

// What loadElsewhere reports: a first run (both chunks compiled, both caches written), a run from both
// caches, and one whose cache for one chunk was unusable (compiled and written again).
const FIRST_RUN = { answer: 42, cached: 0, compiled: 2, rejected: 0, written: 2 };
const FROM_CACHE = { answer: 42, cached: 2, compiled: 0, rejected: 0, written: 0 };
const ONE_RECOMPILED = { answer: 42, cached: 1, compiled: 1, rejected: 1, written: 1 };

/** Loads main.js in a new node process, saves its caches there; its answer, loader stats and caches written. */
function loadElsewhere(dir: string, cacheDir: string): Record<string, number> {
  const script = `
    import { createRequire } from 'node:module';
    import { ChunkLoader } from ${JSON.stringify(new URL('./launcher.js', import.meta.url).href)};
    const [dir, cacheDir] = process.argv.slice(-2);
    const loader = new ChunkLoader({ dir, cacheDir, externalRequire: createRequire(dir + '/main.js') });
    const { answer } = loader.load('main.js');
    const written = loader.saveCaches();
    process.stdout.write(JSON.stringify({ answer, ...loader.stats, written }));`;
  const child = spawnSync(process.execPath, ['--input-type=module', '-e', script, dir, cacheDir], {
    encoding: 'utf8',
  });
  assert.equal(child.status, 0, child.stderr);
  return JSON.parse(child.stdout) as Record<string, number>;
}

describe(
  'launcher: chunks and their code cache',
  { skip: !codeCacheSupported && 'node has no zlib.crc32' },
  () => {
    it('runs the entry chunk with the chunks it requires, each once, with its own file name and URL', () => {
      const dir = chunkFolder();
      const exports = loaderFor(dir, undefined).load('main.js') as Record<string, unknown>;
      assert.equal(exports.answer, 42);
      assert.equal(exports.url, pathToFileURL(join(dir, 'main.js')).href);
      assert.equal(exports.file, 'main.js');
      assert.equal(exports.sameShared, true);
    });

    // In another process each time: in this one, V8 would answer a second compile of the same source from
    // its own memory and never look at the cache.
    it('writes a cache per chunk after a run, and the next run compiles from it', () => {
      const dir = chunkFolder();
      const cacheDir = join(tempDirSync(), 'build', 'copy');
      assert.deepEqual(loadElsewhere(dir, cacheDir), FIRST_RUN);
      assert.deepEqual(readdirSync(cacheDir).sort(), ['main.js.cache', 'shared.js.cache']);
      assert.deepEqual(loadElsewhere(dir, cacheDir), FROM_CACHE);
    });

    it('a damaged, truncated or foreign cache file is not given to V8: the chunk compiles and the file is rewritten', () => {
      const dir = chunkFolder();
      const cacheDir = join(tempDirSync(), 'build', 'copy');
      loadElsewhere(dir, cacheDir);
      const file = join(cacheDir, 'main.js.cache');
      const good = readFileSync(file);
      const flipped = Buffer.from(good);
      for (let at = 40; at < flipped.length; at += 97) flipped[at] = (flipped[at] as number) ^ 0x5a;
      for (const damaged of [flipped, good.subarray(0, good.length - 5), Buffer.from('not a cache at all')]) {
        writeFileSync(file, damaged);
        assert.deepEqual(loadElsewhere(dir, cacheDir), ONE_RECOMPILED);
        assert.ok(decodeCache(readFileSync(file)), 'rewritten whole');
      }
    });

    it('a cache V8 refuses (one made for other source) is counted as rejected and replaced', () => {
      const dir = chunkFolder();
      const cacheDir = join(tempDirSync(), 'build', 'copy');
      loadElsewhere(dir, cacheDir);
      writeFileSync(join(cacheDir, 'shared.js.cache'), readFileSync(join(cacheDir, 'main.js.cache')));
      assert.deepEqual(loadElsewhere(dir, cacheDir), ONE_RECOMPILED);
      assert.deepEqual(loadElsewhere(dir, cacheDir), FROM_CACHE);
    });

    it('no cache folder: nothing is written; a folder that cannot be made: the run goes on', () => {
      const dir = chunkFolder();
      const off = loaderFor(dir, undefined);
      off.load('main.js');
      assert.equal(off.saveCaches(), 0);
      const blocker = join(tempDirSync(), 'a-file');
      writeFileSync(blocker, '');
      const blocked = loaderFor(dir, join(blocker, 'build', 'copy'));
      assert.equal((blocked.load('main.js') as { answer: number }).answer, 42);
      assert.equal(blocked.saveCaches(), 0);
    });

    it('refuses names that are not a chunk file in the folder', () => {
      const loader = loaderFor(chunkFolder(), undefined);
      for (const name of ['../main.js', '/etc/passwd', 'main', 'sub/main.js', ''])
        assert.throws(() => loader.load(name), /is not the name of a chunk/, name);
      const dir = chunkFolder();
      writeFileSync(join(dir, 'plain.js'), '1 + 1;');
      assert.throws(() => loaderFor(dir, undefined).load('plain.js'), /is not a chunk of the bundle/);
    });

    it('a chunk that throws is not kept half-loaded: the next require runs it again', () => {
      const dir = chunkFolder();
      writeFileSync(
        join(dir, 'flaky.js'),
        chunk(
          "globalThis.__flaky = (globalThis.__flaky ?? 0) + 1; if (globalThis.__flaky === 1) throw new Error('first time');",
        ),
      );
      const loader = loaderFor(dir, undefined);
      assert.throws(() => loader.load('flaky.js'), /first time/);
      assert.doesNotThrow(() => loader.load('flaky.js'));
    });

    it('cache files carry their length and CRC-32', () => {
      const payload = Buffer.from('some cached data');
      const file = encodeCache(payload);
      assert.deepEqual(decodeCache(file), payload);
      assert.equal(decodeCache(Buffer.concat([file, Buffer.from('x')])), undefined);
      const bad = Buffer.from(file);
      bad[bad.length - 1] = (bad[bad.length - 1] as number) ^ 1;
      assert.equal(decodeCache(bad), undefined);
      assert.equal(decodeCache(Buffer.alloc(3)), undefined);
    });
  },
);

describe('launcher: where caches go', () => {
  it('AIRLOCK_CODE_CACHE: 0 turns caches off, an absolute folder is used, anything else is an error', () => {
    assert.equal(codeCacheRoot({ AIRLOCK_CODE_CACHE: '0' }), undefined);
    assert.equal(codeCacheRoot({ AIRLOCK_CODE_CACHE: '/srv/cache' }), '/srv/cache');
    assert.throws(
      () => codeCacheRoot({ AIRLOCK_CODE_CACHE: 'relative/dir' }),
      /must be 0 \(off\) or an absolute folder/,
    );
    assert.throws(() => codeCacheRoot({ AIRLOCK_CODE_CACHE: '1' }), /AIRLOCK_CODE_CACHE/);
    assert.equal(codeCacheRoot({ XDG_CACHE_HOME: '/x/cache' }), '/x/cache/airlock/code-cache');
    assert.match(codeCacheRoot({ XDG_CACHE_HOME: 'not-absolute' }) ?? '', /\.cache\/airlock\/code-cache$/);
  });

  it('a build folder names the bundle, node and the architecture; only the newest few are kept', () => {
    const id = '0123456789abcdef';
    assert.equal(buildFolder(id), `${id}-node${process.versions.node}-${process.arch}`);
    const root = tempDirSync();
    const names = Array.from(
      { length: KEPT_BUILDS + 2 },
      (_, i) => `${i.toString(16).padStart(16, '0')}-node20.1.0-x64`,
    );
    names.forEach((name, i) => {
      mkdirSync(join(root, name, 'copy'), { recursive: true });
      utimesSync(join(root, name), 1_000_000 + i, 1_000_000 + i);
    });
    mkdirSync(join(root, 'not-a-build'));
    pruneBuilds(root, KEPT_BUILDS);
    assert.deepEqual(readdirSync(root).sort(), [...names.slice(2), 'not-a-build'].sort());
  });
});

describe('launcher: the built CLI', { skip: !codeCacheSupported && 'node has no zlib.crc32' }, () => {
  const cli = fileURLToPath(new URL('../../bin/airlock.js', import.meta.url));
  const run = (root: string, args: string[]): ReturnType<typeof spawnSync> =>
    spawnSync(process.execPath, [cli, ...args], {
      encoding: 'utf8',
      env: { ...process.env, AIRLOCK_CODE_CACHE: root },
    });
  const cacheFiles = (root: string): string[] =>
    existsSync(root)
      ? readdirSync(root, { recursive: true, encoding: 'utf8' }).filter((path) => path.endsWith('.cache'))
      : [];

  it("writes the command group's caches after a run that ends well, none after one that fails", () => {
    const root = tempDirSync();
    const failed = run(root, ['tags', 'not a reference']);
    assert.notEqual(failed.status, 0, String(failed.stderr));
    assert.deepEqual(cacheFiles(root), []);
    const help = run(root, ['copy', '--help']);
    assert.equal(help.status, 0, String(help.stderr));
    const written = cacheFiles(root);
    assert.ok(written.length >= 2, written.join(', '));
    for (const path of written)
      assert.match(path, /^[0-9a-f]{16}-node[0-9.]+-[a-z0-9]+\/copy\/[\w.-]+\.js\.cache$/);
  });

  it('runs the same from a damaged cache, and a bad AIRLOCK_CODE_CACHE is a usage error', () => {
    const root = tempDirSync();
    assert.equal(run(root, ['--version']).status, 0);
    for (const path of cacheFiles(root)) writeFileSync(join(root, path), Buffer.alloc(64, 0xa5));
    const again = run(root, ['--version']);
    assert.equal(again.status, 0, String(again.stderr));
    assert.equal(String(again.stdout).trim(), '0.1.0');
    const bad = spawnSync(process.execPath, [cli, '--version'], {
      encoding: 'utf8',
      env: { ...process.env, AIRLOCK_CODE_CACHE: 'relative' },
    });
    assert.equal(bad.status, 2);
    assert.match(bad.stderr, /^Error: AIRLOCK_CODE_CACHE must be 0 \(off\) or an absolute folder/);
  });
});
