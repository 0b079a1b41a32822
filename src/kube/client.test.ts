import { describe, it, before, after, beforeEach, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createCa, createServerCertificate, type Pem } from '../pki/index.js';
import { KubeClient, splitApiVersion } from './client.js';
import type { KubeConnection } from './config.js';
import { KubeError } from './errors.js';
import type { ResourceInfo } from './types.js';

interface Seen {
  readonly method: string;
  readonly path: string;
  readonly query: URLSearchParams;
  readonly headers: IncomingMessage['headers'];
  readonly body: string;
}

type Handler = (req: Seen, res: ServerResponse) => void;

const CONFIG_MAPS: ResourceInfo = {
  group: '',
  version: 'v1',
  kind: 'ConfigMap',
  plural: 'configmaps',
  namespaced: true,
};
const CORE_DISCOVERY = {
  kind: 'APIResourceList',
  groupVersion: 'v1',
  resources: [
    { name: 'configmaps', kind: 'ConfigMap', namespaced: true },
    { name: 'namespaces', kind: 'Namespace', namespaced: false },
    { name: 'namespaces/status', kind: 'Namespace', namespaced: false },
    { name: 'pods/log', kind: 'PodLogOptions', namespaced: true },
  ],
};

function json(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
}

function statusBody(code: number, reason: string, message: string): unknown {
  return { kind: 'Status', apiVersion: 'v1', status: 'Failure', message, reason, code };
}

describe('KubeClient', () => {
  let ca: Pem;
  let server: Server;
  let port: number;
  let handler: Handler;
  let seen: Seen[];
  let client: KubeClient;

  before(async () => {
    ca = await createCa('airlock test CA');
    const tls = await createServerCertificate(ca, ['127.0.0.1']);
    server = createServer({ cert: tls.cert, key: tls.key }, (req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const url = new URL(req.url ?? '/', 'https://127.0.0.1');
        const request: Seen = {
          method: req.method ?? '',
          path: url.pathname,
          query: url.searchParams,
          headers: req.headers,
          body: Buffer.concat(chunks).toString('utf8'),
        };
        seen.push(request);
        handler(request, res);
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as AddressInfo).port;
  });
  after(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });

  const connection = (extra: Partial<KubeConnection> = {}): KubeConnection => ({
    server: `https://127.0.0.1:${port}`,
    context: 'test',
    namespace: 'default',
    ca: Buffer.from(ca.cert),
    token: 'sekret',
    ...extra,
  });

  beforeEach(() => {
    seen = [];
    handler = (_req, res) => json(res, 404, statusBody(404, 'NotFound', 'not found'));
    client = new KubeClient(connection());
  });
  afterEach(() => client.close());

  describe('request', () => {
    it('sends the bearer token and user agent and returns the JSON answer', async () => {
      handler = (_req, res) => json(res, 200, { kind: 'Namespace', metadata: { name: 'a' } });
      assert.deepEqual(
        await client.request('GET', '/api/v1/namespaces/a', { query: { pretty: false, skip: undefined } }),
        {
          kind: 'Namespace',
          metadata: { name: 'a' },
        },
      );
      assert.equal(seen[0]?.headers.authorization, 'Bearer sekret');
      assert.equal(seen[0]?.headers['user-agent'], 'airlock');
      assert.equal(seen[0]?.headers.accept, 'application/json');
      assert.equal(seen[0]?.query.toString(), 'pretty=false');
    });

    it('reads a token file on every request, so a rotated token is used', async () => {
      const dir = await mkdtemp(join(tmpdir(), 'airlock-kube-token-'));
      try {
        const tokenFile = join(dir, 'token');
        await writeFile(tokenFile, 'first\n');
        const rotating = new KubeClient(connection({ token: 'ignored', tokenFile }), {
          userAgent: 'airlock-test',
        });
        handler = (_req, res) => json(res, 200, {});
        await rotating.request('GET', '/version');
        await writeFile(tokenFile, 'second');
        await rotating.request('GET', '/version');
        rotating.close();
        assert.deepEqual(
          seen.map((s) => s.headers.authorization),
          ['Bearer first', 'Bearer second'],
        );
        assert.equal(seen[0]?.headers['user-agent'], 'airlock-test');
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    });

    it('acts as another user with Impersonate-User, on the same connection and token', async () => {
      handler = (_req, res) => json(res, 200, {});
      await client.request('GET', '/version');
      const acting = client.impersonating(
        'system:serviceaccount:config-management-system:ns-reconciler-shop',
      );
      await acting.request('GET', '/version');
      acting.close();
      assert.equal(seen[0]?.headers['impersonate-user'], undefined);
      assert.equal(
        seen[1]?.headers['impersonate-user'],
        'system:serviceaccount:config-management-system:ns-reconciler-shop',
      );
      assert.equal(seen[1]?.headers.authorization, 'Bearer sekret');
    });

    it('turns an error answer into a KubeError with the Status message, reason and HTTP status', async () => {
      handler = (_req, res) =>
        json(
          res,
          403,
          statusBody(403, 'Forbidden', 'configmaps is forbidden: User "x" cannot list resource'),
        );
      await assert.rejects(client.request('GET', '/api/v1/configmaps'), (error: unknown) => {
        assert.ok(error instanceof KubeError);
        assert.equal(error.code, 'API');
        assert.equal(error.status, 403);
        assert.equal(error.reason, 'Forbidden');
        assert.equal(error.message, 'configmaps is forbidden: User "x" cannot list resource');
        return true;
      });
    });

    it('uses the body text, or the method and path, when the error is not a Status', async () => {
      handler = (_req, res) => {
        res.writeHead(502);
        res.end('  bad gateway\n');
      };
      await assert.rejects(
        client.request('GET', '/x'),
        (error: unknown) =>
          error instanceof KubeError && error.message === 'bad gateway' && error.reason === undefined,
      );
      handler = (_req, res) => {
        res.writeHead(500);
        res.end();
      };
      await assert.rejects(
        client.request('DELETE', '/y'),
        (error: unknown) =>
          error instanceof KubeError && error.message === 'DELETE /y answered 500' && error.status === 500,
      );
    });

    it('sends a JSON body with its content type and length', async () => {
      handler = (_req, res) => json(res, 201, { ok: true });
      await client.request('POST', '/api/v1/namespaces', { body: { metadata: { name: 'n' } } });
      assert.equal(seen[0]?.headers['content-type'], 'application/json');
      assert.equal(seen[0]?.headers['content-length'], String(Buffer.byteLength(seen[0]?.body ?? '')));
      assert.deepEqual(JSON.parse(seen[0]?.body ?? ''), { metadata: { name: 'n' } });
    });

    it('returns undefined for an empty success answer', async () => {
      handler = (_req, res) => {
        res.writeHead(200);
        res.end();
      };
      assert.equal(await client.request('GET', '/empty'), undefined);
    });

    it('fails with NETWORK when the server certificate is not trusted, and connects when insecure', async () => {
      const untrusting = new KubeClient(connection({ ca: Buffer.from((await createCa('other CA')).cert) }));
      await assert.rejects(
        untrusting.request('GET', '/version'),
        (error: unknown) =>
          error instanceof KubeError &&
          error.code === 'NETWORK' &&
          error.message.startsWith(`Cannot reach the API server https://127.0.0.1:${port}: `),
      );
      untrusting.close();
      const { ca: _ca, ...withoutCa } = connection();
      const insecure = new KubeClient({ ...withoutCa, insecure: true });
      handler = (_req, res) => json(res, 200, { major: '1' });
      assert.deepEqual(await insecure.request('GET', '/version'), { major: '1' });
      insecure.close();
    });

    it('fails with TIMEOUT when the server does not answer in time', async () => {
      const slow = new KubeClient(connection(), { timeoutMs: 100 });
      let stalled: ServerResponse | undefined;
      handler = (_req, res) => {
        stalled = res;
      };
      await assert.rejects(
        slow.request('GET', '/slow'),
        (error: unknown) =>
          error instanceof KubeError &&
          error.code === 'TIMEOUT' &&
          /GET \/slow timed out after 100 ms/.test(error.message),
      );
      stalled?.destroy();
      slow.close();
    });
  });

  describe('discovery', () => {
    it('finds a kind, skipping subresources, and asks discovery once per group/version', async () => {
      handler = (req, res) =>
        req.path === '/api/v1'
          ? json(res, 200, CORE_DISCOVERY)
          : json(res, 404, statusBody(404, 'NotFound', 'no'));
      assert.deepEqual(await client.findResource('v1', 'ConfigMap'), CONFIG_MAPS);
      assert.deepEqual(await client.findResource('v1', 'Namespace'), {
        group: '',
        version: 'v1',
        kind: 'Namespace',
        plural: 'namespaces',
        namespaced: false,
      });
      assert.equal(await client.findResource('v1', 'PodLogOptions'), undefined);
      assert.deepEqual(
        seen.map((s) => s.path),
        ['/api/v1', '/api/v1'],
        'cached for known kinds, asked again for the unknown one',
      );
    });

    it('asks again on a miss, so a kind served since (a new CRD) is found', async () => {
      const resources = [{ name: 'widgets', kind: 'Widget', namespaced: true }];
      handler = (req, res) =>
        req.path === '/apis/example.com/v1'
          ? json(res, 200, { resources })
          : json(res, 404, statusBody(404, 'NotFound', 'no'));
      assert.equal((await client.findResource('example.com/v1', 'Widget'))?.plural, 'widgets');
      resources.push({ name: 'gadgets', kind: 'Gadget', namespaced: false });
      assert.deepEqual(await client.findResource('example.com/v1', 'Gadget'), {
        group: 'example.com',
        version: 'v1',
        kind: 'Gadget',
        plural: 'gadgets',
        namespaced: false,
      });
      assert.equal((await client.findResource('example.com/v1', 'Widget'))?.plural, 'widgets');
      assert.equal(seen.length, 2);
    });

    it('forgets what it learnt on forgetDiscovery', async () => {
      handler = (_req, res) => json(res, 200, CORE_DISCOVERY);
      await client.findResource('v1', 'ConfigMap');
      await client.findResource('v1', 'ConfigMap');
      client.forgetDiscovery();
      await client.findResource('v1', 'ConfigMap');
      assert.equal(seen.length, 2);
    });

    it('treats a group/version the server does not serve as having no kinds', async () => {
      assert.equal(await client.findResource('example.com/v1', 'Widget'), undefined);
      assert.deepEqual(
        seen.map((s) => s.path),
        ['/apis/example.com/v1', '/apis/example.com/v1'],
      );
      await assert.rejects(
        client.resource('example.com/v1', 'Widget'),
        (error: unknown) =>
          error instanceof KubeError &&
          error.code === 'UNKNOWN_KIND' &&
          error.message === 'The API server does not serve kind "Widget" of "example.com/v1"',
      );
    });

    it('does not cache a failed discovery', async () => {
      let fail = true;
      handler = (_req, res) =>
        fail
          ? json(res, 503, statusBody(503, 'ServiceUnavailable', 'etcd down'))
          : json(res, 200, CORE_DISCOVERY);
      await assert.rejects(
        client.findResource('v1', 'ConfigMap'),
        (error: unknown) => error instanceof KubeError && error.status === 503,
      );
      fail = false;
      assert.deepEqual(await client.findResource('v1', 'ConfigMap'), CONFIG_MAPS);
    });
  });

  describe('objects', () => {
    it('builds REST paths for namespaced, cluster-scoped and grouped resources', () => {
      assert.equal(KubeClient.path(CONFIG_MAPS), '/api/v1/configmaps');
      assert.equal(
        KubeClient.path(CONFIG_MAPS, { namespace: 'a b', name: 'x/y' }),
        '/api/v1/namespaces/a%20b/configmaps/x%2Fy',
      );
      assert.equal(
        KubeClient.path(
          {
            group: 'rbac.authorization.k8s.io',
            version: 'v1',
            kind: 'ClusterRole',
            plural: 'clusterroles',
            namespaced: false,
          },
          { namespace: 'ignored', name: 'view' },
        ),
        '/apis/rbac.authorization.k8s.io/v1/clusterroles/view',
      );
    });

    it('gets an object, or undefined when it does not exist', async () => {
      handler = (req, res) =>
        req.path.endsWith('/app')
          ? json(res, 200, { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'app' } })
          : json(res, 404, statusBody(404, 'NotFound', 'configmaps "gone" not found'));
      assert.equal((await client.get(CONFIG_MAPS, { namespace: 'shop', name: 'app' }))?.metadata.name, 'app');
      assert.equal(await client.get(CONFIG_MAPS, { namespace: 'shop', name: 'gone' }), undefined);
      assert.equal(seen[1]?.path, '/api/v1/namespaces/shop/configmaps/gone');
    });

    it('does not hide other errors of get', async () => {
      handler = (_req, res) => json(res, 401, statusBody(401, 'Unauthorized', 'Unauthorized'));
      await assert.rejects(
        client.get(CONFIG_MAPS, { name: 'x', namespace: 'y' }),
        (error: unknown) => error instanceof KubeError && error.status === 401,
      );
    });

    it('lists with a label selector', async () => {
      handler = (_req, res) => json(res, 200, { kind: 'ConfigMapList', metadata: {}, items: [] });
      await client.list(CONFIG_MAPS, {
        labelSelector: 'app.kubernetes.io/managed-by=configmanagement.gke.io',
      });
      assert.equal(seen[0]?.path, '/api/v1/configmaps');
      assert.equal(
        seen[0]?.query.get('labelSelector'),
        'app.kubernetes.io/managed-by=configmanagement.gke.io',
      );
    });

    it('applies server-side: PATCH with application/apply-patch+yaml, fieldManager and force', async () => {
      handler = (req, res) => {
        if (req.path === '/api/v1') return json(res, 200, CORE_DISCOVERY);
        const object = JSON.parse(req.body) as Record<string, unknown>;
        json(res, 200, { ...object, metadata: { ...(object.metadata as object), resourceVersion: '7' } });
      };
      const object = {
        apiVersion: 'v1',
        kind: 'ConfigMap',
        metadata: { name: 'app', namespace: 'shop' },
        data: { a: '1' },
      };
      const stored = await client.apply(object, { fieldManager: 'root-reconciler' });
      assert.equal(stored.metadata.resourceVersion, '7');
      const patch = seen.find((s) => s.method === 'PATCH');
      assert.equal(patch?.path, '/api/v1/namespaces/shop/configmaps/app');
      assert.equal(patch?.headers['content-type'], 'application/apply-patch+yaml');
      assert.equal(patch?.query.get('fieldManager'), 'root-reconciler');
      assert.equal(patch?.query.get('force'), 'true');
      assert.deepEqual(JSON.parse(patch?.body ?? ''), object);

      await client.apply(object, { fieldManager: 'other', force: false });
      assert.equal(seen.at(-1)?.query.get('force'), 'false');
    });

    it('refuses to apply a kind the server does not serve, without sending it', async () => {
      await assert.rejects(
        client.apply(
          { apiVersion: 'example.com/v1', kind: 'Widget', metadata: { name: 'w' } },
          { fieldManager: 'm' },
        ),
        (error: unknown) => error instanceof KubeError && error.code === 'UNKNOWN_KIND',
      );
      assert.equal(seen.filter((s) => s.method === 'PATCH').length, 0);
    });

    it('merge-patches a subresource with application/merge-patch+json', async () => {
      handler = (_req, res) => json(res, 200, { metadata: { name: 'root-sync' } });
      const info: ResourceInfo = {
        group: 'configsync.gke.io',
        version: 'v1beta1',
        kind: 'RootSync',
        plural: 'rootsyncs',
        namespaced: true,
      };
      await client.mergePatch(
        info,
        { namespace: 'config-management-system', name: 'root-sync', subresource: 'status' },
        { status: { a: null } },
      );
      assert.equal(seen[0]?.method, 'PATCH');
      assert.equal(
        seen[0]?.path,
        '/apis/configsync.gke.io/v1beta1/namespaces/config-management-system/rootsyncs/root-sync/status',
      );
      assert.equal(seen[0]?.headers['content-type'], 'application/merge-patch+json');
      assert.deepEqual(JSON.parse(seen[0]?.body ?? ''), { status: { a: null } });
    });

    it('deletes in the background with a uid precondition; true when deleted, false when already gone', async () => {
      let exists = true;
      handler = (_req, res) => {
        if (exists) {
          exists = false;
          return json(res, 200, statusBody(200, '', 'deleted'));
        }
        json(res, 404, statusBody(404, 'NotFound', 'configmaps "app" not found'));
      };
      assert.equal(await client.delete(CONFIG_MAPS, { namespace: 'shop', name: 'app', uid: 'u-1' }), true);
      assert.equal(await client.delete(CONFIG_MAPS, { namespace: 'shop', name: 'app' }), false);
      assert.equal(seen[0]?.method, 'DELETE');
      assert.deepEqual(JSON.parse(seen[0]?.body ?? ''), {
        apiVersion: 'v1',
        kind: 'DeleteOptions',
        propagationPolicy: 'Background',
        preconditions: { uid: 'u-1' },
      });
      assert.equal((JSON.parse(seen[1]?.body ?? '') as { preconditions?: unknown }).preconditions, undefined);
    });

    it('does not hide a failed delete', async () => {
      handler = (_req, res) => json(res, 409, statusBody(409, 'Conflict', 'uid precondition failed'));
      await assert.rejects(
        client.delete(CONFIG_MAPS, { namespace: 'shop', name: 'app', uid: 'old' }),
        (error: unknown) => error instanceof KubeError && error.reason === 'Conflict',
      );
    });

    it('requests a service-account token with audiences and expiry', async () => {
      handler = (_req, res) =>
        json(res, 201, { status: { token: 'jwt', expirationTimestamp: '2030-01-01T00:00:00Z' } });
      const { token, expiresAt } = await client.createToken(
        { namespace: 'config-management-system', serviceAccount: 'root-reconciler' },
        { audiences: ['airlock'], expirationSeconds: 600 },
      );
      assert.equal(token, 'jwt');
      assert.equal(expiresAt.toISOString(), '2030-01-01T00:00:00.000Z');
      assert.equal(
        seen[0]?.path,
        '/api/v1/namespaces/config-management-system/serviceaccounts/root-reconciler/token',
      );
      assert.deepEqual((JSON.parse(seen[0]?.body ?? '') as { spec: unknown }).spec, {
        audiences: ['airlock'],
        expirationSeconds: 600,
      });
    });
  });

  describe('watch', () => {
    it('yields one event per line, across chunk boundaries, skipping blank lines', async () => {
      const events = [
        { type: 'ADDED', object: { kind: 'ConfigMap', metadata: { name: 'a', resourceVersion: '1' } } },
        { type: 'MODIFIED', object: { kind: 'ConfigMap', metadata: { name: 'a', resourceVersion: '2' } } },
        { type: 'DELETED', object: { kind: 'ConfigMap', metadata: { name: 'a', resourceVersion: '3' } } },
      ];
      handler = (_req, res) => {
        res.writeHead(200, { 'content-type': 'application/json' });
        const text = `${events.map((e) => JSON.stringify(e)).join('\n')}\n\n`;
        const cut = Math.floor(text.length / 2) + 3;
        res.write(text.slice(0, cut));
        setTimeout(() => res.end(text.slice(cut)), 20);
      };
      const got: unknown[] = [];
      for await (const event of client.watch('/api/v1/namespaces/shop/configmaps', {
        query: { resourceVersion: '0' },
      }))
        got.push(event);
      assert.deepEqual(got, events);
      assert.equal(seen[0]?.query.get('watch'), '1');
      assert.equal(seen[0]?.query.get('allowWatchBookmarks'), 'true');
      assert.equal(seen[0]?.query.get('resourceVersion'), '0');
    });

    it('yields each event as soon as its line arrives', async () => {
      let finish: (() => void) | undefined;
      handler = (_req, res) => {
        res.writeHead(200);
        res.write(`${JSON.stringify({ type: 'ADDED', object: { metadata: { name: 'first' } } })}\n`);
        finish = () => res.end();
      };
      const events = client.watch('/api/v1/configmaps');
      const first = await events.next();
      assert.equal((first.value as { object: { metadata: { name: string } } }).object.metadata.name, 'first');
      finish?.();
      assert.equal((await events.next()).done, true);
    });

    it('turns a refused watch into a KubeError', async () => {
      handler = (_req, res) => json(res, 410, statusBody(410, 'Expired', 'too old resource version: 1 (5)'));
      const events = client.watch('/api/v1/configmaps', { query: { resourceVersion: '1' } });
      await assert.rejects(
        events.next(),
        (error: unknown) =>
          error instanceof KubeError &&
          error.status === 410 &&
          error.reason === 'Expired' &&
          error.message === 'too old resource version: 1 (5)',
      );
    });
  });
});

describe('splitApiVersion', () => {
  it('splits group/version and reads a bare version as the core group', () => {
    assert.deepEqual(splitApiVersion('apps/v1'), { group: 'apps', version: 'v1' });
    assert.deepEqual(splitApiVersion('v1'), { group: '', version: 'v1' });
    assert.deepEqual(splitApiVersion('rbac.authorization.k8s.io/v1beta1'), {
      group: 'rbac.authorization.k8s.io',
      version: 'v1beta1',
    });
  });
});
