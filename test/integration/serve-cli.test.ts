import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, rm } from 'node:fs/promises';
import { createServer, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { CLI, run, startAirlockProcess, tempDir } from '../helpers/processes.js';
import { image } from '../helpers/oci-fixtures.js';
import { TestClient } from '../helpers/registry-client.js';

describe('airlock serve', () => {
  it('starts on the embedded default, keeps data in the data folder and stops cleanly on SIGTERM', async () => {
    const server = await startAirlockProcess();
    try {
      const c = new TestClient(server.url);
      const img = image();
      await c.pushImage('seed/app', img, 'v1');
      await server.stop('SIGTERM');
      assert.equal(server.child.exitCode, 0);
      const again = await startAirlockProcess({ dataDir: server.dataDir });
      try {
        const res = await new TestClient(again.url).request('GET', '/v2/seed/app/manifests/v1');
        assert.deepEqual(Buffer.from(await res.arrayBuffer()), img.manifest);
      } finally {
        await again.stop();
      }
    } finally {
      await server.stop();
      await rm(server.dataDir, { recursive: true, force: true });
    }
  });

  it('finishes an in-flight upload before it exits on SIGTERM', async () => {
    const server = await startAirlockProcess();
    try {
      const start = await fetch(`${server.url}/v2/slow/upload/blobs/uploads/`, { method: 'POST' });
      const location = start.headers.get('location') ?? '';
      const chunk = Buffer.alloc(1024 * 1024, 7);
      let sent = 0;
      const body = new ReadableStream<Uint8Array>({
        async pull(controller) {
          // Signal once the request is surely under way (two chunks already sent).
          if (sent === 2) server.child.kill('SIGTERM');
          if (sent >= 8) {
            controller.close();
            return;
          }
          await new Promise((r) => setTimeout(r, 20));
          controller.enqueue(chunk);
          sent++;
        },
      });
      const res = await fetch(`${server.url}${location}`, { method: 'PATCH', body, duplex: 'half' });
      assert.equal(res.status, 202);
      assert.equal(res.headers.get('range'), `0-${8 * chunk.length - 1}`);
    } finally {
      await server.stop();
      await rm(server.dataDir, { recursive: true, force: true });
    }
  });

  it(
    'runs file operations on 16 pool threads unless UV_THREADPOOL_SIZE says otherwise',
    {
      skip: process.platform !== 'linux' && 'reads /proc',
    },
    async () => {
      const threads = async (env: NodeJS.ProcessEnv): Promise<number> => {
        const server = await startAirlockProcess({ env });
        try {
          await new TestClient(server.url).pushImage('pool/app', image(), 'v1');
          const status = await readFile(`/proc/${server.child.pid}/status`, 'utf8');
          return Number(/^Threads:\s+(\d+)$/m.exec(status)?.[1]);
        } finally {
          await server.stop();
          await rm(server.dataDir, { recursive: true, force: true });
        }
      };
      // Node's own threads (main, V8's platform workers, the signal thread) are about seven.
      assert.ok((await threads({ UV_THREADPOOL_SIZE: '' })) >= 16 + 5);
      assert.ok((await threads({ UV_THREADPOOL_SIZE: '4' })) < 16);
    },
  );

  it('refuses a non-loopback address without authentication, and warns with --allow-anonymous', async () => {
    const dir = await tempDir();
    const refused = await run(
      process.execPath,
      [CLI, 'serve', '--addr', '0.0.0.0:0', '--data', join(dir, 'd'), '--log-level', 'warn'],
      {
        timeoutMs: 5000,
      },
    );
    assert.equal(refused.code, 2);
    assert.match(refused.stderr, /Refusing to serve "0\.0\.0\.0:0" without authentication/);
    const open = await run(
      process.execPath,
      [
        CLI,
        'serve',
        '--addr',
        '0.0.0.0:0',
        '--data',
        join(dir, 'd'),
        '--log-level',
        'warn',
        '--allow-anonymous',
      ],
      { timeoutMs: 5000 },
    );
    assert.match(open.stderr, /non-loopback address without authentication/);
    await rm(dir, { recursive: true, force: true });
  });

  it('refuses a second serve on the same data folder, and starts again after the first was killed', async () => {
    const first = await startAirlockProcess();
    try {
      const second = await run(
        process.execPath,
        [CLI, 'serve', '--addr', '127.0.0.1:0', '--data', first.dataDir, '--log-level', 'warn'],
        { timeoutMs: 10_000 },
      );
      assert.equal(second.code, 1);
      const lines = second.stderr.split('\n').filter((line) => line.trim() !== '');
      assert.equal(lines.length, 1, second.stderr);
      assert.match(
        lines[0] ?? '',
        new RegExp(`^Error: Data folder ".*" is in use by process ${first.child.pid}; stop it first`),
      );
      // The first one was not disturbed.
      assert.equal((await fetch(`${first.url}/v2/`)).status, 200);
      // A crash leaves the lock file behind; the next start takes it over.
      await first.stop('SIGKILL');
      const again = await startAirlockProcess({ dataDir: first.dataDir });
      await again.stop();
      assert.equal(again.child.exitCode, 0);
    } finally {
      await first.stop();
      await rm(first.dataDir, { recursive: true, force: true });
    }
  });

  it('says in one line why it cannot listen on a port another process holds, and frees its data folder', async () => {
    const holder = createServer();
    await new Promise<void>((resolve) => holder.listen(0, '127.0.0.1', resolve));
    const { port } = holder.address() as AddressInfo;
    const dataDir = await tempDir('airlock-busy-port-');
    try {
      const args = [CLI, 'serve', '--addr', `127.0.0.1:${port}`, '--data', dataDir, '--log-level', 'warn'];
      const refused = await run(process.execPath, args, { timeoutMs: 10_000 });
      assert.equal(refused.code, 1);
      const lines = refused.stderr.split('\n').filter((line) => line.trim() !== '');
      assert.deepEqual(lines, [
        `Error: Cannot listen on 127.0.0.1:${port}: another process listens on that port; choose another with --addr (or addr in the config file) (EADDRINUSE)`,
      ]);
      // The data folder's lock went with it: a serve on another port starts on the same folder.
      const next = await startAirlockProcess({ dataDir });
      await next.stop();
      assert.equal(next.child.exitCode, 0);
    } finally {
      holder.close();
      await rm(dataDir, { recursive: true, force: true });
    }
  });

  it('exits 2 with a clear message for a bad flag value', async () => {
    const result = await run(process.execPath, [CLI, 'serve', '--log-level', 'loud']);
    assert.equal(result.code, 2);
    assert.match(result.stderr, /Error: Invalid flag: "logLevel" must be one of/);
  });
});
