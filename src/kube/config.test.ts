import { describe, it, beforeEach, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { loadKubeConfig, listContexts } from './config.js';
import { KubeError } from './errors.js';

const b64 = (text: string): string => Buffer.from(text).toString('base64');

/** A kubeconfig with one cluster, user and context per entry of `contexts`. */
function kubeconfig(options: {
  current?: string;
  clusters?: Record<string, Record<string, unknown>>;
  users?: Record<string, Record<string, unknown>>;
  contexts?: Record<string, Record<string, unknown>>;
}): string {
  return stringify({
    apiVersion: 'v1',
    kind: 'Config',
    ...(options.current ? { 'current-context': options.current } : {}),
    clusters: Object.entries(options.clusters ?? {}).map(([name, cluster]) => ({ name, cluster })),
    users: Object.entries(options.users ?? {}).map(([name, user]) => ({ name, user })),
    contexts: Object.entries(options.contexts ?? {}).map(([name, context]) => ({ name, context })),
  });
}

function configError(pattern: RegExp): (error: unknown) => boolean {
  return (error: unknown) => {
    assert.ok(error instanceof KubeError, `expected a KubeError, got ${String(error)}`);
    assert.equal(error.code, 'CONFIG');
    assert.match(error.message, pattern);
    return true;
  };
}

describe('loadKubeConfig', () => {
  let dir: string;
  let path: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'airlock-kubeconfig-'));
    path = join(dir, 'config');
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  it("reads the current context's server, namespace and token", async () => {
    await writeFile(
      path,
      kubeconfig({
        current: 'dev',
        clusters: { c: { server: 'https://10.0.0.1:6443/' } },
        users: { u: { token: 'secret-token' } },
        contexts: { dev: { cluster: 'c', user: 'u', namespace: 'shop' } },
      }),
    );
    assert.deepEqual(loadKubeConfig({ kubeconfig: path }), {
      server: 'https://10.0.0.1:6443',
      context: 'dev',
      namespace: 'shop',
      token: 'secret-token',
    });
  });

  it('defaults the namespace to "default" and allows a context without a user', async () => {
    await writeFile(
      path,
      kubeconfig({
        current: 'anon',
        clusters: { c: { server: 'https://k' } },
        contexts: { anon: { cluster: 'c' } },
      }),
    );
    assert.deepEqual(loadKubeConfig({ kubeconfig: path }), {
      server: 'https://k',
      context: 'anon',
      namespace: 'default',
    });
  });

  it('resolves a relative tokenFile against the kubeconfig folder and keeps an absolute one', async () => {
    const config = (tokenFile: string): string =>
      kubeconfig({
        current: 'x',
        clusters: { c: { server: 'https://k' } },
        users: { u: { tokenFile } },
        contexts: { x: { cluster: 'c', user: 'u' } },
      });
    await writeFile(path, config('tokens/sa.token'));
    assert.equal(loadKubeConfig({ kubeconfig: path }).tokenFile, join(dir, 'tokens', 'sa.token'));
    await writeFile(path, config('/var/run/token'));
    assert.equal(loadKubeConfig({ kubeconfig: path }).tokenFile, '/var/run/token');
  });

  it('decodes client certificate and key data and reads the CA file relative to the kubeconfig', async () => {
    await mkdir(join(dir, 'pki'));
    await writeFile(join(dir, 'pki', 'ca.crt'), 'CA PEM');
    await writeFile(
      path,
      kubeconfig({
        current: 'x',
        clusters: { c: { server: 'https://k', 'certificate-authority': 'pki/ca.crt' } },
        users: { u: { 'client-certificate-data': b64('CERT PEM'), 'client-key-data': b64('KEY PEM') } },
        contexts: { x: { cluster: 'c', user: 'u' } },
      }),
    );
    const connection = loadKubeConfig({ kubeconfig: path });
    assert.equal(connection.ca?.toString(), 'CA PEM');
    assert.equal(connection.cert?.toString(), 'CERT PEM');
    assert.equal(connection.key?.toString(), 'KEY PEM');
    assert.equal(connection.insecure, undefined);
  });

  it('prefers certificate-authority-data to the file and reads client certificate files', async () => {
    await writeFile(join(dir, 'client.crt'), 'CERT FILE');
    await writeFile(join(dir, 'client.key'), 'KEY FILE');
    await writeFile(
      path,
      kubeconfig({
        current: 'x',
        clusters: {
          c: {
            server: 'https://k',
            'certificate-authority': 'missing.crt',
            'certificate-authority-data': b64('CA DATA'),
          },
        },
        users: { u: { 'client-certificate': join(dir, 'client.crt'), 'client-key': 'client.key' } },
        contexts: { x: { cluster: 'c', user: 'u' } },
      }),
    );
    const connection = loadKubeConfig({ kubeconfig: path });
    assert.equal(connection.ca?.toString(), 'CA DATA');
    assert.equal(connection.cert?.toString(), 'CERT FILE');
    assert.equal(connection.key?.toString(), 'KEY FILE');
  });

  it('fails naming the file when a named certificate file cannot be read', async () => {
    await writeFile(
      path,
      kubeconfig({
        current: 'x',
        clusters: { c: { server: 'https://k', 'certificate-authority': 'nope/ca.crt' } },
        contexts: { x: { cluster: 'c' } },
      }),
    );
    assert.throws(
      () => loadKubeConfig({ kubeconfig: path }),
      configError(new RegExp(`^Cannot read "${join(dir, 'nope', 'ca.crt')}" named by kubeconfig`)),
    );
  });

  it('honours insecure-skip-tls-verify', async () => {
    await writeFile(
      path,
      kubeconfig({
        current: 'x',
        clusters: { c: { server: 'https://k', 'insecure-skip-tls-verify': true } },
        contexts: { x: { cluster: 'c' } },
      }),
    );
    assert.equal(loadKubeConfig({ kubeconfig: path }).insecure, true);
  });

  it('uses an explicit context instead of the current one', async () => {
    await writeFile(
      path,
      kubeconfig({
        current: 'a',
        clusters: { ca: { server: 'https://a' }, cb: { server: 'https://b' } },
        users: { ua: { token: 'ta' }, ub: { token: 'tb' } },
        contexts: { a: { cluster: 'ca', user: 'ua' }, b: { cluster: 'cb', user: 'ub' } },
      }),
    );
    const connection = loadKubeConfig({ kubeconfig: path, context: 'b' });
    assert.equal(connection.context, 'b');
    assert.equal(connection.server, 'https://b');
    assert.equal(connection.token, 'tb');
  });

  it('names the file and context when the context does not exist', async () => {
    await writeFile(
      path,
      kubeconfig({
        current: 'a',
        clusters: { c: { server: 'https://k' } },
        contexts: { a: { cluster: 'c' } },
      }),
    );
    assert.throws(
      () => loadKubeConfig({ kubeconfig: path, context: 'prod' }),
      configError(new RegExp(`^Kubeconfig "${path}" has no context "prod"$`)),
    );
  });

  it('names a missing cluster or user, a context without cluster and a cluster without server', async () => {
    const cases: [Parameters<typeof kubeconfig>[0], RegExp][] = [
      [{ current: 'x', contexts: { x: { cluster: 'gone' } } }, /has no cluster "gone"$/],
      [
        {
          current: 'x',
          clusters: { c: { server: 'https://k' } },
          contexts: { x: { cluster: 'c', user: 'who' } },
        },
        /has no user "who"$/,
      ],
      [{ current: 'x', contexts: { x: { user: 'u' } } }, /^Context "x" in ".*" names no cluster$/],
      [
        { current: 'x', clusters: { c: {} }, contexts: { x: { cluster: 'c' } } },
        /^Cluster "c" in ".*" has no server$/,
      ],
    ];
    for (const [config, message] of cases) {
      await writeFile(path, kubeconfig(config));
      assert.throws(() => loadKubeConfig({ kubeconfig: path }), configError(message));
    }
  });

  it('refuses exec and auth-provider plugins with a message saying what to use instead', async () => {
    for (const user of [
      { exec: { apiVersion: 'client.authentication.k8s.io/v1', command: 'gke-gcloud-auth-plugin' } },
      { 'auth-provider': { name: 'oidc' } },
    ]) {
      await writeFile(
        path,
        kubeconfig({
          current: 'x',
          clusters: { c: { server: 'https://k' } },
          users: { gke: user },
          contexts: { x: { cluster: 'c', user: 'gke' } },
        }),
      );
      assert.throws(
        () => loadKubeConfig({ kubeconfig: path }),
        configError(
          /^User "gke" in ".*" uses an exec or auth-provider plugin, which airlock does not run; use a token or client certificate$/,
        ),
      );
    }
  });

  it('asks for --context when the file has no current-context', async () => {
    await writeFile(
      path,
      kubeconfig({ clusters: { c: { server: 'https://k' } }, contexts: { x: { cluster: 'c' } } }),
    );
    assert.throws(
      () => loadKubeConfig({ kubeconfig: path }),
      configError(new RegExp(`^Kubeconfig "${path}" has no current-context; pass --context$`)),
    );
    assert.equal(loadKubeConfig({ kubeconfig: path, context: 'x' }).server, 'https://k');
  });

  it('fails clearly on a missing, unparsable or non-map file', async () => {
    assert.throws(
      () => loadKubeConfig({ kubeconfig: join(dir, 'absent') }),
      configError(/^Cannot read kubeconfig ".*absent"/),
    );
    await writeFile(path, 'clusters: [\n');
    assert.throws(() => loadKubeConfig({ kubeconfig: path }), configError(/^Cannot parse kubeconfig/));
    await writeFile(path, 'just text\n');
    assert.throws(() => loadKubeConfig({ kubeconfig: path }), configError(/is not a YAML map$/));
  });

  it('rejects a kubeconfig that is a YAML list as not a map', async () => {
    await writeFile(path, '- a\n');
    assert.throws(() => loadKubeConfig({ kubeconfig: path }), configError(/is not a YAML map$/));
  });

  describe('without --kubeconfig', () => {
    const saved = {
      KUBECONFIG: process.env.KUBECONFIG,
      HOME: process.env.HOME,
      KUBERNETES_SERVICE_HOST: process.env.KUBERNETES_SERVICE_HOST,
    };
    afterEach(() => {
      for (const [key, value] of Object.entries(saved)) {
        if (value === undefined) delete process.env[key];
        else process.env[key] = value;
      }
    });

    it('takes the first existing file of $KUBECONFIG', async () => {
      await writeFile(
        path,
        kubeconfig({
          current: 'x',
          clusters: { c: { server: 'https://env' } },
          contexts: { x: { cluster: 'c' } },
        }),
      );
      process.env.KUBECONFIG = `${join(dir, 'missing')}:${path}`;
      assert.equal(loadKubeConfig().server, 'https://env');
      assert.deepEqual(listContexts(), { contexts: ['x'], current: 'x' });
    });

    it('says how to point at a cluster when there is no kubeconfig and no in-cluster account', () => {
      process.env.KUBECONFIG = join(dir, 'missing');
      process.env.HOME = dir;
      delete process.env.KUBERNETES_SERVICE_HOST;
      assert.throws(
        () => loadKubeConfig(),
        configError(/^No kubeconfig found: pass --kubeconfig, set KUBECONFIG or run inside a cluster$/),
      );
      assert.deepEqual(listContexts(), { contexts: [], current: undefined });
    });
  });
});

describe('listContexts', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'airlock-kubeconfig-'));
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  it('lists the context names and the current one', async () => {
    const path = join(dir, 'config');
    await writeFile(
      path,
      kubeconfig({
        current: 'b',
        contexts: { a: { cluster: 'x' }, b: { cluster: 'y' }, c: { cluster: 'z' } },
      }),
    );
    assert.deepEqual(listContexts({ kubeconfig: path }), { contexts: ['a', 'b', 'c'], current: 'b' });
  });

  it('is empty for a file without contexts', async () => {
    const path = join(dir, 'config');
    await writeFile(path, 'apiVersion: v1\nkind: Config\n');
    assert.deepEqual(listContexts({ kubeconfig: path }), { contexts: [], current: undefined });
  });
});
