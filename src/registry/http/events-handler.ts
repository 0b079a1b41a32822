import type { Registry, RegistryEvent } from '../registry.js';
import type { Context } from './context.js';

/** How often a comment line keeps idle proxies and clients from closing the stream. */
const HEARTBEAT_MS = 15_000;

/**
 * `GET /api/v1/events[?repository=NAME…]`: a server-sent event stream of pushes and deletes, so a
 * reconciler learns of a new tag at once instead of on its next poll. Each event is
 * `event: push|delete` with the RegistryEvent as JSON data; only repositories the caller may pull are
 * reported (the router has already refused anonymous callers). The stream ends when the registry shuts down.
 */
export function eventStream(ctx: Context, registry: Registry): void {
  const only = new Set(ctx.query.getAll('repository'));
  const { res } = ctx;
  res.writeHead(200, {
    'content-type': 'text/event-stream',
    'cache-control': 'no-cache',
    'x-accel-buffering': 'no',
  });
  // A first comment tells the client the subscription is live (nothing is missed after it).
  res.write(': subscribed\n\n');
  const onEvent = (event: RegistryEvent): void => {
    if (only.size > 0 && !only.has(event.repository)) return;
    if (!ctx.access.allows(ctx.caller, event.repository, 'pull')) return;
    res.write(`event: ${event.action}\ndata: ${JSON.stringify(event)}\n\n`);
  };
  const heartbeat = setInterval(() => res.write(': heartbeat\n\n'), HEARTBEAT_MS);
  heartbeat.unref();
  const stop = (): void => {
    clearInterval(heartbeat);
    registry.events.off('event', onEvent);
    registry.events.off('close', stop);
    if (!res.writableEnded) res.end();
  };
  registry.events.on('event', onEvent);
  registry.events.once('close', stop);
  ctx.req.once('close', stop);
}
