import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { describe, it } from 'node:test';
import { publicKeyId, type SigningKey } from './keys.js';
import {
  findVerifyingKey,
  isDerEcdsaSignature,
  signatureProblem,
  signBytes,
  verifyBytes,
} from './signature.js';

function ecKey(curve = 'P-256'): SigningKey {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: curve });
  return { privateKey, publicKey };
}
const pub = (k: SigningKey) => ({ key: k.publicKey, id: publicKeyId(k.publicKey) });

describe('signBytes / verifyBytes', () => {
  it('makes DER ECDSA signatures that verify with the same key only', () => {
    const key = ecKey();
    const data = Buffer.from('payload');
    const sig = signBytes(key, data);
    assert.ok(isDerEcdsaSignature(Buffer.from(sig, 'base64')));
    assert.ok(verifyBytes(pub(key), data, sig));
    assert.equal(verifyBytes(pub(ecKey()), data, sig), false);
    assert.equal(verifyBytes(pub(key), Buffer.from('payload!'), sig), false);
  });

  it('signs and verifies with P-384 and RSA keys too', () => {
    const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
    for (const key of [ecKey('P-384'), rsa]) {
      const sig = signBytes(key, Buffer.from('x'));
      assert.ok(verifyBytes(pub(key), Buffer.from('x'), sig));
    }
  });

  it('finds the key that verifies among several', () => {
    const a = ecKey();
    const b = ecKey();
    const sig = signBytes(b, Buffer.from('x'));
    assert.equal(findVerifyingKey([pub(a), pub(b)], Buffer.from('x'), sig)?.id, pub(b).id);
    assert.equal(findVerifyingKey([pub(a)], Buffer.from('x'), sig), undefined);
  });
});

describe('signatureProblem', () => {
  const key = ecKey();
  const good = signBytes(key, Buffer.from('x'));
  const der = Buffer.from(good, 'base64');

  it('accepts a well-formed signature', () => {
    assert.equal(signatureProblem(key.publicKey, good), undefined);
  });

  const bad: Array<[string, string, RegExp]> = [
    ['empty', '', /empty/],
    ['not base64', 'not base64!', /not base64/],
    ['truncated', der.subarray(0, der.length - 3).toString('base64'), /not a DER-encoded ECDSA signature/],
    ['raw r||s instead of DER', Buffer.alloc(64, 7).toString('base64'), /not a DER-encoded ECDSA signature/],
    [
      'DER with trailing bytes',
      Buffer.concat([der, Buffer.from([0])]).toString('base64'),
      /not a DER-encoded/,
    ],
  ];
  for (const [name, sig, pattern] of bad) {
    it(`names the problem of a signature that is ${name}`, () => {
      assert.match(signatureProblem(key.publicKey, sig) ?? '', pattern);
      assert.equal(verifyBytes(pub(key), Buffer.from('x'), sig), false);
    });
  }
});
