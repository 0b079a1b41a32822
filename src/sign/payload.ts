import { DEFAULT_REGISTRY, isDigest, parseReference, type Digest, type Reference } from '../oci/index.js';
import { SIMPLE_SIGNING_TYPE } from './constants.js';
import { isObject, parseJsonObject, type JsonObject } from './json.js';

/** The claims of a cosign simple-signing payload that verification acts on. */
export interface SimpleSigningPayload {
  readonly dockerReference: string;
  readonly digest: Digest;
  /** `optional`: the `--annotation` claims given at signing time (strings, usually). */
  readonly annotations: Readonly<Record<string, unknown>>;
}

/** The repository name cosign writes into `docker-reference`: registry and repository, no tag or digest. */
export function dockerReferenceOf(ref: Reference): string {
  const registry = ref.registry === DEFAULT_REGISTRY ? 'index.docker.io' : ref.registry;
  return `${registry}/${ref.repository}`;
}

/** True when a payload's `docker-reference` names the same repository as `ref` (docker-style defaults). */
export function sameRepository(dockerReference: string, ref: Reference): boolean {
  try {
    const parsed = parseReference(dockerReference);
    return parsed.registry === ref.registry && parsed.repository === ref.repository;
  } catch {
    return false;
  }
}

/** The payload bytes cosign signs for an image: identity, digest, type and optional claims. */
export function buildPayload(
  ref: Reference,
  digest: Digest,
  annotations: Readonly<Record<string, string>> = {},
): Buffer {
  const body = {
    critical: {
      identity: { 'docker-reference': dockerReferenceOf(ref) },
      image: { 'docker-manifest-digest': digest },
      type: SIMPLE_SIGNING_TYPE,
    },
    optional: Object.keys(annotations).length > 0 ? { ...annotations } : null,
  };
  return Buffer.from(JSON.stringify(body));
}

/** A field looked up the way Go's encoding/json does: exact name first, then case-insensitively. */
function field(object: JsonObject, name: string): unknown {
  if (name in object) return object[name];
  const key = Object.keys(object).find((k) => k.toLowerCase() === name.toLowerCase());
  return key === undefined ? undefined : object[key];
}

/** Parses a simple-signing payload; throws an Error whose message says which part is wrong. */
export function parsePayload(bytes: Buffer): SimpleSigningPayload {
  const body = parseJsonObject(bytes, 'the payload');
  const critical = field(body, 'critical');
  if (!isObject(critical)) throw new Error('the payload has no "critical" section');
  const type = field(critical, 'type');
  if (type !== SIMPLE_SIGNING_TYPE)
    throw new Error(`the payload type is "${String(type)}", not "${SIMPLE_SIGNING_TYPE}"`);
  const identity = field(critical, 'identity');
  const image = field(critical, 'image');
  const dockerReference = isObject(identity) ? field(identity, 'docker-reference') : undefined;
  const digest = isObject(image) ? field(image, 'docker-manifest-digest') : undefined;
  if (typeof digest !== 'string' || !isDigest(digest))
    throw new Error('the payload has no valid "docker-manifest-digest"');
  const optional = field(body, 'optional');
  return {
    dockerReference: typeof dockerReference === 'string' ? dockerReference : '',
    digest,
    annotations: isObject(optional) ? optional : {},
  };
}
