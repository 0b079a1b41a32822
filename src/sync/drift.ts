import { KubeClient, type KubeObject, type ResourceInfo } from '../kube/index.js';
import type { Logger } from '../log/index.js';
import { MANAGED_BY_LABEL, MANAGED_BY_VALUE, objectKey, type ObjectId } from './api.js';
import { describeObject, type AppliedObject, type Applier } from './applier.js';
import { KNV, SyncError } from './errors.js';
import { computeStatus, type ObjectStatus } from './kstatus.js';

export interface DriftRepairOptions {
  /** Client that lists and watches the managed kinds. */
  readonly kube: KubeClient;
  /** Applies the desired object again (as the sync's identity). */
  readonly applier: Applier;
  readonly log: Logger;
  /** A RepoSync's namespace: watch only there. Default: all namespaces. */
  readonly namespace?: string | undefined;
  /** Corrections of one object within a minute that count as a fight (KNV2005). Default 5. */
  readonly fightThreshold?: number;
  /** True while a full reconcile runs (it applies everything anyway; repairs wait). */
  readonly busy: () => boolean;
  /** Called once per object that keeps being changed outside the source. */
  readonly onFight: (fight: SyncError) => void;
  readonly signal: AbortSignal;
}

interface Managed {
  readonly applied: AppliedObject;
  resourceVersion: string | undefined;
  corrections: number[];
  /** kstatus of the object as its last watch event showed it. */
  status: ObjectStatus;
}

/**
 * Watches the kinds a sync manages (label app.kubernetes.io/managed-by) and applies an object again when
 * it was changed or deleted outside the source. Each correction that really changed the object is
 * counted; too many in a minute is a fight.
 */
export class DriftRepair {
  readonly #options: DriftRepairOptions;
  readonly #managed = new Map<string, Managed>();
  readonly #watches = new Map<string, AbortController>();
  readonly #fights = new Set<string>();
  #statusChanged = false;

  constructor(options: DriftRepairOptions) {
    this.#options = options;
  }

  /** Replaces the set of managed objects (after a reconcile) and adjusts the watches to their kinds. */
  track(applied: readonly AppliedObject[]): void {
    const next = new Map<string, Managed>();
    for (const a of applied) {
      const key = objectKey(a.id);
      next.set(key, {
        applied: a,
        resourceVersion: a.resourceVersion,
        corrections: this.#managed.get(key)?.corrections ?? [],
        status: a.status,
      });
    }
    this.#managed.clear();
    for (const [k, v] of next) this.#managed.set(k, v);
    this.#fights.clear();
    const kinds = new Map<string, ResourceInfo>();
    for (const a of applied) kinds.set(`${a.info.group}/${a.info.version}/${a.info.plural}`, a.info);
    for (const [key, watch] of this.#watches)
      if (!kinds.has(key)) {
        watch.abort();
        this.#watches.delete(key);
      }
    for (const [key, info] of kinds) if (!this.#watches.has(key)) this.#watch(key, info);
  }

  /**
   * The managed objects with their status as the watches last saw it, when any status changed since the
   * last call (undefined otherwise): the inventory is rewritten only then, without a GET per object.
   */
  changedStatuses(): { id: ObjectId; status: ObjectStatus }[] | undefined {
    if (!this.#statusChanged) return undefined;
    this.#statusChanged = false;
    return [...this.#managed.values()].map((m) => ({ id: m.applied.id, status: m.status }));
  }

  stop(): void {
    for (const watch of this.#watches.values()) watch.abort();
    this.#watches.clear();
  }

  #watch(key: string, info: ResourceInfo): void {
    const abort = new AbortController();
    this.#watches.set(key, abort);
    const { kube, namespace, log } = this.#options;
    const signal = AbortSignal.any([abort.signal, this.#options.signal]);
    const path = KubeClient.path(info, { namespace });
    const labelSelector = `${MANAGED_BY_LABEL}=${MANAGED_BY_VALUE}`;
    const run = async (): Promise<void> => {
      let resourceVersion: string | undefined;
      while (!signal.aborted) {
        try {
          if (!resourceVersion) {
            const list = await kube.list(info, { namespace, labelSelector, signal });
            resourceVersion = list.metadata.resourceVersion;
            for (const item of list.items) this.#onEvent(info, 'MODIFIED', item);
          }
          for await (const event of kube.watch(path, {
            query: { resourceVersion, labelSelector, timeoutSeconds: 300 },
            signal,
          })) {
            if (event.type === 'ERROR') {
              resourceVersion = undefined; // 410 Gone: list again
              break;
            }
            resourceVersion = event.object.metadata.resourceVersion ?? resourceVersion;
            if (event.type !== 'BOOKMARK') this.#onEvent(info, event.type, event.object);
          }
        } catch (error) {
          if (signal.aborted) return;
          log.debug({ err: error, resource: key }, 'watch ended; restarting');
          resourceVersion = undefined;
          await new Promise((r) => setTimeout(r, 1_000));
        }
      }
    };
    void run();
  }

  #onEvent(info: ResourceInfo, type: string, object: KubeObject): void {
    const id: ObjectId = {
      group: info.group,
      kind: info.kind,
      namespace: object.metadata.namespace ?? '',
      name: object.metadata.name,
    };
    const managed = this.#managed.get(objectKey(id));
    if (!managed) return;
    const status = type === 'DELETED' ? 'NotFound' : computeStatus(object);
    if (status !== managed.status) {
      managed.status = status;
      this.#statusChanged = true;
    }
    if (type !== 'DELETED' && object.metadata.resourceVersion === managed.resourceVersion) return;
    if (type !== 'DELETED' && object.metadata.deletionTimestamp) return;
    void this.#repair(managed, type);
  }

  async #repair(managed: Managed, type: string): Promise<void> {
    if (this.#options.signal.aborted || this.#options.busy()) return;
    const { applied } = managed;
    try {
      const live = await this.#options.applier.applyOne(applied.desired, this.#options.signal);
      const changed = live.metadata.resourceVersion !== managed.resourceVersion;
      managed.resourceVersion = live.metadata.resourceVersion;
      if (!changed) return;
      this.#options.log.info({ object: describeObject(applied.id), event: type }, 'drift repaired');
      const now = Date.now();
      managed.corrections = [...managed.corrections.filter((t) => now - t < 60_000), now];
      const key = objectKey(applied.id);
      if (managed.corrections.length >= (this.#options.fightThreshold ?? 5) && !this.#fights.has(key)) {
        this.#fights.add(key);
        this.#options.onFight(
          new SyncError(
            KNV.RESOURCE_FIGHT,
            `detected a fight over ${describeObject(applied.id)}: it was changed outside the source ${managed.corrections.length} times in a minute; another controller may be managing it`,
          ),
        );
      }
    } catch (error) {
      this.#options.log.warn({ err: error, object: describeObject(applied.id) }, 'drift repair failed');
    }
  }
}
