import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { SyncError } from './errors.js';
import { credentialsFromDockerConfig } from './registry-auth.js';

const WHERE = 'Secret shop/pull';
const b64 = (text: string): string => Buffer.from(text).toString('base64');
const config = (auths: Record<string, unknown>): string => JSON.stringify({ auths });

describe('credentialsFromDockerConfig', () => {
  it('decodes "auth" (base64 user:password), keeping colons in the password', () => {
    assert.deepEqual(
      credentialsFromDockerConfig(
        config({ 'registry.local:5000': { auth: b64('alice:s3:cr:et') } }),
        'registry.local:5000',
        WHERE,
      ),
      { username: 'alice', password: 's3:cr:et' },
    );
  });

  it('takes username and password fields', () => {
    assert.deepEqual(
      credentialsFromDockerConfig(
        config({ 'registry.local': { username: 'bob', password: 'pw', auth: b64('other:ignored') } }),
        'registry.local',
        WHERE,
      ),
      { username: 'bob', password: 'pw' },
    );
  });

  it('prefers an identity token', () => {
    assert.deepEqual(
      credentialsFromDockerConfig(
        config({ 'registry.local': { identitytoken: 'refresh-token', auth: b64('a:b') } }),
        'registry.local',
        WHERE,
      ),
      { identityToken: 'refresh-token' },
    );
  });

  it('matches keys written as URLs with a scheme and a path', () => {
    const json = config({
      'https://other.example/v1/': { auth: b64('x:y') },
      'https://registry.local:5000/v2/': { auth: b64('carol:pw') },
    });
    assert.deepEqual(credentialsFromDockerConfig(json, 'registry.local:5000', WHERE), {
      username: 'carol',
      password: 'pw',
    });
    assert.deepEqual(
      credentialsFromDockerConfig(
        config({ 'http://registry.local/path': { auth: b64('d:e') } }),
        'registry.local',
        WHERE,
      ),
      { username: 'd', password: 'e' },
    );
  });

  it('does not match another port of the same host', () => {
    assert.equal(
      credentialsFromDockerConfig(
        config({ 'registry.local:5000': { auth: b64('a:b') } }),
        'registry.local',
        WHERE,
      ),
      undefined,
    );
  });

  it('reads the old .dockercfg layout, hosts at the top level', () => {
    assert.deepEqual(
      credentialsFromDockerConfig(
        JSON.stringify({ 'registry.local': { auth: b64('old:style') } }),
        'registry.local',
        WHERE,
      ),
      { username: 'old', password: 'style' },
    );
  });

  it('is undefined when the host has no entry', () => {
    assert.equal(
      credentialsFromDockerConfig(config({ 'other.example': { auth: b64('a:b') } }), 'registry.local', WHERE),
      undefined,
    );
    assert.equal(credentialsFromDockerConfig('{}', 'registry.local', WHERE), undefined);
    assert.equal(credentialsFromDockerConfig('null', 'registry.local', WHERE), undefined);
  });

  it('rejects text that is not JSON with KNV2004, naming the Secret', () => {
    assert.throws(
      () => credentialsFromDockerConfig('{"auths":', 'registry.local', WHERE),
      (error: unknown) =>
        error instanceof SyncError &&
        error.code === 'KNV2004' &&
        error.message.startsWith('Secret shop/pull is not valid JSON: '),
    );
  });

  it('rejects an entry for the host without usable credentials with KNV2004', () => {
    for (const entry of [
      {},
      { auth: b64('no-colon') },
      { auth: b64(':password-only') },
      { username: 'u' },
      { email: 'a@b' },
    ]) {
      assert.throws(
        () => credentialsFromDockerConfig(config({ 'registry.local': entry }), 'registry.local', WHERE),
        (error: unknown) =>
          error instanceof SyncError &&
          error.code === 'KNV2004' &&
          error.message === 'Secret shop/pull has an entry for "registry.local" without usable credentials',
        JSON.stringify(entry),
      );
    }
  });
});
