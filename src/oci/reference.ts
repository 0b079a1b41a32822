import { parseDigest, type Digest } from './digest.js';

/** Docker Hub's registry host, used when a reference names no registry. */
export const DEFAULT_REGISTRY = 'docker.io';
const MAX_NAME_LENGTH = 255;

const COMPONENT = '[a-z0-9]+(?:(?:\\.|_|__|-+)[a-z0-9]+)*';
const REPOSITORY_RE = new RegExp(`^${COMPONENT}(?:/${COMPONENT})*$`);
const TAG_RE = /^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$/;
const HOST_RE =
  /^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?$/;

/** Thrown when a reference, repository name or tag is malformed. */
export class ReferenceError extends Error {
  override readonly name = 'ReferenceError';
}

/** Why `name` is not a valid repository name, or undefined when it is one. */
export function repositoryNameProblem(name: string): string | undefined {
  if (name.length === 0) return 'name is empty';
  if (name.length > MAX_NAME_LENGTH) return `name is longer than ${MAX_NAME_LENGTH} characters`;
  if (!REPOSITORY_RE.test(name)) {
    return 'use lower-case letters, digits and separators (".", "_", "__", "-") in path components joined by "/"';
  }
  return undefined;
}

export function isValidRepositoryName(name: string): boolean {
  return repositoryNameProblem(name) === undefined;
}

export function isValidTag(tag: string): boolean {
  return TAG_RE.test(tag);
}

/** A parsed image reference: `registry/repository[:tag][@digest]`. */
export interface Reference {
  readonly registry: string;
  readonly repository: string;
  readonly tag?: string;
  readonly digest?: Digest;
}

/**
 * Parses a reference the way docker does: no registry means docker.io, a single-component name on
 * docker.io gets `library/`, neither tag nor digest means `latest`.
 */
export function parseReference(input: string): Reference {
  const fail = (why: string): never => {
    throw new ReferenceError(`Cannot parse reference "${input}": ${why}`);
  };
  if (input.length === 0) fail('reference is empty');
  let rest = input;
  let digest: Digest | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    try {
      digest = parseDigest(rest.slice(at + 1)).digest;
    } catch (error) {
      fail((error as Error).message.replace(/^Cannot parse digest "[^"]*": /, 'digest: '));
    }
    rest = rest.slice(0, at);
  }
  let tag: string | undefined;
  const lastSlash = rest.lastIndexOf('/');
  const colon = rest.lastIndexOf(':');
  if (colon > lastSlash) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (tag.length === 0) fail('tag is empty');
    if (!isValidTag(tag)) fail(`tag "${tag}" is invalid`);
  }
  let registry = DEFAULT_REGISTRY;
  let repository = rest;
  const slash = rest.indexOf('/');
  if (slash >= 0) {
    const first = rest.slice(0, slash);
    if (first.includes('.') || first.includes(':') || first === 'localhost' || first.startsWith('[')) {
      registry = first;
      repository = rest.slice(slash + 1);
    }
  }
  if (!HOST_RE.test(registry)) fail(`registry host "${registry}" is invalid`);
  if (registry === 'index.docker.io') registry = DEFAULT_REGISTRY;
  if (registry === DEFAULT_REGISTRY && !repository.includes('/')) repository = `library/${repository}`;
  const problem = repositoryNameProblem(repository);
  if (problem) fail(`repository "${repository}": ${problem}`);
  if (tag === undefined && digest === undefined) tag = 'latest';
  return {
    registry,
    repository,
    ...(tag === undefined ? {} : { tag }),
    ...(digest === undefined ? {} : { digest }),
  };
}

/** Formats a reference back to its canonical string form. */
export function formatReference(ref: Reference): string {
  let out = `${ref.registry}/${ref.repository}`;
  if (ref.tag !== undefined) out += `:${ref.tag}`;
  if (ref.digest !== undefined) out += `@${ref.digest}`;
  return out;
}
