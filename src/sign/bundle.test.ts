import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseBundle, parseSignStatement, preAuthEncoding } from './bundle.js';

const BUNDLE = 'application/vnd.dev.sigstore.bundle.v0.3+json';

describe('sigstore bundle', () => {
  it('computes the DSSE pre-authentication encoding', () => {
    assert.equal(
      preAuthEncoding('application/vnd.in-toto+json', Buffer.from('{}')).toString(),
      'DSSEv1 28 application/vnd.in-toto+json 2 {}',
    );
  });

  it('reads a DSSE envelope (URL-safe base64 too) and a message signature', () => {
    const dsse = parseBundle(
      Buffer.from(
        JSON.stringify({
          mediaType: BUNDLE,
          dsseEnvelope: {
            payload: 'e30',
            payloadType: 'application/vnd.in-toto+json',
            signatures: [{ sig: 'MEUC-_' }],
          },
        }),
      ),
    );
    assert.equal(dsse.kind, 'dsse-envelope');
    assert.equal(dsse.kind === 'dsse-envelope' && dsse.payload.toString(), '{}');
    const message = parseBundle(
      Buffer.from(
        JSON.stringify({
          mediaType: BUNDLE,
          messageSignature: {
            messageDigest: { algorithm: 'SHA2_256', digest: Buffer.alloc(32, 1).toString('base64') },
            signature: 'AAAA',
          },
        }),
      ),
    );
    assert.deepEqual(message, { kind: 'message-signature', digestHex: '01'.repeat(32), signature: 'AAAA' });
  });

  const bad: Array<[string, unknown, RegExp]> = [
    ['another media type', { mediaType: 'application/json' }, /is not a sigstore bundle/],
    ['no content', { mediaType: BUNDLE }, /neither "messageSignature" nor "dsseEnvelope"/],
    [
      'a SHA-512 message digest',
      { mediaType: BUNDLE, messageSignature: { messageDigest: { algorithm: 'SHA2_512' } } },
      /not SHA2_256/,
    ],
    [
      'an envelope without signatures',
      { mediaType: BUNDLE, dsseEnvelope: { payload: 'e30', signatures: [] } },
      /no signatures/,
    ],
  ];
  for (const [name, body, pattern] of bad) {
    it(`rejects a bundle with ${name}`, () => {
      assert.throws(() => parseBundle(Buffer.from(JSON.stringify(body))), pattern);
    });
  }

  it("accepts only cosign's signing predicate as a signature", () => {
    const statement = (predicateType: string) =>
      Buffer.from(
        JSON.stringify({
          _type: 'https://in-toto.io/Statement/v1',
          subject: [{ digest: { sha256: 'ab' }, annotations: { env: 'prod' } }],
          predicateType,
          predicate: {},
        }),
      );
    assert.deepEqual(parseSignStatement(statement('https://sigstore.dev/cosign/sign/v1')).subjects, [
      { name: '', sha256: 'ab', annotations: { env: 'prod' } },
    ]);
    assert.throws(
      () => parseSignStatement(statement('https://slsa.dev/provenance/v1')),
      /attestation of predicate type "https:\/\/slsa.dev\/provenance\/v1", not a cosign signature/,
    );
  });
});
