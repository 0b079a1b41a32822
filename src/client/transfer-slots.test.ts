import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { TransferSlots } from './transfer-slots.js';

const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

describe('TransferSlots', () => {
  it('hands out at most `limit` places, to waiters in the order they asked', async () => {
    const slots = new TransferSlots(2);
    const [a, b, c, d] = [slots.slot(), slots.slot(), slots.slot(), slots.slot()];
    const got: string[] = [];
    await a.hold();
    await b.hold();
    void c.hold().then(() => got.push('c'));
    void d.hold().then(() => got.push('d'));
    await tick();
    assert.deepEqual(got, [], 'both places are taken');
    b.free();
    await tick();
    assert.deepEqual(got, ['c']);
    a.free();
    await tick();
    assert.deepEqual(got, ['c', 'd']);
  });

  it('ignores a second hold while held and a free while not held', async () => {
    const slots = new TransferSlots(1);
    const a = slots.slot();
    const b = slots.slot();
    a.free(); // never held: gives nothing back
    await a.hold();
    await a.hold(); // already held: does not take a second place or wait
    let bHeld = false;
    void b.hold().then(() => (bHeld = true));
    await tick();
    assert.equal(bHeld, false);
    a.free();
    a.free(); // freed once only
    await tick();
    assert.equal(bHeld, true);
    // A slot freed and held again (a retry) waits for a place like any other.
    let again = false;
    void a.hold().then(() => (again = true));
    await tick();
    assert.equal(again, false);
    b.free();
    await tick();
    assert.equal(again, true);
  });

  it('refuses a limit that is not a positive integer', () => {
    for (const limit of [0, -1, 1.5, Number.NaN]) {
      assert.throws(() => new TransferSlots(limit), RangeError);
    }
  });
});
