import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { LruCache } from './cache.js';

describe('LruCache', () => {
  it('evicts the least recently used entries past its weight', () => {
    const cache = new LruCache<string, number>(3);
    cache.set('a', 1);
    cache.set('b', 2);
    cache.set('c', 3);
    cache.get('a');
    cache.set('d', 4);
    assert.equal(cache.get('b'), undefined);
    assert.equal(cache.get('a'), 1);
    assert.equal(cache.size, 3);
  });

  it('weighs entries and ignores one heavier than the whole cache', () => {
    const cache = new LruCache<string, string>(10);
    cache.set('big', 'x', 11);
    assert.equal(cache.get('big'), undefined);
    cache.set('a', 'a', 6);
    cache.set('b', 'b', 6);
    assert.equal(cache.get('a'), undefined);
    assert.equal(cache.get('b'), 'b');
  });

  it('deletes by predicate', () => {
    const cache = new LruCache<string, number>(10);
    cache.set('r1:a', 1);
    cache.set('r1:b', 2);
    cache.set('r2:a', 3);
    cache.deleteWhere((key) => key.startsWith('r1:'));
    assert.equal(cache.size, 1);
  });
});
