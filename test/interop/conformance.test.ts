import assert from 'node:assert/strict';
import { mkdir, readFile, rm } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import {
  loggedRequests,
  PEER_TIMEOUT_MS,
  runTool,
  startAirlockForTest,
  TEST_TIMEOUT_MS,
} from '../helpers/interop.js';
import { requirePeer } from '../helpers/peers.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
/** Where the suite's junit.xml is kept (the HTML report is removed: it repeats the same facts). */
const REPORT_DIR = join(ROOT, 'test', 'reports', 'conformance');

interface JunitCounts {
  readonly tests: number;
  readonly failures: number;
  readonly errors: number;
  readonly skipped: number;
  readonly failed: string[];
}

function attribute(tag: string, name: string): number {
  const match = new RegExp(`\\b${name}="(\\d+)"`).exec(tag);
  return match ? Number(match[1]) : 0;
}

/** Counts from the `<testsuite>` element, plus the names of failed test cases. */
function parseJunit(xml: string): JunitCounts {
  const suite = /<testsuite\s[^>]*>/.exec(xml)?.[0];
  if (!suite) throw new Error('junit.xml has no <testsuite> element');
  const failed: string[] = [];
  for (const match of xml.matchAll(/<testcase\s+name="([^"]*)"[^>]*>\s*<(failure|error)\b/g)) {
    failed.push(match[1] ?? '');
  }
  return {
    tests: attribute(suite, 'tests'),
    failures: attribute(suite, 'failures'),
    errors: attribute(suite, 'errors'),
    skipped: attribute(suite, 'skipped'),
    failed,
  };
}

describe('OCI distribution-spec conformance suite', () => {
  it(
    'passes every pull, push, content discovery and content management spec',
    { timeout: TEST_TIMEOUT_MS },
    async (t) => {
      const binary = requirePeer(t, 'conformance.test');
      if (!binary) return;
      const airlock = await startAirlockForTest(t);
      await rm(REPORT_DIR, { recursive: true, force: true });
      await mkdir(REPORT_DIR, { recursive: true });
      // Settings from the caller's environment would change what the suite checks; blank them.
      const inherited = Object.fromEntries(
        Object.keys(process.env)
          .filter((key) => key.startsWith('OCI_'))
          .map((key) => [key, '']),
      );
      const result = await runTool(binary, ['-ginkgo.no-color'], {
        cwd: REPORT_DIR,
        timeoutMs: PEER_TIMEOUT_MS,
        env: {
          ...inherited,
          OCI_ROOT_URL: airlock.url,
          OCI_NAMESPACE: 'conformance/main',
          OCI_CROSSMOUNT_NAMESPACE: 'conformance/other',
          OCI_TEST_PULL: '1',
          OCI_TEST_PUSH: '1',
          OCI_TEST_CONTENT_DISCOVERY: '1',
          OCI_TEST_CONTENT_MANAGEMENT: '1',
          // A mount without `from` is answered with an ordinary upload session (202).
          OCI_AUTOMATIC_CROSSMOUNT: '0',
          OCI_REPORT_DIR: REPORT_DIR,
        },
      });
      await rm(join(REPORT_DIR, 'report.html'), { force: true });
      const output = `${result.stdout}\n${result.stderr}`;
      const summary = /(\d+) Passed \| (\d+) Failed \| (\d+) Pending \| (\d+) Skipped/.exec(output);
      console.log(summary ? `conformance: ${summary[0]}` : `conformance: no summary line\n${output}`);

      let xml: string;
      try {
        xml = await readFile(join(REPORT_DIR, 'junit.xml'), 'utf8');
      } catch (error) {
        throw new Error(
          `The suite wrote no junit.xml (exit ${result.code}): ${String(error)}\n${output.slice(-4000)}`,
        );
      }
      const junit = parseJunit(xml);
      const refused = loggedRequests(airlock.output())
        .filter((r) => r.status >= 400)
        .map((r) => `${r.status} ${r.method} ${r.path}`);
      assert.deepEqual(
        junit.failed,
        [],
        `failed specs:\n${junit.failed.join('\n')}\n${output.slice(-4000)}\nrequests Airlock refused:\n${refused.join('\n')}`,
      );
      assert.equal(junit.failures + junit.errors, 0, output.slice(-4000));
      assert.ok(summary, 'the suite printed no "N Passed | N Failed" line');
      assert.equal(Number(summary[2]), 0, 'failed specs');
      assert.ok(Number(summary[1]) >= 75, `only ${summary[1]} specs passed; expected at least 75`);
      assert.equal(result.code, 0, output.slice(-4000));
    },
  );
});
