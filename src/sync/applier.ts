import type { KubeClient } from '../kube/index.js';
import { isStatus, splitApiVersion, type KubeObject, type ResourceInfo } from '../kube/index.js';
import {
  ANNOTATIONS,
  CRD,
  DECLARED_VERSION_LABEL,
  MANAGED_BY_LABEL,
  MANAGED_BY_VALUE,
  objectKey,
  resourceId,
  type ObjectId,
} from './api.js';
import type { DeclaredObject } from './declared.js';
import { KNV, SyncError } from './errors.js';
import { computeStatus, type ObjectStatus } from './kstatus.js';
import { mapLimit } from './concurrency.js';

/** Who is applying: the sync's identity as stamped on every object it manages. */
export interface ApplyIdentity {
  /** Field manager for server-side apply: the reconciler's name. */
  readonly fieldManager: string;
  /** configsync.gke.io/manager value. */
  readonly manager: string;
  /** config.k8s.io/owning-inventory value. */
  readonly inventory: string;
  /** A RepoSync's namespace: conflict checks list only there (its reconciler may not list elsewhere). */
  readonly namespace?: string | undefined;
}

export interface ApplyRunOptions {
  /** The image digest (hex) being applied: the objects' source hash. */
  readonly commit: string;
  /** Objects this sync managed before (from its inventory); those no longer declared are pruned. */
  readonly previous: readonly ObjectId[];
  /** Parallel requests per step. Default 8. */
  readonly concurrency?: number;
  /** How long to wait for a CRD to be Established. Default 60 s. */
  readonly crdTimeoutMs?: number;
  readonly signal?: AbortSignal;
}

/** What one managed object looks like after a run. */
export interface AppliedObject {
  readonly id: ObjectId;
  readonly info: ResourceInfo;
  /** The object as applied (stamped); drift repair applies it again. */
  readonly desired: KubeObject;
  /** resourceVersion after the apply. */
  readonly resourceVersion: string | undefined;
  readonly status: ObjectStatus;
}

export interface ApplyRunResult {
  readonly applied: AppliedObject[];
  /** Objects kept in the inventory although not applied now (apply or prune failed; managed elsewhere). */
  readonly retained: ObjectId[];
  readonly pruned: ObjectId[];
  readonly errors: SyncError[];
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Waits until a CustomResourceDefinition is Established (its kinds are served); KNV2009 on timeout. */
export async function waitEstablished(
  kube: KubeClient,
  name: string,
  options: { timeoutMs?: number } = {},
): Promise<void> {
  const timeoutMs = options.timeoutMs ?? 60_000;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const crd = await kube.get(CRD, { name });
    if (crd && computeStatus(crd) === 'Current') return;
    if (Date.now() > deadline)
      throw new SyncError(
        KNV.APPLY,
        `CustomResourceDefinition "${name}" did not become Established within ${timeoutMs} ms`,
      );
    await sleep(200);
  }
}

/** The declared object with Config Sync's management annotations and labels. */
export function stamp(declared: DeclaredObject, identity: ApplyIdentity, commit: string): KubeObject {
  const { object, id, path } = declared;
  const metadata = { ...object.metadata };
  metadata.annotations = {
    ...metadata.annotations,
    [ANNOTATIONS.managed]: 'enabled',
    [ANNOTATIONS.manager]: identity.manager,
    [ANNOTATIONS.resourceId]: resourceId(id),
    [ANNOTATIONS.owningInventory]: identity.inventory,
    [ANNOTATIONS.sourceHash]: commit,
    [ANNOTATIONS.sourcePath]: path,
  };
  metadata.labels = {
    ...metadata.labels,
    [MANAGED_BY_LABEL]: MANAGED_BY_VALUE,
    [DECLARED_VERSION_LABEL]: splitApiVersion(object.apiVersion).version,
  };
  return { ...object, metadata };
}

function kindOrder(declared: DeclaredObject): number {
  if (declared.object.kind === 'CustomResourceDefinition' && declared.id.group === 'apiextensions.k8s.io')
    return 0;
  if (declared.object.kind === 'Namespace' && declared.id.group === '') return 1;
  return declared.namespaced ? 3 : 2;
}

function describe(id: ObjectId): string {
  return `${id.kind}${id.group ? `.${id.group}` : ''} ${id.namespace ? `${id.namespace}/` : ''}${id.name}`;
}

function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** Applies, prunes and reports; the building block of a reconcile and of drift repair. */
export class Applier {
  readonly #kube: KubeClient;
  readonly #identity: ApplyIdentity;

  constructor(kube: KubeClient, identity: ApplyIdentity) {
    this.#kube = kube;
    this.#identity = identity;
  }

  get identity(): ApplyIdentity {
    return this.#identity;
  }

  /** Server-side applies one stamped object; the stored result. */
  async applyOne(desired: KubeObject, signal?: AbortSignal): Promise<KubeObject> {
    return this.#kube.apply(desired, { fieldManager: this.#identity.fieldManager, force: true, signal });
  }

  /** The manager annotation of live objects of the declared kinds, by object key (one LIST per kind). */
  /**
   * The manager annotation of live objects of the declared kinds, by object key: one label-selected LIST
   * per kind and namespace (all namespaces at once when a kind spans more than a few), so the cost follows
   * what this source declares rather than everything the controller manages.
   */
  async #liveManagers(declared: readonly DeclaredObject[]): Promise<Map<string, string>> {
    const managers = new Map<string, string>();
    const kinds = new Map<string, { sample: DeclaredObject; namespaces: Set<string> }>();
    for (const d of declared) {
      const key = `${d.object.apiVersion} ${d.object.kind}`;
      const entry = kinds.get(key) ?? { sample: d, namespaces: new Set<string>() };
      entry.namespaces.add(d.id.namespace);
      kinds.set(key, entry);
    }
    const lists: { info: ResourceInfo; namespace: string | undefined }[] = [];
    for (const { sample, namespaces } of kinds.values()) {
      const info = await this.#kube.findResource(sample.object.apiVersion, sample.object.kind);
      if (!info) continue; // a CRD in this source: nothing of it exists yet
      if (!info.namespaced) lists.push({ info, namespace: undefined });
      else if (this.#identity.namespace) lists.push({ info, namespace: this.#identity.namespace });
      else if (namespaces.size <= 4) for (const namespace of namespaces) lists.push({ info, namespace });
      else lists.push({ info, namespace: undefined });
    }
    await mapLimit(lists, 4, async ({ info, namespace }) => {
      let list;
      try {
        list = await this.#kube.list(info, {
          labelSelector: `${MANAGED_BY_LABEL}=${MANAGED_BY_VALUE}`,
          namespace,
        });
      } catch (error) {
        // Not allowed to list: the apply of each object reports the refusal with its name.
        if (isStatus(error, 403)) return;
        throw error;
      }
      for (const item of list.items) {
        const manager = item.metadata.annotations?.[ANNOTATIONS.manager];
        if (manager)
          managers.set(
            objectKey({
              group: info.group,
              kind: info.kind,
              namespace: item.metadata.namespace ?? '',
              name: item.metadata.name,
            }),
            manager,
          );
      }
    });
    return managers;
  }

  /**
   * Applies `declared` in order (CRDs, waiting until Established; Namespaces; other cluster-scoped;
   * namespaced), skipping objects another sync manages (KNV1060), then prunes what left the source.
   */
  async run(declared: readonly DeclaredObject[], options: ApplyRunOptions): Promise<ApplyRunResult> {
    const concurrency = options.concurrency ?? 8;
    const errors: SyncError[] = [];
    const applied: AppliedObject[] = [];
    const retained: ObjectId[] = [];
    const managers = await this.#liveManagers(declared);

    const detach = declared.filter(
      (d) => d.object.metadata.annotations?.[ANNOTATIONS.managed] === 'disabled',
    );
    const managed = declared.filter((d) => !detach.includes(d));
    const steps = [0, 1, 2, 3].map((order) => managed.filter((d) => kindOrder(d) === order));
    for (const [order, step] of steps.entries()) {
      await mapLimit(step, concurrency, async (d) => {
        const owner = managers.get(objectKey(d.id));
        if (owner && owner !== this.#identity.manager) {
          errors.push(
            new SyncError(
              KNV.MANAGEMENT_CONFLICT,
              `${describe(d.id)} (${d.path}) is already managed by "${owner}"; remove it from one of the two sources`,
            ),
          );
          return;
        }
        const desired = stamp(d, this.#identity, options.commit);
        try {
          const info = await this.#kube.resource(d.object.apiVersion, d.object.kind);
          const live = await this.applyOne(desired, options.signal);
          applied.push({
            id: d.id,
            info,
            desired,
            resourceVersion: live.metadata.resourceVersion,
            status: computeStatus(live),
          });
        } catch (error) {
          errors.push(
            new SyncError(
              KNV.APPLY,
              `failed to apply ${describe(d.id)} from ${d.path}: ${errorText(error)}`,
              { cause: error },
            ),
          );
          retained.push(d.id);
        }
      });
      if (order === 0 && step.length > 0) {
        for (const d of step) {
          if (!applied.some((a) => a.id === d.id)) continue;
          try {
            await waitEstablished(this.#kube, d.id.name, { timeoutMs: options.crdTimeoutMs ?? 60_000 });
          } catch (error) {
            errors.push(error instanceof SyncError ? error : new SyncError(KNV.APPLY, errorText(error)));
          }
        }
        this.#kube.forgetDiscovery();
      }
    }

    const keep = new Set(declared.map((d) => objectKey(d.id)));
    const stale = options.previous.filter((id) => !keep.has(objectKey(id)));
    const pruned: ObjectId[] = [];
    // Namespaced objects first, CRDs last: the reverse of applying.
    const pruneOrder = (id: ObjectId): number =>
      id.kind === 'CustomResourceDefinition'
        ? 3
        : id.kind === 'Namespace' && id.group === ''
          ? 2
          : id.namespace
            ? 0
            : 1;
    for (const order of [0, 1, 2, 3]) {
      await mapLimit(
        stale.filter((id) => pruneOrder(id) === order),
        concurrency,
        async (id) => {
          try {
            if (await this.#prune(id, false)) pruned.push(id);
          } catch (error) {
            errors.push(
              new SyncError(KNV.APPLY, `failed to prune ${describe(id)}: ${errorText(error)}`, {
                cause: error,
              }),
            );
            retained.push(id);
          }
        },
      );
    }
    for (const d of detach) {
      if (!options.previous.some((id) => objectKey(id) === objectKey(d.id))) continue;
      try {
        await this.#prune(d.id, true);
      } catch (error) {
        errors.push(
          new SyncError(KNV.APPLY, `failed to unmanage ${describe(d.id)}: ${errorText(error)}`, {
            cause: error,
          }),
        );
      }
    }
    return { applied, retained, pruned, errors };
  }

  /**
   * Deletes an object this sync manages, or only removes the management marks when it is annotated
   * client.lifecycle.config.k8s.io/deletion: detach (or `detachOnly`). Objects another sync (or nobody)
   * manages are left alone. True when the object was deleted or detached.
   */
  async #prune(id: ObjectId, detachOnly: boolean): Promise<boolean> {
    const info = await this.#findByGroupKind(id.group, id.kind);
    if (!info) return false;
    const live = await this.#kube.get(info, { namespace: id.namespace || undefined, name: id.name });
    if (!live) return true;
    const annotations = live.metadata.annotations ?? {};
    if (annotations[ANNOTATIONS.manager] !== this.#identity.manager) return false;
    if (detachOnly || annotations[ANNOTATIONS.deletion] === 'detach') {
      const remove: Record<string, null> = {};
      for (const key of [
        ANNOTATIONS.manager,
        ANNOTATIONS.managed,
        ANNOTATIONS.resourceId,
        ANNOTATIONS.owningInventory,
        ANNOTATIONS.sourceHash,
        ANNOTATIONS.sourcePath,
      ])
        remove[key] = null;
      await this.#kube.mergePatch(
        info,
        { namespace: id.namespace || undefined, name: id.name },
        {
          metadata: {
            annotations: remove,
            labels: { [MANAGED_BY_LABEL]: null, [DECLARED_VERSION_LABEL]: null },
          },
        },
      );
      return true;
    }
    return this.#kube.delete(info, {
      namespace: id.namespace || undefined,
      name: id.name,
      ...(live.metadata.uid ? { uid: live.metadata.uid } : {}),
    });
  }

  /** The served resource of a group and kind (any version: the inventory keeps no version). */
  async #findByGroupKind(group: string, kind: string): Promise<ResourceInfo | undefined> {
    const versions = group ? await this.#groupVersions(group) : ['v1'];
    for (const version of versions) {
      const info = await this.#kube.findResource(group ? `${group}/${version}` : version, kind);
      if (info) return info;
    }
    return undefined;
  }

  async #groupVersions(group: string): Promise<string[]> {
    try {
      const answer = await this.#kube.request<{
        versions?: { version: string }[];
        preferredVersion?: { version: string };
      }>('GET', `/apis/${group}`);
      const preferred = answer.preferredVersion?.version;
      const all = (answer.versions ?? []).map((v) => v.version);
      return preferred ? [preferred, ...all.filter((v) => v !== preferred)] : all;
    } catch (error) {
      if (isStatus(error, 404)) return [];
      throw error;
    }
  }
}

export { describe as describeObject, mapLimit };
