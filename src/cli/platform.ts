import { parsePlatform as parsePlatformText, type Descriptor, type Platform } from '../oci/index.js';
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

/** The index entry for the wanted platform (default: this machine's), or a clear error listing what exists. */
export function selectPlatform(manifests: readonly Descriptor[], wanted?: string): Descriptor {
  const want = wanted ? parsePlatform(wanted) : hostPlatform();
  const match = manifests.find(
    (d) =>
      d.platform?.os === want.os &&
      d.platform.architecture === want.architecture &&
      (want.variant === undefined || d.platform.variant === want.variant),
  );
  if (match) return match;
  if (!wanted && manifests.length === 1 && manifests[0]) return manifests[0];
  const have = manifests.map((d) =>
    d.platform
      ? [d.platform.os, d.platform.architecture, d.platform.variant].filter(Boolean).join('/')
      : d.digest,
  );
  throw new UsageError(
    `No manifest for platform ${[want.os, want.architecture, want.variant].filter(Boolean).join('/')}; the index has: ${have.join(', ')}`,
  );
}
