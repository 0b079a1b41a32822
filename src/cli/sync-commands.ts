import { resolve } from 'node:path';
import type { Command } from 'commander';
import { stringify } from 'yaml';
import { KubeClient, listContexts, loadKubeConfig, type KubeObject } from '../kube/index.js';
import { createLogger } from '../log/index.js';
import { loadPublicKeys, verifyImage } from '../sign/index.js';
import {
  KNV,
  SyncController,
  SyncErrors,
  collectStatus,
  installManifests,
  renderStatus,
  syncApiObjects,
  toSyncErrors,
  vetFolder,
  waitEstablished,
  type ClusterReport,
  type SignatureVerifier,
} from '../sync/index.js';
import { UsageError, logLevelFlag, positiveInteger } from './common.js';
import { counted, createOutput } from './output.js';

interface KubeFlags {
  kubeconfig?: string;
  context?: string;
}

function withKubeOptions(command: Command): Command {
  return command
    .option('--kubeconfig <file>', 'kubeconfig file (default $KUBECONFIG, ~/.kube/config, or in-cluster)')
    .option('--context <name>', 'kubeconfig context (default the current one)');
}

function kubeFor(flags: KubeFlags, context?: string): KubeClient {
  return new KubeClient(loadKubeConfig({ kubeconfig: flags.kubeconfig, context: context ?? flags.context }));
}

function positiveInt(name: string, text: string | undefined): number | undefined {
  return text === undefined ? undefined : positiveInteger(name, text);
}

/** The sign library as the reconciler's spec.oci.verify hook. */
export const verifyWithCosignKeys: SignatureVerifier = async (client, request) => {
  await verifyImage(
    client,
    { ...request.ref, digest: request.digest },
    {
      keys: loadPublicKeys(request.publicKeys),
      checkReference: !request.ignoreReference,
      ...(request.signal ? { signal: request.signal } : {}),
    },
  );
};

function toYaml(objects: readonly KubeObject[]): string {
  return objects.map((o) => stringify(o, { lineWidth: 0 })).join('---\n');
}

interface ControllerFlags extends KubeFlags {
  leaderElect?: boolean;
  workDir?: string;
  maxBytes?: string;
  maxEntries?: string;
  audience?: string;
  registryEvents?: boolean;
  logLevel?: string;
}

/** `airlock sync …`, `airlock status`, `airlock vet`. */
export function registerSyncCommands(program: Command): void {
  const sync = program
    .command('sync')
    .description('GitOps: keep clusters in sync with manifests shipped as OCI images');

  withKubeOptions(
    sync
      .command('controller')
      .description('Run the reconciler for every RootSync and RepoSync of a cluster')
      .option(
        '--leader-elect',
        'hold the Lease config-management-system/airlock-sync-controller while working',
      )
      .option('--work-dir <dir>', 'where images are extracted (default the temp folder)')
      .option('--max-bytes <n>', 'largest total size of files extracted from an image (default 1 GiB)')
      .option('--max-entries <n>', 'most files extracted from an image (default 100000)')
      .option(
        '--audience <aud>',
        'audience of service-account tokens for auth: k8sserviceaccount (default airlock)',
      )
      .option('--no-registry-events', 'do not subscribe to Airlock registry push events (poll only)')
      .option('--log-level <level>', 'fatal|error|warn|info|debug|trace|silent (default info)'),
  ).action(async (flags: ControllerFlags) => {
    const level = flags.logLevel === undefined ? undefined : logLevelFlag(flags.logLevel);
    const maxBytes = positiveInt('--max-bytes', flags.maxBytes);
    const maxEntries = positiveInt('--max-entries', flags.maxEntries);
    const log = createLogger({
      name: 'airlock-sync',
      ...(level ? { level } : {}),
    });
    const kube = kubeFor(flags);
    const controller = new SyncController({
      kube,
      log,
      leaderElection: flags.leaderElect === true,
      registryEvents: flags.registryEvents !== false,
      verifySignature: verifyWithCosignKeys,
      ...(flags.workDir ? { workDir: resolve(flags.workDir) } : {}),
      ...(flags.audience ? { audience: flags.audience } : {}),
      limits: { ...(maxBytes ? { maxBytes } : {}), ...(maxEntries ? { maxEntries } : {}) },
    });
    const abort = new AbortController();
    const stop = (): void => abort.abort();
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
    log.info(
      { server: kube.connection.server, context: kube.connection.context },
      'sync controller starting',
    );
    try {
      await controller.run(abort.signal);
    } finally {
      kube.close();
      log.info('sync controller stopped');
    }
  });

  sync
    .command('manifests')
    .description('Print the install manifests: CRDs, namespace, RBAC and the controller Deployment')
    .option('--image <ref>', 'controller image (default airlock:0.1.0)')
    .option('--crds-only', 'print only the API objects (CRDs and the RepoSync name policy)')
    .action((flags: { image?: string; crdsOnly?: boolean }) => {
      const objects = flags.crdsOnly
        ? syncApiObjects()
        : installManifests(flags.image ? { image: flags.image } : {});
      process.stdout.write(toYaml(objects));
    });

  withKubeOptions(
    sync
      .command('install')
      .description('Apply the install manifests to a cluster (server-side apply) and wait for the CRDs')
      .option('--image <ref>', 'controller image (default airlock:0.1.0)')
      .option('--crds-only', 'install only the API objects, not the in-cluster controller'),
  ).action(async (flags: KubeFlags & { image?: string; crdsOnly?: boolean }) => {
    const out = createOutput();
    const kube = kubeFor(flags);
    try {
      const objects = flags.crdsOnly
        ? syncApiObjects()
        : installManifests(flags.image ? { image: flags.image } : {});
      const ordered = [
        ...objects.filter((o) => o.kind === 'Namespace'),
        ...objects.filter((o) => o.kind === 'CustomResourceDefinition'),
      ];
      for (const object of ordered) await kube.apply(object, { fieldManager: 'airlock-install' });
      for (const crd of ordered.filter((o) => o.kind === 'CustomResourceDefinition'))
        await waitEstablished(kube, crd.metadata.name);
      for (const object of objects.filter((o) => !ordered.includes(o)))
        await kube.apply(object, { fieldManager: 'airlock-install' });
      out.result(`Installed ${counted(objects.length, 'object')}`, {
        installed: objects.map((o) => `${o.kind}/${o.metadata.name}`),
      });
    } finally {
      kube.close();
    }
  });

  withKubeOptions(
    program
      .command('status')
      .description('Show RootSync/RepoSync status like nomos status')
      .option(
        '--contexts <list>',
        'comma-separated kubeconfig contexts (default the current one; "all" for every one)',
      )
      .option('--namespace <ns>', 'only syncs of this namespace')
      .option('--name <name>', 'only syncs with this name')
      .option('--resources', 'list managed resources (default)', true)
      .option('--no-resources', 'do not list managed resources')
      .option('-o, --output <format>', 'text or json', 'text'),
  ).action(
    async (
      flags: KubeFlags & {
        contexts?: string;
        namespace?: string;
        name?: string;
        resources?: boolean;
        output?: string;
      },
    ) => {
      if (flags.output !== 'text' && flags.output !== 'json')
        throw new UsageError(`--output must be "text" or "json"`);
      const { contexts, current } = listContexts({ kubeconfig: flags.kubeconfig });
      const wanted =
        flags.contexts === 'all'
          ? contexts
          : flags.contexts
            ? flags.contexts
                .split(',')
                .map((c) => c.trim())
                .filter(Boolean)
            : [flags.context ?? current ?? 'in-cluster'];
      for (const name of wanted)
        if (contexts.length > 0 && !contexts.includes(name))
          throw new UsageError(`Context "${name}" is not in the kubeconfig (it has: ${contexts.join(', ')})`);
      const clusters: ClusterReport[] = await Promise.all(
        wanted.map(async (context): Promise<ClusterReport> => {
          let kube: KubeClient | undefined;
          try {
            kube = kubeFor(flags, contexts.length > 0 ? context : undefined);
            const syncs = await collectStatus(kube, { namespace: flags.namespace, name: flags.name });
            return { context, current: context === current, syncs };
          } catch (error) {
            return { context, current: context === current, error: (error as Error).message };
          } finally {
            kube?.close();
          }
        }),
      );
      if (flags.output === 'json') process.stdout.write(`${JSON.stringify(clusters, null, 2)}\n`);
      else process.stdout.write(`${renderStatus(clusters, { resources: flags.resources !== false })}\n`);
      if (clusters.some((c) => c.error || c.syncs?.some((s) => s.state === 'ERROR' || s.state === 'STALLED')))
        process.exitCode = 1;
    },
  );

  program
    .command('vet')
    .description('Validate a folder of manifests offline, as the reconciler would (like nomos vet)')
    .argument('<dir>', 'folder of .yaml/.yml/.json manifests')
    .option('--namespace <ns>', 'vet as a RepoSync of this namespace would sync it')
    .option('--source-format <format>', 'unstructured or hierarchy', 'unstructured')
    .option('-o, --output <format>', 'text or json', 'text')
    .action(async (dir: string, flags: { namespace?: string; sourceFormat?: string; output?: string }) => {
      if (flags.sourceFormat !== 'unstructured' && flags.sourceFormat !== 'hierarchy')
        throw new UsageError(
          `--source-format must be "unstructured" or "hierarchy", not "${flags.sourceFormat}"`,
        );
      if (flags.output !== 'text' && flags.output !== 'json')
        throw new UsageError(`--output must be "text" or "json"`);
      const out = createOutput({ output: flags.output });
      try {
        const declared = await vetFolder(resolve(dir), {
          format: flags.sourceFormat,
          namespace: flags.namespace,
        });
        out.result(`✓ ${counted(declared.length, 'object')} ${declared.length === 1 ? 'is' : 'are'} valid`, {
          valid: true,
          objects: declared.map((d) => ({ ...d.id, path: d.path })),
        });
      } catch (error) {
        if (!(error instanceof SyncErrors) && (error as NodeJS.ErrnoException).code === 'ENOENT')
          throw new UsageError(`Folder "${dir}" does not exist`);
        const errors = toSyncErrors(error, KNV.SOURCE);
        if (flags.output === 'json')
          process.stdout.write(
            `${JSON.stringify({ valid: false, errors: errors.map((e) => e.toEntry()) }, null, 2)}\n`,
          );
        else for (const e of errors) process.stderr.write(`${e.code}: ${e.message}\n`);
        process.exitCode = 1;
      }
    });
}
