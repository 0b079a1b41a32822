import { describe, it, beforeEach, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, readdir, readlink, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { gzipSync } from 'node:zlib';
import { pack, type Header } from 'tar-stream';
import { ArchiveError } from './compression.js';
import { extractLayers, safeEntryPath } from './extract.js';

type Entry = Partial<Header> & { name: string; body?: string | Buffer };

async function tar(entries: Entry[]): Promise<Buffer> {
  const p = pack();
  for (const { body, ...header } of entries) {
    p.entry({ type: 'file', mode: 0o644, ...header }, body ?? '');
  }
  p.finalize();
  const chunks: Buffer[] = [];
  for await (const chunk of p as AsyncIterable<Buffer>) chunks.push(chunk);
  return Buffer.concat(chunks);
}

const layer = (bytes: Buffer) => () => Promise.resolve(Readable.from([bytes]));

describe('extractLayers', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'airlock-extract-'));
  });
  afterEach(async () => rm(dir, { recursive: true, force: true }));

  it('extracts plain and gzip layers in order, later files replacing earlier ones', async () => {
    const l1 = await tar([
      { name: 'a/one.yaml', body: 'v1' },
      { name: 'keep.txt', body: 'k' },
    ]);
    const l2 = gzipSync(
      await tar([
        { name: 'a/one.yaml', body: 'v2' },
        { name: './b/', type: 'directory' },
      ]),
    );
    const out = join(dir, 'out');
    const result = await extractLayers([layer(l1), layer(l2)], out);
    assert.equal(await readFile(join(out, 'a/one.yaml'), 'utf8'), 'v2');
    assert.equal(await readFile(join(out, 'keep.txt'), 'utf8'), 'k');
    assert.deepEqual((await readdir(out)).sort(), ['a', 'b', 'keep.txt']);
    assert.equal(result.files, 3);
  });

  it('applies whiteouts and opaque directories between layers', async () => {
    const l1 = await tar([
      { name: 'x/gone', body: '1' },
      { name: 'x/stay', body: '2' },
      { name: 'y/old', body: '3' },
    ]);
    const l2 = await tar([{ name: 'x/.wh.gone' }, { name: 'y/.wh..wh..opq' }, { name: 'y/new', body: '4' }]);
    const out = join(dir, 'out');
    await extractLayers([layer(l1), layer(l2)], out);
    assert.deepEqual(await readdir(join(out, 'x')), ['stay']);
    assert.deepEqual(await readdir(join(out, 'y')), ['new']);
  });

  it('lets a whiteout hide only what the layers below left, wherever it comes in its layer', async () => {
    // image-spec: files present in the same layer as a whiteout are not hidden by it. Here the whiteouts
    // and opaque markers come after the layer's own entries, which a reader in stream order would remove.
    const l1 = await tar([
      { name: 'x/old', body: '1' },
      { name: 'y', body: 'lower y' },
      { name: 'd/old', body: '2' },
      { name: 'z/gone', body: '3' },
    ]);
    const l2 = await tar([
      { name: 'x/new', body: '4' },
      { name: '.wh.x' },
      { name: 'y', body: 'upper y' },
      { name: '.wh.y' },
      { name: 'd/new', body: '5' },
      { name: 'd/.wh..wh..opq' },
      { name: '.wh.z' },
    ]);
    const out = join(dir, 'out');
    await extractLayers([layer(l1), layer(l2)], out);
    assert.deepEqual((await readdir(out)).sort(), ['d', 'x', 'y']);
    assert.deepEqual(await readdir(join(out, 'x')), ['new']);
    assert.equal(await readFile(join(out, 'y'), 'utf8'), 'upper y');
    assert.deepEqual(await readdir(join(out, 'd')), ['new']);
  });

  it('keeps symlinks that stay inside the target', async () => {
    const out = join(dir, 'out');
    await extractLayers(
      [
        layer(
          await tar([
            { name: 'real', body: 'r' },
            { name: 'sub/ln', type: 'symlink', linkname: '../real' },
          ]),
        ),
      ],
      out,
    );
    assert.equal(await readlink(join(out, 'sub/ln')), '../real');
  });

  const malicious: Array<[string, () => Promise<Buffer>, RegExp]> = [
    ['a ".." path', () => tar([{ name: '../escape', body: 'x' }]), /climbs out/],
    ['a nested ".." path', () => tar([{ name: 'a/../../escape', body: 'x' }]), /climbs out/],
    ['an absolute path', () => tar([{ name: '/etc/passwd', body: 'x' }]), /absolute path/],
    [
      'a symlink pointing outside',
      () => tar([{ name: 'ln', type: 'symlink', linkname: '../../etc' }]),
      /points outside/,
    ],
    ['an absolute symlink', () => tar([{ name: 'ln', type: 'symlink', linkname: '/etc' }]), /absolute path/],
    [
      'a write through a symlink',
      () =>
        tar([
          { name: 'ln', type: 'symlink', linkname: 'd' },
          { name: 'd', type: 'directory' },
          { name: 'ln/f', body: 'x' },
        ]),
      /through the symlink/,
    ],
    [
      'a hard link to a file outside',
      () => tar([{ name: 'h', type: 'link', linkname: '../../etc/passwd' }]),
      /climbs out/,
    ],
    [
      'a hard link to nothing extracted',
      () => tar([{ name: 'h', type: 'link', linkname: 'missing' }]),
      /not a file extracted before it/,
    ],
    [
      'an entry below a file',
      () =>
        tar([
          { name: 'b', body: 'a file' },
          { name: 'b/a', body: 'x' },
        ]),
      /Tar entry "b\/a" needs "b" to be a folder, but an earlier entry made it a file/,
    ],
    [
      'a character device',
      () => tar([{ name: 'dev/null', type: 'character-device', devmajor: 1, devminor: 3 }]),
      /devices, FIFOs/,
    ],
    ['a FIFO', () => tar([{ name: 'pipe', type: 'fifo' }]), /devices, FIFOs/],
    [
      'a truncated archive',
      async () => (await tar([{ name: 'f', body: Buffer.alloc(5000, 1) }])).subarray(0, 1000),
      /Tar stream ended early|Cannot read tar data|Unexpected end/,
    ],
    [
      'data that is not tar',
      () => Promise.resolve(Buffer.from('this is not a tar archive at all, just text '.repeat(20))),
      /Cannot read tar data|ended early|Invalid tar header/,
    ],
  ];
  for (const [what, make, message] of malicious) {
    it(`refuses ${what}, leaving nothing behind`, async () => {
      const out = join(dir, 'out');
      await assert.rejects(
        extractLayers([layer(await make())], out),
        (error: unknown) => error instanceof ArchiveError && message.test(error.message),
      );
      assert.deepEqual(await readdir(dir), []);
    });
  }

  it('stops at the byte limit, including a gzip bomb', async () => {
    const big = gzipSync(await tar([{ name: 'zeros', body: Buffer.alloc(8 * 1024 * 1024) }]));
    assert.ok(big.length < 100_000);
    await assert.rejects(extractLayers([layer(big)], join(dir, 'out'), { maxBytes: 1024 * 1024 }), /limit/);
    assert.deepEqual(await readdir(dir), []);
  });

  it('stops at the entry limit', async () => {
    const many = await tar(Array.from({ length: 20 }, (_, i) => ({ name: `f${i}`, body: 'x' })));
    await assert.rejects(
      extractLayers([layer(many)], join(dir, 'out'), { maxEntries: 10 }),
      /more than 10 entries/,
    );
  });

  it('refuses to extract over an existing target', async () => {
    await assert.rejects(extractLayers([], dir), /already exists/);
  });
});

describe('safeEntryPath', () => {
  it('normalises harmless names', () => {
    assert.equal(safeEntryPath('./a//b/./c'), 'a/b/c');
    assert.equal(safeEntryPath('./'), '');
  });
});
