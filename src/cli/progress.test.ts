import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { Digest } from '../oci/index.js';
import { counted } from './output.js';
import { ProgressLine } from './progress.js';

/** A stand-in for standard error that records what is written, a terminal or not. */
function fakeStream(isTTY: boolean): NodeJS.WriteStream & { written: string } {
  const stream = {
    isTTY,
    written: '',
    write(chunk: string): boolean {
      stream.written += chunk;
      return true;
    },
  };
  return stream as unknown as NodeJS.WriteStream & { written: string };
}

const digest = `sha256:${'a'.repeat(64)}` as Digest;

describe('counted', () => {
  it('says one thing in the singular and any other count in the plural', () => {
    assert.equal(counted(1, 'blob'), '1 blob');
    assert.equal(counted(0, 'blob'), '0 blobs');
    assert.equal(counted(2, 'repository', 'repositories'), '2 repositories');
    assert.equal(counted(1, 'repository', 'repositories'), '1 repository');
  });
});

describe('ProgressLine', () => {
  it('draws one line in place on the stream it is given, with counts in the right number, and ends it once', () => {
    const stream = fakeStream(true);
    const progress = new ProgressLine({ stream });
    progress.update({ kind: 'blob', digest, size: 2048, result: 'uploaded' });
    progress.update({ kind: 'manifest', digest, size: 500, result: 'written' });
    progress.done();
    progress.done();
    const lines = stream.written.split('\r\x1b[2K').filter(Boolean);
    assert.match(
      lines.at(-1) ?? '',
      /^ {2}1 blob copied \(2\.0 KiB, .*\/s\), 0 already there or mounted, 1 manifest\n$/,
    );
    assert.equal(stream.written.split('\n').length, 2, 'one line ended, once');
  });

  it('writes nothing when the stream is not a terminal, or with --quiet or --output json', () => {
    for (const [stream, options] of [
      [fakeStream(false), {}],
      [fakeStream(true), { quiet: true }],
      [fakeStream(true), { json: true }],
    ] as const) {
      const progress = new ProgressLine({ stream, ...options });
      progress.update({ kind: 'blob', digest, size: 10, result: 'uploaded' });
      progress.done();
      assert.equal(stream.written, '');
    }
  });
});
