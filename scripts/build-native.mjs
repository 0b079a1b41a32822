#!/usr/bin/env node
// Compiles native/sendfile.c (the kernel file-to-socket send; the file says why)
// into dist/native/sendfile.node with the machine's C compiler and node's own headers (Node-API only, so
// the result loads in any node of the same major line or later). No network, no node-gyp.
//
// The addon is optional: without it Airlock sends files through buffers, as before. So a machine with
// no compiler or headers, or one where the source does not compile (another libc, say), gets a notice
// and exit 0, unless AIRLOCK_NATIVE=required (which CI sets), where it fails.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const source = join(root, 'native', 'sendfile.c');
const outDir = join(root, 'dist', 'native');
const target = join(outDir, 'sendfile.node');
const required = process.env.AIRLOCK_NATIVE === 'required';

function skip(reason) {
  if (required) {
    console.error(`build-native: ${reason} (AIRLOCK_NATIVE=required)`);
    process.exit(1);
  }
  console.error(`build-native: ${reason}; files will be sent through buffers (slower, same result)`);
  process.exit(0);
}

if (process.platform !== 'linux') skip(`sendfile(2) is built for Linux only, not ${process.platform}`);
if (existsSync(target) && statSync(target).mtimeMs >= statSync(source).mtimeMs) process.exit(0);

// Official tarballs put the headers in <prefix>/include/node; Debian's nodejs package in /usr/include/node.
const candidates = [
  join(dirname(process.execPath), '..', 'include', 'node'),
  '/usr/include/node',
  '/usr/local/include/node',
];
const headers = candidates.find((dir) => existsSync(join(dir, 'node_api.h')));
if (!headers) skip(`no node_api.h in ${candidates.join(', ')}`);
const compiler = process.env.CC || 'cc';

mkdirSync(outDir, { recursive: true });
const partial = `${target}.${process.pid}.tmp`;
const args = [
  '-O2',
  '-std=gnu11',
  '-Wall',
  '-Wextra',
  '-Werror',
  '-fPIC',
  '-shared',
  '-pthread',
  `-I${headers}`,
  '-o',
  partial,
  source,
];
const result = spawnSync(compiler, args, { stdio: ['ignore', 'inherit', 'inherit'] });
if (result.error) skip(`cannot run the C compiler "${compiler}": ${result.error.message}`);
if (result.status !== 0) {
  rmSync(partial, { force: true });
  skip(`${compiler} failed on ${source} (exit ${result.status}; its messages are above)`);
}
renameSync(partial, target);
