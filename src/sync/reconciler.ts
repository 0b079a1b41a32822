import { randomBytes } from 'node:crypto';
import { mkdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { RegistryClient } from '../client/index.js';
import type { KubeClient } from '../kube/index.js';
import { isStatus } from '../kube/index.js';
import type { Logger } from '../log/index.js';
import type { Digest, Reference } from '../oci/index.js';
import {
  ANNOTATIONS,
  RECONCILER_FINALIZER,
  REPO_SYNC,
  RESOURCE_GROUP,
  ROOT_SYNC,
  SECRET,
  SYSTEM_NAMESPACE,
  inventoryId,
  managerValue,
  parseDuration,
  reconcilerName,
  type SyncKind,
  type SyncObject,
} from './api.js';
import { Applier } from './applier.js';
import { DriftRepair } from './drift.js';
import { followRegistryEvents } from './registry-events.js';
import { declareObjects, type Scope } from './declared.js';
import { KNV, SyncError, toSyncErrors } from './errors.js';
import {
  fetchSource,
  parseSourceImage,
  parseSourcePlatform,
  resolveSourceDigest,
  type SourceLimits,
} from './fetch.js';
import { registryClientFor, type RegistryAccessOptions } from './registry-auth.js';
import { readSource } from './source.js';
import {
  patchSyncStatus,
  readInventory,
  setCondition,
  stagePatch,
  writeInventory,
  type InventoryEntry,
} from './status.js';

/** Checks an image's signatures before it is applied (spec.oci.verify); throws with the reason. */
export type SignatureVerifier = (
  client: RegistryClient,
  request: {
    ref: Reference;
    digest: Digest;
    publicKeys: string;
    ignoreReference: boolean;
    signal?: AbortSignal;
  },
) => Promise<void>;

export interface ReconcilerOptions extends RegistryAccessOptions {
  readonly kube: KubeClient;
  readonly log: Logger;
  /** Where images are extracted (a fresh folder per run, removed after). Default: the OS temp dir. */
  readonly workDir?: string;
  readonly limits?: SourceLimits;
  /** Subscribe to an Airlock registry's event stream to sync a push at once. Default true. */
  readonly registryEvents?: boolean;
  /** Verifies signatures for spec.oci.verify; without it such syncs fail with a clear error. */
  readonly verifySignature?: SignatureVerifier;
  /** Corrections of one object within a minute that count as a fight (KNV2005). Default 5. */
  readonly fightThreshold?: number;
  /** Clock, for tests. Default: () => new Date(). */
  readonly now?: () => Date;
}

const DEFAULT_PERIOD_MS = 15_000;

/**
 * Keeps one RootSync or RepoSync in sync: on its period, on a registry push event and on drift, it
 * resolves the image, fetches and validates the manifests, applies them with server-side apply, prunes
 * what left, records the inventory and writes status the way Config Sync does.
 */
export class Reconciler {
  readonly kind: SyncKind;
  readonly namespace: string;
  readonly name: string;
  readonly reconciler: string;
  readonly #options: ReconcilerOptions;
  readonly #kube: KubeClient;
  readonly #log: Logger;
  readonly #applier: Applier;
  readonly #applyKube: KubeClient;
  readonly #abort = new AbortController();
  readonly #drift: DriftRepair;
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<void> | undefined;
  #again = false;
  #lastCommit: string | undefined;
  #lastImage: string | undefined;
  #lastGeneration: number | undefined;
  #events: { key: string; abort: AbortController } | undefined;
  #fights: SyncError[] = [];
  /** The last run failed before applying: the next one must run in full to clear the error. */
  #sourceBroken = false;
  /** Consecutive runs that did not finish cleanly, for the retry backoff. */
  #failures = 0;
  #client: { key: string; client: RegistryClient } | undefined;

  constructor(sync: { kind: SyncKind; namespace: string; name: string }, options: ReconcilerOptions) {
    this.kind = sync.kind;
    this.namespace = sync.namespace;
    this.name = sync.name;
    this.reconciler = reconcilerName(sync.kind, sync);
    this.#options = options;
    this.#kube = options.kube;
    this.#log = options.log.child({
      sync: `${sync.kind} ${sync.namespace}/${sync.name}`,
      reconciler: this.reconciler,
    });
    // A RepoSync's objects are applied as its reconciler's service account, so the RBAC granted to
    // ns-reconciler-* (as in Config Sync) decides what it may change, and privilege escalation is refused.
    this.#applyKube =
      sync.kind === 'RepoSync'
        ? options.kube.impersonating(
            `system:serviceaccount:${options.serviceAccountNamespace ?? SYSTEM_NAMESPACE}:${this.reconciler}`,
          )
        : options.kube;
    this.#applier = new Applier(this.#applyKube, {
      fieldManager: this.reconciler,
      manager: managerValue(sync.kind, sync),
      inventory: inventoryId(sync),
      ...(sync.kind === 'RepoSync' ? { namespace: sync.namespace } : {}),
    });
    this.#drift = new DriftRepair({
      kube: options.kube,
      applier: this.#applier,
      log: this.#log,
      namespace: sync.kind === 'RepoSync' ? sync.namespace : undefined,
      ...(options.fightThreshold === undefined ? {} : { fightThreshold: options.fightThreshold }),
      busy: () => this.#running !== undefined,
      onFight: (fight) => void this.#onFight(fight),
      signal: this.#abort.signal,
    });
  }

  #now(): Date {
    return this.#options.now?.() ?? new Date();
  }

  /** Starts the loop: a reconcile now, then on every trigger. */
  start(): void {
    this.trigger('start');
  }

  /** Asks for a reconcile soon (coalesced with one already running). */
  trigger(reason: string): void {
    if (this.#abort.signal.aborted) return;
    if (this.#running) {
      this.#again = true;
      return;
    }
    clearTimeout(this.#timer);
    this.#log.debug({ reason }, 'reconcile triggered');
    this.#running = this.#reconcile()
      .catch((error: unknown) => this.#log.error({ err: error }, 'reconcile failed unexpectedly'))
      .finally(() => {
        this.#running = undefined;
        if (this.#again && !this.#abort.signal.aborted) {
          this.#again = false;
          this.trigger('queued');
        }
      });
  }

  /** Waits for the current reconcile, if any. */
  async #idle(): Promise<void> {
    while (this.#running) await this.#running;
  }

  async stop(): Promise<void> {
    clearTimeout(this.#timer);
    this.#abort.abort();
    this.#drift.stop();
    await this.#idle();
    this.#client?.client.close();
    if (this.#applyKube !== this.#kube) this.#applyKube.close();
  }

  #schedule(ms: number): void {
    if (this.#abort.signal.aborted) return;
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => this.trigger('period'), ms);
    this.#timer.unref?.();
  }

  async #readSync(): Promise<SyncObject | undefined> {
    return this.#kube.get<SyncObject>(this.kind === 'RootSync' ? ROOT_SYNC : REPO_SYNC, {
      namespace: this.namespace,
      name: this.name,
    });
  }

  async #status(patch: Record<string, unknown>): Promise<void> {
    try {
      await patchSyncStatus(
        this.#kube,
        { kind: this.kind, namespace: this.namespace, name: this.name },
        patch,
      );
    } catch (error) {
      if (!isStatus(error, 404)) this.#log.warn({ err: error }, 'cannot write status');
    }
  }

  async #clientFor(sync: SyncObject, ref: Reference): Promise<RegistryClient> {
    const oci = sync.spec?.oci ?? {};
    // k8sserviceaccount tokens live an hour: make a new client (and token) every 30 minutes.
    const key = JSON.stringify({ oci, slot: Math.floor(Date.now() / 1_800_000) });
    if (this.#client?.key === key) return this.#client.client;
    const client = await registryClientFor(
      this.#kube,
      { namespace: this.namespace, reconciler: this.reconciler, oci, ref },
      this.#options,
    );
    this.#client?.client.close();
    this.#client = { key, client };
    return client;
  }

  async #reconcile(): Promise<void> {
    const sync = await this.#readSync();
    if (!sync) return;
    if (await this.#finalize(sync)) return;
    const spec = sync.spec ?? {};
    const oci = spec.oci ?? {};
    const image = oci.image ?? '';
    const dir = oci.dir ?? '.';
    const period = oci.period ? parseDuration(oci.period) : DEFAULT_PERIOD_MS;
    const conditions = sync.status?.conditions;
    const now = this.#now();
    const generation = sync.metadata.generation;
    const specChanged = generation !== this.#lastGeneration;

    // --- the spec itself ---------------------------------------------------------------------------
    const stalled = this.#specProblem(sync, period);
    if (stalled) {
      await this.#status({
        observedGeneration: generation ?? null,
        reconciler: this.reconciler,
        source: stagePatch({ image, dir, errors: [stalled] }, now),
        conditions: setCondition(
          setCondition(
            conditions,
            { type: 'Stalled', status: 'True', reason: 'Validation', message: stalled.message },
            now,
          ),
          { type: 'Reconciling', status: 'False', reason: 'Validation', message: 'The spec is invalid' },
          now,
        ),
      });
      this.#lastGeneration = generation;
      return;
    }
    let ref: Reference;
    try {
      ref = parseSourceImage(image);
    } catch (error) {
      const errors = toSyncErrors(error);
      await this.#status({ reconciler: this.reconciler, source: stagePatch({ image, dir, errors }, now) });
      return;
    }

    // --- fetch ---------------------------------------------------------------------------------------
    let client: RegistryClient;
    let digest: Digest;
    try {
      client = await this.#clientFor(sync, ref);
      digest = await resolveSourceDigest(client, ref, this.#abort.signal);
    } catch (error) {
      await this.#sourceFailed(sync, toSyncErrors(error, KNV.SOURCE));
      return;
    }
    this.#watchRegistry(client, ref);
    const commit = digest.slice(digest.indexOf(':') + 1);
    const unchanged = commit === this.#lastCommit && image === this.#lastImage && !specChanged;
    if (unchanged && this.#fights.length === 0 && !this.#sourceBroken) {
      await this.#refreshObjectStatus(commit);
      this.#schedule(period ?? DEFAULT_PERIOD_MS);
      return;
    }

    const work = join(this.#options.workDir ?? tmpdir(), `airlock-sync-${randomBytes(6).toString('hex')}`);
    try {
      await mkdir(work, { recursive: true, mode: 0o700 });
      const root = join(work, 'source');
      const errorsBefore: SyncError[] = [];
      let declared;
      try {
        await fetchSource(
          client,
          { ref, digest, out: root },
          {
            dir,
            platform: parseSourcePlatform(oci.platform),
            signal: this.#abort.signal,
            ...this.#options.limits,
          },
        );
        await this.#verify(sync, client, { ref, digest });
        const objects = await readSource(root);
        declared = await declareObjects(objects, {
          format: spec.sourceFormat === 'hierarchy' ? 'hierarchy' : 'unstructured',
          scopeOf: (apiVersion, kind) => this.#scopeOf(apiVersion, kind),
          repoNamespace: this.kind === 'RepoSync' ? this.namespace : undefined,
        });
      } catch (error) {
        errorsBefore.push(...toSyncErrors(error, KNV.SOURCE));
      }
      if (!declared) {
        await this.#sourceFailed(sync, errorsBefore, commit);
        return;
      }
      await this.#status({
        observedGeneration: generation ?? null,
        reconciler: this.reconciler,
        source: stagePatch({ image, dir, commit }, now),
        rendering: stagePatch({ image, dir, commit, message: 'Rendering skipped' }, now),
        conditions: setCondition(
          setCondition(
            setCondition(
              conditions,
              { type: 'Stalled', status: 'False', reason: 'Stalled', message: '' },
              now,
            ),
            { type: 'Reconciling', status: 'False', reason: 'Source', message: 'Source fetched' },
            now,
          ),
          { type: 'Syncing', status: 'True', reason: 'Sync', message: 'Syncing', commit },
          now,
        ),
      });

      // --- announce the digest (an admission webhook may refuse it) -------------------------------
      const imageToSync = `${ref.registry}/${ref.repository}@${digest}`;
      if (sync.metadata.annotations?.[ANNOTATIONS.imageToSync] !== imageToSync) {
        try {
          await this.#kube.mergePatch(
            this.kind === 'RootSync' ? ROOT_SYNC : REPO_SYNC,
            { namespace: this.namespace, name: this.name },
            { metadata: { annotations: { [ANNOTATIONS.imageToSync]: imageToSync } } },
          );
        } catch (error) {
          const message = error instanceof Error ? error.message : String(error);
          await this.#syncDone(sync, {
            image,
            dir,
            commit,
            errors: [new SyncError(KNV.API_SERVER, message, { cause: error })],
          });
          this.#schedule(period ?? DEFAULT_PERIOD_MS);
          return;
        }
      }

      // --- apply, prune, inventory ---------------------------------------------------------------
      const previous =
        (await readInventory(this.#kube, { namespace: this.namespace, name: this.name })) ?? [];
      const result = await this.#applier.run(declared, { commit, previous, signal: this.#abort.signal });
      const inventory = [
        ...result.applied.map((a) => ({ ...a.id, status: a.status, sourceHash: commit })),
        ...result.retained.map((id) => ({ ...id, status: 'Unknown' as const, sourceHash: commit })),
      ];
      await this.#writeInventory(inventory);
      this.#drift.track(result.applied);
      this.#sourceBroken = false;
      this.#fights = [];
      await this.#syncDone(sync, { image, dir, commit, errors: result.errors });
      if (result.errors.length === 0) {
        this.#lastCommit = commit;
        this.#lastImage = image;
        this.#lastGeneration = generation;
      }
      this.#log.info(
        {
          commit,
          applied: result.applied.length,
          pruned: result.pruned.length,
          errors: result.errors.length,
        },
        'reconciled',
      );
    } catch (error) {
      this.#log.error({ err: error }, 'reconcile failed');
      await this.#syncDone(sync, { image, dir, commit, errors: toSyncErrors(error, KNV.APPLY) });
    } finally {
      await rm(work, { recursive: true, force: true });
      // A digest-pinned image never changes: no polling, drift repair and events still run.
      if (this.#lastCommit !== commit) {
        // Failed applies are retried with backoff (2 s doubling to a minute), sooner than the period.
        this.#failures++;
        this.#schedule(
          Math.min(period ?? DEFAULT_PERIOD_MS, Math.min(2_000 * 2 ** (this.#failures - 1), 60_000)),
        );
      } else {
        this.#failures = 0;
        // A digest-pinned image never changes: no polling; drift repair and events still run.
        if (!ref.digest) this.#schedule(period ?? DEFAULT_PERIOD_MS);
      }
    }
  }

  /**
   * Config Sync's deletion propagation: with `configsync.gke.io/deletion-propagation-policy: Foreground`
   * the sync carries a finalizer; when it is deleted, everything in its inventory is pruned (detach rules
   * still apply), the ResourceGroup removed, then the finalizer. True when the sync is being deleted.
   */
  async #finalize(sync: SyncObject): Promise<boolean> {
    const info = this.kind === 'RootSync' ? ROOT_SYNC : REPO_SYNC;
    const where = { namespace: this.namespace, name: this.name };
    const finalizers = sync.metadata.finalizers ?? [];
    const has = finalizers.includes(RECONCILER_FINALIZER);
    const foreground = sync.metadata.annotations?.[ANNOTATIONS.deletionPropagation] === 'Foreground';
    const patchFinalizers = (next: string[]): Promise<unknown> =>
      this.#kube.mergePatch(info, where, {
        metadata: { finalizers: next, resourceVersion: sync.metadata.resourceVersion },
      });
    if (!sync.metadata.deletionTimestamp) {
      if (foreground && !has) await patchFinalizers([...finalizers, RECONCILER_FINALIZER]);
      if (!foreground && has) await patchFinalizers(finalizers.filter((f) => f !== RECONCILER_FINALIZER));
      return false;
    }
    if (!has) return true;
    const previous = (await readInventory(this.#kube, where)) ?? [];
    const result = await this.#applier.run([], { commit: '', previous, signal: this.#abort.signal });
    if (result.errors.length > 0) {
      this.#log.warn({ errors: result.errors.map((e) => e.message) }, 'cannot delete managed objects yet');
      await this.#status({
        sync: stagePatch(
          { image: sync.spec?.oci?.image ?? '', dir: sync.spec?.oci?.dir ?? '.', errors: result.errors },
          this.#now(),
        ),
      });
      this.#schedule(5_000);
      return true;
    }
    this.#drift.track([]);
    await this.#kube.delete(RESOURCE_GROUP, where);
    await patchFinalizers(finalizers.filter((f) => f !== RECONCILER_FINALIZER));
    this.#log.info(
      { pruned: result.pruned.length },
      'sync deleted: its objects were deleted (Foreground propagation)',
    );
    return true;
  }

  #specProblem(sync: SyncObject, period: number | undefined): SyncError | undefined {
    const spec = sync.spec ?? {};
    if ((spec.sourceType ?? 'git') !== 'oci')
      return new SyncError(
        KNV.INVALID_SYNC,
        `${this.kind} ${this.namespace}/${this.name} has spec.sourceType "${spec.sourceType ?? 'git'}"; Airlock syncs only "oci"`,
      );
    if (period === undefined)
      return new SyncError(
        KNV.INVALID_SYNC,
        `spec.oci.period "${spec.oci?.period ?? ''}" is not a duration such as "15s" or "1m"`,
      );
    if (
      spec.sourceFormat !== undefined &&
      spec.sourceFormat !== 'unstructured' &&
      spec.sourceFormat !== 'hierarchy'
    )
      return new SyncError(
        KNV.INVALID_SYNC,
        `spec.sourceFormat "${spec.sourceFormat}" must be "unstructured" or "hierarchy"`,
      );
    if (this.kind === 'RepoSync' && spec.sourceFormat === 'hierarchy')
      return new SyncError(KNV.INVALID_SYNC, 'a RepoSync only supports spec.sourceFormat "unstructured"');
    return undefined;
  }

  async #verify(
    sync: SyncObject,
    client: RegistryClient,
    { ref, digest }: { ref: Reference; digest: Digest },
  ): Promise<void> {
    const verify = sync.spec?.oci?.verify;
    if (!verify?.secretRef?.name) return;
    if (!this.#options.verifySignature)
      throw new SyncError(
        KNV.SOURCE,
        'spec.oci.verify is set but this controller was built without signature verification',
      );
    const where = { namespace: this.namespace, name: verify.secretRef.name };
    const secret = await this.#kube.get(SECRET, where);
    if (!secret)
      throw new SyncError(
        KNV.SOURCE,
        `Secret ${where.namespace}/${where.name} named by spec.oci.verify does not exist`,
      );
    const data = (secret as { data?: Record<string, string> }).data ?? {};
    const keys = Object.values(data)
      .map((v) => Buffer.from(v, 'base64').toString('utf8'))
      .filter((text) => text.includes('-----BEGIN'))
      .join('\n');
    if (!keys)
      throw new SyncError(KNV.SOURCE, `Secret ${where.namespace}/${where.name} holds no PEM public key`);
    try {
      await this.#options.verifySignature(client, {
        ref,
        digest,
        publicKeys: keys,
        ignoreReference: verify.ignoreReference === true,
        signal: this.#abort.signal,
      });
    } catch (error) {
      throw new SyncError(
        KNV.SOURCE,
        `image ${ref.registry}/${ref.repository}@${digest} failed signature verification: ${(error as Error).message}`,
        { cause: error },
      );
    }
  }

  async #scopeOf(apiVersion: string, kind: string): Promise<Scope | undefined> {
    const info = await this.#kube.findResource(apiVersion, kind);
    if (!info) return undefined;
    return info.namespaced ? 'Namespaced' : 'Cluster';
  }

  async #sourceFailed(sync: SyncObject, errors: SyncError[], commit?: string): Promise<void> {
    const oci = sync.spec?.oci ?? {};
    const now = this.#now();
    this.#sourceBroken = true;
    this.#log.warn({ errors: errors.map((e) => `${e.code}: ${e.message}`) }, 'source failed');
    await this.#status({
      observedGeneration: sync.metadata.generation ?? null,
      reconciler: this.reconciler,
      source: stagePatch({ image: oci.image ?? '', dir: oci.dir ?? '.', commit, errors }, now),
      conditions: setCondition(
        setCondition(
          sync.status?.conditions,
          { type: 'Reconciling', status: 'False', reason: 'Source', message: 'Source failed' },
          now,
        ),
        {
          type: 'Syncing',
          status: 'False',
          reason: 'Source',
          message: errors[0]?.message ?? 'Source failed',
          ...(commit ? { commit } : {}),
        },
        now,
      ),
    });
    const period = oci.period ? parseDuration(oci.period) : undefined;
    // Retry sooner than the period while the source is broken, but not in a tight loop.
    this.#schedule(Math.min(period ?? DEFAULT_PERIOD_MS, 5_000));
  }

  async #syncDone(
    sync: SyncObject,
    stage: { image: string; dir: string; commit: string; errors: readonly SyncError[] },
  ): Promise<void> {
    const now = this.#now();
    const errors = [...stage.errors, ...this.#fights];
    const ok = errors.length === 0;
    const fresh = await this.#readSync().catch(() => undefined);
    await this.#status({
      sync: stagePatch({ image: stage.image, dir: stage.dir, commit: stage.commit, errors }, now),
      ...(ok ? { lastSyncedCommit: stage.commit } : {}),
      conditions: setCondition(
        (fresh ?? sync).status?.conditions,
        ok
          ? {
              type: 'Syncing',
              status: 'False',
              reason: 'Sync',
              message: 'Sync Completed',
              commit: stage.commit,
            }
          : {
              type: 'Syncing',
              status: 'False',
              reason: 'Sync',
              message: errors[0]!.message,
              commit: stage.commit,
            },
        now,
      ),
    });
  }

  /** Writes the inventory again when the drift watches saw an object's status change (no GETs). */
  async #refreshObjectStatus(commit: string): Promise<void> {
    const changed = this.#drift.changedStatuses();
    if (!changed || changed.length === 0) return;
    await this.#writeInventory(
      changed.map(({ id, status }) => ({ ...id, status, sourceHash: commit })),
    ).catch((error: unknown) => this.#log.warn({ err: error }, 'cannot refresh inventory status'));
  }

  #writeInventory(entries: readonly InventoryEntry[]): Promise<void> {
    return writeInventory(
      this.#kube,
      {
        namespace: this.namespace,
        name: this.name,
        fieldManager: this.reconciler,
        inventory: this.#applier.identity.inventory,
      },
      entries,
    );
  }

  #watchRegistry(client: RegistryClient, ref: Reference): void {
    if (this.#options.registryEvents === false) return;
    const key = `${client.host} ${ref.repository} ${this.#client?.key ?? ''}`;
    if (this.#events?.key === key) return;
    this.#events?.abort.abort();
    const abort = new AbortController();
    this.#events = { key, abort };
    followRegistryEvents(client, ref, {
      log: this.#log,
      signal: AbortSignal.any([abort.signal, this.#abort.signal]),
      onPush: () => this.trigger('registry event'),
    });
  }

  async #onFight(fight: SyncError): Promise<void> {
    this.#fights.push(fight);
    const sync = await this.#readSync().catch(() => undefined);
    if (sync)
      await this.#syncDone(sync, {
        image: sync.spec?.oci?.image ?? '',
        dir: sync.spec?.oci?.dir ?? '.',
        commit: this.#lastCommit ?? '',
        errors: [],
      });
  }
}
