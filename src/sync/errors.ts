/**
 * Config Sync's error codes ("KNV" + four digits; 1xxx are found in the source, 2xxx at run time), the ones
 * Airlock reports. Messages follow Config Sync's wording where users search for it.
 */
export const KNV = {
  /** A file or document that is not a Kubernetes object (bad YAML/JSON, no apiVersion or kind). */
  OBJECT_PARSE: 'KNV1006',
  /** A namespaced object in another namespace than its RepoSync's, or the hierarchy's directory. */
  ILLEGAL_NAMESPACE: 'KNV1009',
  /** A namespace directory of the hierarchy format that has subdirectories. */
  ILLEGAL_NAMESPACE_SUBDIRECTORY: 'KNV1003',
  /** The hierarchy format's top level has something other than cluster/, namespaces/, system/. */
  ILLEGAL_TOP_LEVEL: 'KNV1019',
  /** A Namespace whose name differs from its directory in the hierarchy format. */
  INVALID_NAMESPACE_NAME: 'KNV1020',
  /** An object in an abstract namespace directory with no namespace directory below it (hierarchy). */
  ABSTRACT_WITHOUT_NAMESPACE: 'KNV1044',
  /** A cluster-scoped object (other than a Namespace) under namespaces/ in the hierarchy format. */
  ILLEGAL_KIND_IN_NAMESPACES: 'KNV1038',
  /** A namespaced object under cluster/ in the hierarchy format. */
  ILLEGAL_KIND_IN_CLUSTER: 'KNV1039',
  /** A kind neither the API server nor a CRD in the source declares. */
  UNKNOWN_KIND: 'KNV1021',
  /** Two objects with the same group, kind, namespace and name. */
  NAME_COLLISION: 'KNV1029',
  /** An object without metadata.name. */
  MISSING_NAME: 'KNV1031',
  /** An invalid metadata.name. */
  INVALID_NAME: 'KNV1036',
  /** A cluster-scoped object declaring a namespace. */
  NAMESPACE_ON_CLUSTER_SCOPED: 'KNV1052',
  /** A RepoSync declaring a cluster-scoped object. */
  BAD_SCOPE: 'KNV1058',
  /** Two syncs declare the same object. */
  MANAGEMENT_CONFLICT: 'KNV1060',
  /** The RootSync/RepoSync itself is invalid (source type, missing image, unsupported auth). */
  INVALID_SYNC: 'KNV1061',
  /** The API server refused a request (an admission webhook's denial among them). */
  API_SERVER: 'KNV2002',
  /** Reading the source failed: registry unreachable, image missing, auth, bad archive. */
  SOURCE: 'KNV2004',
  /** Something else keeps changing a managed object. */
  RESOURCE_FIGHT: 'KNV2005',
  /** Applying or pruning an object failed. */
  APPLY: 'KNV2009',
  INTERNAL: 'KNV9998',
} as const;

export type KnvCode = (typeof KNV)[keyof typeof KNV];

/** One error as status shows it. */
export interface SyncErrorEntry {
  readonly code: string;
  readonly errorMessage: string;
}

/** An error with a KNV code; `message` is what status shows after the code. */
export class SyncError extends Error {
  override readonly name = 'SyncError';
  readonly code: KnvCode;

  constructor(code: KnvCode, message: string, options: { cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
  }

  /** The status entry: `KNVxxxx: message` as errorMessage, like Config Sync writes it. */
  toEntry(): SyncErrorEntry {
    return { code: this.code, errorMessage: `${this.code}: ${this.message}` };
  }
}

/** Several source errors found together (validation reports all of them at once). */
export class SyncErrors extends Error {
  override readonly name = 'SyncErrors';
  readonly errors: readonly SyncError[];

  constructor(errors: readonly SyncError[]) {
    super(errors.map((e) => `${e.code}: ${e.message}`).join('\n'));
    this.errors = errors;
  }
}

/** Any error as a list of KNV entries (unknown errors become KNV9998 with their message). */
export function toSyncErrors(error: unknown, fallback: KnvCode = KNV.INTERNAL): SyncError[] {
  if (error instanceof SyncErrors) return [...error.errors];
  if (error instanceof SyncError) return [error];
  return [new SyncError(fallback, error instanceof Error ? error.message : String(error), { cause: error })];
}
