export {
  IMAGE_TO_SYNC_ANNOTATION,
  ADMISSION_API_VERSIONS,
  AdmissionRequestError,
  parseAdmissionReview,
  decide,
  admissionResponse,
} from './admission.js';
export type { AdmissionRequest, AdmissionDecision, ImageVerifier } from './admission.js';
export { startWebhookServer, DEFAULT_MAX_BODY_BYTES } from './server.js';
export type { WebhookServerOptions, RunningWebhook } from './server.js';
export { imageVerifier } from './verifier.js';
export type { ImageVerifierOptions } from './verifier.js';
export { webhookManifests } from './manifests.js';
export type { WebhookManifestOptions } from './manifests.js';
