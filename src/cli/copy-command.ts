import type { Command } from 'commander';
import {
  copyImage,
  openSource,
  openTarget,
  parseImageLocation,
  type ImageSource,
  type ImageTarget,
} from '../client/index.js';
import { clientFor, outputFor, withClientOptions, type ClientFlags } from './common.js';
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
      const clients = (host: string) => clientFor(host, flags);
      let source: ImageSource | undefined;
      let target: ImageTarget | undefined;
      let ok = false;
      try {
        source = await openSource(parseImageLocation(sourceText), clients, {
          s3: {
            ...(flags.s3Endpoint ? { endpoint: flags.s3Endpoint } : {}),
            ...(flags.s3Region ? { region: flags.s3Region } : {}),
          },
        });
        target = await openTarget(parseImageLocation(destinationText), clients);
        const progress = new ProgressLine({ json: out.json, quiet: out.quiet });
        const result = await copyImage(source, target, {
          ...(flags.platform ? { platform: parsePlatform(flags.platform) } : {}),
          withReferrers: flags.withReferrers ?? false,
          concurrency: Math.max(1, Number(flags.jobs) || 4),
          onProgress: (e) => progress.update(e),
        });
        progress.done();
        ok = true;
        out.result(`Copied ${source.name} to ${target.name} (${result.digest})`, {
          ...result,
          source: source.name,
          destination: target.name,
        });
      } finally {
        await target?.close(ok);
        await source?.close();
      }
    },
  );
}
