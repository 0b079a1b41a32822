// Real clients against an Airlock with access control on. Each client logs in with its own command (or,
// for ctr, passes --user), follows the 401 Bearer challenge to /auth/token, and gets exactly what its
// role binding allows: writers push and pull, readers pull and are refused pushes, robot accounts work
// like users, anonymous callers are refused private repositories but may pull public ones.
import assert from 'node:assert/strict';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it, type TestContext } from 'node:test';
import {
  AuthRegistry,
  assertOk,
  assertRefused,
  clientHome,
  startContainerd,
  type ClientHome,
  type Credentials,
} from '../helpers/auth.js';
import {
  buildSimpleImage,
  layoutEntry,
  nonce,
  readLayoutBlob,
  runTool,
  tempDirForTest,
  writeOciLayout,
  type BuiltImage,
} from '../helpers/interop.js';
import { requirePeer } from '../helpers/peers.js';
import type { CommandResult } from '../helpers/processes.js';

/** Each test stays well inside the suite's 3-minute budget; a hanging client fails instead of stalling. */
const TIMEOUT_MS = 90_000;
/** One client command. */
const COMMAND_TIMEOUT_MS = 60_000;

interface ToolOptions {
  /** A file connected to the command's stdin (a password for --password-stdin). */
  readonly stdinFile?: string;
  /** Working folder; default the client's home. */
  readonly cwd?: string;
}

type Tool = (home: ClientHome, args: readonly string[], options?: ToolOptions) => Promise<CommandResult>;

/** A peer run with one client home's environment (never the user's configuration), in that home. */
function toolFor(binary: string, prefix: readonly string[] = [], suffix: readonly string[] = []): Tool {
  return (home, args, options = {}) =>
    runTool(binary, [...prefix, ...args, ...suffix], {
      env: home.env,
      cwd: options.cwd ?? home.dir,
      timeoutMs: COMMAND_TIMEOUT_MS,
      ...(options.stdinFile === undefined ? {} : { stdinFile: options.stdinFile }),
    });
}

/** The `auth` entry a docker-style config file holds for `host`, decoded to `user:password`. */
async function storedLogin(file: string, host: string): Promise<string | undefined> {
  const config = JSON.parse(await readFile(file, 'utf8')) as { auths?: Record<string, { auth?: string }> };
  const auth = config.auths?.[host]?.auth;
  return auth === undefined ? undefined : Buffer.from(auth, 'base64').toString('utf8');
}

/** Every manifest and blob of `image` is in the OCI layout at `dir` under `tag`, byte for byte. */
async function assertLayoutHolds(dir: string, tag: string, image: BuiltImage): Promise<void> {
  assert.equal((await layoutEntry(dir, tag)).digest, image.descriptor.digest);
  assert.deepEqual(await readLayoutBlob(dir, image.descriptor.digest), image.bytes);
  for (const [digest, bytes] of image.blobs)
    assert.deepEqual(await readLayoutBlob(dir, digest), bytes, `blob ${digest}`);
}

/** An OCI layout in a temp folder holding a fresh one-layer image tagged v1. */
async function layoutWithImage(t: TestContext, prefix: string): Promise<{ dir: string; image: BuiltImage }> {
  const dir = join(await tempDirForTest(t, prefix), 'layout');
  const image = buildSimpleImage({ randomBytes: 64 * 1024 });
  await writeOciLayout(dir, { tag: 'v1', artifact: image });
  return { dir, image };
}

describe('registry clients authenticate through the token flow', () => {
  let reg: AuthRegistry;
  /** writer on team/ */
  let writer: Credentials;
  /** reader on team/ */
  let reader: Credentials;
  /** robot$ci, writer on team/ */
  let robot: Credentials;
  /** A name no account has, for refused logins (failed logins are throttled per name and address). */
  const intruder = (tool: string): Credentials => ({
    username: `intruder-${tool}`,
    password: 'not-a-password',
  });

  before(async () => {
    reg = await AuthRegistry.start();
    writer = await reg.addUser('writer', { role: 'writer', scope: 'team/' });
    reader = await reg.addUser('reader', { role: 'reader', scope: 'team/' });
    robot = await reg.addRobot('ci', { role: 'writer', scope: 'team/' });
    // The challenge points clients at the token endpoint.
    const res = await fetch(`${reg.url}/v2/team/any/manifests/v1`);
    await res.arrayBuffer();
    assert.equal(res.status, 401);
    assert.equal(
      res.headers.get('www-authenticate'),
      `Bearer realm="${reg.url}/auth/token",service="airlock",scope="repository:team/any:pull"`,
    );
  });
  after(async () => reg?.stop());

  it(
    'skopeo: login, copy in as writer and robot, copy out as reader; reader push and anonymous pull are refused',
    { timeout: TIMEOUT_MS },
    async (t) => {
      const bin = requirePeer(t, 'skopeo');
      if (!bin) return;
      const skopeo = toolFor(bin, ['--insecure-policy']);
      const login = (home: ClientHome, who: Credentials) =>
        skopeo(home, ['login', '--tls-verify=false', '-u', who.username, '-p', who.password, reg.host]);
      const { dir, image } = await layoutWithImage(t, 'auth-skopeo-');
      const remote = `docker://${reg.host}/team/skopeo/app`;
      const mark = reg.mark();

      const refused = await clientHome(t, 'skopeo-intruder');
      assertRefused(
        await login(refused, intruder('skopeo')),
        'skopeo login with a wrong password',
        /invalid username\/password|unauthorized/i,
      );

      const w = await clientHome(t, 'skopeo-writer');
      assertOk(await login(w, writer), 'skopeo login (writer)');
      assert.equal(await storedLogin(w.authFile, reg.host), `${writer.username}:${writer.password}`);
      assertOk(
        await skopeo(w, ['copy', '--dest-tls-verify=false', `oci:${dir}:v1`, `${remote}:v1`]),
        'skopeo copy in (writer)',
      );
      assert.equal(await reg.manifestDigest('team/skopeo/app', 'v1'), image.descriptor.digest);

      const r = await clientHome(t, 'skopeo-reader');
      assertOk(await login(r, reader), 'skopeo login (reader)');
      const out = join(r.dir, 'out');
      assertOk(
        await skopeo(r, ['copy', '--src-tls-verify=false', `${remote}:v1`, `oci:${out}:v1`]),
        'skopeo copy out (reader)',
      );
      await assertLayoutHolds(out, 'v1', image);
      const other = await layoutWithImage(t, 'auth-skopeo-other-');
      assertRefused(
        await skopeo(r, ['copy', '--dest-tls-verify=false', `oci:${other.dir}:v1`, `${remote}:by-reader`]),
        'skopeo copy in (reader)',
      );
      assert.equal(await reg.manifestDigest('team/skopeo/app', 'by-reader'), undefined);

      const ci = await clientHome(t, 'skopeo-robot');
      assertOk(await login(ci, robot), 'skopeo login (robot$ci)');
      assertOk(
        await skopeo(ci, [
          'copy',
          '--dest-tls-verify=false',
          `oci:${other.dir}:v1`,
          `docker://${reg.host}/team/skopeo/robot:v1`,
        ]),
        'skopeo copy in (robot)',
      );
      assert.equal(await reg.manifestDigest('team/skopeo/robot', 'v1'), other.image.descriptor.digest);
      assert.ok(
        (await reg.audit('robot:ci')).some(
          (e) => e.action === 'manifest.push' && e.target === 'team/skopeo/robot:v1',
        ),
        'the push is audited as robot:ci',
      );

      const anonymous = await clientHome(t, 'skopeo-anonymous');
      assertRefused(
        await skopeo(anonymous, [
          'copy',
          '--src-tls-verify=false',
          `${remote}:v1`,
          `oci:${join(anonymous.dir, 'out')}:v1`,
        ]),
        'skopeo anonymous copy out of a private repository',
      );
      reg.assertTokensIssued(mark, 'skopeo');
    },
  );

  it(
    'podman: login, push and pull as writer, pull as reader; reader push and anonymous pull are refused',
    { timeout: TIMEOUT_MS },
    async (t) => {
      const bin = requirePeer(t, 'podman');
      if (!bin) return;
      /** podman on its own vfs store under the client's home, with no journald or systemd needed. */
      const podman: Tool = (home, args, options) =>
        toolFor(bin, [
          '--root',
          join(home.dir, 'storage', 'root'),
          '--runroot',
          join(home.dir, 'storage', 'run'),
          '--storage-driver',
          'vfs',
          '--tmpdir',
          join(home.dir, 'tmp'),
          '--events-backend',
          'none',
          '--cgroup-manager',
          'cgroupfs',
        ])(home, args, options);
      const login = (home: ClientHome, who: Credentials) =>
        podman(home, ['login', '--tls-verify=false', '-u', who.username, '-p', who.password, reg.host]);
      // `podman pull oci:DIR` names the image after DIR, which must then be lower case (mkdtemp's is not).
      const dir = join(tmpdir(), `airlock-auth-podman-${nonce()}`);
      t.after(() => rm(dir, { recursive: true, force: true }));
      await writeOciLayout(dir, { tag: 'v1', artifact: buildSimpleImage({ randomBytes: 64 * 1024 }) });
      const remote = `${reg.host}/team/podman/app:v1`;
      const mark = reg.mark();

      const refused = await clientHome(t, 'podman-intruder');
      assertRefused(
        await login(refused, intruder('podman')),
        'podman login with a wrong password',
        /invalid username\/password|unauthorized/i,
      );

      const w = await clientHome(t, 'podman-writer');
      assertOk(await login(w, writer), 'podman login (writer)');
      assert.equal(await storedLogin(w.authFile, reg.host), `${writer.username}:${writer.password}`);
      assertOk(await podman(w, ['pull', `oci:${dir}:v1`]), 'podman pull from an OCI layout');
      const local = (await podman(w, ['images', '--format', '{{.ID}}'])).stdout.trim().split('\n')[0] ?? '';
      assert.match(local, /^[0-9a-f]{12}/);
      assertOk(await podman(w, ['tag', local, remote]), 'podman tag');
      const digestFile = join(w.dir, 'digest');
      assertOk(
        await podman(w, ['push', '--tls-verify=false', '--digestfile', digestFile, remote]),
        'podman push (writer)',
      );
      const pushed = (await readFile(digestFile, 'utf8')).trim();
      assert.equal(await reg.manifestDigest('team/podman/app', 'v1'), pushed);
      assertOk(await podman(w, ['rmi', '--force', remote]), 'podman rmi');
      assertOk(await podman(w, ['pull', '--tls-verify=false', remote]), 'podman pull (writer)');

      const r = await clientHome(t, 'podman-reader');
      assertOk(await login(r, reader), 'podman login (reader)');
      assertOk(await podman(r, ['pull', '--tls-verify=false', remote]), 'podman pull (reader)');
      const [info] = JSON.parse((await podman(r, ['image', 'inspect', remote])).stdout) as {
        Digest: string;
      }[];
      assert.equal(info?.Digest, pushed);
      assertOk(
        await podman(r, ['tag', remote, `${reg.host}/team/podman/by-reader:v1`]),
        'podman tag (reader)',
      );
      assertRefused(
        await podman(r, ['push', '--tls-verify=false', `${reg.host}/team/podman/by-reader:v1`]),
        'podman push (reader)',
      );
      assert.equal(await reg.manifestDigest('team/podman/by-reader', 'v1'), undefined);

      const anonymous = await clientHome(t, 'podman-anonymous');
      assertRefused(
        await podman(anonymous, ['pull', '--tls-verify=false', remote]),
        'podman anonymous pull of a private repository',
      );
      reg.assertTokensIssued(mark, 'podman');
    },
  );

  it(
    'crane: auth login, push/ls/pull as writer and robot$ci; reader push, robot outside its scope and anonymous pull are refused',
    { timeout: TIMEOUT_MS },
    async (t) => {
      const bin = requirePeer(t, 'crane');
      if (!bin) return;
      const crane = toolFor(bin, [], ['--insecure']);
      // `crane auth login` only writes DOCKER_CONFIG/config.json; it does not contact the registry.
      const login = (home: ClientHome, who: Credentials) =>
        toolFor(bin)(home, ['auth', 'login', reg.host, '-u', who.username, '-p', who.password]);
      const { dir, image } = await layoutWithImage(t, 'auth-crane-');
      const repo = `${reg.host}/team/crane/app`;
      const mark = reg.mark();

      const w = await clientHome(t, 'crane-writer');
      assertOk(await login(w, writer), 'crane auth login (writer)');
      assert.equal(await storedLogin(w.dockerConfig, reg.host), `${writer.username}:${writer.password}`);
      assertOk(await crane(w, ['push', dir, `${repo}:v1`]), 'crane push (writer)');
      assert.equal(await reg.manifestDigest('team/crane/app', 'v1'), image.descriptor.digest);
      assert.equal((await crane(w, ['ls', repo])).stdout.trim(), 'v1');
      const out = join(w.dir, 'out');
      assertOk(await crane(w, ['pull', '--format', 'oci', `${repo}:v1`, out]), 'crane pull (writer)');
      assert.deepEqual(await readLayoutBlob(out, image.descriptor.digest), image.bytes);

      const r = await clientHome(t, 'crane-reader');
      assertOk(await login(r, reader), 'crane auth login (reader)');
      assert.equal((await crane(r, ['digest', `${repo}:v1`])).stdout.trim(), image.descriptor.digest);
      const other = await layoutWithImage(t, 'auth-crane-other-');
      assertRefused(await crane(r, ['push', other.dir, `${repo}:by-reader`]), 'crane push (reader)');
      assert.equal(await reg.manifestDigest('team/crane/app', 'by-reader'), undefined);

      const ci = await clientHome(t, 'crane-robot');
      assertOk(await login(ci, robot), 'crane auth login (robot$ci)');
      assert.equal(await storedLogin(ci.dockerConfig, reg.host), `robot$ci:${robot.password}`);
      assertOk(await crane(ci, ['push', other.dir, `${reg.host}/team/crane/robot:v1`]), 'crane push (robot)');
      assertOk(
        await crane(ci, ['copy', `${repo}:v1`, `${reg.host}/team/crane/robot:copy`]),
        'crane copy (robot)',
      );
      assert.deepEqual(
        (await crane(ci, ['ls', `${reg.host}/team/crane/robot`])).stdout.trim().split('\n').sort(),
        ['copy', 'v1'],
      );
      assert.equal(await reg.manifestDigest('team/crane/robot', 'copy'), image.descriptor.digest);
      assertRefused(
        await crane(ci, ['push', other.dir, `${reg.host}/elsewhere/robot:v1`]),
        'crane push outside the robot scope',
      );
      const audit = await reg.audit('robot:ci');
      assert.ok(
        audit.some((e) => e.action === 'manifest.push' && e.target === 'team/crane/robot:v1'),
        JSON.stringify(audit),
      );

      const anonymous = await clientHome(t, 'crane-anonymous');
      assertRefused(
        await crane(anonymous, ['pull', '--format', 'oci', `${repo}:v1`, join(anonymous.dir, 'out')]),
        'crane anonymous pull',
      );
      assertRefused(await crane(anonymous, ['ls', repo]), 'crane anonymous ls');
      reg.assertTokensIssued(mark, 'crane');
    },
  );

  it(
    'oras: login --password-stdin, push/attach/discover/pull as writer, pull and discover as reader; reader push and anonymous pull are refused',
    { timeout: TIMEOUT_MS },
    async (t) => {
      const bin = requirePeer(t, 'oras');
      if (!bin) return;
      const oras = toolFor(bin);
      const login = async (home: ClientHome, who: Credentials) =>
        oras(home, ['login', '--plain-http', '-u', who.username, '--password-stdin', reg.host], {
          stdinFile: await home.secretFile(`${who.password}\n`),
        });
      const ref = `${reg.host}/team/oras/files:v1`;
      const notes = `release notes ${nonce()}\n`;
      const mark = reg.mark();

      const refused = await clientHome(t, 'oras-intruder');
      assertRefused(await login(refused, intruder('oras')), 'oras login with a wrong password');

      const w = await clientHome(t, 'oras-writer');
      assertOk(await login(w, writer), 'oras login (writer)');
      assert.equal(await storedLogin(w.dockerConfig, reg.host), `${writer.username}:${writer.password}`);
      await writeFile(join(w.dir, 'notes.txt'), notes);
      await writeFile(join(w.dir, 'sig.txt'), `signature ${nonce()}\n`);
      // oras reads the files to push relative to its working folder: the client's home.
      const pushed = await oras(w, [
        'push',
        '--plain-http',
        '--no-tty',
        '--artifact-type',
        'application/vnd.example.bundle',
        ref,
        'notes.txt:text/plain',
      ]);
      assertOk(pushed, 'oras push (writer)');
      const digest = await reg.manifestDigest('team/oras/files', 'v1');
      assert.ok(digest);
      assertOk(
        await oras(w, [
          'attach',
          '--plain-http',
          '--no-tty',
          '--artifact-type',
          'application/vnd.example.signature',
          ref,
          'sig.txt',
        ]),
        'oras attach (writer)',
      );
      const discover = async (home: ClientHome) => {
        const result = await oras(home, ['discover', '--plain-http', '--format', 'json', ref]);
        assertOk(result, 'oras discover');
        return (JSON.parse(result.stdout) as { manifests: { artifactType?: string }[] }).manifests.map(
          (m) => m.artifactType,
        );
      };
      assert.deepEqual(await discover(w), ['application/vnd.example.signature']);

      const r = await clientHome(t, 'oras-reader');
      assertOk(await login(r, reader), 'oras login (reader)');
      const out = join(r.dir, 'out');
      assertOk(
        await oras(r, ['pull', '--plain-http', '--no-tty', '--output', out, ref]),
        'oras pull (reader)',
      );
      assert.equal(await readFile(join(out, 'notes.txt'), 'utf8'), notes);
      assert.deepEqual(await discover(r), ['application/vnd.example.signature']);
      await writeFile(join(r.dir, 'mine.txt'), `reader ${nonce()}\n`);
      assertRefused(
        await oras(r, [
          'push',
          '--plain-http',
          '--no-tty',
          `${reg.host}/team/oras/files:by-reader`,
          'mine.txt',
        ]),
        'oras push (reader)',
      );
      assertRefused(
        await oras(r, [
          'attach',
          '--plain-http',
          '--no-tty',
          '--artifact-type',
          'application/vnd.example.note',
          ref,
          'mine.txt',
        ]),
        'oras attach (reader)',
      );
      assert.equal(await reg.manifestDigest('team/oras/files', 'by-reader'), undefined);

      const anonymous = await clientHome(t, 'oras-anonymous');
      assertRefused(
        await oras(anonymous, [
          'pull',
          '--plain-http',
          '--no-tty',
          '--output',
          join(anonymous.dir, 'out'),
          ref,
        ]),
        'oras anonymous pull',
      );
      reg.assertTokensIssued(mark, 'oras');
    },
  );

  it(
    'regctl: registry login, image copy and tag ls as writer, tag ls as reader; reader copy and anonymous reads are refused',
    { timeout: TIMEOUT_MS },
    async (t) => {
      const bin = requirePeer(t, 'regctl');
      if (!bin) return;
      const regctl = toolFor(bin);
      // --skip-check: regctl pings /v2/ anonymously here, which an auth-enabled Airlock refuses.
      const setup = async (home: ClientHome) =>
        assertOk(
          await regctl(home, ['registry', 'set', '--tls', 'disabled', '--skip-check', reg.host]),
          'regctl registry set',
        );
      const login = async (home: ClientHome, who: Credentials) =>
        regctl(home, ['registry', 'login', '-u', who.username, '--pass-stdin', reg.host], {
          stdinFile: await home.secretFile(who.password),
        });
      const { dir, image } = await layoutWithImage(t, 'auth-regctl-');
      const repo = `${reg.host}/team/regctl/app`;
      const mark = reg.mark();

      const refused = await clientHome(t, 'regctl-intruder');
      await setup(refused);
      assertRefused(await login(refused, intruder('regctl')), 'regctl registry login with a wrong password');

      const w = await clientHome(t, 'regctl-writer');
      await setup(w);
      assertOk(await login(w, writer), 'regctl registry login (writer)');
      const config = JSON.parse(await readFile(w.regctlConfig, 'utf8')) as {
        hosts?: Record<string, { user?: string; tls?: string }>;
      };
      assert.equal(config.hosts?.[reg.host]?.user, writer.username);
      assert.equal(config.hosts?.[reg.host]?.tls, 'disabled');
      assertOk(
        await regctl(w, ['image', 'copy', `ocidir://${dir}:v1`, `${repo}:v1`]),
        'regctl image copy in (writer)',
      );
      assert.equal(await reg.manifestDigest('team/regctl/app', 'v1'), image.descriptor.digest);
      assertOk(await regctl(w, ['image', 'copy', `${repo}:v1`, `${repo}:v2`]), 'regctl image copy (writer)');
      assert.deepEqual((await regctl(w, ['tag', 'ls', repo])).stdout.trim().split('\n'), ['v1', 'v2']);

      const r = await clientHome(t, 'regctl-reader');
      await setup(r);
      assertOk(await login(r, reader), 'regctl registry login (reader)');
      assert.deepEqual((await regctl(r, ['tag', 'ls', repo])).stdout.trim().split('\n'), ['v1', 'v2']);
      assert.equal(
        (await regctl(r, ['image', 'digest', `${repo}:v1`])).stdout.trim(),
        image.descriptor.digest,
      );
      assertRefused(
        await regctl(r, ['image', 'copy', `${repo}:v1`, `${repo}:by-reader`]),
        'regctl image copy (reader)',
      );
      assert.equal(await reg.manifestDigest('team/regctl/app', 'by-reader'), undefined);

      const anonymous = await clientHome(t, 'regctl-anonymous');
      await setup(anonymous);
      assertRefused(await regctl(anonymous, ['tag', 'ls', repo]), 'regctl anonymous tag ls');
      assertRefused(
        await regctl(anonymous, ['image', 'copy', `${repo}:v1`, `ocidir://${join(anonymous.dir, 'out')}:v1`]),
        'regctl anonymous image copy',
      );
      reg.assertTokensIssued(mark, 'regctl');
    },
  );

  it(
    'containerd: ctr pull --user as writer and robot$ci, push as writer; reader push, wrong password and anonymous pull are refused',
    { timeout: TIMEOUT_MS },
    async (t) => {
      const containerd = requirePeer(t, 'containerd');
      const ctrBin = requirePeer(t, 'ctr');
      if (!containerd || !ctrBin) return;
      const ctr = await startContainerd(t, { containerd, ctr: ctrBin });
      const image = buildSimpleImage({ randomBytes: 32 * 1024 });
      await reg.push({ repository: 'team/ctr/app', tag: 'v1' }, image);
      const ref = `${reg.host}/team/ctr/app:v1`;
      const user = (who: Credentials) => ['--user', `${who.username}:${who.password}`];
      const pull = (who: Credentials | undefined) =>
        ctr(['images', 'pull', '--plain-http', '--snapshotter', 'native', ...(who ? user(who) : []), ref]);
      const mark = reg.mark();

      assertRefused(
        await pull(undefined),
        'ctr anonymous pull of a private repository',
        /denied|unauthorized|insufficient_scope/i,
      );
      assertRefused(await pull(intruder('ctr')), 'ctr pull with a wrong password', /401 unauthorized/i);
      assertRefused(
        await pull({ ...writer, password: 'wrong-password' }),
        'ctr pull with the writer name and a wrong password',
        /401 unauthorized/i,
      );

      const pulled = await pull(writer);
      assertOk(pulled, 'ctr pull (writer)');
      assert.match(pulled.stdout, new RegExp(`unpacking linux/amd64 ${image.descriptor.digest}`));
      for (const [digest, bytes] of image.blobs)
        assert.ok((await ctr.content(digest)).equals(bytes), `content ${digest}`);
      assertOk(await ctr(['images', 'rm', ref]), 'ctr images rm');
      assertOk(await ctr(['content', 'rm', image.descriptor.digest]), 'ctr content rm');
      assertOk(await pull(robot), 'ctr pull (robot$ci)');
      assert.ok((await ctr.content(image.descriptor.digest)).equals(image.bytes));

      const copy = `${reg.host}/team/ctr/copy:v1`;
      assertOk(await ctr(['images', 'tag', ref, copy]), 'ctr images tag');
      // containerd's refusal of a push names the token's scope, not "denied".
      assertRefused(
        await ctr(['images', 'push', '--plain-http', ...user(reader), copy]),
        'ctr push (reader)',
        /insufficient_scope|denied|unauthorized/i,
      );
      assert.equal(await reg.manifestDigest('team/ctr/copy', 'v1'), undefined);
      assertOk(await ctr(['images', 'push', '--plain-http', ...user(writer), copy]), 'ctr push (writer)');
      assert.equal(await reg.manifestDigest('team/ctr/copy', 'v1'), image.descriptor.digest);
      reg.assertTokensIssued(mark, 'ctr');
      assert.ok(
        reg.requestsSince(mark).some((r) => r.method === 'POST' && r.route === 'token' && r.status === 200),
        'containerd used the OAuth2 password grant (POST /auth/token)',
      );
    },
  );

  it(
    'a public repository is pullable anonymously by crane and skopeo, and still refuses anonymous pushes',
    { timeout: TIMEOUT_MS },
    async (t) => {
      const craneBin = requirePeer(t, 'crane');
      const skopeoBin = requirePeer(t, 'skopeo');
      if (!craneBin || !skopeoBin) return;
      const crane = toolFor(craneBin, [], ['--insecure']);
      const skopeo = toolFor(skopeoBin, ['--insecure-policy']);
      await reg.addPublicRepository('open/pub');
      const image = buildSimpleImage({ randomBytes: 32 * 1024 });
      await reg.push({ repository: 'open/pub', tag: 'v1' }, image);
      await reg.push({ repository: 'team/private', tag: 'v1' }, buildSimpleImage());
      const repo = `${reg.host}/open/pub`;
      const anonymous = await clientHome(t, 'public-anonymous');
      const mark = reg.mark();

      assert.equal((await crane(anonymous, ['digest', `${repo}:v1`])).stdout.trim(), image.descriptor.digest);
      assert.equal((await crane(anonymous, ['ls', repo])).stdout.trim(), 'v1');
      const craneOut = join(anonymous.dir, 'crane-out');
      assertOk(
        await crane(anonymous, ['pull', '--format', 'oci', `${repo}:v1`, craneOut]),
        'crane anonymous pull of a public repository',
      );
      assert.deepEqual(await readLayoutBlob(craneOut, image.descriptor.digest), image.bytes);

      const skopeoOut = join(anonymous.dir, 'skopeo-out');
      assertOk(
        await skopeo(anonymous, [
          'copy',
          '--src-tls-verify=false',
          `docker://${repo}:v1`,
          `oci:${skopeoOut}:v1`,
        ]),
        'skopeo anonymous copy out of a public repository',
      );
      await assertLayoutHolds(skopeoOut, 'v1', image);
      reg.assertTokensIssued(mark, 'anonymous pull of a public repository');

      // Public means readable, not writable; and other repositories stay private.
      const other = await layoutWithImage(t, 'auth-public-');
      assertRefused(
        await crane(anonymous, ['push', other.dir, `${repo}:anonymous`]),
        'crane anonymous push to a public repository',
      );
      assertRefused(
        await skopeo(anonymous, [
          'copy',
          '--dest-tls-verify=false',
          `oci:${other.dir}:v1`,
          `docker://${repo}:anonymous`,
        ]),
        'skopeo anonymous copy into a public repository',
      );
      assert.equal(await reg.manifestDigest('open/pub', 'anonymous'), undefined);
      assertRefused(
        await crane(anonymous, ['digest', `${reg.host}/team/private:v1`]),
        'crane anonymous pull of a private repository',
      );
      assertRefused(
        await skopeo(anonymous, ['inspect', '--tls-verify=false', `docker://${reg.host}/team/private:v1`]),
        'skopeo anonymous inspect of a private repository',
      );
    },
  );
});
