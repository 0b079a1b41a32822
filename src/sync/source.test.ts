import { describe, it, beforeEach, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { KNV, SyncError, SyncErrors } from './errors.js';
import { parseManifestText, readSource } from './source.js';

const CONFIG_MAP = 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: app\n';

/** Parses `text` as `path`; the objects and the errors as "CODE: message". */
function parse(text: string, path = 'file.yaml'): { objects: unknown[]; errors: string[] } {
  const errors: SyncError[] = [];
  const objects = parseManifestText(text, path, errors);
  return { objects, errors: errors.map((e) => `${e.code}: ${e.message}`) };
}

describe('parseManifestText', () => {
  it('returns every document of a multi-document YAML file in order', () => {
    const { objects, errors } = parse(
      `${CONFIG_MAP}---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: test\n`,
    );
    assert.deepEqual(errors, []);
    assert.deepEqual(objects, [
      { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'app' } },
      { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'test' } },
    ]);
  });

  it('parses a .json file as one object', () => {
    const { objects, errors } = parse(
      JSON.stringify({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'j' }, data: { a: '1' } }),
      'dir/cm.JSON',
    );
    assert.deepEqual(errors, []);
    assert.deepEqual(objects, [
      { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'j' }, data: { a: '1' } },
    ]);
  });

  it('reports invalid JSON with KNV1006 and the file', () => {
    const { objects, errors } = parse('{"apiVersion": "v1",', 'cm.json');
    assert.deepEqual(objects, []);
    assert.equal(errors.length, 1);
    assert.match(errors[0]!, /^KNV1006: cm\.json: invalid JSON: /);
  });

  it('expands the items of a kind List, in YAML and JSON', () => {
    const list = {
      apiVersion: 'v1',
      kind: 'List',
      items: [
        { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'a' } },
        { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'b' } },
      ],
    };
    for (const [text, path] of [
      [JSON.stringify(list), 'list.json'],
      [
        'apiVersion: v1\nkind: ConfigMapList\nitems:\n- {apiVersion: v1, kind: ConfigMap, metadata: {name: a}}\n- {apiVersion: v1, kind: Secret, metadata: {name: b}}\n',
        'list.yaml',
      ],
    ] as const) {
      const { objects, errors } = parse(text, path);
      assert.deepEqual(errors, [], path);
      assert.deepEqual(
        objects.map((o) => (o as { kind: string }).kind),
        ['ConfigMap', 'Secret'],
        path,
      );
    }
  });

  it('names the list item that is not an object', () => {
    const { objects, errors } = parse(
      'apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: ConfigMap, metadata: {name: a}}\n- {kind: Secret, metadata: {name: b}}\n',
      'list.yaml',
    );
    assert.equal(objects.length, 1);
    assert.deepEqual(errors, ['KNV1006: list.yaml item 2: the object has no apiVersion']);
  });

  it('skips empty documents and an empty file', () => {
    assert.deepEqual(parse(''), { objects: [], errors: [] });
    assert.deepEqual(parse('---\n---\n# only a comment\n'), { objects: [], errors: [] });
    const { objects, errors } = parse(`---\n${CONFIG_MAP}---\n---\n`);
    assert.deepEqual(errors, []);
    assert.equal(objects.length, 1);
  });

  it('skips objects annotated config.kubernetes.io/local-config: "true"', () => {
    const { objects, errors } = parse(
      `apiVersion: kpt.dev/v1\nkind: Kptfile\nmetadata:\n  name: pkg\n  annotations:\n    config.kubernetes.io/local-config: "true"\n---\n${CONFIG_MAP}`,
    );
    assert.deepEqual(errors, []);
    assert.deepEqual(
      objects.map((o) => (o as { kind: string }).kind),
      ['ConfigMap'],
    );
  });

  it('keeps objects whose local-config annotation is not "true"', () => {
    const { objects } = parse(
      `${CONFIG_MAP}  annotations:\n    config.kubernetes.io/local-config: "false"\n`,
    );
    assert.equal(objects.length, 1);
  });

  it('reports invalid YAML with KNV1006 and the document', () => {
    const { objects, errors } = parse(`${CONFIG_MAP}---\nfoo: [\n`, 'broken.yaml');
    assert.equal(objects.length, 1, 'the valid first document is still returned');
    assert.equal(errors.length, 1);
    assert.match(errors[0]!, /^KNV1006: broken\.yaml \(document 2\): invalid YAML/);
  });

  it('says on which line of the file the YAML is invalid, counting earlier documents', () => {
    const { errors } = parse(
      'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n   bad: [\n',
      'broken.yaml',
    );
    assert.equal(errors.length, 1);
    assert.match(errors[0]!, /^KNV1006: broken\.yaml: invalid YAML at line 4: /);
    const second = parse(`${CONFIG_MAP}---\napiVersion: v1\nkind: Secret\nkind: Secret\n`, 'two.yaml');
    assert.match(second.errors[0]!, /^KNV1006: two\.yaml \(document 2\): invalid YAML at line 8: .*unique/);
  });

  it('reports a YAML alias bomb as KNV1006 instead of throwing', () => {
    const bomb = [
      'a: &a [x, x, x, x, x, x, x, x, x, x]',
      'b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]',
      'c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]',
      'd: [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]',
    ].join('\n');
    const { objects, errors } = parse(bomb, 'bomb.yaml');
    assert.deepEqual(objects, []);
    assert.equal(errors.length, 1);
    assert.match(errors[0]!, /^KNV1006: bomb\.yaml: /);
  });

  it('rejects a document that is not a map', () => {
    for (const text of ['just a string\n', '- a\n- b\n', '42\n']) {
      assert.deepEqual(parse(text, 'x.yaml'), {
        objects: [],
        errors: ['KNV1006: x.yaml: the document is not a Kubernetes object (a map)'],
      });
    }
  });

  it('rejects an object without apiVersion or kind, naming what is missing', () => {
    assert.deepEqual(parse('kind: ConfigMap\nmetadata: {name: a}\n').errors, [
      'KNV1006: file.yaml: the object has no apiVersion',
    ]);
    assert.deepEqual(parse('apiVersion: v1\nmetadata: {name: a}\n').errors, [
      'KNV1006: file.yaml: the object has no kind',
    ]);
    assert.deepEqual(parse('metadata: {name: a}\n').errors, [
      'KNV1006: file.yaml: the object has no apiVersion and no kind',
    ]);
    assert.deepEqual(parse('apiVersion: ""\nkind: 3\n').errors, [
      'KNV1006: file.yaml: the object has no apiVersion and no kind',
    ]);
  });

  it('rejects metadata that is not a map', () => {
    assert.deepEqual(parse('apiVersion: v1\nkind: ConfigMap\nmetadata: [a]\n').errors, [
      'KNV1006: file.yaml: metadata is not a map',
    ]);
  });

  it('gives an object without metadata an empty metadata map', () => {
    assert.deepEqual(parse('apiVersion: v1\nkind: ConfigMap\n').objects, [
      { apiVersion: 'v1', kind: 'ConfigMap', metadata: {} },
    ]);
  });

  it('rejects duplicate keys in a map', () => {
    const { objects, errors } = parse('apiVersion: v1\nkind: ConfigMap\nkind: Secret\nmetadata: {name: a}\n');
    assert.deepEqual(objects, []);
    assert.equal(errors.length, 1);
    assert.match(errors[0]!, /^KNV1006: file\.yaml: invalid YAML.*unique/);
  });

  it('collects the errors of several documents of one file', () => {
    const { errors } = parse('- a\n---\nkind: X\n---\n' + CONFIG_MAP, 'many.yaml');
    assert.deepEqual(errors, [
      'KNV1006: many.yaml (document 1): the document is not a Kubernetes object (a map)',
      'KNV1006: many.yaml (document 2): the object has no apiVersion',
    ]);
  });
});

describe('readSource', () => {
  let root: string;
  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), 'airlock-source-'));
  });
  afterEach(() => rm(root, { recursive: true, force: true }));

  async function put(path: string, text: string): Promise<void> {
    await mkdir(dirname(join(root, path)), { recursive: true });
    await writeFile(join(root, path), text);
  }

  it('reads .yaml, .yml and .json files of every folder, with their "/"-separated relative path', async () => {
    await put('b.yaml', CONFIG_MAP.replace('app', 'b'));
    await put('a/c.yml', CONFIG_MAP.replace('app', 'c'));
    await put('a/deep/d.json', JSON.stringify({ apiVersion: 'v1', kind: 'Secret', metadata: { name: 'd' } }));
    const found = await readSource(root);
    assert.deepEqual(
      found.map((s) => [s.path, s.object.metadata.name]),
      [
        ['a/c.yml', 'c'],
        ['a/deep/d.json', 'd'],
        ['b.yaml', 'b'],
      ],
    );
  });

  it('ignores files that are not manifests', async () => {
    await put('README.md', '# not yaml: [');
    await put('script.sh', 'echo hi');
    await put('Kptfile', 'not: [valid');
    await put('cm.yaml', CONFIG_MAP);
    assert.deepEqual(
      (await readSource(root)).map((s) => s.path),
      ['cm.yaml'],
    );
  });

  it('skips dot-files and dot-folders', async () => {
    await put('.hidden.yaml', 'broken: [');
    await put('.git/config.yaml', 'broken: [');
    await put('ok/.secret.json', '{');
    await put('ok/cm.yaml', CONFIG_MAP);
    assert.deepEqual(
      (await readSource(root)).map((s) => s.path),
      ['ok/cm.yaml'],
    );
  });

  it('does not follow symbolic links', async () => {
    const outside = await mkdtemp(join(tmpdir(), 'airlock-source-outside-'));
    try {
      await writeFile(join(outside, 'secret.yaml'), CONFIG_MAP.replace('app', 'outside'));
      await put('cm.yaml', CONFIG_MAP);
      await symlink(join(outside, 'secret.yaml'), join(root, 'link.yaml'));
      await symlink(outside, join(root, 'linked-dir'));
      assert.deepEqual(
        (await readSource(root)).map((s) => s.path),
        ['cm.yaml'],
      );
    } finally {
      await rm(outside, { recursive: true, force: true });
    }
  });

  it('rejects a file larger than maxFileBytes with KNV1006', async () => {
    await put('big.yaml', `${CONFIG_MAP}data:\n  blob: ${'x'.repeat(200)}\n`);
    await put('small.yaml', CONFIG_MAP.replace('app', 'small'));
    await assert.rejects(readSource(root, { maxFileBytes: 100 }), (error: unknown) => {
      assert.ok(error instanceof SyncErrors);
      assert.deepEqual(
        error.errors.map((e) => `${e.code}: ${e.message}`),
        ['KNV1006: big.yaml: the file is larger than 100 bytes'],
      );
      return true;
    });
    assert.equal((await readSource(root, { maxFileBytes: 1000 })).length, 2);
  });

  it('rejects a source with more than maxFiles manifest files with KNV2004', async () => {
    await put('a.yaml', CONFIG_MAP);
    await put('b.yaml', CONFIG_MAP);
    await put('c.yaml', CONFIG_MAP);
    await assert.rejects(
      readSource(root, { maxFiles: 2 }),
      (error: unknown) =>
        error instanceof SyncError && error.code === KNV.SOURCE && /more than 2/.test(error.message),
    );
    assert.equal((await readSource(root, { maxFiles: 3 })).length, 3);
  });

  it('reports the errors of every file together in one SyncErrors', async () => {
    await put('a-broken.yaml', 'foo: [\n');
    await put('b-ok.yaml', CONFIG_MAP);
    await put('c/no-kind.yaml', 'apiVersion: v1\nmetadata: {name: x}\n');
    await put('d.json', '{');
    await assert.rejects(readSource(root), (error: unknown) => {
      assert.ok(error instanceof SyncErrors);
      assert.deepEqual(
        error.errors.map((e) => e.code),
        ['KNV1006', 'KNV1006', 'KNV1006'],
      );
      assert.match(error.errors[0]!.message, /^a-broken\.yaml: invalid YAML/);
      assert.equal(error.errors[1]!.message, 'c/no-kind.yaml: the object has no kind');
      assert.match(error.errors[2]!.message, /^d\.json: invalid JSON/);
      assert.equal(error.message.split('\n').length, 3);
      return true;
    });
  });

  it('reads an empty folder as no objects', async () => {
    assert.deepEqual(await readSource(root), []);
  });
});
