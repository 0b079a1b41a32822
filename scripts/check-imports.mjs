#!/usr/bin/env node
// Enforces ARCHITECTURE.md's folder direction on src/: each capability folder may import only the folders
// listed for it, only through their index.ts, nothing imports cli/, and there are no import cycles.
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join, dirname, resolve, relative } from 'node:path';

const ALLOWED = {
  oci: [],
  log: [],
  pki: [],
  storage: ['oci', 'log'],
  client: ['oci', 'log'],
  kube: ['client', 'oci', 'log', 'pki'], // pki: the client tests' HTTPS server
  registry: ['storage', 'client', 'oci', 'log', 'pki'],
  sign: ['client', 'oci', 'log', 'pki'],
  sync: ['kube', 'sign', 'client', 'oci', 'log', 'sync/webhook'],
  // The admission webhook is its own capability inside sync/, with its own index.ts.
  'sync/webhook': ['sign', 'client', 'oci', 'log', 'pki'],
  mirror: ['registry', 'storage', 'client', 'oci', 'log'],
  bundle: ['registry', 'client', 'oci', 'log'],
  cli: [
    'registry',
    'storage',
    'client',
    'sign',
    'sync',
    'sync/webhook',
    'kube',
    'mirror',
    'bundle',
    'oci',
    'log',
    'pki',
  ],
};

const SRC = resolve('src');
/** The folder (capability) a path under src/ belongs to: its first component, or a nested one listed above. */
function folderOf(path) {
  const rel = relative(SRC, path);
  return Object.keys(ALLOWED).find((f) => f.includes('/') && rel.startsWith(`${f}/`)) ?? rel.split('/')[0];
}
const files = [];
(function walk(dir) {
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) walk(path);
    else if (name.endsWith('.ts')) files.push(path);
  }
})(SRC);

const problems = [];
const graph = new Map();
const IMPORT_RE = /(?:^|\n)\s*(?:import|export)\s[^'"]*?from\s+['"](\.[^'"]+)['"]/g;
for (const file of files) {
  const folder = folderOf(file);
  if (!(folder in ALLOWED)) {
    problems.push(
      `${relative('.', file)}: folder "${folder}" is not in the architecture (add it to scripts/check-imports.mjs)`,
    );
    continue;
  }
  const text = readFileSync(file, 'utf8');
  const edges = [];
  for (const match of text.matchAll(IMPORT_RE)) {
    const target = resolve(dirname(file), match[1].replace(/\.js$/, '.ts'));
    edges.push(target);
    const targetFolder = folderOf(target);
    if (targetFolder === folder) continue;
    if (!ALLOWED[folder].includes(targetFolder)) {
      problems.push(`${relative('.', file)}: ${folder}/ may not import ${targetFolder}/ ("${match[1]}")`);
    } else if (relative(SRC, target) !== `${targetFolder}/index.ts`) {
      problems.push(
        `${relative('.', file)}: import ${targetFolder}/ through its index.ts, not "${match[1]}"`,
      );
    }
  }
  graph.set(file, edges);
}

// Cycle detection (depth-first, colouring).
const state = new Map();
const stack = [];
function visit(node) {
  state.set(node, 1);
  stack.push(node);
  for (const next of graph.get(node) ?? []) {
    if (!graph.has(next)) continue;
    if (state.get(next) === 1) {
      const cycle = stack
        .slice(stack.indexOf(next))
        .concat(next)
        .map((f) => relative('.', f));
      problems.push(`import cycle: ${cycle.join(' -> ')}`);
    } else if (!state.has(next)) visit(next);
  }
  stack.pop();
  state.set(node, 2);
}
for (const node of graph.keys()) if (!state.has(node)) visit(node);

if (problems.length > 0) {
  for (const p of problems) console.error(p);
  console.error(`${problems.length} import problem(s)`);
  process.exit(1);
}
console.log(`imports ok: ${files.length} files follow the folder direction, no cycles`);
