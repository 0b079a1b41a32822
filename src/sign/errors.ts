/** What went wrong in signing or verification; closed so that callers can branch on it. */
export type SignErrorCode =
  /** A key file is not in a format Airlock reads (or holds a key type it cannot use). */
  | 'INVALID_KEY'
  /** The password does not open the encrypted private key. */
  | 'WRONG_PASSWORD'
  /** The image has no signature at all: no `.sig` tag layer and no sigstore bundle referrer. */
  | 'NO_SIGNATURES'
  /** The image has signatures, but none verifies against the keys and the checks. */
  | 'NO_MATCHING_SIGNATURES'
  /** Something to sign or store is malformed (an existing signature manifest, an annotation). */
  | 'INVALID_INPUT';

/** The one error type of `sign/`; `message` is ready to show to people, `cause` keeps the underlying error. */
export class SignError extends Error {
  override readonly name = 'SignError';
  readonly code: SignErrorCode;
  /** For NO_MATCHING_SIGNATURES: why each signature was rejected. */
  readonly reasons: readonly string[];

  constructor(
    code: SignErrorCode,
    message: string,
    options: { cause?: unknown; reasons?: readonly string[] } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.reasons = options.reasons ?? [];
  }
}
