import {
  isIndexMediaType,
  parseManifest,
  parsePlatform as parsePlatformText,
  type Descriptor,
  type Digest,
  type Platform,
} from '../oci/index.js';
import { choosePlatform } from '../client/index.js';
import { UsageError } from './common.js';

/** Parses `--platform os/arch[/variant]`. */
export function parsePlatform(text: string): Platform {
  const platform = parsePlatformText(text);
  if (!platform) throw new UsageError(`--platform "${text}" is not os/arch[/variant]`);
  return platform;
}

/** The host's platform in OCI terms. */
export function hostPlatform(): Platform {
  const arch: Record<string, string> = {
    x64: 'amd64',
    arm64: 'arm64',
    arm: 'arm',
    ia32: '386',
    ppc64: 'ppc64le',
    s390x: 's390x',
  };
  return {
    os: process.platform === 'win32' ? 'windows' : process.platform,
    architecture: arch[process.arch] ?? process.arch,
  };
}

/**
 * When `manifest` is an index, the digest of its entry for the wanted platform (see selectPlatform);
 * undefined for an image, which is its own answer.
 */
export function platformEntry(
  manifest: { readonly bytes: Uint8Array; readonly mediaType: string },
  wanted?: string,
): Digest | undefined {
  const parsed = parseManifest(manifest.bytes, manifest.mediaType);
  return isIndexMediaType(parsed.mediaType) ? selectPlatform(parsed.manifests, wanted).digest : undefined;
}

/** The index entry for the wanted platform (default: this machine's), or a clear error listing what exists. */
export function selectPlatform(manifests: readonly Descriptor[], wanted?: string): Descriptor {
  const want = wanted ? parsePlatform(wanted) : hostPlatform();
  return choosePlatform(manifests, want, { what: 'The index', orOnlyEntry: !wanted });
}
