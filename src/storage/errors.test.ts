import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { tmpdir } from 'node:os';
import { explainFsError } from './errors.js';

const failure = (code: string): Error => Object.assign(new Error(`${code}: raw text`), { code });

describe('explainFsError', () => {
  it('says in one line what a full, read-only or forbidden folder means, keeping code and cause', async () => {
    const cases: [string, string][] = [
      ['ENOSPC', 'its disk is full'],
      ['EDQUOT', 'its disk quota is used up'],
      ['SQLITE_FULL', 'its disk is full'],
      ['EROFS', 'it is on a read-only file system'],
      ['SQLITE_READONLY', 'it is on a read-only file system'],
      ['EACCES', 'permission denied'],
      ['ENOTDIR', 'a part of its path is a file, not a folder'],
    ];
    for (const [code, reason] of cases) {
      const original = failure(code);
      const explained = (await explainFsError(original, 'open the data folder', '/d')) as Error & {
        code: string;
      };
      assert.equal(explained.message, `Cannot open the data folder in "/d": ${reason} (${code})`);
      assert.equal(explained.code, code);
      assert.equal(explained.cause, original);
    }
  });

  it('calls a SQLite I/O error a disk I/O error when the folder has room', async () => {
    const explained = (await explainFsError(failure('SQLITE_IOERR_SHMSIZE'), 'open', tmpdir())) as Error;
    assert.match(explained.message, /: a disk I\/O error \(SQLITE_IOERR_SHMSIZE\)$/);
  });

  it('returns any other error as it is', async () => {
    const other = failure('ECONNRESET');
    assert.equal(await explainFsError(other, 'open', '/d'), other);
    assert.equal(await explainFsError('text', 'open', '/d'), 'text');
    assert.equal(await explainFsError(null, 'open', '/d'), null);
  });
});
