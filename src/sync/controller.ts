import { hostname } from 'node:os';
import { KubeClient, isStatus, type KubeObject, type ResourceInfo } from '../kube/index.js';
import type { Logger } from '../log/index.js';
import {
  ANNOTATIONS,
  REPO_SYNC,
  ROOT_SYNC,
  SYSTEM_NAMESPACE,
  reconcilerName,
  syncKey,
  type SyncKind,
  type SyncObject,
} from './api.js';
import { Reconciler, type ReconcilerOptions } from './reconciler.js';

const LEASE: ResourceInfo = {
  group: 'coordination.k8s.io',
  version: 'v1',
  kind: 'Lease',
  plural: 'leases',
  namespaced: true,
};

export interface ControllerOptions extends Omit<ReconcilerOptions, 'log' | 'kube'> {
  readonly kube: KubeClient;
  readonly log: Logger;
  /** Take a Lease before reconciling, so only one replica works. Default false. */
  readonly leaderElection?: boolean;
  /** This replica's identity in the Lease. Default: hostname + pid. */
  readonly identity?: string;
  /** Lease length in seconds. Default 15. */
  readonly leaseSeconds?: number;
}

const sleep = (ms: number, signal?: AbortSignal): Promise<void> =>
  new Promise((resolveSleep) => {
    const timer = setTimeout(resolveSleep, ms);
    signal?.addEventListener('abort', () => {
      clearTimeout(timer);
      resolveSleep();
    });
  });

interface LeaseObject extends KubeObject {
  spec?: {
    holderIdentity?: string;
    leaseDurationSeconds?: number;
    renewTime?: string;
    acquireTime?: string;
    leaseTransitions?: number;
  };
}

/**
 * Runs a reconciler for every RootSync (in config-management-system) and RepoSync (any namespace),
 * starting and stopping them as the objects come and go; with leader election, only while holding the
 * Lease "airlock-sync-controller".
 */
export class SyncController {
  readonly #options: ControllerOptions;
  readonly #kube: KubeClient;
  readonly #log: Logger;
  /** `generation` is the spec generation plus the deletion-propagation annotation: a change triggers a run. */
  readonly #reconcilers = new Map<string, { reconciler: Reconciler; generation: string }>();
  readonly #identity: string;

  constructor(options: ControllerOptions) {
    this.#options = options;
    this.#kube = options.kube;
    this.#log = options.log;
    this.#identity = options.identity ?? `${hostname()}_${process.pid}`;
  }

  /** Runs until `signal` aborts (or leadership is lost: then it throws). */
  async run(signal: AbortSignal): Promise<void> {
    const local = new AbortController();
    const onAbort = (): void => local.abort();
    signal.addEventListener('abort', onAbort);
    try {
      let lost: Promise<never> | undefined;
      if (this.#options.leaderElection) {
        await this.#acquire(local.signal);
        if (local.signal.aborted) return;
        lost = this.#renew(local.signal);
        lost.catch(() => local.abort());
      }
      const watching = Promise.all([
        this.#watchKind({ kind: 'RootSync', info: ROOT_SYNC, namespace: SYSTEM_NAMESPACE }, local.signal),
        this.#watchKind({ kind: 'RepoSync', info: REPO_SYNC, namespace: undefined }, local.signal),
      ]);
      await (lost ? Promise.race([watching, lost]) : watching);
    } finally {
      signal.removeEventListener('abort', onAbort);
      local.abort();
      await Promise.all([...this.#reconcilers.values()].map((r) => r.reconciler.stop()));
      this.#reconcilers.clear();
    }
  }

  async #watchKind(
    what: { kind: SyncKind; info: ResourceInfo; namespace: string | undefined },
    signal: AbortSignal,
  ): Promise<void> {
    const { kind, info, namespace } = what;
    const path = KubeClient.path(info, { namespace });
    let resourceVersion: string | undefined;
    while (!signal.aborted) {
      try {
        if (!resourceVersion) {
          const list = await this.#kube.list<SyncObject>(info, { namespace, signal });
          resourceVersion = list.metadata.resourceVersion;
          const present = new Set<string>();
          for (const item of list.items) {
            present.add(this.#key(kind, item));
            await this.#upsert(kind, item);
          }
          for (const [key, entry] of this.#reconcilers)
            if (key.startsWith(`${kind} `) && !present.has(key)) {
              await entry.reconciler.stop();
              this.#reconcilers.delete(key);
            }
        }
        for await (const event of this.#kube.watch(path, {
          query: { resourceVersion, timeoutSeconds: 300 },
          signal,
        })) {
          if (event.type === 'ERROR') {
            resourceVersion = undefined;
            break;
          }
          resourceVersion = event.object.metadata.resourceVersion ?? resourceVersion;
          if (event.type === 'BOOKMARK') continue;
          const object = event.object as SyncObject;
          if (event.type === 'DELETED') await this.#remove(kind, object);
          else await this.#upsert(kind, object);
        }
      } catch (error) {
        if (signal.aborted) return;
        this.#log.warn({ err: error, kind }, 'watch failed; listing again');
        resourceVersion = undefined;
        await sleep(1_000, signal);
      }
    }
  }

  #key(kind: SyncKind, object: KubeObject): string {
    return syncKey(kind, { namespace: object.metadata.namespace ?? '', name: object.metadata.name });
  }

  async #upsert(kind: SyncKind, object: SyncObject): Promise<void> {
    const key = this.#key(kind, object);
    const generation = `${object.metadata.generation ?? ''}/${object.metadata.annotations?.[ANNOTATIONS.deletionPropagation] ?? ''}`;
    const existing = this.#reconcilers.get(key);
    if (existing) {
      if (object.metadata.deletionTimestamp) existing.reconciler.trigger('deleting');
      else if (existing.generation !== generation) {
        existing.generation = generation;
        existing.reconciler.trigger('spec changed');
      }
      return;
    }
    const where = { namespace: object.metadata.namespace ?? '', name: object.metadata.name };
    await this.#ensureServiceAccount(reconcilerName(kind, where));
    const reconciler = new Reconciler(
      { kind, ...where },
      { ...this.#options, kube: this.#kube, log: this.#log },
    );
    this.#reconcilers.set(key, { reconciler, generation });
    this.#log.info({ sync: key, reconciler: reconciler.reconciler }, 'reconciler started');
    reconciler.start();
  }

  async #remove(kind: SyncKind, object: SyncObject): Promise<void> {
    const key = this.#key(kind, object);
    const entry = this.#reconcilers.get(key);
    if (!entry) return;
    this.#reconcilers.delete(key);
    await entry.reconciler.stop();
    this.#log.info({ sync: key }, 'reconciler stopped (sync object deleted; managed objects are kept)');
  }

  /** The reconciler's service account (its identity for k8sserviceaccount registry auth). */
  async #ensureServiceAccount(name: string): Promise<void> {
    try {
      await this.#kube.apply(
        {
          apiVersion: 'v1',
          kind: 'ServiceAccount',
          metadata: {
            name,
            namespace: SYSTEM_NAMESPACE,
            labels: { 'app.kubernetes.io/part-of': 'airlock', 'configsync.gke.io/reconciler': name },
          },
        },
        { fieldManager: 'airlock-sync-controller' },
      );
    } catch (error) {
      this.#log.warn({ err: error, serviceAccount: name }, 'cannot create the reconciler service account');
    }
  }

  // --- leader election -------------------------------------------------------------------------------

  /** A Lease's MicroTime: RFC 3339 with exactly six fractional digits. */
  static microTime(date: Date): string {
    return date.toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');
  }

  #leaseBody(previous: LeaseObject | undefined, now: Date): LeaseObject {
    const holder = previous?.spec?.holderIdentity;
    const transitions = previous?.spec?.leaseTransitions ?? 0;
    return {
      apiVersion: 'coordination.k8s.io/v1',
      kind: 'Lease',
      metadata: {
        name: 'airlock-sync-controller',
        namespace: SYSTEM_NAMESPACE,
        ...(previous?.metadata.resourceVersion ? { resourceVersion: previous.metadata.resourceVersion } : {}),
      },
      spec: {
        holderIdentity: this.#identity,
        leaseDurationSeconds: this.#options.leaseSeconds ?? 15,
        acquireTime:
          holder === this.#identity
            ? (previous?.spec?.acquireTime ?? SyncController.microTime(now))
            : SyncController.microTime(now),
        renewTime: SyncController.microTime(now),
        leaseTransitions: holder && holder !== this.#identity ? transitions + 1 : transitions,
      },
    };
  }

  /** One attempt to take or renew the Lease; true when this replica holds it afterwards. */
  async #tryLease(): Promise<boolean> {
    const now = new Date();
    const where = { namespace: SYSTEM_NAMESPACE, name: 'airlock-sync-controller' };
    const lease = await this.#kube.get<LeaseObject>(LEASE, where);
    const path = KubeClient.path(LEASE, { namespace: SYSTEM_NAMESPACE });
    if (!lease) {
      try {
        await this.#kube.request('POST', path, { body: this.#leaseBody(undefined, now) });
        return true;
      } catch (error) {
        if (isStatus(error, 409)) return false;
        throw error;
      }
    }
    const spec = lease.spec ?? {};
    const renewed = spec.renewTime ? Date.parse(spec.renewTime) : 0;
    const expired = renewed + (spec.leaseDurationSeconds ?? 15) * 1000 < now.getTime();
    if (spec.holderIdentity && spec.holderIdentity !== this.#identity && !expired) return false;
    try {
      await this.#kube.request('PUT', KubeClient.path(LEASE, where), { body: this.#leaseBody(lease, now) });
      return true;
    } catch (error) {
      if (isStatus(error, 409)) return false;
      throw error;
    }
  }

  async #acquire(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      try {
        if (await this.#tryLease()) {
          this.#log.info({ identity: this.#identity }, 'became leader');
          return;
        }
      } catch (error) {
        this.#log.warn({ err: error }, 'cannot read or take the lease');
      }
      await sleep(2_000, signal);
    }
  }

  async #renew(signal: AbortSignal): Promise<never> {
    const seconds = this.#options.leaseSeconds ?? 15;
    let lastOk = Date.now();
    for (;;) {
      await sleep((seconds * 1000) / 3, signal);
      if (signal.aborted) throw new Error('stopped');
      try {
        if (await this.#tryLease()) lastOk = Date.now();
        else throw new Error('another replica holds the lease');
      } catch (error) {
        if (Date.now() - lastOk > seconds * 1000 || (error as Error).message.includes('another replica')) {
          this.#log.error({ err: error }, 'lost leadership');
          throw new Error(`Lost the leader lease: ${(error as Error).message}`);
        }
      }
    }
  }
}
