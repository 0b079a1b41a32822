import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseReference, type Digest } from '../oci/index.js';
import { buildPayload, dockerReferenceOf, parsePayload, sameRepository } from './payload.js';

const DIGEST = `sha256:${'a'.repeat(64)}` as Digest;

describe('simple-signing payload', () => {
  it('is what cosign writes: identity, digest, type, optional claims', () => {
    const ref = parseReference('127.0.0.1:5000/project/app:v1');
    const body = JSON.parse(buildPayload(ref, DIGEST, { env: 'prod' }).toString());
    assert.deepEqual(body, {
      critical: {
        identity: { 'docker-reference': '127.0.0.1:5000/project/app' },
        image: { 'docker-manifest-digest': DIGEST },
        type: 'cosign container image signature',
      },
      optional: { env: 'prod' },
    });
    assert.equal(JSON.parse(buildPayload(ref, DIGEST).toString()).optional, null);
  });

  it('parses its own output and field names in any case, as Go does', () => {
    const ref = parseReference('registry.local/app');
    assert.deepEqual(parsePayload(buildPayload(ref, DIGEST, { a: 'b' })), {
      dockerReference: 'registry.local/app',
      digest: DIGEST,
      annotations: { a: 'b' },
    });
    const upper = Buffer.from(
      JSON.stringify({
        critical: {
          identity: { 'docker-reference': 'x/y' },
          image: { 'Docker-manifest-digest': DIGEST },
          type: 'cosign container image signature',
        },
      }),
    );
    assert.equal(parsePayload(upper).digest, DIGEST);
  });

  const bad: Array<[string, string, RegExp]> = [
    ['not JSON', '{', /not JSON/],
    ['an array', '[]', /not a JSON object/],
    ['no critical section', '{}', /no "critical" section/],
    [
      'another type',
      JSON.stringify({ critical: { type: 'atomic container signature' } }),
      /payload type is "atomic container signature"/,
    ],
    [
      'no digest',
      JSON.stringify({ critical: { type: 'cosign container image signature', image: {} } }),
      /no valid "docker-manifest-digest"/,
    ],
  ];
  for (const [name, text, pattern] of bad) {
    it(`rejects a payload that is ${name}`, () => {
      assert.throws(() => parsePayload(Buffer.from(text)), pattern);
    });
  }

  it('normalizes docker-style references when comparing repositories', () => {
    const hub = parseReference('busybox');
    assert.equal(dockerReferenceOf(hub), 'index.docker.io/library/busybox');
    assert.ok(sameRepository('index.docker.io/library/busybox', hub));
    assert.ok(sameRepository('docker.io/library/busybox:1.36', hub));
    assert.ok(sameRepository('busybox', hub));
    assert.equal(sameRepository('registry.local/busybox', hub), false);
    assert.equal(sameRepository('', hub), false);
  });
});
