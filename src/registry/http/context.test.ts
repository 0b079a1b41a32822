import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { RegistryError } from '../errors.js';
import { sendError, type Context } from './context.js';

/** What a fake response was asked to send. */
interface Sent {
  status?: number;
  headers?: Record<string, string | number>;
  body?: { errors: Array<{ code: string; message: string; detail?: unknown }> } | undefined;
}

/** A context whose response records what is sent, and whose log records the levels used. */
function fakeContext(): { ctx: Context; sent: Sent; logged: string[] } {
  const sent: Sent = {};
  const logged: string[] = [];
  const log = {
    error: () => logged.push('error'),
    warn: () => logged.push('warn'),
    info: () => logged.push('info'),
  };
  const res = {
    headersSent: false,
    destroyed: false,
    hasHeader: () => false,
    setHeader: () => undefined,
    writeHead(status: number, headers: Record<string, string | number>) {
      sent.status = status;
      sent.headers = headers;
    },
    end(bytes?: Buffer) {
      if (bytes) sent.body = JSON.parse(bytes.toString('utf8')) as Sent['body'];
    },
  };
  const ctx = { req: { method: 'PATCH', destroyed: false }, res, id: 'req-1', log } as unknown as Context;
  return { ctx, sent, logged };
}

const fsError = (code: string): Error =>
  Object.assign(new Error(`${code}: no space left on device, write`), { code, errno: -28, syscall: 'write' });

describe('sendError', () => {
  it('answers a full disk with 507 and says so, without the path or the system message', () => {
    const { ctx, sent, logged } = fakeContext();
    sendError(ctx, fsError('ENOSPC'));
    assert.equal(sent.status, 507);
    assert.equal(sent.headers?.['content-type'], 'application/json');
    const [error] = sent.body?.errors ?? [];
    assert.equal(error?.code, 'UNKNOWN');
    assert.equal(error?.message, 'The registry cannot store this: its disk is full (ENOSPC)');
    assert.deepEqual(error?.detail, { requestId: 'req-1' });
    assert.deepEqual(logged, ['error']);
  });

  it('answers a full SQLite database (SQLITE_FULL) with 507', () => {
    const { ctx, sent } = fakeContext();
    sendError(ctx, Object.assign(new Error('database or disk is full'), { code: 'SQLITE_FULL' }));
    assert.equal(sent.status, 507);
    assert.equal(
      sent.body?.errors[0]?.message,
      'The registry cannot store this: its disk is full (SQLITE_FULL)',
    );
  });

  it('answers a used-up quota with 507', () => {
    const { ctx, sent } = fakeContext();
    sendError(ctx, fsError('EDQUOT'));
    assert.equal(sent.status, 507);
    assert.match(sent.body?.errors[0]?.message ?? '', /quota is used up \(EDQUOT\)/);
  });

  it('keeps other failures a 500 that leaks nothing, and spec errors as they are', () => {
    const other = fakeContext();
    sendError(other.ctx, Object.assign(new Error('EIO: i/o error, read /srv/data/x'), { code: 'EIO' }));
    assert.equal(other.sent.status, 500);
    assert.equal(other.sent.body?.errors[0]?.message, 'internal error; see the registry log');
    const spec = fakeContext();
    sendError(spec.ctx, new RegistryError('BLOB_UPLOAD_UNKNOWN', 'No upload "x"'));
    assert.equal(spec.sent.status, 404);
    assert.equal(spec.sent.body?.errors[0]?.code, 'BLOB_UPLOAD_UNKNOWN');
  });
});
