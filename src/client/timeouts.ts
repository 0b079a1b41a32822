import { ClientError } from './errors.js';

/** A connection that did not open in time: retried like a refused one. */
export function connectTimeout(url: URL, ms: number): ClientError {
  const error = new ClientError('NETWORK', `Cannot reach ${url.host}: no connection after ${ms / 1000} s`);
  return Object.assign(error, { errno: 'ETIMEDOUT' });
}

/**
 * A server that went quiet: the request was sent and nothing came back for `ms`. Not retried (the same
 * server would most likely keep the next attempt waiting as long).
 */
export function idleTimeout(url: URL, ms: number): ClientError {
  const error = new ClientError('NETWORK', `${url.host} sent nothing for ${ms / 1000} s; giving up`);
  return Object.assign(error, { errno: 'IDLE_TIMEOUT' });
}
