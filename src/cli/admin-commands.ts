import { readFile } from 'node:fs/promises';
import type { Command } from 'commander';
import { parseDuration } from '../oci/index.js';
import type { GarbageCollectionReport } from '../registry/index.js';
import {
  outputFor,
  readStdin,
  UsageError,
  withClient,
  withClientOptions,
  type ClientFlags,
} from './common.js';
import { counted } from './output.js';

interface Row {
  [key: string]: unknown;
}

/** Splits `HOST/path...` into the registry host and the rest (a repository, prefix or nothing). */
function hostAndPath(text: string): { host: string; path: string } {
  const slash = text.indexOf('/');
  const host = slash < 0 ? text : text.slice(0, slash);
  if (!host) throw new UsageError(`"${text}" names no registry host`);
  return { host, path: slash < 0 ? '' : text.slice(slash + 1) };
}

/** A table cell: objects as JSON, missing values empty. */
function cell(value: unknown): string {
  if (value === undefined || value === null) return '';
  if (typeof value === 'string') return value;
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  return JSON.stringify(value);
}

function table(rows: readonly Row[], columns: readonly string[]): string {
  if (rows.length === 0) return '(none)';
  const widths = columns.map((c) => Math.max(c.length, ...rows.map((r) => cell(r[c]).length)));
  const line = (cells: readonly string[]) =>
    cells
      .map((cell, i) => cell.padEnd(widths[i] ?? 0))
      .join('  ')
      .trimEnd();
  return [
    line(columns.map((c) => c.toUpperCase())),
    ...rows.map((r) => line(columns.map((c) => cell(r[c])))),
  ].join('\n');
}

/** `airlock gc`'s text output: the manifests deleted, then one line of counts, then any problems. */
function describeGc(report: GarbageCollectionReport): string {
  const would = report.dryRun ? 'would be ' : '';
  const mib = (report.bytesFreed / (1024 * 1024)).toFixed(1);
  return [
    ...report.manifestsDeleted.map((m) => `manifest ${m.repository}@${m.digest} ${would}deleted`),
    `${counted(report.repositories, 'repository', 'repositories')}: ` +
      `${counted(report.manifestsDeleted.length, 'untagged manifest')} ${would}deleted, ` +
      `${counted(report.linksRemoved, 'blob link')} ${would}removed, ${counted(report.blobsDeleted, 'blob')} ${would}deleted (${mib} MiB ${report.dryRun ? 'to free' : 'freed'})`,
    ...report.problems.map((p) => `left alone: ${p}`),
  ].join('\n');
}

async function newPassword(flags: { passwordStdin?: boolean; newPassword?: string }): Promise<string> {
  if (flags.newPassword) return flags.newPassword;
  if (flags.passwordStdin) return readStdin();
  throw new UsageError('Give the new password on standard input with --new-password-stdin');
}

/** `repo`, `iam`, `user`, `robot` and `audit`: the management API from the command line. */
export function registerAdminCommands(program: Command): void {
  const repo = program.command('repo').description('Create, list and delete repositories');
  withClientOptions(
    repo
      .command('create')
      .argument('<repository>', 'HOST/PROJECT/REPO')
      .option('--description <text>', 'description', '')
      .option('--public', 'anyone may pull'),
  )
    .description('Create a repository')
    .action(async (text: string, flags: ClientFlags & { description: string; public?: boolean }) => {
      const out = outputFor(flags);
      const { host, path } = hostAndPath(text);
      const created = await withClient(host, flags, (c) =>
        c.api('POST', '/api/v1/repositories', {
          name: path,
          description: flags.description,
          public: flags.public ?? false,
        }),
      );
      out.result(`Created repository ${host}/${path}`, created);
    });
  withClientOptions(repo.command('list').argument('<host>')).action(
    async (host: string, flags: ClientFlags) => {
      const out = outputFor(flags);
      const list = await withClient(host, flags, (c) => c.api<Row[]>('GET', '/api/v1/repositories'));
      out.result(table(list, ['name', 'public', 'description']), list);
    },
  );
  withClientOptions(repo.command('delete').argument('<repository>', 'HOST/PROJECT/REPO')).action(
    async (text: string, flags: ClientFlags) => {
      const out = outputFor(flags);
      const { host, path } = hostAndPath(text);
      await withClient(host, flags, (c) =>
        c.api('DELETE', `/api/v1/repositories/${encodeURIComponent(path)}`),
      );
      out.result(`Deleted repository ${host}/${path} and everything in it`, { deleted: path });
    },
  );

  const iam = program.command('iam').description('Role bindings: who may pull, push, delete and manage');
  const scopeOf = (path: string, flags: { registryWide?: boolean }): string =>
    flags.registryWide ? '*' : path || '*';
  withClientOptions(
    iam
      .command('add-binding')
      .argument('<scope>', 'HOST/PROJECT/REPO, HOST/PROJECT/ (a prefix), or HOST with --registry-wide')
      .requiredOption('--member <member>', 'user:NAME, robot:NAME or serviceAccount:NS/NAME@CLUSTER')
      .requiredOption('--role <role>', 'reader, writer or admin')
      .option('--registry-wide', 'bind on the whole registry'),
  ).action(
    async (text: string, flags: ClientFlags & { member: string; role: string; registryWide?: boolean }) => {
      const out = outputFor(flags);
      const { host, path } = hostAndPath(text);
      const scope = scopeOf(path, flags);
      const result = await withClient(host, flags, (c) =>
        c.api('POST', '/api/v1/bindings', { member: flags.member, role: flags.role, scope }),
      );
      out.result(`Granted ${flags.role} on "${scope}" to ${flags.member}`, result);
    },
  );
  withClientOptions(
    iam
      .command('remove-binding')
      .argument('<scope>')
      .requiredOption('--member <member>', 'the member to remove')
      .option('--registry-wide', 'the binding is on the whole registry'),
  ).action(async (text: string, flags: ClientFlags & { member: string; registryWide?: boolean }) => {
    const out = outputFor(flags);
    const { host, path } = hostAndPath(text);
    const scope = scopeOf(path, flags);
    await withClient(host, flags, (c) =>
      c.api(
        'DELETE',
        `/api/v1/bindings?member=${encodeURIComponent(flags.member)}&scope=${encodeURIComponent(scope)}`,
      ),
    );
    out.result(`Removed the binding of ${flags.member} on "${scope}"`, { member: flags.member, scope });
  });
  withClientOptions(
    iam.command('list').argument('<scope>', 'HOST (all bindings) or HOST/PROJECT/REPO'),
  ).action(async (text: string, flags: ClientFlags) => {
    const out = outputFor(flags);
    const { host, path } = hostAndPath(text);
    const list = await withClient(host, flags, (c) =>
      c.api<Row[]>('GET', `/api/v1/bindings${path ? `?scope=${encodeURIComponent(path)}` : ''}`),
    );
    out.result(table(list, ['scope', 'member', 'role']), list);
  });

  const user = program.command('user').description('Registry users (passwords are stored as scrypt hashes)');
  withClientOptions(
    user
      .command('add')
      .argument('<host>')
      .argument('<name>')
      .option('--new-password-stdin', "read the new user's password from standard input"),
  ).action(async (host: string, name: string, flags: ClientFlags & { newPasswordStdin?: boolean }) => {
    const out = outputFor(flags);
    const password = await newPassword({ ...(flags.newPasswordStdin ? { passwordStdin: true } : {}) });
    await withClient(host, flags, (c) => c.api('POST', '/api/v1/users', { name, password }));
    out.result(`Added user ${name}`, { name });
  });
  withClientOptions(
    user
      .command('passwd')
      .argument('<host>')
      .argument('<name>')
      .option('--new-password-stdin', 'read the new password from standard input'),
  ).action(async (host: string, name: string, flags: ClientFlags & { newPasswordStdin?: boolean }) => {
    const out = outputFor(flags);
    const password = await newPassword({ ...(flags.newPasswordStdin ? { passwordStdin: true } : {}) });
    await withClient(host, flags, (c) =>
      c.api('PUT', `/api/v1/users/${encodeURIComponent(name)}/password`, { password }),
    );
    out.result(`Changed the password of ${name}`, { name });
  });
  withClientOptions(user.command('remove').argument('<host>').argument('<name>')).action(
    async (host: string, name: string, flags: ClientFlags) => {
      const out = outputFor(flags);
      await withClient(host, flags, (c) => c.api('DELETE', `/api/v1/users/${encodeURIComponent(name)}`));
      out.result(`Removed user ${name} and their bindings`, { name });
    },
  );
  withClientOptions(user.command('list').argument('<host>')).action(
    async (host: string, flags: ClientFlags) => {
      const out = outputFor(flags);
      const list = await withClient(host, flags, (c) => c.api<Row[]>('GET', '/api/v1/users'));
      out.result(table(list, ['name', 'createdAt']), list);
    },
  );

  const robot = program
    .command('robot')
    .description('Robot accounts: long random secrets for pipelines, shown once');
  withClientOptions(
    robot
      .command('create')
      .argument('<host>')
      .argument('<name>')
      .option('--description <text>', 'what it is for', '')
      .option('--expires-days <n>', 'expire after this many days'),
  ).action(
    async (
      host: string,
      name: string,
      flags: ClientFlags & { description: string; expiresDays?: string },
    ) => {
      const out = outputFor(flags);
      const days = flags.expiresDays === undefined ? undefined : Number(flags.expiresDays);
      if (days !== undefined && !(days > 0))
        throw new UsageError(`--expires-days "${flags.expiresDays}" must be a positive number`);
      const created = await withClient(host, flags, (c) =>
        c.api<{ username: string; secret: string }>('POST', '/api/v1/robots', {
          name,
          description: flags.description,
          ...(days ? { expiresInDays: days } : {}),
        }),
      );
      out.result(`Robot ${created.username} created. Its secret (shown once):\n${created.secret}`, created);
    },
  );
  withClientOptions(robot.command('revoke').argument('<host>').argument('<name>')).action(
    async (host: string, name: string, flags: ClientFlags) => {
      const out = outputFor(flags);
      await withClient(host, flags, (c) => c.api('DELETE', `/api/v1/robots/${encodeURIComponent(name)}`));
      out.result(`Revoked robot ${name}`, { name, revoked: true });
    },
  );
  withClientOptions(robot.command('list').argument('<host>')).action(
    async (host: string, flags: ClientFlags) => {
      const out = outputFor(flags);
      const list = await withClient(host, flags, (c) => c.api<Row[]>('GET', '/api/v1/robots'));
      out.result(table(list, ['name', 'description', 'createdAt', 'expiresAt', 'revoked']), list);
    },
  );

  const cluster = program
    .command('cluster')
    .description('Kubernetes clusters whose service-account tokens the registry accepts');
  withClientOptions(
    cluster
      .command('trust')
      .argument('<host>')
      .argument('<name>', 'cluster name, used in members serviceAccount:NS/NAME@CLUSTER')
      .requiredOption(
        '--issuer <url>',
        "the cluster's service-account issuer (kube-apiserver --service-account-issuer)",
      )
      .option('--jwks <file>', 'static JWKS (kubectl get --raw /openid/v1/jwks) for air-gapped set-ups'),
  ).action(async (host: string, name: string, flags: ClientFlags & { issuer: string; jwks?: string }) => {
    const out = outputFor(flags);
    let jwks: unknown;
    if (flags.jwks) {
      try {
        jwks = JSON.parse(await readFile(flags.jwks, 'utf8'));
      } catch (error) {
        throw new UsageError(`Cannot read --jwks "${flags.jwks}": ${(error as Error).message}`);
      }
    }
    const result = await withClient(host, flags, (c) =>
      c.api('POST', '/api/v1/clusters', { name, issuer: flags.issuer, ...(jwks ? { jwks } : {}) }),
    );
    out.result(`Trusting service-account tokens of cluster ${name} (issuer ${flags.issuer})`, result);
  });
  withClientOptions(cluster.command('list').argument('<host>')).action(
    async (host: string, flags: ClientFlags) => {
      const out = outputFor(flags);
      const list = await withClient(host, flags, (c) => c.api<Row[]>('GET', '/api/v1/clusters'));
      out.result(table(list, ['name', 'issuer', 'staticJwks']), list);
    },
  );
  withClientOptions(cluster.command('remove').argument('<host>').argument('<name>')).action(
    async (host: string, name: string, flags: ClientFlags) => {
      const out = outputFor(flags);
      await withClient(host, flags, (c) => c.api('DELETE', `/api/v1/clusters/${encodeURIComponent(name)}`));
      out.result(`No longer trusting cluster ${name}`, { name });
    },
  );

  withClientOptions(
    program
      .command('gc')
      .argument('[host]', 'the registry to ask (POST /api/v1/gc); or give --data')
      .option('--data <dir>', 'collect in a data folder directly, with its registry stopped')
      .option('--dry-run', 'only report what would be deleted')
      .option('--delete-untagged', 'also delete manifests no tag reaches (as an index child or referrer)')
      .option('--grace <duration>', 'keep content younger than this (Go duration: 30m, 1h, 0s)', '1h'),
  )
    .description('Garbage-collect the registry: unreferenced blobs, and untagged manifests if asked')
    .action(
      async (
        host: string | undefined,
        flags: ClientFlags & { data?: string; dryRun?: boolean; deleteUntagged?: boolean; grace: string },
      ) => {
        const out = outputFor(flags);
        const graceMs = parseDuration(flags.grace);
        if (graceMs === undefined)
          throw new UsageError(`--grace "${flags.grace}" is not a duration such as 30m, 1h or 0s`);
        if ((host === undefined) === (flags.data === undefined))
          throw new UsageError("Give either a registry HOST or --data DIR (a stopped registry's folder)");
        // Whole seconds, rounded up: a grace is never shortened (900ms must not become 0).
        const graceSeconds = Math.ceil(graceMs / 1000);
        const options = { dryRun: flags.dryRun === true, deleteUntagged: flags.deleteUntagged === true };
        let report: GarbageCollectionReport;
        if (flags.data !== undefined) {
          const { collectGarbageInFolder } = await import('../registry/index.js');
          report = await collectGarbageInFolder(flags.data, { ...options, graceMs: graceSeconds * 1000 });
        } else {
          report = await withClient(host ?? '', flags, (c) =>
            c.api<GarbageCollectionReport>('POST', '/api/v1/gc', { ...options, graceSeconds }),
          );
        }
        out.result(describeGc(report), report);
      },
    );

  withClientOptions(
    program
      .command('audit')
      .argument('<host>')
      .option('--since <time>', 'ISO time')
      .option('--actor <member>', 'only this member'),
  )
    .description('Show the audit log: pushes, deletes, role and user changes')
    .action(async (host: string, flags: ClientFlags & { since?: string; actor?: string }) => {
      const out = outputFor(flags);
      const query = new URLSearchParams({
        ...(flags.since ? { since: flags.since } : {}),
        ...(flags.actor ? { actor: flags.actor } : {}),
      }).toString();
      const list = await withClient(host, flags, (c) =>
        c.api<Row[]>('GET', `/api/v1/audit${query ? `?${query}` : ''}`),
      );
      const rows = list.map((e) => ({ ...e, at: new Date(Number(e.at)).toISOString() }));
      out.result(table(rows, ['at', 'actor', 'action', 'target']), list);
    });
}
