import type { Command } from 'commander';
import {
  cosignTags,
  describeTree,
  nestCosignTags,
  flattenImage,
  openSource,
  renderTree,
  LayoutStore,
  RegistryStore,
  type ImageSource,
  type TreeNode,
} from '../client/index.js';
import { REF_NAME } from '../oci/index.js';
import {
  clientFor,
  imageLocation,
  outputFor,
  positiveInteger,
  withClientOptions,
  type ClientFlags,
} from './common.js';
import { counted } from './output.js';
import { parsePlatform } from './platform.js';

/** `tree` and `extract`. */
export function registerInspectCommands(program: Command): void {
  withClientOptions(
    program
      .command('tree')
      .argument(
        '<source>',
        'a repository (HOST/REPO, every tag), a reference, or oci:DIR / oci-archive:FILE (a layout folder may be named as it is)',
      )
      .description('Show tags, manifests, platforms and referrers (signatures, SBOMs) as a tree'),
  ).action(async (text: string, flags: ClientFlags) => {
    const out = outputFor(flags);
    const location = imageLocation(text, { layoutFolders: true });
    const source: ImageSource = await openSource(location, (host) => clientFor(host, flags));
    // A docker archive names its image by its RepoTags (what `docker load` tags it as).
    const rootNames = source.rootNames?.length ? source.rootNames.join(', ') : undefined;
    try {
      const nodes: TreeNode[] = [];
      let title = source.name;
      if (
        source instanceof RegistryStore &&
        !/[:@][^/]*$/.test(
          text
            .replace(/^docker:\/\//, '')
            .split('/')
            .slice(1)
            .join('/'),
        )
      ) {
        // A bare repository: every tag.
        title = `${source.ref.registry}/${source.ref.repository}`;
        for (const tag of await source.client.listTags(source.ref.repository)) {
          const head = await source.client.getManifest(source.ref.repository, tag);
          nodes.push(
            await describeTree(
              source,
              { mediaType: head.mediaType, digest: head.digest, size: head.bytes.length },
              { label: tag },
            ),
          );
        }
      } else if (source instanceof LayoutStore && source.tag === undefined) {
        const entries: TreeNode[] = [];
        for (const entry of (await source.layout.index()).manifests) {
          if ((await source.layout.blobSize(entry.digest)) === undefined) continue;
          entries.push(
            await describeTree(source, entry, { label: entry.annotations?.[REF_NAME] ?? entry.digest }),
          );
        }
        // Referrers that `copy --with-referrers` listed as entries of their own show under their subject
        // only (an untagged entry that is a referrer of another entry).
        const shown = new Set<string>();
        const collect = (node: TreeNode): void => {
          for (const referrer of node.referrers) {
            shown.add(referrer.digest);
            collect(referrer);
          }
          node.children.forEach(collect);
        };
        entries.forEach(collect);
        nodes.push(...entries.filter((node) => node.label !== node.digest || !shown.has(node.digest)));
      } else {
        const root = await source.root();
        const label =
          source instanceof RegistryStore
            ? (source.ref.tag ?? source.ref.digest ?? '')
            : (rootNames ?? source.name.split(':').pop() ?? '');
        const node = await describeTree(
          source,
          { mediaType: root.mediaType, digest: root.digest, size: root.bytes.length },
          { label },
        );
        // One image from a registry: its cosign tags are looked for by name (a HEAD each).
        if (source instanceof RegistryStore) {
          for (const tag of cosignTags(root.digest)) {
            const head = await source.client.headManifest(source.ref.repository, tag);
            if (head) node.referrers.push(await describeTree(source, head, { label: tag, depth: 1 }));
          }
        }
        nodes.push(node);
      }
      // cosign's signature tags (`sha256-<hex>.sig`) show under the manifest they sign.
      const top = nestCosignTags(nodes);
      out.result(renderTree(title, top), { name: title, tags: top });
    } finally {
      await source.close();
    }
  });

  withClientOptions(
    program
      .command('extract')
      .argument(
        '<source>',
        'image: a reference, oci:DIR[:TAG] (or the layout folder as it is), oci-archive:FILE, docker-archive:FILE',
      )
      .argument('<out>', "new folder to write the image's files into")
      .option('--dir <path>', 'only this folder of the image')
      .option('--platform <os/arch[/variant]>', 'platform to pick from an index (default linux/amd64)')
      .option('--max-bytes <n>', 'stop past this many bytes of file content', String(4 * 1024 ** 3))
      .option('--max-entries <n>', 'stop past this many tar entries', '1000000')
      .description("Flatten an image's layers (whiteouts applied, unsafe paths refused) into a folder"),
  ).action(
    async (
      text: string,
      outDir: string,
      flags: ClientFlags & { dir?: string; maxBytes: string; maxEntries: string },
    ) => {
      const out = outputFor(flags);
      const limits = {
        maxBytes: positiveInteger('--max-bytes', flags.maxBytes),
        maxEntries: positiveInteger('--max-entries', flags.maxEntries),
      };
      const source = await openSource(imageLocation(text, { layoutFolders: true }), (host) =>
        clientFor(host, flags),
      );
      try {
        const result = await flattenImage(source, outDir, {
          ...(flags.dir ? { dir: flags.dir } : {}),
          ...(flags.platform ? { platform: parsePlatform(flags.platform) } : {}),
          ...limits,
        });
        out.result(
          `Extracted ${counted(result.files, 'file')} (${counted(result.bytes, 'byte')}) of ${source.name} into ${outDir}`,
          { ...result, out: outDir, source: source.name },
        );
      } finally {
        await source.close();
      }
    },
  );
}
