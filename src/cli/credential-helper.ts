#!/usr/bin/env node
// docker-credential-airlock: the docker credential-helper protocol (get/store/erase/list) over
// Airlock's credential store, so docker, podman, skopeo and crane can use Airlock's logins.
import { CredentialStore, type StoredCredential } from '../client/index.js';

async function stdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8').trim();
}

async function main(action: string | undefined): Promise<number> {
  const store = new CredentialStore();
  switch (action) {
    case 'get': {
      const host = await stdin();
      const found = await store.get(host);
      if (!found) {
        process.stdout.write('credentials not found in native keychain\n');
        return 1;
      }
      process.stdout.write(
        `${JSON.stringify({ ServerURL: host, Username: found.Username, Secret: found.Secret })}\n`,
      );
      return 0;
    }
    case 'store': {
      const input = JSON.parse(await stdin()) as { ServerURL?: string } & Partial<StoredCredential>;
      if (!input.ServerURL || input.Secret === undefined) {
        process.stderr.write('store needs {"ServerURL","Username","Secret"} on standard input\n');
        return 1;
      }
      await store.store(input.ServerURL, { Username: input.Username ?? '', Secret: input.Secret });
      return 0;
    }
    case 'erase': {
      const host = await stdin();
      if (!(await store.erase(host))) {
        process.stdout.write('credentials not found in native keychain\n');
        return 1;
      }
      return 0;
    }
    case 'list':
      process.stdout.write(`${JSON.stringify(await store.list())}\n`);
      return 0;
    default:
      process.stderr.write('Usage: docker-credential-airlock <get|store|erase|list>\n');
      return 2;
  }
}

main(process.argv[2]).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    process.stderr.write(`${error instanceof Error ? error.message : String(error)}\n`);
    process.exitCode = 1;
  },
);
