#!/usr/bin/env node
// Runs compiled test files with node's test runner, grouped by suite:
//   unit        dist/src/**/*.test.js
//   integration dist/test/integration/**/*.test.js
//   interop     dist/test/interop/**/*.test.js   (real peers: skopeo, crane, oras, ...)
//   crash       dist/test/crash/**/*.test.js
//   e2e         dist/test/e2e/**/*.test.js
// Usage: node scripts/run-tests.mjs unit integration [-- extra node --test flags]
import { readdirSync, statSync, existsSync, appendFileSync } from 'node:fs';
import { join } from 'node:path';
import { spawn } from 'node:child_process';

const SUITES = {
  unit: 'dist/src',
  integration: 'dist/test/integration',
  interop: 'dist/test/interop',
  crash: 'dist/test/crash',
  e2e: 'dist/test/e2e',
};

function find(dir) {
  if (!existsSync(dir)) return [];
  const out = [];
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) out.push(...find(path));
    else if (name.endsWith('.test.js')) {
      // tsc never deletes: a test whose source was removed or renamed would still run from dist/.
      const source = path.replace(/^dist\//, '').replace(/\.js$/, '.ts');
      if (existsSync(source)) out.push(path);
      else console.error(`Skipping ${path}: its source ${source} is gone (a stale build output)`);
    }
  }
  return out.sort();
}

const args = process.argv.slice(2);
const split = args.indexOf('--');
const names = split >= 0 ? args.slice(0, split) : args;
const extra = split >= 0 ? args.slice(split + 1) : [];
const files = [];
for (const name of names) {
  const dir = SUITES[name];
  if (!dir) {
    console.error(`Unknown suite "${name}" (known: ${Object.keys(SUITES).join(', ')})`);
    process.exit(2);
  }
  files.push(...find(dir));
}
if (files.length === 0) {
  console.error(`No test files found for ${names.join(', ')}; run "npm run build" first`);
  process.exit(1);
}
const concurrency =
  process.env.TEST_CONCURRENCY ??
  (names.some((n) => n === 'interop' || n === 'crash' || n === 'e2e') ? '1' : '2');
// --test-force-exit came with node 20.14 and 22.0.
const [major = 0, minor = 0] = process.versions.node.split('.').map(Number);
const forceExit = major >= 22 || (major === 20 && minor >= 14);
if (!forceExit)
  console.error(
    `node ${process.versions.node} has no --test-force-exit: a test that leaks a handle will hang the run`,
  );
// The spec reporter's closing summary ("ℹ pass 9" and so on, not indented) is read from its output as it
// passes through, so the counts can be added up across suites (.ci/run prints the total). A TAP file
// reporter would lose its last lines: --test-force-exit ends the runner before a file stream flushes,
// while stdout to a pipe or a file is written synchronously.
const child = spawn(
  process.execPath,
  [
    '--test',
    `--test-concurrency=${concurrency}`,
    // A test file whose tests are done exits even if something it started still runs (a load loop, a
    // server it did not stop); without this, one leaked handle keeps the whole run waiting for ever.
    ...(forceExit ? ['--test-force-exit'] : []),
    '--test-reporter=spec',
    '--test-reporter-destination=stdout',
    ...extra,
    ...files,
  ],
  { stdio: ['inherit', 'pipe', 'inherit'] },
);
let tail = '';
child.stdout.setEncoding('utf8');
child.stdout.on('data', (text) => {
  process.stdout.write(text);
  tail = (tail + text).slice(-16_384);
});
const code = await new Promise((done) => child.once('close', (exitCode) => done(exitCode)));
// Without colour codes, should FORCE_COLOR be set in the caller's environment.
const plain = tail.replace(/\x1b\[[0-9;]*m/g, '');
const count = (label) => {
  const found = [...plain.matchAll(new RegExp(`^\u2139 ${label} (\\d+)$`, 'gm'))].at(-1);
  return Number(found?.[1] ?? 0);
};
const totals = {
  passed: count('pass'),
  failed: count('fail') + count('cancelled'),
  skipped: count('skipped'),
};
// A runner that failed without saying which test failed (killed), or that printed no summary at all,
// still counts as a failure.
const summarized = /^\u2139 tests \d+$/m.test(plain);
if (!summarized) console.error('The test runner printed no summary; counting the run as failed');
if ((code !== 0 || !summarized) && totals.failed === 0) totals.failed = 1;
console.log(
  `${names.join('+')}: ${totals.passed} passed, ${totals.failed} failed, ${totals.skipped} skipped`,
);
if (process.env.AIRLOCK_TEST_TOTALS)
  appendFileSync(process.env.AIRLOCK_TEST_TOTALS, `${JSON.stringify(totals)}\n`);
process.exit(summarized ? (code ?? 1) : 1);
