import { digestTag, isIndexMediaType, parseManifest, type Descriptor, type Digest } from '../oci/index.js';
import type { ImageSource } from './image-store.js';

/** One node of `airlock tree`: a tag or manifest, its platforms (children) and its referrers. */
export interface TreeNode {
  readonly label: string;
  readonly digest: Digest;
  readonly mediaType: string;
  readonly artifactType?: string;
  readonly platform?: string;
  readonly children: TreeNode[];
  readonly referrers: TreeNode[];
}

function platformText(d: Descriptor): string | undefined {
  return d.platform
    ? [d.platform.os, d.platform.architecture, d.platform.variant].filter(Boolean).join('/')
    : undefined;
}

/** Walks a manifest: index children (platforms) and, for each manifest, its referrers (recursively). */
export async function describeTree(
  source: ImageSource,
  descriptor: Descriptor,
  where: { label: string; depth?: number; signal?: AbortSignal | undefined },
): Promise<TreeNode> {
  const { label, depth = 0, signal } = where;
  const manifest = await source.manifest(descriptor.digest, signal);
  const parsed = parseManifest(manifest.bytes, manifest.mediaType);
  const children: TreeNode[] = [];
  if (isIndexMediaType(parsed.mediaType)) {
    for (const child of parsed.manifests) {
      children.push(
        await describeTree(source, child, {
          label: platformText(child) ?? child.digest,
          depth: depth + 1,
          signal,
        }),
      );
    }
  }
  const referrers: TreeNode[] = [];
  if (depth < 8) {
    for (const ref of await source.referrers(descriptor.digest, signal)) {
      referrers.push(
        await describeTree(source, ref, {
          label: ref.artifactType ?? ref.mediaType,
          depth: depth + 1,
          signal,
        }),
      );
    }
  }
  const platform = platformText(descriptor);
  return {
    label,
    digest: descriptor.digest,
    mediaType: parsed.mediaType,
    ...(parsed.artifactType ? { artifactType: parsed.artifactType } : {}),
    ...(platform ? { platform } : {}),
    children,
    referrers,
  };
}

/** Renders nodes with box-drawing lines, as `tree` does. */
export function renderTree(title: string, nodes: readonly TreeNode[]): string {
  const lines = [title];
  const walk = (list: readonly TreeNode[], prefix: string): void => {
    list.forEach((node, i) => {
      const last = i === list.length - 1;
      const kind = isIndexMediaType(node.mediaType)
        ? 'index'
        : node.artifactType &&
            !node.artifactType.includes('image.config') &&
            !node.artifactType.includes('container.image')
          ? node.artifactType
          : 'image';
      lines.push(`${prefix}${last ? '└── ' : '├── '}${node.label}  ${node.digest}  (${kind})`);
      const next = prefix + (last ? '    ' : '│   ');
      walk([...node.children, ...node.referrers.map((r) => ({ ...r, label: `referrer: ${r.label}` }))], next);
    });
  };
  walk(nodes, '');
  return lines.join('\n');
}

/** What cosign attaches to a manifest under a tag of its own: signatures, attestations, SBOMs. */
const COSIGN_SUFFIXES = ['sig', 'att', 'sbom'] as const;

/** Such a tag: `sha256-<hex>.sig`, `.att` or `.sbom`. */
const COSIGN_TAG = new RegExp(`^(sha256)-([0-9a-f]{64})\\.(${COSIGN_SUFFIXES.join('|')})$`);

/** The tags cosign would keep what it attaches to `digest` under (see `nestCosignTags`). */
export function cosignTags(digest: Digest): string[] {
  return COSIGN_SUFFIXES.map((suffix) => `${digestTag(digest)}.${suffix}`);
}

/**
 * Moves the nodes of cosign's tag-schema tags under the node of the manifest they are for (a tag's
 * manifest, or one of an index's platforms), as referrers, as the referrers API would have listed them;
 * one whose manifest is not in the tree stays where it is. Returns the nodes left at the top.
 */
export function nestCosignTags(nodes: readonly TreeNode[]): TreeNode[] {
  const byDigest = new Map<string, TreeNode>();
  const index = (node: TreeNode): void => {
    if (!byDigest.has(node.digest)) byDigest.set(node.digest, node);
    node.children.forEach(index);
    node.referrers.forEach(index);
  };
  nodes.filter((node) => !COSIGN_TAG.test(node.label)).forEach(index);
  const top: TreeNode[] = [];
  for (const node of nodes) {
    const tag = COSIGN_TAG.exec(node.label);
    const subject = tag ? byDigest.get(`${tag[1]}:${tag[2]}`) : undefined;
    if (subject) subject.referrers.push(node);
    else top.push(node);
  }
  return top;
}
