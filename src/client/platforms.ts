import type { Descriptor, Platform } from '../oci/index.js';
import { ClientError } from './errors.js';

/** `os/arch[/variant]`. */
export function formatPlatform(platform: Platform): string {
  return [platform.os, platform.architecture, platform.variant].filter(Boolean).join('/');
}

/** Whether an index entry is for `want` (any variant when `want` names none). */
export function platformMatches(descriptor: Descriptor, want: Platform): boolean {
  const p = descriptor.platform;
  return (
    p !== undefined &&
    p.os === want.os &&
    p.architecture === want.architecture &&
    (want.variant === undefined || p.variant === want.variant)
  );
}

export interface ChoosePlatformOptions {
  /** What the index is, for the error (`Base docker.io/library/alpine:3`). */
  readonly what: string;
  /** With no match, take the only entry of a one-entry index (for a default platform). Default: false. */
  readonly orOnlyEntry?: boolean;
}

/**
 * The entry of an index (`manifests`, of `what`) for `want`; when none matches, a NOT_FOUND error that
 * lists the platforms the index has. One rule for copy, extract, append, config and docker archives.
 */
export function choosePlatform(
  manifests: readonly Descriptor[],
  want: Platform,
  options: ChoosePlatformOptions,
): Descriptor {
  const match = manifests.find((d) => platformMatches(d, want));
  if (match) return match;
  if (options.orOnlyEntry && manifests.length === 1 && manifests[0]) return manifests[0];
  const have = manifests.map((d) => (d.platform ? formatPlatform(d.platform) : `${d.digest} (no platform)`));
  throw new ClientError(
    'NOT_FOUND',
    `${options.what} has no manifest for platform ${formatPlatform(want)}; it has ${have.join(', ') || 'none'}`,
  );
}
