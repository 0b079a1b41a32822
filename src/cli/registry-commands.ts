import type { Command } from 'commander';
import { createWriteStream } from 'node:fs';
import { pipeline } from 'node:stream/promises';
import { formatReference, parseManifest, writeThroughTemp } from '../oci/index.js';
import { ClientError } from '../client/index.js';
import { platformEntry } from './platform.js';
import {
  outputFor,
  parseRef,
  refString,
  UsageError,
  withClient,
  withClientOptions,
  type ClientFlags,
} from './common.js';

const CONFIG_LIMIT = 64 * 1024 * 1024;

/** Read and edit commands on one registry: tags, catalog, manifest, config, digest, blob, referrers, tag, delete. */
export function registerRegistryCommands(program: Command): void {
  withClientOptions(
    program
      .command('tags')
      .argument('<repository>', 'HOST/REPO')
      .description('List the tags of a repository'),
  ).action(async (repository: string, flags: ClientFlags) => {
    const out = outputFor(flags);
    const ref = parseRef(repository);
    await withClient(ref.registry, flags, async (client) => {
      const tags = await client.listTags(ref.repository);
      out.result(tags.join('\n'), tags);
    });
  });

  withClientOptions(
    program
      .command('catalog')
      .argument('<host>', 'registry HOST[:PORT]')
      .description('List the repositories of a registry'),
  ).action(async (host: string, flags: ClientFlags) => {
    const out = outputFor(flags);
    await withClient(host, flags, async (client) => {
      const repositories = await client.catalog();
      out.result(repositories.join('\n'), repositories);
    });
  });

  withClientOptions(
    program
      .command('manifest')
      .argument('<reference>')
      .option('--platform <os/arch[/variant]>', "an index's manifest for this platform")
      .description('Print the manifest of an image or artifact'),
  ).action(async (reference: string, flags: ClientFlags) => {
    const ref = parseRef(reference);
    await withClient(ref.registry, flags, async (client) => {
      let manifest = await client.getManifest(ref.repository, refString(ref));
      const child = flags.platform ? platformEntry(manifest, flags.platform) : undefined;
      if (child) manifest = await client.getManifest(ref.repository, child);
      process.stdout.write(manifest.bytes);
      if (process.stdout.isTTY) process.stdout.write('\n');
    });
  });

  withClientOptions(
    program
      .command('digest')
      .argument('<reference>')
      .option('--platform <os/arch[/variant]>', "the digest of an index's manifest for this platform")
      .description('Print the digest a reference resolves to'),
  ).action(async (reference: string, flags: ClientFlags) => {
    const out = outputFor(flags);
    const ref = parseRef(reference);
    await withClient(ref.registry, flags, async (client) => {
      if (flags.platform) {
        const root = await client.getManifest(ref.repository, refString(ref));
        const digest = platformEntry(root, flags.platform) ?? root.digest;
        out.result(digest, { digest });
        return;
      }
      const head = await client.headManifest(ref.repository, refString(ref));
      const digest = head?.digest ?? (await client.getManifest(ref.repository, refString(ref))).digest;
      out.result(digest, { digest });
    });
  });

  withClientOptions(
    program
      .command('config')
      .argument('<reference>')
      .option('--platform <os/arch[/variant]>', 'platform to pick from an index')
      .description('Print the config blob of an image'),
  ).action(async (reference: string, flags: ClientFlags) => {
    const ref = parseRef(reference);
    await withClient(ref.registry, flags, async (client) => {
      const root = await client.getManifest(ref.repository, refString(ref));
      const child = platformEntry(root, flags.platform);
      const manifest = child ? await client.getManifest(ref.repository, child) : root;
      const parsed = parseManifest(manifest.bytes, manifest.mediaType);
      if (!parsed.config) throw new UsageError(`${reference} has no config`);
      process.stdout.write(await client.getBlobBytes(ref.repository, parsed.config.digest, CONFIG_LIMIT));
      if (process.stdout.isTTY) process.stdout.write('\n');
    });
  });

  withClientOptions(
    program
      .command('blob')
      .argument('<reference>', 'HOST/REPO@sha256:…')
      .option('-f, --file <path>', 'write to a file (atomically) instead of standard output')
      .description('Download one blob, verified against its digest'),
  ).action(async (reference: string, flags: ClientFlags & { file?: string }) => {
    // The blob's bytes are the output; a wrong --output (crane users' `-o FILE`) is refused, not ignored.
    outputFor(flags, { writeFlag: '--file' });
    const ref = parseRef(reference);
    const digest = ref.digest;
    if (!digest) throw new UsageError(`"${reference}" names no digest; use HOST/REPO@sha256:…`);
    await withClient(ref.registry, flags, async (client) => {
      const stream = await client.getBlob(ref.repository, digest);
      if (!flags.file) {
        await pipeline(stream, process.stdout);
        return;
      }
      await writeThroughTemp(`${flags.file}.partial`, flags.file, (temp) =>
        pipeline(stream, createWriteStream(temp)),
      );
    });
  });

  withClientOptions(
    program
      .command('referrers')
      .argument('<reference>')
      .option('--artifact-type <type>', 'only referrers of this artifact type')
      .description('List the artifacts (signatures, SBOMs…) that refer to an image'),
  ).action(async (reference: string, flags: ClientFlags & { artifactType?: string }) => {
    const out = outputFor(flags);
    const ref = parseRef(reference);
    await withClient(ref.registry, flags, async (client) => {
      const digest = ref.digest ?? (await client.getManifest(ref.repository, refString(ref))).digest;
      const list = await client.referrers(
        ref.repository,
        digest,
        flags.artifactType ? { artifactType: flags.artifactType } : {},
      );
      // Referrers may name a subject that is not pushed (yet); with none, a missing subject is more likely
      // a mistyped digest, which should not pass for "no signatures" (oras discover fails the same way).
      if (list.length === 0 && ref.digest && !(await client.headManifest(ref.repository, ref.digest)))
        throw new ClientError(
          'NOT_FOUND',
          `${reference}: no manifest ${ref.digest} in ${ref.repository}, and nothing refers to it`,
        );
      const rows = list.map((d) => `${d.digest}  ${d.artifactType ?? d.mediaType}  ${d.size}`);
      out.result(rows.length ? rows.join('\n') : `No referrers of ${digest}`, list);
    });
  });

  withClientOptions(
    program
      .command('tag')
      .argument('<reference>')
      .argument('<tag>', 'new tag in the same repository')
      .description('Add a tag to an image'),
  ).action(async (reference: string, tag: string, flags: ClientFlags) => {
    const out = outputFor(flags);
    const ref = parseRef(reference);
    parseRef(`${ref.registry}/${ref.repository}:${tag}`);
    await withClient(ref.registry, flags, async (client) => {
      const manifest = await client.getManifest(ref.repository, refString(ref));
      await client.putManifest(ref.repository, tag, manifest);
      const target = formatReference({ registry: ref.registry, repository: ref.repository, tag });
      out.result(`${target}@${manifest.digest}`, { reference: target, digest: manifest.digest });
    });
  });

  withClientOptions(
    program.command('delete').argument('<reference>').description('Delete a manifest (by digest) or a tag'),
  ).action(async (reference: string, flags: ClientFlags) => {
    const out = outputFor(flags);
    const ref = parseRef(reference);
    await withClient(ref.registry, flags, async (client) => {
      try {
        await client.deleteManifest(ref.repository, refString(ref));
      } catch (error) {
        // distribution (and registries like it) cannot delete a tag alone: it takes the tag for a digest.
        if (
          ref.digest === undefined &&
          error instanceof ClientError &&
          (error.registryCode === 'DIGEST_INVALID' ||
            error.registryCode === 'UNSUPPORTED' ||
            error.status === 405)
        )
          throw new ClientError(
            'INVALID_INPUT',
            `${error.message} (this registry cannot delete a tag alone; delete the manifest by digest, which removes its tags: airlock delete ${ref.registry}/${ref.repository}@$(airlock digest ${reference}))`,
            { cause: error },
          );
        throw error;
      }
      out.result(`Deleted ${reference}`, { deleted: reference }, '');
    });
  });
}
