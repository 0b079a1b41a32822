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
      ['SQLITE_READONLY', 'its database cannot be written (a read-only file or file system)'],
      ['EACCES', 'permission denied'],
      ['ENOTDIR', 'a part of its path is a file, not a folder'],
    ];
    for (const [code, reason] of cases) {
      const original = failure(code);
      const explained = (await explainFsError(original, {
        action: 'open the data folder',
        dir: '/d',
      })) as Error & {
        code: string;
      };
      assert.equal(explained.message, `Cannot open the data folder in "/d": ${reason} (${code})`);
      assert.equal(explained.code, code);
      assert.equal(explained.cause, original);
    }
  });

  it('names the file that failed when it is not the folder', async () => {
    const failed = Object.assign(failure('EACCES'), { path: '/d/blobs/sha256/ab/abcd' });
    const explained = (await explainFsError(failed, { action: 'collect garbage', dir: '/d' })) as Error;
    assert.equal(
      explained.message,
      'Cannot collect garbage in "/d": permission denied (EACCES, at /d/blobs/sha256/ab/abcd)',
    );
    const here = Object.assign(failure('EROFS'), { path: '/d' });
    assert.equal(
      ((await explainFsError(here, { action: 'lock', dir: '/d' })) as Error).message,
      'Cannot lock in "/d": it is on a read-only file system (EROFS)',
    );
  });

  it('calls a SQLite I/O error a disk I/O error when the folder has room', async () => {
    const explained = (await explainFsError(failure('SQLITE_IOERR_SHMSIZE'), {
      action: 'open',
      dir: tmpdir(),
    })) as Error;
    assert.match(explained.message, /: a disk I\/O error \(SQLITE_IOERR_SHMSIZE\)$/);
  });

  it('returns any other error as it is', async () => {
    const other = failure('ECONNRESET');
    assert.equal(await explainFsError(other, { action: 'open', dir: '/d' }), other);
    assert.equal(await explainFsError('text', { action: 'open', dir: '/d' }), 'text');
    assert.equal(await explainFsError(null, { action: 'open', dir: '/d' }), null);
  });
});
