/** What kind of failure a client call met; `status` carries the HTTP status when there was one. */
export type ClientErrorCode =
  | 'NETWORK'
  | 'TLS'
  | 'UNAUTHORIZED'
  | 'DENIED'
  | 'NOT_FOUND'
  | 'DIGEST_MISMATCH'
  | 'INVALID_RESPONSE'
  | 'INVALID_INPUT'
  | 'TOO_LARGE'
  | 'HTTP';

export interface ClientErrorOptions {
  readonly status?: number;
  /** The registry's error code from the spec's error body, when it sent one. */
  readonly registryCode?: string;
  /** How long the registry asked to wait before trying again (its `Retry-After`), in milliseconds. */
  readonly retryAfterMs?: number;
  readonly cause?: unknown;
}

/** The one error type the client library throws; `message` is a sentence fit for a CLI user. */
export class ClientError extends Error {
  override readonly name = 'ClientError';
  readonly code: ClientErrorCode;
  readonly status: number | undefined;
  readonly registryCode: string | undefined;
  readonly retryAfterMs: number | undefined;

  constructor(code: ClientErrorCode, message: string, options: ClientErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.status = options.status;
    this.registryCode = options.registryCode;
    this.retryAfterMs = options.retryAfterMs;
  }
}
