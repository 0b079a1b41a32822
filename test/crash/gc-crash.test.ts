// SIGKILL during garbage collection: a registry with kept and deleted images is killed at random moments
// of a collection, restarted on the same data folder each time, and checked: every kept image is whole
// (its manifest, tags and blobs served byte for byte), every database row still has its file, every file
// matches its name; a last collection run to its end then leaves none of the garbage.
import assert from 'node:assert/strict';
import { randomBytes, randomInt } from 'node:crypto';
import { existsSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { after, describe, it } from 'node:test';
import { MediaType } from '../../src/oci/index.js';
import {
  blobPath,
  checkBlobTree,
  checkDatabaseCopy,
  rowsWithoutFiles,
  sha256Digest,
} from '../helpers/crash.js';
import { startAirlockProcess, type RunningProcess } from '../helpers/processes.js';

interface Pushed {
  readonly repo: string;
  readonly tag: string;
  readonly manifest: Buffer;
  readonly digest: string;
  readonly blobs: readonly Buffer[];
}

async function pushBlob(url: string, repo: string, bytes: Buffer): Promise<void> {
  const res = await fetch(`${url}/v2/${repo}/blobs/uploads/?digest=${sha256Digest(bytes)}`, {
    method: 'POST',
    body: bytes,
  });
  await res.arrayBuffer();
  assert.equal(res.status, 201);
}

async function pushImage(url: string, repo: string, tag: string, blobs: readonly Buffer[]): Promise<Pushed> {
  for (const bytes of blobs) await pushBlob(url, repo, bytes);
  const [config, ...layers] = blobs;
  assert.ok(config);
  const descriptor = (mediaType: string, bytes: Buffer) => ({
    mediaType,
    digest: sha256Digest(bytes),
    size: bytes.length,
  });
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MediaType.OciManifest,
      config: descriptor(MediaType.OciConfig, config),
      layers: layers.map((layer) => descriptor(MediaType.OciLayer, layer)),
    }),
  );
  const res = await fetch(`${url}/v2/${repo}/manifests/${tag}`, {
    method: 'PUT',
    body: manifest,
    headers: { 'content-type': MediaType.OciManifest },
  });
  await res.arrayBuffer();
  assert.equal(res.status, 201);
  return { repo, tag, manifest, digest: sha256Digest(manifest), blobs };
}

/** What a stopped registry's folder holds, and what is wrong with it (files, database, rows without files). */
async function checkDataFolder(
  dataDir: string,
  hashed: Map<string, number>,
): Promise<{ files: number; rows: number; problems: string[] }> {
  const tree = await checkBlobTree(dataDir, hashed);
  const rows = rowsWithoutFiles(dataDir);
  const problems = [...tree.problems, ...(await checkDatabaseCopy(dataDir)), ...rows.problems];
  return { files: tree.files, rows: rows.rows, problems };
}

async function checkKept(url: string, kept: readonly Pushed[]): Promise<string[]> {
  const problems: string[] = [];
  for (const image of kept) {
    const res = await fetch(`${url}/v2/${image.repo}/manifests/${image.tag}`, {
      headers: { accept: MediaType.OciManifest },
    });
    const body = Buffer.from(await res.arrayBuffer());
    if (res.status !== 200 || !body.equals(image.manifest))
      problems.push(`${image.repo}:${image.tag} answered ${res.status}`);
    for (const bytes of image.blobs) {
      const blob = await fetch(`${url}/v2/${image.repo}/blobs/${sha256Digest(bytes)}`);
      const got = Buffer.from(await blob.arrayBuffer());
      if (blob.status !== 200 || !got.equals(bytes))
        problems.push(`${image.repo} blob ${sha256Digest(bytes)} answered ${blob.status}`);
    }
  }
  return problems;
}

describe('crash safety: SIGKILL during garbage collection', () => {
  let server: RunningProcess | undefined;
  after(async () => {
    await server?.stop('SIGKILL');
    if (server) await rm(server.dataDir, { recursive: true, force: true });
  });

  it(
    'keeps every kept image whole through kills at random moments, and a finished run removes the garbage',
    { timeout: 120_000 },
    async (t) => {
      server = await startAirlockProcess();
      const dataDir = server.dataDir;
      const shared = randomBytes(4096);
      const kept: Pushed[] = [];
      const garbage: Pushed[] = [];
      for (let i = 0; i < 40; i++) {
        const repo = `gc/r${i % 4}`;
        const blobs = [
          Buffer.from(JSON.stringify({ i, nonce: randomBytes(8).toString('hex') })),
          shared,
          randomBytes(16 * 1024 + i),
        ];
        const image = await pushImage(server.url, repo, `v${i}`, blobs);
        if (i % 2 === 0) {
          kept.push(image);
          continue;
        }
        garbage.push(image);
        // Half the garbage deleted by digest, half left untagged (for deleteUntagged).
        const target = i % 4 === 1 ? image.digest : image.tag;
        const res = await fetch(`${server.url}/v2/${repo}/manifests/${target}`, { method: 'DELETE' });
        await res.arrayBuffer();
        assert.equal(res.status, 202);
      }
      await new Promise((resolve) => setTimeout(resolve, 1100));
      const collect = (url: string): Promise<Response> =>
        fetch(`${url}/api/v1/gc`, {
          method: 'POST',
          body: JSON.stringify({ graceSeconds: 0, deleteUntagged: true }),
        });

      // How long a collection takes here at the least (a dry run walks the same data, writing nothing); the
      // kills come later and later, so that some land in each of its three phases.
      const started = Date.now();
      const dry = await fetch(`${server.url}/api/v1/gc`, {
        method: 'POST',
        body: JSON.stringify({ graceSeconds: 0, deleteUntagged: true, dryRun: true }),
      });
      await dry.arrayBuffer();
      const span = Math.max(5, Date.now() - started);
      const hashed = new Map<string, number>();
      t.diagnostic(`a dry run took ${span} ms; ${(await checkDataFolder(dataDir, hashed)).files} blob files`);
      const problems: string[] = [];
      for (let round = 0; round < 8; round++) {
        collect(server.url).then(
          (res) => res.arrayBuffer(),
          () => undefined,
        );
        await new Promise((resolve) => setTimeout(resolve, randomInt(0, Math.round(span * (1 + round)) + 1)));
        await server.stop('SIGKILL');
        const folder = await checkDataFolder(dataDir, hashed);
        problems.push(...folder.problems.map((p) => `round ${round}: ${p}`));
        t.diagnostic(`round ${round}: killed with ${folder.rows} rows, ${folder.files} blob files left`);
        server = await startAirlockProcess({ dataDir });
        problems.push(...(await checkKept(server.url, kept)).map((p) => `round ${round}: ${p}`));
      }
      assert.deepEqual(problems, []);

      const final = await collect(server.url);
      assert.equal(final.status, 200);
      await final.arrayBuffer();
      assert.deepEqual(await checkKept(server.url, kept), []);
      const stored = (digest: string): boolean => existsSync(blobPath(dataDir, digest));
      for (const image of garbage) {
        assert.ok(!stored(image.digest), `manifest ${image.digest} is collected`);
        for (const bytes of image.blobs) {
          if (bytes !== image.blobs[1])
            assert.ok(!stored(sha256Digest(bytes)), `blob ${sha256Digest(bytes)} is collected`);
        }
      }
      assert.ok(stored(sha256Digest(shared)), 'the layer kept images share stays');
      await server.stop();
      assert.deepEqual((await checkDataFolder(dataDir, hashed)).problems, []);
    },
  );
});
