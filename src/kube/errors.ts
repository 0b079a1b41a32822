/** What kind of failure a Kubernetes call met. */
export type KubeErrorCode =
  /** A kubeconfig could not be read or is incomplete. */
  | 'CONFIG'
  /** The API server could not be reached. */
  | 'NETWORK'
  /** The API server answered with an error status; `status` and `reason` say which. */
  | 'API'
  /** The kind is not served by the API server (no discovery entry). */
  | 'UNKNOWN_KIND'
  | 'TIMEOUT';

export interface KubeErrorOptions {
  readonly status?: number;
  /** The Status object's `reason` (NotFound, Conflict, Forbidden, Invalid, AlreadyExists ...). */
  readonly reason?: string;
  readonly cause?: unknown;
}

/** The one error type of the kube layer; `message` is the API server's own message where it sent one. */
export class KubeError extends Error {
  override readonly name = 'KubeError';
  readonly code: KubeErrorCode;
  readonly status: number | undefined;
  readonly reason: string | undefined;

  constructor(code: KubeErrorCode, message: string, options: KubeErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.status = options.status;
    this.reason = options.reason;
  }
}

/** True when `error` is an API answer with this HTTP status. */
export function isStatus(error: unknown, status: number): boolean {
  return error instanceof KubeError && error.status === status;
}
