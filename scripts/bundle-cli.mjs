#!/usr/bin/env node
// Bundles the compiled CLI (dist/src, made by tsc) into dist/bin: `airlock`, `docker-credential-airlock`
// and the hash thread's worker, with the commands loaded on demand (sign, sync, serve) split into chunks.
//
// Why: node resolves, reads and compiles every module on its own. `airlock copy` loads about 70 of them
// (50 of ours; commander, tar-stream and its helpers the rest); from one bundle it starts about 60 ms
// sooner, a fifth of the time a push of a small image takes (docs/cli.md).
// tsc stays the compiler and type checker; this only joins its output. better-sqlite3 (a native addon)
// and pino (loaded with createRequire when a logger is made) stay in node_modules.
import { build } from 'esbuild';
import { rm } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const compiled = join(root, 'dist', 'src');
const outdir = join(root, 'dist', 'bin');

await rm(outdir, { recursive: true, force: true });
await build({
  entryPoints: {
    airlock: join(compiled, 'cli', 'main.js'),
    'docker-credential-airlock': join(compiled, 'cli', 'credential-helper.js'),
    // src/oci/hash-thread.ts starts it as `new URL('./hash-worker.js', import.meta.url)`: it must sit
    // beside the chunk that holds that line, and every chunk is written to this one folder.
    'hash-worker': join(compiled, 'oci', 'hash-worker.js'),
  },
  outdir,
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  external: ['better-sqlite3'],
  // CommonJS packages in the bundle call require() for node's modules; an ES module has none of its own.
  banner: {
    js: "import { createRequire as __airlockRequire } from 'node:module'; const require = __airlockRequire(import.meta.url);",
  },
  sourcemap: 'linked',
  logLevel: 'warning',
});
