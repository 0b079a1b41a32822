import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  formatReference,
  isValidRepositoryName,
  isValidTag,
  parseReference,
  ReferenceError,
} from './reference.js';

const DIGEST = `sha256:${'a'.repeat(64)}`;

describe('parseReference', () => {
  const cases: Array<[string, string]> = [
    ['alpine', 'docker.io/library/alpine:latest'],
    ['alpine:3.20', 'docker.io/library/alpine:3.20'],
    ['user/app', 'docker.io/user/app:latest'],
    ['index.docker.io/library/alpine', 'docker.io/library/alpine:latest'],
    ['localhost:5000/ns/app:v1', 'localhost:5000/ns/app:v1'],
    ['localhost/app', 'localhost/app:latest'],
    ['127.0.0.1:5000/project/repo/test-namespace:v1', '127.0.0.1:5000/project/repo/test-namespace:v1'],
    ['us-docker.pkg.dev/p/r/i', 'us-docker.pkg.dev/p/r/i:latest'],
    [`registry.example:443/a/b@${DIGEST}`, `registry.example:443/a/b@${DIGEST}`],
    [`a/b:t@${DIGEST}`, `docker.io/a/b:t@${DIGEST}`],
    ['[::1]:5000/app:v1', '[::1]:5000/app:v1'],
  ];
  for (const [input, expected] of cases) {
    it(`reads "${input}" as "${expected}"`, () => {
      assert.equal(formatReference(parseReference(input)), expected);
    });
  }

  const bad: Array<[string, RegExp]> = [
    ['', /reference is empty/],
    ['foo:', /tag is empty/],
    ['Foo/Bar', /repository "Foo\/Bar"/],
    ['host:5000/app@sha256:xyz', /digest: /],
    ['app:-bad', /tag "-bad" is invalid/],
    ['a//b', /repository/],
  ];
  for (const [input, message] of bad) {
    it(`rejects "${input}" with a message saying what is wrong`, () => {
      assert.throws(
        () => parseReference(input),
        (error: unknown) =>
          error instanceof ReferenceError &&
          error.message.startsWith(`Cannot parse reference "${input}"`) &&
          message.test(error.message),
      );
    });
  }
});

describe('repository names and tags', () => {
  it('accepts multi-level lower-case names and rejects traversal, upper case and empty parts', () => {
    for (const ok of ['a', 'project/repo/image', 'a.b_c__d-e/f--g']) assert.ok(isValidRepositoryName(ok), ok);
    for (const bad of ['', '../x', 'A', 'a/', '/a', 'a//b', 'a/../b', '-a', 'a-', 'x'.repeat(256)]) {
      assert.ok(!isValidRepositoryName(bad), bad);
    }
  });

  it('accepts tags of up to 128 characters that start with a word character', () => {
    assert.ok(isValidTag('v1.0_rc-1'));
    assert.ok(isValidTag('x'.repeat(128)));
    assert.ok(!isValidTag('x'.repeat(129)));
    assert.ok(!isValidTag('.hidden'));
    assert.ok(!isValidTag('a/b'));
  });
});
