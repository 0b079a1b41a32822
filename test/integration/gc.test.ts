// Garbage collection end to end: artifacts pushed and deleted with the CLI, `airlock gc` against a
// running registry, then what is left is checked over HTTP and on disk.
import assert from 'node:assert/strict';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { digestOf } from '../../src/oci/index.js';
import { airlock, airlockOk, assertOneLineError, cliEnv, startDistributionForTest } from '../helpers/cli.js';
import { startTestRegistry } from '../helpers/in-process.js';
import { tempDirForTest } from '../helpers/interop.js';

interface Report {
  dryRun: boolean;
  repositories: number;
  manifestsDeleted: { repository: string; digest: string }[];
  linksRemoved: number;
  blobsDeleted: number;
  bytesFreed: number;
  problems: string[];
}

async function blobFiles(dataDir: string): Promise<string[]> {
  const out: string[] = [];
  for (const prefix of await readdir(join(dataDir, 'blobs', 'sha256'))) {
    for (const hex of await readdir(join(dataDir, 'blobs', 'sha256', prefix))) out.push(`sha256:${hex}`);
  }
  return out.sort();
}

describe('airlock gc', () => {
  it('collects what deleted and untagged artifacts left behind, and nothing a tag still reaches', async (t) => {
    const reg = await startTestRegistry();
    t.after(() => reg.dispose());
    const host = new URL(reg.url).host;
    const env = await cliEnv(t);
    const work = await tempDirForTest(t, 'gc-');
    for (const name of ['kept.txt', 'deleted.txt', 'untagged.txt', 'shared.txt']) {
      await writeFile(join(work, name), `${name} ${Date.now()}\n`);
    }
    await airlockOk(env, ['push', `${host}/p/app:kept`, 'kept.txt', 'shared.txt'], { cwd: work });
    await airlockOk(env, ['push', `${host}/p/app:deleted`, 'deleted.txt', 'shared.txt'], { cwd: work });
    await airlockOk(env, ['push', `${host}/p/app:untagged`, 'untagged.txt'], { cwd: work });
    const digestOfTag = async (tag: string): Promise<string> =>
      (await airlockOk(env, ['digest', `${host}/p/app:${tag}`])).stdout.trim();
    const deleted = await digestOfTag('deleted');
    const untagged = await digestOfTag('untagged');
    await airlockOk(env, ['delete', `${host}/p/app@${deleted}`]);
    await airlockOk(env, ['delete', `${host}/p/app:untagged`]);
    const before = await blobFiles(reg.dataDir);
    await new Promise((resolve) => setTimeout(resolve, 1100)); // --grace is in whole seconds

    // The default grace period (an hour) keeps everything this young.
    const young = JSON.parse((await airlockOk(env, ['gc', host, '--output', 'json'])).stdout) as Report;
    assert.deepEqual([young.linksRemoved, young.blobsDeleted], [0, 0]);

    const dry = JSON.parse(
      (
        await airlockOk(env, [
          'gc',
          host,
          '--grace',
          '1s',
          '--delete-untagged',
          '--dry-run',
          '--output',
          'json',
        ])
      ).stdout,
    ) as Report;
    assert.deepEqual(await blobFiles(reg.dataDir), before, 'a dry run deletes nothing');
    assert.deepEqual(dry.manifestsDeleted, [{ repository: 'p/app', digest: untagged }]);

    const result = await airlockOk(env, ['gc', host, '--grace', '1s', '--delete-untagged']);
    assert.match(result.stdout, new RegExp(`manifest p/app@${untagged} deleted`));
    assert.match(
      result.stdout,
      /1 repository: 1 untagged manifest deleted, \d+ blob links? removed, \d+ blobs? deleted \([\d.]+ MiB freed\)/,
    );

    const after = await blobFiles(reg.dataDir);
    // Gone: both manifests and the files only they named (deleted.txt, untagged.txt); kept: the rest.
    for (const digest of [deleted, untagged]) assert.ok(!after.includes(digest), `${digest} is deleted`);
    for (const name of ['deleted.txt', 'untagged.txt']) {
      const digest = digestOf(await readFile(join(work, name)));
      assert.ok(!after.includes(digest), `${name} is deleted`);
      const res = await fetch(`${reg.url}/v2/p/app/blobs/${digest}`);
      await res.arrayBuffer();
      assert.equal(res.status, 404);
    }
    for (const name of ['kept.txt', 'shared.txt']) {
      assert.ok(after.includes(digestOf(await readFile(join(work, name)))), `${name} is kept`);
    }
    // Two runs counted (the young one and the real one; dry runs are not), with what they freed.
    const metrics = await (await fetch(`${reg.url}/metrics`)).text();
    assert.match(metrics, /^airlock_gc_runs_total\{result="ok"\} 2$/m);
    assert.match(metrics, /^airlock_gc_manifests_deleted_total 1$/m);
    assert.match(metrics, /^airlock_gc_blobs_deleted_total [1-9]\d*$/m);
    assert.match(metrics, /^airlock_gc_last_success_timestamp_seconds \d/m);

    const out = join(work, 'out');
    await airlockOk(env, ['pull', `${host}/p/app:kept`, '-d', out]);
    for (const name of ['kept.txt', 'shared.txt']) {
      assert.deepEqual(await readFile(join(out, name)), await readFile(join(work, name)));
    }
  });

  it('keeps the old layers a pushing client checked with HEAD until its manifest arrives', async (t) => {
    const reg = await startTestRegistry();
    t.after(() => reg.dispose());
    // One image pushed to two repositories, then deleted from both: its layer and config stay linked.
    const layer = Buffer.from(`layer ${Date.now()}`);
    const config = Buffer.from(`{"created":"${new Date().toISOString()}"}`);
    const manifest = JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: {
        mediaType: 'application/vnd.oci.image.config.v1+json',
        digest: digestOf(config),
        size: config.length,
      },
      layers: [
        { mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: digestOf(layer), size: layer.length },
      ],
    });
    const request = async (method: string, path: string, body?: Buffer | string): Promise<Response> => {
      const res = await fetch(`${reg.url}${path}`, {
        method,
        ...(body === undefined ? {} : { body }),
        headers: { 'content-type': 'application/vnd.oci.image.manifest.v1+json' },
      });
      await res.arrayBuffer();
      return res;
    };
    for (const repo of ['p/checked', 'p/unchecked']) {
      for (const blob of [layer, config]) {
        assert.equal(
          (await request('POST', `/v2/${repo}/blobs/uploads/?digest=${digestOf(blob)}`, blob)).status,
          201,
        );
      }
      assert.equal((await request('PUT', `/v2/${repo}/manifests/v1`, manifest)).status, 201);
      assert.equal((await request('DELETE', `/v2/${repo}/manifests/${digestOf(manifest)}`)).status, 202);
    }
    // Two hours pass for the links (the registry's clock is the real one, so the rows are aged instead).
    const db = new Database(join(reg.dataDir, 'airlock.db'));
    db.prepare('UPDATE blob_links SET created_at = created_at - ?').run(2 * 60 * 60 * 1000);
    db.close();
    // A client about to push v1 again to p/checked asks whether the repository has its blobs: it has.
    for (const blob of [layer, config]) {
      assert.equal((await request('HEAD', `/v2/p/checked/blobs/${digestOf(blob)}`)).status, 200);
    }
    const report = JSON.parse(
      (await airlockOk(await cliEnv(t), ['gc', new URL(reg.url).host, '--output', 'json'])).stdout,
    ) as Report;
    assert.equal(report.linksRemoved, 2, "p/unchecked's layer and config");
    // The push that skipped its blobs completes; one that relied on an earlier answer is told what is missing.
    assert.equal((await request('PUT', '/v2/p/checked/manifests/v1', manifest)).status, 201);
    const refused = await fetch(`${reg.url}/v2/p/unchecked/manifests/v1`, {
      method: 'PUT',
      body: manifest,
      headers: { 'content-type': 'application/vnd.oci.image.manifest.v1+json' },
    });
    assert.equal(refused.status, 400);
    assert.match(await refused.text(), /MANIFEST_BLOB_UNKNOWN/);
  });

  it('runs on its own every gcIntervalSeconds when configured, and audits a run that removed something', async (t) => {
    const reg = await startTestRegistry({ gcIntervalSeconds: 1, gcGraceSeconds: 0 });
    t.after(() => reg.dispose());
    const scheduledRuns = async () =>
      (await reg.access.store.listAudit()).filter(
        (e) => e.action === 'gc' && e.actor === 'airlock serve (gcIntervalSeconds)',
      );
    const bytes = Buffer.from(`pushed without a manifest ${Date.now()}`);
    const digest = digestOf(bytes);
    const res = await fetch(`${reg.url}/v2/p/app/blobs/uploads/?digest=${digest}`, {
      method: 'POST',
      body: bytes,
    });
    assert.equal(res.status, 201);
    await res.arrayBuffer();
    assert.ok((await blobFiles(reg.dataDir)).includes(digest));
    const deadline = Date.now() + 10_000;
    while ((await blobFiles(reg.dataDir)).includes(digest)) {
      assert.ok(Date.now() < deadline, 'the scheduled collection did not remove the unreferenced blob');
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    const gone = await fetch(`${reg.url}/v2/p/app/blobs/${digest}`);
    await gone.arrayBuffer();
    assert.equal(gone.status, 404);
    // Scheduled runs used to be left out of the audit log. Runs that find nothing to remove stay out of it.
    while ((await scheduledRuns()).length === 0) {
      assert.ok(Date.now() < deadline, 'the scheduled collection was not audited');
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    const [audited, ...more] = await scheduledRuns();
    assert.deepEqual(more, []);
    assert.equal(audited?.target, '*');
    assert.equal(audited.detail?.['blobsDeleted'], 1);
    assert.equal(audited.detail['bytesFreed'], bytes.length);
  });

  it('says plainly that another registry (docker-registry) has no management API to collect with', async (t) => {
    const distribution = await startDistributionForTest(t);
    if (!distribution) return;
    const env = await cliEnv(t);
    assertOneLineError(await airlock(env, ['gc', distribution.host]), {
      pattern:
        /answered HTTP 404: 127\.0\.0\.1:\d+ has no Airlock management API \(is it an Airlock registry\?\)/,
    });
  });

  it("collects in a stopped registry's data folder with --data, and refuses while the registry runs", async (t) => {
    const dataDir = await tempDirForTest(t, 'gc-data-');
    const reg = await startTestRegistry({ data: dataDir });
    const env = await cliEnv(t);
    const push = async (bytes: Buffer): Promise<void> => {
      const res = await fetch(`${reg.url}/v2/p/app/blobs/uploads/?digest=${digestOf(bytes)}`, {
        method: 'POST',
        body: bytes,
      });
      await res.arrayBuffer();
      assert.equal(res.status, 201);
    };
    const kept = Buffer.from(`kept ${Date.now()}`);
    const orphan = Buffer.from(`orphan ${Date.now()}`);
    await push(kept);
    await push(orphan);
    const manifest = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        config: {
          mediaType: 'application/vnd.oci.image.config.v1+json',
          digest: digestOf(kept),
          size: kept.length,
        },
        layers: [],
      }),
    );
    const put = await fetch(`${reg.url}/v2/p/app/manifests/v1`, {
      method: 'PUT',
      body: manifest,
      headers: { 'content-type': 'application/vnd.oci.image.manifest.v1+json' },
    });
    assert.equal(put.status, 201);
    await put.arrayBuffer();
    await new Promise((resolve) => setTimeout(resolve, 1100));

    assertOneLineError(await airlock(env, ['gc', '--data', dataDir, '--grace', '0s']), {
      pattern: new RegExp(`is in use by process ${process.pid}; stop it first`),
    });
    await reg.close();
    const report = JSON.parse(
      (await airlockOk(env, ['gc', '--data', dataDir, '--grace', '0s', '--output', 'json'])).stdout,
    ) as Report;
    assert.deepEqual([report.linksRemoved, report.blobsDeleted], [1, 1]);
    const files = await blobFiles(dataDir);
    assert.ok(!files.includes(digestOf(orphan)));
    assert.ok(files.includes(digestOf(kept)));

    const again = await startTestRegistry({ data: dataDir });
    t.after(() => again.dispose());
    const res = await fetch(`${again.url}/v2/p/app/manifests/v1`);
    assert.deepEqual(Buffer.from(await res.arrayBuffer()), manifest);
    const audit = (await (await fetch(`${again.url}/api/v1/audit`)).json()) as {
      actor: string;
      action: string;
    }[];
    assert.ok(audit.some((e) => e.action === 'gc' && e.actor === 'airlock gc --data'));
  });

  it('wants a registry or a data folder, not both or neither', async (t) => {
    const env = await cliEnv(t);
    const empty = await tempDirForTest(t, 'gc-empty-');
    assertOneLineError(await airlock(env, ['gc']), {
      code: 2,
      pattern: /Give either a registry HOST or --data DIR/,
    });
    assertOneLineError(await airlock(env, ['gc', 'localhost:5000', '--data', empty]), {
      code: 2,
      pattern: /Give either a registry HOST or --data DIR/,
    });
    assertOneLineError(await airlock(env, ['gc', '--data', empty]), {
      code: 2,
      pattern: /is not an Airlock data folder \(it has no airlock\.db\)/,
    });
  });

  it('refuses a grace that is not a duration, and the API refuses bad fields', async (t) => {
    const reg = await startTestRegistry();
    t.after(() => reg.dispose());
    const env = await cliEnv(t);
    const host = new URL(reg.url).host;
    assertOneLineError(await airlock(env, ['gc', host, '--grace', 'forever']), {
      code: 2,
      pattern: /--grace "forever" is not a duration/,
    });
    // A grace under a second is rounded up, never down to 0: a blob pushed just now stays.
    const bytes = Buffer.from(`young ${Date.now()}`);
    const pushed = await fetch(`${reg.url}/v2/p/app/blobs/uploads/?digest=${digestOf(bytes)}`, {
      method: 'POST',
      body: bytes,
    });
    await pushed.arrayBuffer();
    const young = JSON.parse(
      (await airlockOk(env, ['gc', host, '--grace', '900ms', '--output', 'json'])).stdout,
    ) as Report;
    assert.equal(young.blobsDeleted, 0);
    assert.ok((await blobFiles(reg.dataDir)).includes(digestOf(bytes)));
    // An empty body is an empty object (curl -X POST without -d): defaults, a real run.
    const empty = await fetch(`${reg.url}/api/v1/gc`, { method: 'POST' });
    assert.equal(empty.status, 200);
    assert.equal(((await empty.json()) as Report).dryRun, false);
    for (const [body, pattern] of [
      ['{"graceSeconds":-1}', /graceSeconds/],
      ['{"graceSeconds":1.5}', /graceSeconds/],
      ['{"dryRun":"yes"}', /"dryRun" must be true or false/],
      ['{"everything":true}', /Unknown field "everything"/],
      ['[1]', /not a JSON object/],
    ] as const) {
      const res = await fetch(`${reg.url}/api/v1/gc`, { method: 'POST', body });
      const answer = (await res.json()) as { errors: { code: string; message: string }[] };
      assert.equal(res.status, 400, body);
      assert.match(answer.errors[0]?.message ?? '', pattern);
    }
  });
});
