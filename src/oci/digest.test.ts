import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Digester, digestOf, isDigest, parseDigest, DigestError } from './digest.js';

const HELLO = 'sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824';

describe('parseDigest', () => {
  it('accepts sha256 and sha512 digests', () => {
    assert.equal(parseDigest(HELLO).algorithm, 'sha256');
    assert.equal(parseDigest(`sha512:${'a'.repeat(128)}`).algorithm, 'sha512');
  });

  const bad: Array<[string, RegExp]> = [
    ['', /expected "algorithm:hex"/],
    ['sha256', /expected "algorithm:hex"/],
    ['sha256:', /expected "algorithm:hex"/],
    ['md5:d41d8cd98f00b204e9800998ecf8427e', /unsupported algorithm "md5"/],
    ['sha256:abc', /needs 64 lower-case hex/],
    [`sha256:${'A'.repeat(64)}`, /needs 64 lower-case hex/],
    [`sha256:${'g'.repeat(64)}`, /needs 64 lower-case hex/],
    [`sha512:${'a'.repeat(64)}`, /needs 128 lower-case hex/],
  ];
  for (const [input, message] of bad) {
    it(`rejects "${input}" with a message saying why`, () => {
      assert.throws(
        () => parseDigest(input),
        (error: unknown) => error instanceof DigestError && message.test(error.message),
      );
      assert.equal(isDigest(input), false);
    });
  }
});

describe('Digester', () => {
  it('gives the same digest streamed in pieces as digestOf on the whole', () => {
    const digester = new Digester();
    digester.update(Buffer.from('hel'));
    digester.update(Buffer.from('lo'));
    assert.equal(digester.size, 5);
    assert.equal(digester.digest(), HELLO);
    assert.equal(digestOf('hello'), HELLO);
  });
});
