import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { bodyDecoder } from './body.js';
import { HttpProtocolError } from './head.js';

/** Feeds `input` in pieces of `step` bytes; returns the body and the bytes left after it. */
function decode(
  framing: Parameters<typeof bodyDecoder>[0],
  input: Buffer,
  step: number,
): { body: Buffer; rest: Buffer; done: boolean } {
  const decoder = bodyDecoder(framing);
  const parts: Buffer[] = [];
  let at = 0;
  while (at < input.byteLength && !decoder.done) {
    const piece = input.subarray(at, Math.min(at + step, input.byteLength));
    const { used } = decoder.feed(piece, (data) => {
      parts.push(Buffer.from(data));
      return true;
    });
    at += used;
    if (used < piece.byteLength && !decoder.done) throw new Error('decoder stopped without a pause');
  }
  return { body: Buffer.concat(parts), rest: input.subarray(at), done: decoder.done };
}

const CHUNKED = Buffer.from(
  '5;name=value\r\nhello\r\n7\r\n, world\r\n0\r\nx-trailer: yes\r\n\r\nGET / HTTP/1.1\r\n\r\n',
  'latin1',
);

describe('request body framing', () => {
  it('delivers exactly Content-Length bytes and leaves what follows', () => {
    const { body, rest, done } = decode({ kind: 'length', length: 5 }, Buffer.from('helloGET /'), 3);
    assert.equal(body.toString(), 'hello');
    assert.equal(rest.toString(), 'GET /');
    assert.equal(done, true);
  });

  it('decodes a chunked body with extensions and trailers, whatever the read sizes', () => {
    for (const step of [1, 2, 3, 7, 13, 64, 1000]) {
      const { body, rest, done } = decode({ kind: 'chunked' }, CHUNKED, step);
      assert.equal(body.toString(), 'hello, world', `step ${step}`);
      assert.equal(rest.toString(), 'GET / HTTP/1.1\r\n\r\n', `step ${step}`);
      assert.equal(done, true);
    }
  });

  it('stops where the reader asks and goes on from there', () => {
    const decoder = bodyDecoder({ kind: 'chunked' });
    const first = decoder.feed(CHUNKED, () => false);
    assert.equal(first.paused, true);
    assert.equal(CHUNKED.subarray(0, first.used).toString('latin1'), '5;name=value\r\nhello');
    const parts: string[] = [];
    decoder.feed(CHUNKED.subarray(first.used), (data) => parts.push(data.toString()) > 0);
    assert.deepEqual(parts, [', world']);
    assert.equal(decoder.done, true);
    assert.equal(decoder.received, 12);
  });

  it('rejects malformed chunked bodies with 400', () => {
    const cases = {
      'a size that is not hex': 'zz\r\nhello\r\n0\r\n\r\n',
      'a chunk longer than its size': '3\r\nhello\r\n0\r\n\r\n',
      'a size line without CRLF': '5\nhello\r\n0\r\n\r\n',
      'an over-long size line': `5;${'x'.repeat(5000)}\r\nhello\r\n0\r\n\r\n`,
      'a size with too many digits': '1000000000000000\r\n',
    };
    for (const [what, text] of Object.entries(cases)) {
      assert.throws(
        () => decode({ kind: 'chunked' }, Buffer.from(text), 4),
        (error: unknown) => error instanceof HttpProtocolError && error.status === 400,
        what,
      );
    }
  });

  it('treats no framing as an empty body', () => {
    const decoder = bodyDecoder({ kind: 'none' });
    assert.equal(decoder.done, true);
    assert.deepEqual(
      decoder.feed(Buffer.from('GET'), () => true),
      { used: 0, paused: false },
    );
  });
});
