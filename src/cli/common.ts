import { readFile } from 'node:fs/promises';
import { X509Certificate } from 'node:crypto';
import type { Command } from 'commander';
import {
  ClientError,
  RegistryClient,
  lookupCredentials,
  parseImageLocation,
  type Credentials,
  type ImageLocation,
  type ParseImageLocationOptions,
} from '../client/index.js';
import type { Reference } from '../oci/index.js';
import { LOG_LEVELS } from '../log/index.js';
import { createOutput, type Output } from './output.js';
import type { LevelWithSilent } from 'pino';

/** Flags every command that talks to a registry accepts. */
export interface ClientFlags {
  username?: string;
  password?: string;
  passwordStdin?: boolean;
  insecure?: boolean;
  plainHttp?: boolean;
  caFile?: string;
  output?: string;
  quiet?: boolean;
  platform?: string;
}

/** Adds the common client flags to a command. */
export function withClientOptions(command: Command): Command {
  return command
    .option('-u, --username <name>', 'registry user name (else the docker config / credential helpers)')
    .option('-p, --password <password>', 'password (prefer --password-stdin: arguments show up in ps)')
    .option('--password-stdin', 'read the password from standard input')
    .option('--insecure', 'skip TLS certificate verification')
    .option('--plain-http', 'use http:// (automatic for localhost, 127.0.0.0/8 and ::1)')
    .option('--ca-file <file>', 'PEM file with extra CA certificates to trust')
    .option('-o, --output <format>', 'output format: text or json', 'text')
    .option('-q, --quiet', 'print only what scripts need');
}

/**
 * The output a command writes, as its `--output` and `--quiet` ask. `writeFlag`: for a command that
 * writes content to a path, the flag that names it, which a wrong `--output` then points to (`oras pull`
 * names its folder with `-o`).
 */
export function outputFor(flags: ClientFlags, options: { writeFlag?: string } = {}): Output {
  if (flags.output !== undefined && flags.output !== 'text' && flags.output !== 'json') {
    const hint = options.writeFlag
      ? ` (-o is the output format; to write to ${flags.output}, use ${options.writeFlag} ${flags.output})`
      : '';
    throw new UsageError(`--output must be "text" or "json", not "${flags.output}"${hint}`);
  }
  return createOutput({
    ...(flags.output ? { output: flags.output } : {}),
    ...(flags.quiet ? { quiet: true } : {}),
  });
}

/** A mistake in how a command was called (exit code 2). */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

/** `parseImageLocation` for a command-line argument: a malformed one is a usage error (exit 2). */
export function imageLocation(text: string, options: ParseImageLocationOptions = {}): ImageLocation {
  try {
    return parseImageLocation(text, options);
  } catch (error) {
    if (error instanceof ClientError && error.code === 'INVALID_INPUT') throw new UsageError(error.message);
    throw error;
  }
}

/**
 * A registry given as a command's HOST argument: `HOST[:PORT]`, as docker also takes it with a scheme
 * (`https://HOST`; `http://HOST` means plain HTTP) and a trailing slash. A path is a usage error: it
 * names a repository, not a registry.
 */
export function registryHost(text: string): { host: string; plainHttp: boolean | undefined } {
  const scheme = /^(https?):\/\//i.exec(text);
  // docker's own keys end in an API version (`https://index.docker.io/v1/`): that is still the host.
  const host = (scheme ? text.slice(scheme[0].length) : text).replace(/(\/v[12])?\/*$/, '');
  if (host === '') throw new UsageError(`"${text}" names no registry host; give HOST[:PORT]`);
  if (host.includes('/'))
    throw new UsageError(`"${text}" is a path, not a registry; give the registry as HOST[:PORT]`);
  if (!/^[A-Za-z0-9.-]+(:\d+)?$|^\[[0-9A-Fa-f:.]+\](:\d+)?$/.test(host))
    throw new UsageError(`"${text}" is not a registry HOST[:PORT]`);
  // A scheme decides; without one a loopback host is probed (plain HTTP first) and others get HTTPS.
  return { host, plainHttp: scheme ? scheme[1]?.toLowerCase() === 'http' : undefined };
}

/** A flag's whole positive number: a usage error for anything else (`abc`, `0`, `1.5`), never a default. */
export function positiveInteger(flag: string, text: string): number {
  const value = Number(text);
  if (text.trim() === '' || !Number.isSafeInteger(value) || value <= 0)
    throw new UsageError(`${flag} must be a positive whole number, not "${text}"`);
  return value;
}

let stdinCache: Promise<string> | undefined;
/** All of standard input (read once), without its trailing newline. */
export function readStdin(): Promise<string> {
  stdinCache ??= (async () => {
    const chunks: Buffer[] = [];
    for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
    return Buffer.concat(chunks)
      .toString('utf8')
      .replace(/\r?\n$/, '');
  })();
  return stdinCache;
}

/** Credentials from flags, else from the docker config and credential helpers. */
export async function credentialsFor(host: string, flags: ClientFlags): Promise<Credentials | undefined> {
  if (flags.passwordStdin && flags.password !== undefined)
    throw new UsageError('--password and --password-stdin cannot be used together');
  if (flags.username !== undefined) {
    const password = flags.passwordStdin ? await readStdin() : flags.password;
    if (password === undefined) throw new UsageError('--username needs --password-stdin or --password');
    return { username: flags.username, password };
  }
  if (flags.passwordStdin || flags.password !== undefined)
    throw new UsageError('A password was given without --username');
  return lookupCredentials(host);
}

/**
 * The reference argument of a command that works on a registry alone (tags, manifest, push, sign …):
 * `HOST/REPO[:TAG|@DIGEST]`, also after skopeo's `docker://`. Any other transport (`oci:`, `dir:`,
 * `containers-storage:` …) is a usage error, never read as a Docker Hub name.
 */
export function parseRef(text: string): Reference {
  const location = imageLocation(text, { registryOnly: true });
  // registryOnly refuses every other kind; the check narrows the type.
  if (location.kind !== 'registry') throw new UsageError(`"${text}" is not a registry reference`);
  return location.ref;
}

/**
 * The certificates of `--ca-file`, read when the command starts: a file that cannot be read, holds no PEM
 * certificate or holds a broken one fails at once (node would only find out at the TLS handshake, and
 * then report an untrusted certificate).
 */
async function readCaFile(file: string): Promise<Buffer> {
  let text: Buffer;
  try {
    text = await readFile(file);
  } catch (error) {
    throw new ClientError('INVALID_INPUT', `Cannot read --ca-file "${file}": ${(error as Error).message}`);
  }
  const blocks = text
    .toString('latin1')
    .match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g);
  if (!blocks) throw new ClientError('INVALID_INPUT', `--ca-file "${file}" holds no PEM certificate`);
  for (const [index, block] of blocks.entries()) {
    try {
      new X509Certificate(block);
    } catch (error) {
      throw new ClientError(
        'INVALID_INPUT',
        `--ca-file "${file}": certificate ${index + 1} of ${blocks.length} cannot be read (${(error as Error).message})`,
      );
    }
  }
  return text;
}

/** A registry client for `host` configured from the flags. */
export async function clientFor(hostText: string, flags: ClientFlags): Promise<RegistryClient> {
  const { host, plainHttp } = registryHost(hostText);
  const ca = flags.caFile ? await readCaFile(flags.caFile) : undefined;
  return new RegistryClient(host, {
    credentials: await credentialsFor(host, flags),
    ...(flags.plainHttp ? { plainHttp: true } : plainHttp === undefined ? {} : { plainHttp }),
    ...(flags.insecure ? { insecure: true } : {}),
    ...(ca ? { ca } : {}),
  });
}

/** The tag or digest a reference names, for API paths. */
export function refString(ref: Reference): string {
  return ref.digest ?? ref.tag ?? 'latest';
}

/** Runs `use` with a client for `host` configured from the flags, closing it afterwards. */
export async function withClient<T>(
  host: string,
  flags: ClientFlags,
  use: (client: RegistryClient) => Promise<T>,
): Promise<T> {
  const client = await clientFor(host, flags);
  try {
    return await use(client);
  } finally {
    client.close();
  }
}

/** Commander's collector for repeatable flags. */
export function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

/** `k=v` pairs from repeated --annotation flags. */
export function annotationsFrom(pairs: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const pair of pairs) {
    const eq = pair.indexOf('=');
    if (eq <= 0) throw new UsageError(`--annotation "${pair}" is not KEY=VALUE`);
    out[pair.slice(0, eq)] = pair.slice(eq + 1);
  }
  return out;
}

/** A --log-level value, checked against the levels the logger knows. */
export function logLevelFlag(text: string): LevelWithSilent {
  if (!LOG_LEVELS.includes(text as LevelWithSilent))
    throw new UsageError(`--log-level "${text}" is not one of ${LOG_LEVELS.join(', ')}`);
  return text as LevelWithSilent;
}
