import type { Command } from 'commander';
import {
  appendLayer,
  copyImage,
  openSource,
  pullArtifact,
  pushArtifact,
  isMediaType,
  openTarget,
  RegistryStore,
  type ImageSource,
  type PushFile,
} from '../client/index.js';
import { formatReference } from '../oci/index.js';
import {
  clientFor,
  imageLocation,
  outputFor,
  parseRef,
  refString,
  annotationsFrom,
  collect,
  UsageError,
  withClientOptions,
  type ClientFlags,
} from './common.js';
import { parsePlatform, platformEntry } from './platform.js';

/** `FILE[:MEDIATYPE]` as oras takes it. */
function pushFile(arg: string): PushFile {
  const colon = arg.lastIndexOf(':');
  if (colon > 0 && arg.slice(colon + 1).includes('/'))
    return { path: arg.slice(0, colon), mediaType: arg.slice(colon + 1) };
  return { path: arg };
}

/** `push`, `pull` (oras semantics) and `append` (crane semantics). */
export function registerArtifactCommands(program: Command): void {
  withClientOptions(
    program
      .command('push')
      .argument('<reference>', 'where to push, HOST/REPO:TAG')
      .argument('<files...>', 'files or folders (FILE[:MEDIATYPE]); folders are packed as tar+gzip')
      .option('--artifact-type <type>', 'manifest artifactType', 'application/vnd.unknown.artifact.v1')
      .option('-a, --annotation <key=value>', 'manifest annotation (repeatable)', collect, [])
      .option('--no-created', 'omit the org.opencontainers.image.created stamp (reproducible digests)')
      .description('Push files as an OCI artifact, like oras push'),
  ).action(
    async (
      reference: string,
      files: string[],
      flags: ClientFlags & { artifactType: string; annotation: string[]; created: boolean },
    ) => {
      const out = outputFor(flags);
      if (!isMediaType(flags.artifactType))
        throw new UsageError(
          `--artifact-type "${flags.artifactType}" is not a media type; give TYPE/SUBTYPE, such as application/vnd.acme.config`,
        );
      const ref = parseRef(reference);
      const client = await clientFor(ref.registry, flags);
      try {
        const manifest = await pushArtifact(
          client,
          { repository: ref.repository, reference: refString(ref), files: files.map(pushFile) },
          {
            artifactType: flags.artifactType,
            annotations: annotationsFrom(flags.annotation),
            created: flags.created,
          },
        );
        out.result(
          `Pushed ${formatReference(ref)}\nDigest: ${manifest.digest}`,
          { reference: formatReference(ref), digest: manifest.digest, mediaType: manifest.mediaType },
          formatReference({ ...ref, digest: manifest.digest }),
        );
      } finally {
        client.close();
      }
    },
  );

  withClientOptions(
    program
      .command('pull')
      .argument('<reference>')
      .option('-d, --dir <dir>', 'folder to restore files into', '.')
      .option(
        '--layout <dir>',
        'write an OCI image layout instead of files (a single manifest, or the whole index)',
      )
      .option('--platform <os/arch[/variant]>', 'only this platform of an index')
      .description("Pull an artifact's files (like oras pull), or an image into an OCI layout"),
  ).action(async (reference: string, flags: ClientFlags & { dir: string; layout?: string }) => {
    const out = outputFor(flags, { writeFlag: '--dir' });
    const ref = parseRef(reference);
    const client = await clientFor(ref.registry, flags);
    try {
      if (flags.layout) {
        const source = new RegistryStore(client, ref);
        // As `copy REF oci:DIR[:TAG]`: a layout this pull creates is removed again if the pull fails.
        const location = { kind: 'oci', dir: flags.layout, ...(ref.tag ? { tag: ref.tag } : {}) } as const;
        const target = await openTarget(location, () => Promise.resolve(client));
        let ok = false;
        let result;
        try {
          result = await copyImage(
            source,
            target,
            flags.platform ? { platform: parsePlatform(flags.platform) } : {},
          );
          ok = true;
        } finally {
          await target.close(ok);
        }
        out.result(
          `Pulled ${formatReference(ref)} into OCI layout ${flags.layout} (${result.digest})`,
          { layout: flags.layout, ...result },
          result.digest,
        );
        return;
      }
      let reference = refString(ref);
      if (flags.platform) {
        // From an index, the artifact for that platform (as oras pull --platform).
        const root = await client.getManifest(ref.repository, reference);
        reference = platformEntry(root, flags.platform) ?? reference;
      }
      const files = await pullArtifact(client, {
        repository: ref.repository,
        reference,
        outDir: flags.dir,
      });
      out.result(
        files.map((f) => `${f.title}  ${f.digest}`).join('\n') || 'No files (no layer has a title)',
        files,
      );
    } finally {
      client.close();
    }
  });

  withClientOptions(
    program
      .command('append')
      .requiredOption('-f, --file <tar>', 'tar (plain or gzip) to add as the new top layer')
      .requiredOption('-t, --tag <reference>', 'where to push the result, HOST/REPO:TAG')
      .option(
        '-b, --base <image>',
        'base image (a reference or oci:/oci-archive:/docker-archive:); default: empty',
      )
      .option('--oci-empty-base', "with no base: use OCI media types instead of Docker's")
      .option('--platform <os/arch[/variant]>', 'platform to pick when the base is an index', 'linux/amd64')
      .description('Add a tar as a layer on a base image and push it, like crane append'),
  ).action(
    async (flags: ClientFlags & { file: string; tag: string; base?: string; ociEmptyBase?: boolean }) => {
      const out = outputFor(flags);
      const ref = parseRef(flags.tag);
      const client = await clientFor(ref.registry, flags);
      let base: ImageSource | undefined;
      try {
        if (flags.base)
          base = await openSource(imageLocation(flags.base, { layoutFolders: true }), (host) =>
            clientFor(host, flags),
          );
        const target = new RegistryStore(client, ref);
        const manifest = await appendLayer(target, flags.file, {
          ...(base ? { base } : {}),
          ociEmptyBase: flags.ociEmptyBase ?? false,
          ...(flags.platform ? { platform: parsePlatform(flags.platform) } : {}),
        });
        out.result(`${formatReference({ ...ref, digest: manifest.digest })}`, {
          reference: formatReference(ref),
          digest: manifest.digest,
        });
      } finally {
        await base?.close();
        client.close();
      }
    },
  );
}
