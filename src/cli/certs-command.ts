import type { Command } from 'commander';
import { chmod, mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { Pem } from '../pki/index.js';
import { outputFor, positiveInteger, UsageError } from './common.js';

function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

async function writeAtomic(path: string, text: string, mode: number): Promise<void> {
  await writeFile(`${path}.tmp`, text, { mode });
  await chmod(`${path}.tmp`, mode);
  await rename(`${path}.tmp`, path);
}

async function readPem(dir: string): Promise<Pem | undefined> {
  try {
    return {
      cert: await readFile(join(dir, 'ca.pem'), 'utf8'),
      key: await readFile(join(dir, 'ca-key.pem'), 'utf8'),
    };
  } catch {
    return undefined;
  }
}

/** `airlock certs init`: a private CA and a server certificate for air-gapped sites. */
export function registerCerts(program: Command): void {
  const certs = program.command('certs').description('Certificates for HTTPS in an air-gapped site');
  certs
    .command('init')
    .requiredOption(
      '--host <name>',
      'DNS name or IP address the server is reached at (repeatable)',
      collect,
      [],
    )
    .option('--dir <dir>', 'where to write ca.pem, ca-key.pem, server.pem, server-key.pem', './airlock-certs')
    .option('--ca-name <name>', 'common name of a new CA', 'Airlock private CA')
    .option('--days <n>', 'server certificate validity in days', '825')
    .option('-o, --output <format>', 'text or json', 'text')
    .description('Create a private CA (or reuse the one in --dir) and a server certificate signed by it')
    .action(async (flags: { host: string[]; dir: string; caName: string; days: string; output: string }) => {
      const out = outputFor({ output: flags.output });
      if (flags.host.length === 0) throw new UsageError('Name at least one --host');
      const days = positiveInteger('--days', flags.days);
      const { createCa, createServerCertificate } = await import('../pki/index.js');
      const dir = resolve(flags.dir);
      await mkdir(dir, { recursive: true, mode: 0o700 });
      let ca = await readPem(dir);
      const reused = ca !== undefined;
      if (!ca) {
        ca = await createCa(flags.caName);
        await writeAtomic(join(dir, 'ca-key.pem'), ca.key, 0o600);
        await writeAtomic(join(dir, 'ca.pem'), ca.cert, 0o644);
      }
      const server = await createServerCertificate(ca, flags.host, { days });
      await writeAtomic(join(dir, 'server-key.pem'), server.key, 0o600);
      await writeAtomic(join(dir, 'server.pem'), server.cert, 0o644);
      const ca_ = join(dir, 'ca.pem');
      const first = flags.host[0] ?? 'HOST';
      out.result(
        [
          `${reused ? 'Reused the CA' : 'Created a CA'} in ${dir} and a server certificate for ${flags.host.join(', ')}.`,
          '',
          'Serve with:',
          `  airlock serve --tls-cert ${join(dir, 'server.pem')} --tls-key ${join(dir, 'server-key.pem')} --addr 0.0.0.0:443 --init-admin admin`,
          'Trust the CA on clients:',
          `  airlock … --ca-file ${ca_}`,
          `  Debian/Ubuntu: cp ${ca_} /usr/local/share/ca-certificates/airlock-ca.crt && update-ca-certificates`,
          `  docker:        /etc/docker/certs.d/${first}:PORT/ca.crt`,
          `  podman/skopeo: /etc/containers/certs.d/${first}:PORT/ca.crt`,
          `  containerd:    ca = "${ca_}" in /etc/containerd/certs.d/${first}:PORT/hosts.toml`,
          `Keep ${join(dir, 'ca-key.pem')} offline; it signs new server certificates ("airlock certs init --dir ${dir} --host …").`,
        ].join('\n'),
        {
          dir,
          ca: ca_,
          cert: join(dir, 'server.pem'),
          key: join(dir, 'server-key.pem'),
          hosts: flags.host,
          reusedCa: reused,
        },
      );
    });
}
