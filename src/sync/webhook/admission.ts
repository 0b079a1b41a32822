/** The annotation Config Sync sets to `IMAGE@DIGEST` once it has resolved the image it will sync. */
export const IMAGE_TO_SYNC_ANNOTATION = 'configsync.gke.io/image-to-sync';

/** The AdmissionReview versions answered; the response keeps the request's. */
export const ADMISSION_API_VERSIONS = ['admission.k8s.io/v1', 'admission.k8s.io/v1beta1'] as const;

/** Checks an image reference (`IMAGE@DIGEST`); rejects with an Error whose message is the reason. */
export type ImageVerifier = (image: string, signal?: AbortSignal) => Promise<void>;

/** An AdmissionReview that cannot be answered (bad JSON, missing fields): a 400. */
export class AdmissionRequestError extends Error {
  override readonly name = 'AdmissionRequestError';
}

type Json = Record<string, unknown>;
const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);

/** The parts of an AdmissionReview request the webhook acts on. */
export interface AdmissionRequest {
  readonly apiVersion: (typeof ADMISSION_API_VERSIONS)[number];
  readonly uid: string;
  readonly operation: string;
  /** `rootsyncs`, `reposyncs`, … (from `request.resource.resource`, else the kind). */
  readonly resource: string;
  readonly name: string;
  readonly namespace: string;
  readonly oldImage: string | undefined;
  readonly newImage: string | undefined;
}

export interface AdmissionDecision {
  readonly allowed: boolean;
  /** Why it was denied (shown by kubectl and in RootSync status), or why it was allowed without a check. */
  readonly message: string;
  /** The image that was verified, when one was. */
  readonly image?: string;
}

function annotation(object: unknown): string | undefined {
  if (!isObject(object) || !isObject(object.metadata)) return undefined;
  const annotations = object.metadata.annotations;
  if (!isObject(annotations)) return undefined;
  const value = annotations[IMAGE_TO_SYNC_ANNOTATION];
  return typeof value === 'string' && value !== '' ? value : undefined;
}

/** Parses an AdmissionReview body (v1 or v1beta1); throws AdmissionRequestError saying what is wrong. */
export function parseAdmissionReview(body: string): AdmissionRequest {
  let review: unknown;
  try {
    review = JSON.parse(body);
  } catch (error) {
    throw new AdmissionRequestError(
      `Cannot read AdmissionReview: body is not JSON (${(error as Error).message})`,
    );
  }
  if (!isObject(review))
    throw new AdmissionRequestError('Cannot read AdmissionReview: body is not a JSON object');
  const apiVersion = review.apiVersion;
  if (!ADMISSION_API_VERSIONS.includes(apiVersion as never))
    throw new AdmissionRequestError(
      `Cannot read AdmissionReview: apiVersion "${String(apiVersion)}" is not ${ADMISSION_API_VERSIONS.map((v) => `"${v}"`).join(' or ')}`,
    );
  if (review.kind !== 'AdmissionReview')
    throw new AdmissionRequestError(
      `Cannot read AdmissionReview: kind "${String(review.kind)}" is not "AdmissionReview"`,
    );
  const request = review.request;
  if (!isObject(request))
    throw new AdmissionRequestError('Cannot read AdmissionReview: "request" is missing');
  if (typeof request.uid !== 'string' || request.uid === '')
    throw new AdmissionRequestError('Cannot read AdmissionReview: "request.uid" is missing');
  const resource =
    isObject(request.resource) && typeof request.resource.resource === 'string'
      ? request.resource.resource
      : isObject(request.kind) && typeof request.kind.kind === 'string'
        ? `${request.kind.kind.toLowerCase()}s`
        : '';
  return {
    apiVersion: apiVersion as AdmissionRequest['apiVersion'],
    uid: request.uid,
    operation: typeof request.operation === 'string' ? request.operation : '',
    resource,
    name: typeof request.name === 'string' ? request.name : '',
    namespace: typeof request.namespace === 'string' ? request.namespace : '',
    oldImage: annotation(request.oldObject),
    newImage: annotation(request.object),
  };
}

const WATCHED = new Set(['rootsyncs', 'reposyncs']);

/**
 * Decides one request: an UPDATE of a RootSync/RepoSync that changes `configsync.gke.io/image-to-sync`
 * is allowed only when `verify` accepts the new image; everything else is allowed unchecked.
 */
export async function decide(
  request: AdmissionRequest,
  verify: ImageVerifier,
  signal?: AbortSignal,
): Promise<AdmissionDecision> {
  if (request.operation !== 'UPDATE' || !WATCHED.has(request.resource))
    return {
      allowed: true,
      message: `not checked: ${request.operation} of ${request.resource || 'unknown'}`,
    };
  const image = request.newImage;
  if (image === undefined) return { allowed: true, message: `no ${IMAGE_TO_SYNC_ANNOTATION} annotation` };
  if (image === request.oldImage) return { allowed: true, message: 'image unchanged', image };
  try {
    await verify(image, signal);
    return { allowed: true, message: 'image verified', image };
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    return { allowed: false, message: `Image validation failed: ${reason}`, image };
  }
}

/** The AdmissionReview answer for a decision, in the request's apiVersion. */
export function admissionResponse(request: AdmissionRequest, decision: AdmissionDecision): unknown {
  return {
    apiVersion: request.apiVersion,
    kind: 'AdmissionReview',
    response: {
      uid: request.uid,
      allowed: decision.allowed,
      ...(decision.allowed ? {} : { status: { code: 403, reason: 'Forbidden', message: decision.message } }),
    },
  };
}
