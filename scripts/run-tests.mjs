#!/usr/bin/env node
// Runs compiled test files with node's test runner, grouped by suite:
//   unit        dist/src/**/*.test.js
//   integration dist/test/integration/**/*.test.js
//   interop     dist/test/interop/**/*.test.js   (real peers: skopeo, crane, oras, ...)
//   crash       dist/test/crash/**/*.test.js
//   e2e         dist/test/e2e/**/*.test.js
// Usage: node scripts/run-tests.mjs unit integration [-- extra node --test flags]
import {
  readdirSync,
  statSync,
  existsSync,
  readFileSync,
  appendFileSync,
  mkdtempSync,
  rmSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';

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
    else if (name.endsWith('.test.js')) out.push(path);
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
// A second reporter writes TAP to a file so the counts can be added up across suites (.ci/run prints the total).
const tapDir = mkdtempSync(join(tmpdir(), 'airlock-tap-'));
const tapFile = join(tapDir, 'report.tap');
const result = spawnSync(
  process.execPath,
  [
    '--test',
    `--test-concurrency=${concurrency}`,
    '--test-reporter=spec',
    '--test-reporter-destination=stdout',
    '--test-reporter=tap',
    `--test-reporter-destination=${tapFile}`,
    ...extra,
    ...files,
  ],
  { stdio: 'inherit' },
);
const tap = existsSync(tapFile) ? readFileSync(tapFile, 'utf8') : '';
rmSync(tapDir, { recursive: true, force: true });
const count = (label) => Number(new RegExp(`^# ${label} (\\d+)$`, 'm').exec(tap)?.[1] ?? 0);
const totals = {
  passed: count('pass'),
  failed: count('fail') + count('cancelled'),
  skipped: count('skipped'),
};
console.log(
  `${names.join('+')}: ${totals.passed} passed, ${totals.failed} failed, ${totals.skipped} skipped`,
);
if (process.env.AIRLOCK_TEST_TOTALS)
  appendFileSync(process.env.AIRLOCK_TEST_TOTALS, `${JSON.stringify(totals)}\n`);
process.exit(result.status ?? 1);
