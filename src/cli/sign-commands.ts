import type { Command } from 'commander';
import { access, chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { RegistryClient } from '../client/index.js';
import { createLogger, LOG_LEVELS } from '../log/index.js';
import {
  generateKeyPair,
  loadPrivateKey,
  loadPublicKeys,
  signImage,
  verifyImage,
  type PublicKey,
} from '../sign/index.js';
import { imageVerifier, startWebhookServer, webhookManifests } from '../sync/webhook/index.js';
import {
  clientFor,
  outputFor,
  parseRef,
  UsageError,
  logLevelFlag,
  annotationsFrom,
  collect,
  withClient,
  withClientOptions,
  type ClientFlags,
} from './common.js';
import { counted } from './output.js';

async function exists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch {
    return false;
  }
}

/** Reads a line from the terminal without echoing it. */
function promptHidden(prompt: string): Promise<string> {
  return new Promise((resolvePassword, reject) => {
    const stdin = process.stdin;
    let value = '';
    const finish = (): void => {
      stdin.off('data', onData);
      stdin.setRawMode(false);
      stdin.pause();
      process.stderr.write('\n');
    };
    function onData(chunk: string): void {
      for (const ch of chunk) {
        if (ch === '\r' || ch === '\n') {
          finish();
          resolvePassword(value);
          return;
        }
        if (ch === '\u0003') {
          finish();
          reject(new UsageError('Cancelled'));
          return;
        }
        value = ch === '\u007f' || ch === '\b' ? value.slice(0, -1) : value + ch;
      }
    }
    process.stderr.write(prompt);
    stdin.setEncoding('utf8');
    stdin.setRawMode(true);
    stdin.resume();
    stdin.on('data', onData);
  });
}

/** The key password: COSIGN_PASSWORD (as cosign reads it), else asked on the terminal. */
async function keyPassword(confirm: boolean): Promise<string> {
  const fromEnv = process.env.COSIGN_PASSWORD;
  if (fromEnv !== undefined) return fromEnv;
  if (!process.stdin.isTTY)
    throw new UsageError('No password for the private key: set COSIGN_PASSWORD or run on a terminal');
  const first = await promptHidden('Enter password for private key: ');
  if (!confirm) return first;
  const second = await promptHidden('Enter password for private key again: ');
  if (first !== second) throw new UsageError('The two passwords do not match');
  return first;
}

async function readKeyFile(path: string, flag: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (error) {
    throw new UsageError(`Cannot read ${flag} "${path}": ${(error as Error).message}`);
  }
}

async function publicKeysFrom(paths: readonly string[]): Promise<PublicKey[]> {
  if (paths.length === 0) throw new UsageError('Name at least one --key (a cosign.pub file)');
  const keys: PublicKey[] = [];
  for (const path of paths) keys.push(...loadPublicKeys(await readKeyFile(path, '--key')));
  return keys;
}

/** Where the webhook listens: the registry's HOST:PORT parser, with an empty host meaning every interface. */
async function listenAddress(addr: string): Promise<{ host: string; port: number }> {
  const { parseAddr } = await import('../registry/index.js');
  try {
    const { host, port } = parseAddr(addr);
    return { host: host || '0.0.0.0', port };
  } catch (error) {
    throw new UsageError(`--addr "${addr}" must be HOST:PORT`, { cause: error });
  }
}

interface SignFlags extends ClientFlags {
  key?: string;
  annotation: string[];
  recursive?: boolean;
}

interface VerifyFlags extends ClientFlags {
  key: string[];
  ignoreReference?: boolean;
}

interface WebhookFlags extends ClientFlags {
  tlsCert?: string;
  tlsKey?: string;
  key: string[];
  addr: string;
  ignoreReference?: boolean;
  logLevel: string;
}

interface ManifestFlags {
  namespace: string;
  image: string;
  caBundleFile?: string;
  certsDir: string;
  serviceName: string;
  webhookName: string;
  registrySecret?: string;
  arg: string[];
}

/** The CA for the webhook's caBundle: a given file, else the one in --certs-dir (made with a serving certificate when missing). */
async function webhookCa(flags: ManifestFlags): Promise<{ caPem: string; note: string }> {
  if (flags.caBundleFile)
    return { caPem: await readKeyFile(flags.caBundleFile, '--ca-bundle-file'), note: '' };
  const dir = resolve(flags.certsDir);
  const files = { ca: join(dir, 'ca.pem'), caKey: join(dir, 'ca-key.pem') };
  const cert = join(dir, 'server.pem');
  const key = join(dir, 'server-key.pem');
  if (!(await exists(cert)) || !(await exists(files.ca))) {
    const { createCa, createServerCertificate } = await import('../pki/index.js');
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const ca = (await exists(files.ca))
      ? { cert: await readFile(files.ca, 'utf8'), key: await readFile(files.caKey, 'utf8') }
      : await createCa('Airlock webhook CA');
    const svc = `${flags.serviceName}.${flags.namespace}`;
    const server = await createServerCertificate(ca, [
      `${svc}.svc`,
      flags.serviceName,
      svc,
      `${svc}.svc.cluster.local`,
    ]);
    for (const [path, text, mode] of [
      [files.caKey, ca.key, 0o600],
      [files.ca, ca.cert, 0o644],
      [key, server.key, 0o600],
      [cert, server.cert, 0o644],
    ] as const) {
      await writeFile(path, text, { mode });
      await chmod(path, mode);
    }
  }
  return {
    caPem: await readFile(files.ca, 'utf8'),
    note: `Serving certificate: kubectl create secret tls webhook-tls --cert=${cert} --key=${key} -n ${flags.namespace}`,
  };
}

/** `generate-key-pair`, `sign`, `verify` and `webhook` (cosign-compatible signing and its admission webhook). */
export function registerSignCommands(program: Command): void {
  program
    .command('generate-key-pair')
    .description('Write a cosign-compatible key pair: PREFIX.key (encrypted) and PREFIX.pub')
    .option('--output-key-prefix <prefix>', 'file name prefix', 'cosign')
    .option('--force', 'overwrite existing files')
    .option('-o, --output <format>', 'text or json', 'text')
    .action(async (flags: { outputKeyPrefix: string; force?: boolean; output: string }) => {
      const out = outputFor({ output: flags.output });
      const keyPath = `${flags.outputKeyPrefix}.key`;
      const pubPath = `${flags.outputKeyPrefix}.pub`;
      for (const path of [keyPath, pubPath]) {
        if (!flags.force && (await exists(path)))
          throw new Error(`"${path}" already exists; pass --force to overwrite it`);
      }
      const pair = await generateKeyPair(await keyPassword(true));
      await writeFile(keyPath, pair.privatePem, { mode: 0o600 });
      await chmod(keyPath, 0o600);
      await writeFile(pubPath, pair.publicPem, { mode: 0o644 });
      out.result(`Private key written to ${keyPath}\nPublic key written to ${pubPath}`, {
        privateKey: resolve(keyPath),
        publicKey: resolve(pubPath),
      });
    });

  withClientOptions(
    program
      .command('sign')
      .argument('<reference>', 'image to sign: HOST/REPO:TAG or HOST/REPO@DIGEST')
      .description('Sign an image with a cosign key; the signature goes to its sha256-<hex>.sig tag')
      .option('--key <file>', 'cosign private key (password from COSIGN_PASSWORD or a prompt)')
      .option('-a, --annotation <key=value>', 'extra claim in the signed payload (repeatable)', collect, [])
      .option('--recursive', 'for an index, also sign each manifest it lists'),
  ).action(async (text: string, flags: SignFlags) => {
    const out = outputFor(flags);
    if (!flags.key) throw new UsageError('Name the private key with --key (for example cosign.key)');
    const ref = parseRef(text);
    const annotations = annotationsFrom(flags.annotation);
    const pem = await readKeyFile(flags.key, '--key');
    const key = await loadPrivateKey(pem, await keyPassword(false));
    const signed = await withClient(ref.registry, flags, (client) =>
      signImage(client, ref, { key, annotations, ...(flags.recursive ? { recursive: true } : {}) }),
    );
    out.result(
      signed
        .map((s) =>
          s.added
            ? `Signed ${s.reference} (signature in ${s.signatureTag})`
            : `Already signed with this key: ${s.reference}`,
        )
        .join('\n'),
      signed,
    );
  });

  withClientOptions(
    program
      .command('verify')
      .argument('<reference>', 'image to verify: HOST/REPO:TAG or HOST/REPO@DIGEST')
      .description(
        "Verify an image's cosign signatures (.sig tag and sigstore bundle referrers) with public keys",
      )
      .option('--key <file>', 'cosign public key; repeat for several (any may match)', collect, [])
      .option('--ignore-reference', 'accept signatures that name another repository (copied images)'),
  ).action(async (text: string, flags: VerifyFlags) => {
    const out = outputFor(flags);
    const ref = parseRef(text);
    const keys = await publicKeysFrom(flags.key);
    const result = await withClient(ref.registry, flags, (client) =>
      verifyImage(client, ref, { keys, ...(flags.ignoreReference ? { checkReference: false } : {}) }),
    );
    out.result(
      [
        `Verified ${counted(result.signatures.length, 'signature')} of ${result.reference}:`,
        ...result.signatures.map((s) => `  ${s.format} in ${s.location} (key ${s.keyId})`),
      ].join('\n'),
      result,
    );
  });

  const webhook = withClientOptions(
    program
      .command('webhook')
      .description('Serve the admission webhook that denies RootSync/RepoSync updates to unsigned images')
      .option('--tls-cert <file>', 'PEM serving certificate')
      .option('--tls-key <file>', 'PEM serving key')
      .option('--key <file>', 'cosign public key; repeat for several (any may match)', collect, [])
      .option('--addr <host:port>', 'where to listen', '0.0.0.0:10250')
      .option('--ignore-reference', 'accept signatures that name another repository')
      .option('--log-level <level>', `one of ${LOG_LEVELS.join(', ')}`, 'info'),
  ).action(async (flags: WebhookFlags) => {
    if (!flags.tlsCert || !flags.tlsKey)
      throw new UsageError('The webhook serves HTTPS only: give --tls-cert and --tls-key');
    const level = logLevelFlag(flags.logLevel);
    const keys = await publicKeysFrom(flags.key);
    const { host, port } = await listenAddress(flags.addr);
    const tls = {
      cert: await readKeyFile(flags.tlsCert, '--tls-cert'),
      key: await readKeyFile(flags.tlsKey, '--tls-key'),
    };
    const log = createLogger({ level, name: 'airlock-webhook' });
    const clients = new Map<string, Promise<RegistryClient>>();
    const clientForHost = (registry: string): Promise<RegistryClient> => {
      let client = clients.get(registry);
      if (!client) {
        client = clientFor(registry, flags);
        clients.set(registry, client);
      }
      return client;
    };
    const running = await startWebhookServer({
      tls,
      host,
      port,
      log,
      verify: imageVerifier({
        keys,
        clientFor: clientForHost,
        ...(flags.ignoreReference ? { checkReference: false } : {}),
      }),
    });
    log.info({ url: running.url, keys: keys.map((k) => k.id) }, `webhook listening on ${running.url}`);
    await new Promise<void>((done) => {
      const stop = (): void => {
        void running.close().then(async () => {
          for (const client of clients.values()) (await client).close();
          done();
        });
      };
      process.once('SIGTERM', stop);
      process.once('SIGINT', stop);
    });
  });

  webhook
    .command('manifests')
    .description(
      'Print the Deployment, Service and ValidatingWebhookConfiguration (with caBundle) for the webhook',
    )
    .option('--namespace <name>', 'namespace of the webhook Service', 'signature-verification')
    .option('--image <image>', 'container image with the airlock binary', 'airlock:latest')
    .option('--ca-bundle-file <file>', 'PEM CA that signed the serving certificate (else --certs-dir)')
    .option(
      '--certs-dir <dir>',
      'where the CA and serving certificate are, made when missing',
      './webhook-certs',
    )
    .option('--service-name <name>', 'Service name', 'signature-verification-service')
    .option('--webhook-name <name>', 'webhook name shown in denials', 'imageverification.webhook.com')
    .option('--registry-secret <name>', 'dockerconfigjson Secret with registry credentials')
    .option('--arg <flag>', 'extra flag for "airlock webhook" in the container (repeatable)', collect, [])
    .action(async (flags: ManifestFlags) => {
      const { caPem, note } = await webhookCa(flags);
      process.stdout.write(
        webhookManifests({
          caPem,
          namespace: flags.namespace,
          image: flags.image,
          serviceName: flags.serviceName,
          webhookName: flags.webhookName,
          extraArgs: flags.arg,
          ...(flags.registrySecret ? { registrySecret: flags.registrySecret } : {}),
        }),
      );
      if (note) process.stderr.write(`${note}\n`);
    });
}
