import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { SyncCondition } from './api.js';
import { KNV, SyncError } from './errors.js';
import { setCondition, stagePatch, summarize } from './status.js';

const T0 = new Date('2024-05-01T10:00:00.000Z');
const T1 = new Date('2024-05-01T10:05:00.000Z');

const errors = (count: number): SyncError[] =>
  Array.from({ length: count }, (_, i) => new SyncError(KNV.APPLY, `failure ${i + 1}`));

describe('setCondition', () => {
  it('adds a condition with both times set to now', () => {
    assert.deepEqual(setCondition(undefined, { type: 'Syncing', status: 'True', reason: 'Sync' }, T0), [
      {
        type: 'Syncing',
        status: 'True',
        reason: 'Sync',
        lastUpdateTime: T0.toISOString(),
        lastTransitionTime: T0.toISOString(),
      },
    ]);
  });

  it('keeps lastTransitionTime when the status is unchanged and updates lastUpdateTime', () => {
    const before = setCondition([], { type: 'Stalled', status: 'False', message: 'old' }, T0);
    const [after] = setCondition(before, { type: 'Stalled', status: 'False', message: 'new' }, T1);
    assert.equal(after?.lastTransitionTime, T0.toISOString());
    assert.equal(after?.lastUpdateTime, T1.toISOString());
    assert.equal(after?.message, 'new');
  });

  it('moves lastTransitionTime when the status changes', () => {
    const before = setCondition([], { type: 'Stalled', status: 'False' }, T0);
    const [after] = setCondition(before, { type: 'Stalled', status: 'True' }, T1);
    assert.equal(after?.lastTransitionTime, T1.toISOString());
  });

  it('uses now when the previous condition had no lastTransitionTime', () => {
    const [after] = setCondition(
      [{ type: 'Stalled', status: 'False' }],
      { type: 'Stalled', status: 'False' },
      T1,
    );
    assert.equal(after?.lastTransitionTime, T1.toISOString());
  });

  it('replaces only the condition of the same type and keeps the list sorted by type', () => {
    const list: SyncCondition[] = [
      { type: 'Syncing', status: 'True', lastTransitionTime: 'x' },
      { type: 'Reconciling', status: 'False', lastTransitionTime: 'y' },
    ];
    const next = setCondition(list, { type: 'Stalled', status: 'False' }, T0);
    assert.deepEqual(
      next.map((c) => `${c.type}=${c.status}`),
      ['Reconciling=False', 'Stalled=False', 'Syncing=True'],
    );
    assert.equal(next[0], list[1], 'untouched conditions are kept as they are');
    const again = setCondition(next, { type: 'Syncing', status: 'False' }, T1);
    assert.equal(again.length, 3);
    assert.equal(again.find((c) => c.type === 'Syncing')?.status, 'False');
    assert.equal(list.length, 2, 'the given list is not changed');
  });
});

describe('summarize', () => {
  it('is null and null without errors, so a merge patch removes them', () => {
    assert.deepEqual(summarize([]), { errors: null, errorSummary: null });
  });

  it('keeps every error up to 20 as KNV entries', () => {
    const result = summarize(errors(20));
    assert.equal(result.errors?.length, 20);
    assert.deepEqual(result.errors?.[0], { code: 'KNV2009', errorMessage: 'KNV2009: failure 1' });
    assert.deepEqual(result.errorSummary, {
      totalCount: 20,
      truncated: false,
      errorCountAfterTruncation: 20,
    });
  });

  it('keeps the first 20 of more errors and says it truncated', () => {
    const result = summarize(errors(23));
    assert.equal(result.errors?.length, 20);
    assert.equal(result.errors?.at(-1)?.errorMessage, 'KNV2009: failure 20');
    assert.deepEqual(result.errorSummary, { totalCount: 23, truncated: true, errorCountAfterTruncation: 20 });
  });
});

describe('stagePatch', () => {
  it('nulls the commit, errors and summary that are absent, and leaves out an absent message', () => {
    assert.deepEqual(stagePatch({ image: 'reg/app:v1', dir: '.' }, T0), {
      ociStatus: { image: 'reg/app:v1', dir: '.' },
      commit: null,
      lastUpdate: T0.toISOString(),
      errors: null,
      errorSummary: null,
    });
  });

  it('writes the commit, the errors with their summary and the message', () => {
    assert.deepEqual(
      stagePatch(
        { image: 'reg/app:v1', dir: 'config', commit: 'abc', errors: errors(1), message: 'Sync Completed' },
        T1,
      ),
      {
        ociStatus: { image: 'reg/app:v1', dir: 'config' },
        commit: 'abc',
        lastUpdate: T1.toISOString(),
        errors: [{ code: 'KNV2009', errorMessage: 'KNV2009: failure 1' }],
        errorSummary: { totalCount: 1, truncated: false, errorCountAfterTruncation: 1 },
        message: 'Sync Completed',
      },
    );
  });
});
