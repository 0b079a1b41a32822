import type { RegistryClient } from '../client/index.js';
import type { Logger } from '../log/index.js';
import type { Reference } from '../oci/index.js';

/**
 * Follows an Airlock registry's push events for one repository and calls `onPush` when the reference's
 * tag (or digest) is pushed. Reconnects with backoff (1 s doubling to 30 s); stops for good when the
 * registry has no event stream (not Airlock: the caller's polling is all there is) or `signal` aborts.
 */
export function followRegistryEvents(
  client: RegistryClient,
  ref: Reference,
  options: { log: Logger; signal: AbortSignal; onPush: (event: { tag?: string; digest: string }) => void },
): void {
  const { log, signal } = options;
  const run = async (): Promise<void> => {
    let delay = 1_000;
    while (!signal.aborted) {
      try {
        for await (const event of client.events({
          repositories: [ref.repository],
          signal,
          onOpen: () => {
            delay = 1_000;
          },
        })) {
          if (event.action !== 'push') continue;
          if (ref.digest ? event.digest === ref.digest : event.tag === (ref.tag ?? 'latest')) {
            log.info({ tag: event.tag, digest: event.digest }, 'registry announced a push');
            options.onPush(event);
          }
        }
      } catch (error) {
        if (signal.aborted) return;
        const status = (error as { status?: number }).status;
        if (status === 404 || status === 405) {
          log.info('the registry has no event stream; polling only');
          return;
        }
        log.debug({ err: error }, 'registry event stream ended; reconnecting');
      }
      await new Promise((r) => setTimeout(r, delay));
      delay = Math.min(delay * 2, 30_000);
    }
  };
  void run();
}
