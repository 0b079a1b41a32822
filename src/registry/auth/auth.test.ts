import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { hashPassword, verifyPassword, newRobotSecret, sha256, sameHash } from './password.js';
import { grantedActions, scopeCovers, scopeProblem, registryActions } from './policy.js';
import { TokenService, parseScopes, tokenAllows } from './tokens.js';
import { memberProblem } from './access.js';

describe('passwords', () => {
  it('hashes with scrypt and a fresh salt, and verifies only the right password', async () => {
    const a = await hashPassword('correct horse');
    const b = await hashPassword('correct horse');
    assert.match(a, /^scrypt\$16384\$8\$1\$/);
    assert.notEqual(a, b);
    assert.equal(await verifyPassword('correct horse', a), true);
    assert.equal(await verifyPassword('wrong horse', a), false);
    assert.equal(await verifyPassword('x', 'md5$abc'), false);
  });

  it('makes robot secrets that are stored only as a hash', () => {
    const { secret, hash } = newRobotSecret();
    assert.ok(secret.length >= 40);
    assert.equal(hash, sha256(secret));
    assert.ok(sameHash(hash, sha256(secret)) && !sameHash(hash, sha256(`${secret}x`)));
  });
});

describe('policy', () => {
  const b = (member: string, role: 'reader' | 'writer' | 'admin', scope: string) => ({
    member,
    role,
    scope,
    createdAt: 0,
  });
  it('matches exact repositories, prefixes and the whole registry', () => {
    assert.ok(
      scopeCovers('p/app', 'p/app') && !scopeCovers('p/app', 'p/app2') && !scopeCovers('p/app', 'p/app/x'),
    );
    assert.ok(scopeCovers('p/', 'p/app/x') && !scopeCovers('p/', 'q/app'));
    assert.ok(scopeCovers('*', 'anything'));
  });

  it('unions the roles of every matching binding, and adds pull for public repositories', () => {
    const bindings = [b('user:a', 'reader', 'p/'), b('user:a', 'writer', 'p/app')];
    assert.deepEqual([...grantedActions(bindings, 'p/app')].sort(), ['pull', 'push']);
    assert.deepEqual([...grantedActions(bindings, 'p/other')], ['pull']);
    assert.deepEqual([...grantedActions([], 'x', { publicRead: true })], ['pull']);
    assert.ok(!registryActions([b('user:a', 'admin', 'p/')]).has('manage'));
    assert.ok(registryActions([b('user:a', 'admin', '*')]).has('manage'));
  });

  it('validates scopes and members with messages that say what is allowed', () => {
    assert.equal(scopeProblem('p/'), undefined);
    assert.match(scopeProblem('../x') ?? '', /use "\*"/);
    assert.equal(memberProblem('serviceAccount:config-management-system/root-reconciler@prod'), undefined);
    assert.match(memberProblem('alice') ?? '', /user:NAME/);
  });
});

describe('TokenService', () => {
  it('issues ES256 tokens it verifies, refuses them after expiry and keeps the previous key after rotation', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'airlock-keys-'));
    try {
      let now = Date.parse('2026-01-01T00:00:00Z');
      const service = new TokenService({
        keyDir: dir,
        now: () => now,
        lifetimeSeconds: 60,
        rotationSeconds: 3600,
      });
      await service.init();
      const { token } = await service.issue('user:a', parseScopes('repository:p/app:pull,push'));
      const claims = await service.verify(token);
      assert.ok(claims && tokenAllows(claims, 'p/app', 'push') && !tokenAllows(claims, 'p/app', 'delete'));
      assert.equal((await stat(join(dir, (await readdir(dir))[0] ?? ''))).mode & 0o777, 0o600);
      now += 2 * 3600 * 1000;
      const rotated = new TokenService({
        keyDir: dir,
        now: () => now,
        lifetimeSeconds: 60,
        rotationSeconds: 3600,
      });
      await rotated.init();
      assert.equal((await readdir(dir)).length, 2);
      assert.equal(await rotated.verify(token), undefined, 'expired');
      const fresh = await rotated.issue('user:a', []);
      assert.ok(await rotated.verify(fresh.token));
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('parses scopes, ignoring unknown types', () => {
    assert.deepEqual(parseScopes('repository:a/b:pull,push registry:catalog:* nonsense other:x:y'), [
      { type: 'repository', name: 'a/b', actions: ['pull', 'push'] },
      { type: 'registry', name: 'catalog', actions: ['*'] },
    ]);
  });
});
