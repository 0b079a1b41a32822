import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, DEFAULT_CONFIG, isLoopback, loadServeConfig, parseAddr } from './config.js';

describe('loadServeConfig', () => {
  it('uses the embedded defaults when nothing is given', async () => {
    assert.deepEqual(await loadServeConfig({ env: {} }), DEFAULT_CONFIG);
  });

  it('reads the garbage-collection schedule (off by default)', async () => {
    const defaults = await loadServeConfig({ env: {} });
    assert.deepEqual(
      [defaults.gcIntervalSeconds, defaults.gcGraceSeconds, defaults.gcDeleteUntagged],
      [0, 3600, false],
    );
    const set = await loadServeConfig({
      env: {
        AIRLOCK_GC_INTERVAL_SECONDS: '86400',
        AIRLOCK_GC_GRACE_SECONDS: '600',
        AIRLOCK_GC_DELETE_UNTAGGED: 'true',
      },
    });
    assert.deepEqual([set.gcIntervalSeconds, set.gcGraceSeconds, set.gcDeleteUntagged], [86400, 600, true]);
  });

  it('layers file < environment < flags', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'airlock-config-'));
    try {
      const file = join(dir, 'airlock.yaml');
      await writeFile(file, 'addr: 127.0.0.1:6000\ndata: /srv/file\nlogLevel: debug\nmaxBlobBytes: 1024\n');
      const config = await loadServeConfig({
        file,
        env: { AIRLOCK_DATA: '/srv/env', AIRLOCK_LOG_LEVEL: 'warn' },
        flags: { logLevel: 'error', addr: undefined },
      });
      assert.equal(config.addr, '127.0.0.1:6000');
      assert.equal(config.data, '/srv/env');
      assert.equal(config.logLevel, 'error');
      assert.equal(config.maxBlobBytes, 1024);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  const bad: Array<[string, () => Promise<unknown>, RegExp]> = [
    ['an unknown key in a file', async () => withFile('colour: blue\n'), /unknown key "colour"/],
    ['YAML that does not parse', async () => withFile('addr: [unclosed\n'), /Cannot parse config file/],
    ['a file that is a list', async () => withFile('- a\n- b\n'), /expected a mapping/],
    [
      'a missing file',
      () => loadServeConfig({ file: '/nonexistent/airlock.yaml', env: {} }),
      /Cannot read config file/,
    ],
    [
      'a bad log level',
      () => loadServeConfig({ env: { AIRLOCK_LOG_LEVEL: 'loud' } }),
      /AIRLOCK_LOG_LEVEL.*must be one of/,
    ],
    [
      'a bad address',
      () => loadServeConfig({ env: {}, flags: { addr: 'nohostport' } }),
      /"addr" must be HOST:PORT/,
    ],
    [
      'an AIRLOCK_DIRECT_IO other than 0 or 1',
      () => loadServeConfig({ env: { AIRLOCK_DIRECT_IO: 'off' } }),
      /AIRLOCK_DIRECT_IO must be 0 \(off\) or 1 \(on\), not "off"/,
    ],
    [
      'an AIRLOCK_HASH_THREAD other than 0 or 1',
      () => loadServeConfig({ env: { AIRLOCK_HASH_THREAD: 'yes' } }),
      /AIRLOCK_HASH_THREAD must be 0 \(off\) or 1 \(on\), not "yes"/,
    ],
    [
      'a garbage-collection interval that is not a whole number',
      () => loadServeConfig({ env: { AIRLOCK_GC_INTERVAL_SECONDS: '1h' } }),
      /AIRLOCK_GC_INTERVAL_SECONDS.*"gcIntervalSeconds" must be a non-negative integer/,
    ],
    [
      'a garbage-collection interval past what a timer can wait (24.8 days)',
      () => loadServeConfig({ env: { AIRLOCK_GC_INTERVAL_SECONDS: String(30 * 24 * 3600) } }),
      /"gcIntervalSeconds" must be at most 2147483 \(24\.8 days\), got 2592000/,
    ],
    [
      'a gcDeleteUntagged that is not true or false',
      () => loadServeConfig({ env: {}, flags: { gcDeleteUntagged: 'sometimes' } }),
      /"gcDeleteUntagged" must be true or false/,
    ],
    [
      'a negative number',
      () => loadServeConfig({ env: { AIRLOCK_MAX_BLOB_BYTES: '-5' } }),
      /non-negative integer/,
    ],
  ];
  for (const [what, load, message] of bad) {
    it(`rejects ${what} with a ConfigError naming the problem`, async () => {
      await assert.rejects(
        load(),
        (error: unknown) => error instanceof ConfigError && message.test(error.message),
      );
    });
  }
});

async function withFile(text: string): Promise<unknown> {
  const dir = await mkdtemp(join(tmpdir(), 'airlock-config-'));
  try {
    const file = join(dir, 'airlock.yaml');
    await writeFile(file, text);
    return await loadServeConfig({ file, env: {} });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

describe('addresses', () => {
  it('splits host:port including IPv6 and tells loopback from the rest', () => {
    assert.deepEqual(parseAddr('127.0.0.1:5000'), { host: '127.0.0.1', port: 5000 });
    assert.deepEqual(parseAddr('[::1]:0'), { host: '::1', port: 0 });
    assert.deepEqual(parseAddr(':5000'), { host: '', port: 5000 });
    assert.throws(() => parseAddr('host:99999'), ConfigError);
    assert.ok(isLoopback('127.0.0.2') && isLoopback('::1') && isLoopback('localhost'));
    assert.ok(!isLoopback('0.0.0.0') && !isLoopback('') && !isLoopback('10.0.0.1'));
  });
});
