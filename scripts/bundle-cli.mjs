#!/usr/bin/env node
// Bundles the compiled CLI (dist/src, made by tsc) into dist/bin: `airlock`, `docker-credential-airlock`
// and the hash thread's worker, with the commands loaded on demand (sign, sync, serve) split into chunks.
//
// Why a bundle: node resolves, reads and compiles every module on its own. `airlock copy` loads about 70
// of them (50 of ours; commander, tar-stream and its helpers the rest); from one bundle it starts about
// 60 ms sooner, a fifth of the time a push of a small image takes (docs/cli.md).
// Why CommonJS chunks: node 20 gives ES modules no code cache. esbuild splits only ES modules, so the
// chunks are split as ES modules first, then each is turned into a CommonJS function that
// src/cli/launcher.ts compiles with V8's code cache (a third less start-up once a command has run).
// tsc stays the compiler and type checker; this only joins its output. better-sqlite3 (a native addon)
// and pino (loaded with createRequire when a logger is made) stay in node_modules.
import { build, transform } from 'esbuild';
import { createHash } from 'node:crypto';
import { chmod, mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const compiled = join(root, 'dist', 'src');
const outdir = join(root, 'dist', 'bin');
const staging = join(root, 'dist', 'bin-esm');

// The bin files and the programs they start (chunks named after them, in the same folder).
const PROGRAMS = [
  { bin: 'airlock.js', entry: 'airlock-main', source: join(compiled, 'cli', 'main.js'), group: undefined },
  {
    bin: 'docker-credential-airlock.js',
    entry: 'credential-helper-main',
    source: join(compiled, 'cli', 'credential-helper.js'),
    group: 'credential-helper',
  },
];

// The parameters every chunk function takes; `__airlockUrl` stands for the chunk's `import.meta.url`.
const WRAPPER = '(function (exports, require, module, __filename, __dirname, __airlockUrl) {';

// Node's modules that most commands never use and that cost 0.5–1.5 ms each to load: a chunk loads them
// on first use instead of when it starts. (Not zlib: the launcher loads it for the caches' CRC-32.)
const LAZY_BUILTINS = ['https', 'tls', 'child_process', 'readline', 'worker_threads'];

// What every esbuild call here shares.
const NODE = { platform: 'node', target: 'node20', logLevel: 'warning' };

/**
 * Rewrites `var import_node_zlib = require("node:zlib");` (esbuild's form for `import … from 'node:zlib'`)
 * to a variable set on first use, and every use of the name to `(name__lazy ??= require(…))`. esbuild's
 * names for imports are unique in a chunk, and a name used before the import line is still read through
 * the same expression, so the module is loaded at the first read, wherever it is.
 */
function lazyBuiltins(code) {
  let result = code;
  for (const builtin of LAZY_BUILTINS) {
    const declaration = new RegExp(
      `^var (import_[A-Za-z0-9_$]+) = ((?:__toESM\\()?require\\("node:${builtin}"\\)\\)?);$`,
      'gm',
    );
    for (const [line, name, load] of [...result.matchAll(declaration)]) {
      // The name, not a property of the same name (`x.name`; a spread `...name` is the name).
      const pattern = `(?<![A-Za-z0-9_$])(?<![^.]\\.)${name.replace(/\$/g, '\\$')}(?![A-Za-z0-9_$])`;
      result = result
        .replace(line, () => `var ${name}__lazy;`)
        .replace(new RegExp(pattern, 'g'), () => `(${name}__lazy ??= ${load})`);
    }
  }
  return result;
}

await rm(outdir, { recursive: true, force: true });
await rm(staging, { recursive: true, force: true });
await build({
  entryPoints: Object.fromEntries(PROGRAMS.map((program) => [program.entry, program.source])),
  outdir: staging,
  bundle: true,
  splitting: true,
  format: 'esm',
  external: ['better-sqlite3'],
  ...NODE,
});

// Every chunk as a CommonJS function: imports between chunks become require('./chunk.js'), dynamic
// imports too (so no chunk needs node's ES-module loader), and import.meta.url the wrapper's parameter.
await mkdir(outdir, { recursive: true });
const digest = createHash('sha256');
for (const name of (await readdir(staging)).sort()) {
  const code = await readFile(join(staging, name), 'utf8');
  const result = await transform(code.replace(/^#!.*\n/, ''), {
    format: 'cjs',
    supported: { 'dynamic-import': false },
    define: { 'import.meta.url': '__airlockUrl' },
    ...NODE,
  });
  if (/\bimport\.meta\b/.test(result.code))
    throw new Error(`${name}: import.meta other than .url is not supported`);
  const wrapped = `${WRAPPER}${lazyBuiltins(result.code)}\n})\n`;
  digest.update(`${name}\0${wrapped}\0`);
  await writeFile(join(outdir, name), wrapped);
}
await rm(staging, { recursive: true, force: true });
const buildId = digest.digest('hex').slice(0, 16);

// The bin files: the launcher and one call. `__dirname` is the bin file's folder (its real path: node
// resolves the symlinks npm puts on PATH).
for (const program of PROGRAMS) {
  const outfile = join(outdir, program.bin);
  await build({
    stdin: {
      contents: [
        "import { launch } from './launcher.js';",
        `launch({ dir: __dirname, ...${JSON.stringify({ entry: `${program.entry}.js`, buildId, group: program.group })} });`,
      ].join('\n'),
      resolveDir: join(compiled, 'cli'),
      sourcefile: program.bin,
    },
    outfile,
    bundle: true,
    format: 'cjs',
    banner: { js: '#!/usr/bin/env node' },
    ...NODE,
  });
  await chmod(outfile, 0o755);
}

// The hash thread's worker, started by file name (src/oci/hash-thread.ts): one file, CommonJS too.
await build({
  entryPoints: [join(compiled, 'oci', 'hash-worker.js')],
  outfile: join(outdir, 'hash-worker.js'),
  bundle: true,
  format: 'cjs',
  ...NODE,
});

// Everything in dist/bin is CommonJS, whatever the package's own "type" says.
await writeFile(join(outdir, 'package.json'), `${JSON.stringify({ type: 'commonjs' })}\n`);
