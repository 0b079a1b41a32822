import type { Command } from 'commander';
import { copyImage, openSource, openTarget, type ImageSource, type ImageTarget } from '../client/index.js';
import { isDigest } from '../oci/index.js';
import {
  clientFor,
  imageLocation,
  outputFor,
  positiveInteger,
  UsageError,
  withClientOptions,
  type ClientFlags,
} from './common.js';
import { parsePlatform } from './platform.js';
import { ProgressLine } from './progress.js';

/** `airlock copy SRC DST`: any transport to any transport, all platforms by default. */
export function registerCopy(program: Command): void {
  withClientOptions(
    program
      .command('copy')
      .alias('cp')
      .argument(
        '<source>',
        'REF, docker://REF, oci:DIR[:TAG], oci-archive:FILE[:TAG], docker-archive:FILE[:NAME:TAG]',
      )
      .argument('<destination>', 'REF, docker://REF, oci:DIR[:TAG] or oci-archive:FILE[:TAG]')
      .option('--platform <os/arch[/variant]>', 'copy only this platform of an index')
      .option('--with-referrers', 'also copy signatures, SBOMs and other referrers')
      .option('-j, --jobs <n>', 'blobs transferred at once', '4')
      .option(
        '--s3-endpoint <url>',
        'object store for s3:// sources (else AIRLOCK_S3_ENDPOINT or ~/.config/airlock/s3.json)',
      )
      .option('--s3-region <region>', 'region to sign s3:// requests for (default us-east-1)')
      .description('Copy an image, index or artifact between registries, layouts and archives'),
  ).action(
    async (
      sourceText: string,
      destinationText: string,
      flags: ClientFlags & { withReferrers?: boolean; jobs: string; s3Endpoint?: string; s3Region?: string },
    ) => {
      const out = outputFor(flags);
      const concurrency = positiveInteger('--jobs', flags.jobs);
      const clients = (host: string) => clientFor(host, flags);
      let source: ImageSource | undefined;
      let target: ImageTarget | undefined;
      const progress = new ProgressLine({ json: out.json, quiet: out.quiet });
      try {
        // Both ends and the platform are checked before anything is opened.
        const origin = imageLocation(sourceText, { layoutFolders: true });
        const destination = imageLocation(destinationText);
        // skopeo refuses this too: the digest would be written, the tag silently not.
        if (destination.kind === 'registry' && destination.ref.tag && destination.ref.digest)
          throw new UsageError(
            `Destination "${destinationText}" has both a tag and a digest; give one (a copy is tagged, or addressed by its digest)`,
          );
        if (
          (destination.kind === 'oci' || destination.kind === 'oci-archive') &&
          destination.tag !== undefined &&
          isDigest(destination.tag)
        )
          throw new UsageError(
            `Destination "${destinationText}" names a digest; a layout entry is written under a tag (oci:DIR:TAG) or none`,
          );
        const platform = flags.platform ? parsePlatform(flags.platform) : undefined;
        source = await openSource(origin, clients, {
          s3: {
            ...(flags.s3Endpoint ? { endpoint: flags.s3Endpoint } : {}),
            ...(flags.s3Region ? { region: flags.s3Region } : {}),
          },
        });
        target = await openTarget(destination, clients);
        const result = await copyImage(source, target, {
          ...(platform ? { platform } : {}),
          withReferrers: flags.withReferrers ?? false,
          concurrency,
          onProgress: (e) => progress.update(e),
        });
        // Archives are written as the target closes: only then is the copy done.
        const done = target;
        target = undefined;
        await done.close(true);
        progress.done();
        out.result(
          `Copied ${source.name} to ${done.name} (${result.digest})`,
          { ...result, source: source.name, destination: done.name },
          result.digest,
        );
      } finally {
        progress.done();
        await target?.close(false);
        await source?.close();
      }
    },
  );
}
