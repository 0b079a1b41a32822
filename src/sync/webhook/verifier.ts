import type { RegistryClient } from '../../client/index.js';
import { parseReference } from '../../oci/index.js';
import { verifyImage, type PublicKey } from '../../sign/index.js';
import type { ImageVerifier } from './admission.js';

export interface ImageVerifierOptions {
  /** Public keys; any may match. */
  readonly keys: readonly PublicKey[];
  /** A client for a registry host (the caller owns and caches them). */
  readonly clientFor: (host: string) => RegistryClient | Promise<RegistryClient>;
  /** Require the signature to name the image's repository. Default: true. */
  readonly checkReference?: boolean;
  /** Largest signature blob read. Default: the sign library's. */
  readonly maxSignatureBytes?: number;
}

/** An ImageVerifier that checks cosign signatures with the sign library. */
export function imageVerifier(options: ImageVerifierOptions): ImageVerifier {
  return async (image: string, signal?: AbortSignal): Promise<void> => {
    const ref = parseReference(image);
    const client = await options.clientFor(ref.registry);
    await verifyImage(client, ref, {
      keys: options.keys,
      ...(options.checkReference === undefined ? {} : { checkReference: options.checkReference }),
      ...(options.maxSignatureBytes === undefined ? {} : { maxSignatureBytes: options.maxSignatureBytes }),
      ...(signal ? { signal } : {}),
    });
  };
}
