import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ClientError } from './errors.js';
import { openTarget, parseImageLocation, type ClientFactory } from './image-ref.js';

const noClients: ClientFactory = () => Promise.reject(new Error('no registry in this test'));

describe('parseImageLocation', () => {
  it("reads skopeo's transports and plain references", () => {
    const cases: [string, unknown][] = [
      ['oci:/data/layout', { kind: 'oci', dir: '/data/layout' }],
      ['oci:/data/layout:v1', { kind: 'oci', dir: '/data/layout', tag: 'v1' }],
      ['oci:rel/dir:v1.2', { kind: 'oci', dir: 'rel/dir', tag: 'v1.2' }],
      ['oci:/data/layout:', { kind: 'oci', dir: '/data/layout' }],
      ['oci-archive:/tmp/image.tar', { kind: 'oci-archive', file: '/tmp/image.tar' }],
      ['oci-archive:/tmp/image.tar:latest', { kind: 'oci-archive', file: '/tmp/image.tar', tag: 'latest' }],
      ['docker-archive:/tmp/save.tar', { kind: 'docker-archive', file: '/tmp/save.tar' }],
      [
        'docker-archive:/tmp/save.tar:example/app:v1',
        { kind: 'docker-archive', file: '/tmp/save.tar', name: 'example/app:v1' },
      ],
      [
        'docker://127.0.0.1:5000/org/app:v1',
        { kind: 'registry', ref: { registry: '127.0.0.1:5000', repository: 'org/app', tag: 'v1' } },
      ],
      [
        'registry.example/org/app',
        { kind: 'registry', ref: { registry: 'registry.example', repository: 'org/app', tag: 'latest' } },
      ],
      [
        'alpine',
        { kind: 'registry', ref: { registry: 'docker.io', repository: 'library/alpine', tag: 'latest' } },
      ],
    ];
    for (const [text, expected] of cases) assert.deepEqual(parseImageLocation(text), expected, text);
  });

  it('says what is wrong with locations it cannot use', () => {
    const cases: [string, RegExp][] = [
      ['oci:', /the layout folder is empty/],
      ['oci-archive:', /the archive file is empty/],
      ['docker-archive:', /the archive file is empty/],
      ['ftp://host/file', /unknown transport/],
      // The reference's own message, which quotes it once.
      ['Registry.Example/UPPER:v1', /^Cannot parse reference "Registry\.Example\/UPPER:v1": /],
      ['containers-storage:app', /transport "containers-storage:" is not supported/],
      ['dir:/tmp/image', /transport "dir:" is not supported/],
    ];
    for (const [text, pattern] of cases) {
      assert.throws(
        () => parseImageLocation(text),
        (e: unknown) => e instanceof ClientError && e.code === 'INVALID_INPUT' && pattern.test(e.message),
        text,
      );
    }
  });
});

describe('parseImageLocation with layoutFolders', () => {
  it('reads a folder holding an OCI layout as oci:FOLDER, and says what a path-like text lacks', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'airlock-location-'));
    const cwd = process.cwd();
    try {
      await mkdir(join(dir, 'bundle'));
      await writeFile(join(dir, 'bundle', 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}');
      await mkdir(join(dir, 'empty'));
      await writeFile(join(dir, 'image.tar'), 'not read');
      process.chdir(dir);
      const options = { layoutFolders: true };
      for (const text of ['bundle', './bundle', join(dir, 'bundle'), 'bundle/']) {
        assert.deepEqual(parseImageLocation(text, options), { kind: 'oci', dir: text }, text);
      }
      // Without the option, or with no layout there, a bare name stays a registry reference (docker's).
      assert.equal(parseImageLocation('bundle').kind, 'registry');
      assert.equal(parseImageLocation('empty', options).kind, 'registry');
      assert.equal(parseImageLocation('bundle', { ...options, registryOnly: true }).kind, 'registry');
      // A transport still says what it is.
      assert.deepEqual(parseImageLocation('oci:bundle:v1', options), {
        kind: 'oci',
        dir: 'bundle',
        tag: 'v1',
      });
      const cases: [string, RegExp][] = [
        ['./empty', /^Cannot use "\.\/empty": the folder holds no OCI layout \(no oci-layout file in it\)$/],
        ['./missing', /^Cannot use "\.\/missing": no such file or folder$/],
        ['../nowhere/x', /no such file or folder/],
        ['/', /the folder holds no OCI layout/],
        ['./image.tar', /it is a file: name it oci-archive:FILE or docker-archive:FILE/],
      ];
      for (const [text, pattern] of cases) {
        assert.throws(
          () => parseImageLocation(text, options),
          (e: unknown) => e instanceof ClientError && e.code === 'INVALID_INPUT' && pattern.test(e.message),
          text,
        );
      }
    } finally {
      process.chdir(cwd);
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('parseImageLocation, more', () => {
  it('picks a layout or archive entry by digest with @, and still reads a host named like a transport', () => {
    const digest = `sha256:${'a'.repeat(64)}`;
    assert.deepEqual(parseImageLocation(`oci:/tmp/lay@${digest}`), {
      kind: 'oci',
      dir: '/tmp/lay',
      tag: digest,
    });
    assert.deepEqual(parseImageLocation(`oci-archive:x.tar@${digest}`), {
      kind: 'oci-archive',
      file: 'x.tar',
      tag: digest,
    });
    const ref = parseImageLocation('dir:5000/team/app:v1');
    assert.equal(ref.kind, 'registry');
  });
});

describe('parseImageLocation with registryOnly', () => {
  // These used to be read as Docker Hub names (`dir:foo` as docker.io/library/dir:foo) by every command
  // but copy, tree, extract and append -b, which then tried to reach registry-1.docker.io.
  it('refuses every transport but docker://, naming it, instead of reading it as a Docker Hub name', () => {
    const digest = `sha256:${'0'.repeat(64)}`;
    const cases: [string, string][] = [
      ['dir:foo', 'dir:'],
      ['containers-storage:foo', 'containers-storage:'],
      ['docker-daemon:foo:latest', 'docker-daemon:'],
      [`dir:foo@${digest}`, 'dir:'],
      ['ostree:foo', 'ostree:'],
      ['oci:foo', 'oci:'],
      ['oci-archive:image.tar:v1', 'oci-archive:'],
      ['docker-archive:save.tar', 'docker-archive:'],
      ['s3://bucket/key.tar', 's3://'],
      ['https://127.0.0.1:5000/team/app:v1', 'https://'],
    ];
    for (const [text, transport] of cases) {
      assert.throws(
        () => parseImageLocation(text, { registryOnly: true }),
        (e: unknown) =>
          e instanceof ClientError &&
          e.code === 'INVALID_INPUT' &&
          e.message.startsWith(`Cannot use "${text}": transport "${transport}" is not supported here;`),
        text,
      );
    }
  });

  it('takes plain and docker:// references, and a host named like a transport', () => {
    const cases: [string, unknown][] = [
      [
        'docker://127.0.0.1:5000/org/app:v1',
        { kind: 'registry', ref: { registry: '127.0.0.1:5000', repository: 'org/app', tag: 'v1' } },
      ],
      [
        '127.0.0.1:5000/org/app:v1',
        { kind: 'registry', ref: { registry: '127.0.0.1:5000', repository: 'org/app', tag: 'v1' } },
      ],
      [
        'dir:5000/team/app:v1',
        { kind: 'registry', ref: { registry: 'dir:5000', repository: 'team/app', tag: 'v1' } },
      ],
    ];
    for (const [text, expected] of cases)
      assert.deepEqual(parseImageLocation(text, { registryOnly: true }), expected, text);
  });
});

describe('openTarget for oci:', () => {
  it('removes a layout it created when the copy fails, and keeps a folder that was already there', async () => {
    const work = await mkdtemp(join(tmpdir(), 'airlock-image-ref-'));
    try {
      const fresh = await openTarget(parseImageLocation(`oci:${join(work, 'new', 'layout')}:v1`), noClients);
      assert.ok((await readdir(work)).includes('new'));
      await fresh.close(false);
      assert.deepEqual(await readdir(work), []);

      const kept = await openTarget(parseImageLocation(`oci:${join(work, 'kept')}`), noClients);
      await kept.close(true);
      assert.deepEqual((await readdir(join(work, 'kept'))).sort(), ['blobs', 'index.json', 'oci-layout']);
      const again = await openTarget(parseImageLocation(`oci:${join(work, 'kept')}`), noClients);
      await again.close(false);
      assert.deepEqual((await readdir(join(work, 'kept'))).sort(), ['blobs', 'index.json', 'oci-layout']);
    } finally {
      await rm(work, { recursive: true, force: true });
    }
  });
});
