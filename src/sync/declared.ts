import { posix } from 'node:path';
import { splitApiVersion, type KubeObject } from '../kube/index.js';
import { objectKey, type ObjectId } from './api.js';
import { KNV, SyncError, SyncErrors } from './errors.js';
import type { SourceObject } from './source.js';

export type Scope = 'Namespaced' | 'Cluster';
/** The scope of a kind as the API server serves it, or undefined when it does not. */
export type ScopeLookup = (apiVersion: string, kind: string) => Promise<Scope | undefined>;
export type SourceFormat = 'unstructured' | 'hierarchy';

/** An object ready to apply: namespace resolved, validated, with its identity. */
export interface DeclaredObject {
  readonly object: KubeObject;
  readonly path: string;
  readonly id: ObjectId;
  readonly namespaced: boolean;
}

export interface DeclareOptions {
  /** Default "unstructured". */
  readonly format?: SourceFormat;
  readonly scopeOf: ScopeLookup;
  /** For a RepoSync: its namespace. Every object must be namespaced and in it (it is the default). */
  readonly repoNamespace?: string | undefined;
}

const CRD_KIND = 'CustomResourceDefinition';
// Names must be usable as one path segment; the API server checks each kind's finer rules.
const BAD_NAME = /[/%\s]/;

function idOf(object: KubeObject, namespace: string): ObjectId {
  return {
    group: splitApiVersion(object.apiVersion).group,
    kind: object.kind,
    namespace,
    name: object.metadata.name,
  };
}

/** Scopes of the kinds that CRDs in the source declare ("group/version kind" → scope). */
function crdScopes(objects: readonly SourceObject[]): Map<string, Scope> {
  const scopes = new Map<string, Scope>();
  for (const { object } of objects) {
    if (object.kind !== CRD_KIND || !object.apiVersion.startsWith('apiextensions.k8s.io/')) continue;
    const spec = object.spec as
      | { group?: string; scope?: string; names?: { kind?: string }; versions?: { name?: string }[] }
      | undefined;
    if (!spec?.group || !spec.names?.kind) continue;
    const scope: Scope = spec.scope === 'Cluster' ? 'Cluster' : 'Namespaced';
    for (const version of spec.versions ?? [])
      if (version.name) scopes.set(`${spec.group}/${version.name} ${spec.names.kind}`, scope);
  }
  return scopes;
}

function withNamespace(object: KubeObject, namespace: string | undefined): KubeObject {
  const metadata = { ...object.metadata };
  if (namespace === undefined) delete metadata.namespace;
  else metadata.namespace = namespace;
  return { ...object, metadata };
}

interface Scoped {
  readonly source: SourceObject;
  readonly namespaced: boolean;
}

/** The hierarchy format: cluster/, namespaces/ (namespace and abstract-namespace directories), system/. */
function resolveHierarchy(
  scoped: readonly Scoped[],
  errors: SyncError[],
): { object: KubeObject; path: string }[] {
  const out: { object: KubeObject; path: string }[] = [];
  const namespaceDirs = new Map<string, string>(); // directory → namespace name
  for (const { source } of scoped) {
    const [top] = source.path.split('/');
    if (top === 'namespaces' && source.object.kind === 'Namespace' && source.object.apiVersion === 'v1') {
      const dir = posix.dirname(source.path);
      const name = source.object.metadata.name;
      if (dir === 'namespaces') {
        errors.push(
          new SyncError(
            KNV.ILLEGAL_TOP_LEVEL,
            `${source.path}: a Namespace must be in its own directory under namespaces/`,
          ),
        );
      } else if (posix.basename(dir) !== name) {
        errors.push(
          new SyncError(
            KNV.INVALID_NAMESPACE_NAME,
            `${source.path}: Namespace "${name}" must be declared in a directory named "${name}", not "${posix.basename(dir)}"`,
          ),
        );
      } else namespaceDirs.set(dir, name);
    }
  }
  for (const dir of namespaceDirs.keys()) {
    const nested = scoped.find(({ source }) => posix.dirname(source.path).startsWith(`${dir}/`));
    if (nested)
      errors.push(
        new SyncError(
          KNV.ILLEGAL_NAMESPACE_SUBDIRECTORY,
          `${nested.source.path}: namespace directory "${dir}" declares a Namespace and must not have subdirectories`,
        ),
      );
  }
  for (const { source, namespaced } of scoped) {
    const { object, path } = source;
    const [top] = path.split('/');
    if (top === 'system' || top === 'clusterregistry') continue;
    if (top === 'cluster') {
      if (namespaced)
        errors.push(
          new SyncError(
            KNV.ILLEGAL_KIND_IN_CLUSTER,
            `${path}: namespaced ${object.kind} "${object.metadata.name}" must not be under cluster/`,
          ),
        );
      else out.push({ object, path });
      continue;
    }
    if (top !== 'namespaces' || !path.includes('/')) {
      errors.push(
        new SyncError(
          KNV.ILLEGAL_TOP_LEVEL,
          `${path}: the hierarchy format allows only cluster/, namespaces/ and system/ at the top level`,
        ),
      );
      continue;
    }
    if (!namespaced) {
      if (object.kind === 'Namespace' && object.apiVersion === 'v1') out.push({ object, path });
      else
        errors.push(
          new SyncError(
            KNV.ILLEGAL_KIND_IN_NAMESPACES,
            `${path}: cluster-scoped ${object.kind} "${object.metadata.name}" must be under cluster/, not namespaces/`,
          ),
        );
      continue;
    }
    const dir = posix.dirname(path);
    const own = namespaceDirs.get(dir);
    const targets =
      own !== undefined
        ? [own]
        : [...namespaceDirs].filter(([d]) => d.startsWith(`${dir}/`)).map(([, n]) => n);
    if (targets.length === 0)
      errors.push(
        new SyncError(
          KNV.ABSTRACT_WITHOUT_NAMESPACE,
          `${path}: ${object.kind} "${object.metadata.name}" is in abstract namespace directory "${dir}", which has no namespace directory below it`,
        ),
      );
    for (const namespace of targets) {
      const declared = object.metadata.namespace;
      if (declared !== undefined && declared !== namespace) {
        errors.push(
          new SyncError(
            KNV.ILLEGAL_NAMESPACE,
            `${path}: ${object.kind} "${object.metadata.name}" declares namespace "${declared}" but its directory is namespace "${namespace}"`,
          ),
        );
        continue;
      }
      out.push({ object: withNamespace(object, namespace), path });
    }
  }
  return out;
}

/**
 * Turns parsed source objects into objects to apply: looks up each kind's scope (the API server's, or a
 * CRD in the source), resolves namespaces (hierarchy directories; "default", or the RepoSync's namespace,
 * when none is declared), and validates names, scopes, RepoSync confinement and duplicates. Every problem
 * is reported in one SyncErrors; nothing is returned partially.
 */
export async function declareObjects(
  objects: readonly SourceObject[],
  options: DeclareOptions,
): Promise<DeclaredObject[]> {
  const errors: SyncError[] = [];
  const fromCrds = crdScopes(objects);
  const scoped: Scoped[] = [];
  const hierarchy = options.format === 'hierarchy' && options.repoNamespace === undefined;
  for (const source of objects) {
    const { object, path } = source;
    // The hierarchy format's system/ (Repo, HierarchyConfig) and clusterregistry/ configure the format itself.
    if (hierarchy && /^(system|clusterregistry)\//.test(path)) continue;
    const name = object.metadata.name as unknown;
    if (typeof name !== 'string' || name === '') {
      errors.push(new SyncError(KNV.MISSING_NAME, `${path}: ${object.kind} has no metadata.name`));
      continue;
    }
    if (name.length > 253 || BAD_NAME.test(name) || name === '.' || name === '..') {
      errors.push(
        new SyncError(KNV.INVALID_NAME, `${path}: ${object.kind} name "${name}" is not a valid object name`),
      );
      continue;
    }
    const scope =
      fromCrds.get(`${object.apiVersion} ${object.kind}`) ??
      (await options.scopeOf(object.apiVersion, object.kind));
    if (!scope) {
      const { group } = splitApiVersion(object.apiVersion);
      errors.push(
        new SyncError(
          KNV.UNKNOWN_KIND,
          `${path}: No CustomResourceDefinition is defined for the type "${object.kind}.${group || 'core'}" (${object.apiVersion}) in the cluster`,
        ),
      );
      continue;
    }
    scoped.push({ source, namespaced: scope === 'Namespaced' });
  }

  const placed = hierarchy ? resolveHierarchy(scoped, errors) : scoped.map(({ source }) => source);
  const namespacedKinds = new Set(
    scoped.filter((s) => s.namespaced).map((s) => `${s.source.object.apiVersion} ${s.source.object.kind}`),
  );

  const declared: DeclaredObject[] = [];
  const seen = new Map<string, string>();
  for (const { object, path } of placed) {
    const namespaced = namespacedKinds.has(`${object.apiVersion} ${object.kind}`);
    const label = `${object.kind} "${object.metadata.name}"`;
    let namespace = object.metadata.namespace;
    if (namespace !== undefined && typeof namespace !== 'string') {
      errors.push(
        new SyncError(KNV.OBJECT_PARSE, `${path}: ${label} has a metadata.namespace that is not a string`),
      );
      continue;
    }
    if (!namespaced) {
      if (options.repoNamespace !== undefined) {
        errors.push(
          new SyncError(
            KNV.BAD_SCOPE,
            `${path}: ${label} is cluster-scoped; a RepoSync may only declare namespaced objects of namespace "${options.repoNamespace}"`,
          ),
        );
        continue;
      }
      if (namespace) {
        errors.push(
          new SyncError(
            KNV.NAMESPACE_ON_CLUSTER_SCOPED,
            `${path}: cluster-scoped ${label} must not declare metadata.namespace "${namespace}"`,
          ),
        );
        continue;
      }
    } else {
      namespace ||= options.repoNamespace ?? 'default';
      if (options.repoNamespace !== undefined && namespace !== options.repoNamespace) {
        errors.push(
          new SyncError(
            KNV.ILLEGAL_NAMESPACE,
            `${path}: ${label} is in namespace "${namespace}"; a RepoSync in "${options.repoNamespace}" may only declare objects of its own namespace`,
          ),
        );
        continue;
      }
    }
    const final = withNamespace(object, namespaced ? namespace : undefined);
    const id = idOf(final, namespaced ? (namespace ?? '') : '');
    const key = objectKey(id);
    const previous = seen.get(key);
    if (previous !== undefined) {
      errors.push(
        new SyncError(
          KNV.NAME_COLLISION,
          `${path}: ${label}${namespaced ? ` in namespace "${namespace}"` : ''} is also declared in ${previous}`,
        ),
      );
      continue;
    }
    seen.set(key, path);
    declared.push({ object: final, path, id, namespaced });
  }
  if (errors.length > 0) throw new SyncErrors(errors);
  return declared;
}
