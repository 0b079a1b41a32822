import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { Digest } from '../oci/index.js';
import { cosignTags, nestCosignTags, renderTree, type TreeNode } from './tree.js';

const hex = (c: string): string => c.repeat(64);
const digest = (c: string): Digest => `sha256:${hex(c)}` as Digest;

function node(label: string, c: string, more: Partial<TreeNode> = {}): TreeNode {
  return {
    label,
    digest: digest(c),
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    children: [],
    referrers: [],
    ...more,
  };
}

describe('nestCosignTags', () => {
  it("puts cosign's sha256-<hex>.sig/.att/.sbom tags under the manifest they are for, and leaves the rest", () => {
    const platform = node('linux/amd64', 'b');
    const index = node('v1', 'a', {
      mediaType: 'application/vnd.oci.image.index.v1+json',
      children: [platform],
    });
    const other = node('v2', 'c');
    const indexSig = node(`sha256-${hex('a')}.sig`, 'd');
    const indexAtt = node(`sha256-${hex('a')}.att`, 'e');
    const platformSig = node(`sha256-${hex('b')}.sig`, 'f');
    const orphan = node(`sha256-${hex('9')}.sig`, '1');
    // A tag only named like one (not 64 hex digits) is a tag like any other.
    const lookalike = node('sha256-abc.sig', '2');
    const top = nestCosignTags([indexAtt, index, indexSig, other, platformSig, orphan, lookalike]);
    assert.deepEqual(
      top.map((n) => n.label),
      ['v1', 'v2', `sha256-${hex('9')}.sig`, 'sha256-abc.sig'],
    );
    assert.deepEqual(
      index.referrers.map((n) => n.label),
      [`sha256-${hex('a')}.att`, `sha256-${hex('a')}.sig`],
    );
    assert.deepEqual(
      platform.referrers.map((n) => n.label),
      [`sha256-${hex('b')}.sig`],
    );
    assert.deepEqual(other.referrers, []);
    const text = renderTree('host/repo', top);
    assert.match(
      text,
      new RegExp(`^│ {3}└── referrer: sha256-${hex('a')}\\.sig {2}${digest('d')} {2}\\(image\\)$`, 'm'),
    );
  });

  it("names the tags cosign keeps a manifest's signatures, attestations and SBOMs under", () => {
    assert.deepEqual(cosignTags(digest('a')), [
      `sha256-${hex('a')}.sig`,
      `sha256-${hex('a')}.att`,
      `sha256-${hex('a')}.sbom`,
    ]);
  });

  it('changes nothing in a tree without such tags', () => {
    const nodes = [node('v1', 'a'), node('latest', 'a')];
    assert.deepEqual(nestCosignTags(nodes), nodes);
  });
});
