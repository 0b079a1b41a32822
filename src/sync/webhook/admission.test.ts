import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  AdmissionRequestError,
  admissionResponse,
  decide,
  IMAGE_TO_SYNC_ANNOTATION,
  parseAdmissionReview,
  type ImageVerifier,
} from './admission.js';

function review(options: {
  apiVersion?: string;
  operation?: string;
  resource?: string;
  oldImage?: string;
  newImage?: string;
}): string {
  const object = (image?: string) => ({
    apiVersion: 'configsync.gke.io/v1beta1',
    kind: 'RootSync',
    metadata: { name: 'root-sync', annotations: image ? { [IMAGE_TO_SYNC_ANNOTATION]: image } : {} },
  });
  return JSON.stringify({
    apiVersion: options.apiVersion ?? 'admission.k8s.io/v1',
    kind: 'AdmissionReview',
    request: {
      uid: 'u-1',
      operation: options.operation ?? 'UPDATE',
      resource: { group: 'configsync.gke.io', version: 'v1beta1', resource: options.resource ?? 'rootsyncs' },
      name: 'root-sync',
      namespace: 'config-management-system',
      object: object(options.newImage),
      oldObject: object(options.oldImage),
    },
  });
}

const IMAGE_A = `reg.local/app:v1@sha256:${'a'.repeat(64)}`;
const IMAGE_B = `reg.local/app:v2@sha256:${'b'.repeat(64)}`;

function recorder(failure?: string): ImageVerifier & { calls: string[] } {
  const calls: string[] = [];
  const verify = (image: string): Promise<void> => {
    calls.push(image);
    return failure ? Promise.reject(new Error(failure)) : Promise.resolve();
  };
  return Object.assign(verify, { calls });
}

describe('parseAdmissionReview', () => {
  it('reads v1 and v1beta1 reviews and the image-to-sync annotations', () => {
    for (const apiVersion of ['admission.k8s.io/v1', 'admission.k8s.io/v1beta1']) {
      const request = parseAdmissionReview(review({ apiVersion, oldImage: IMAGE_A, newImage: IMAGE_B }));
      assert.equal(request.apiVersion, apiVersion);
      assert.equal(request.uid, 'u-1');
      assert.equal(request.oldImage, IMAGE_A);
      assert.equal(request.newImage, IMAGE_B);
    }
  });

  const bad: Array<[string, string, RegExp]> = [
    ['not JSON', '{', /^Cannot read AdmissionReview: body is not JSON/],
    ['an array', '[]', /body is not a JSON object/],
    [
      'another apiVersion',
      JSON.stringify({ apiVersion: 'v1', kind: 'AdmissionReview' }),
      /apiVersion "v1" is not "admission.k8s.io\/v1" or "admission.k8s.io\/v1beta1"/,
    ],
    [
      'another kind',
      JSON.stringify({ apiVersion: 'admission.k8s.io/v1', kind: 'Pod' }),
      /kind "Pod" is not "AdmissionReview"/,
    ],
    [
      'no request',
      JSON.stringify({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview' }),
      /"request" is missing/,
    ],
    [
      'no uid',
      JSON.stringify({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', request: {} }),
      /"request.uid" is missing/,
    ],
  ];
  for (const [name, body, pattern] of bad) {
    it(`rejects a body that is ${name}`, () => {
      assert.throws(
        () => parseAdmissionReview(body),
        (e: unknown) => e instanceof AdmissionRequestError && pattern.test(e.message),
      );
    });
  }
});

describe('decide', () => {
  it('allows an update that leaves image-to-sync unchanged without verifying', async () => {
    const verify = recorder('should not be called');
    const decision = await decide(
      parseAdmissionReview(review({ oldImage: IMAGE_A, newImage: IMAGE_A })),
      verify,
    );
    assert.equal(decision.allowed, true);
    assert.deepEqual(verify.calls, []);
  });

  it('allows an object without the annotation', async () => {
    const verify = recorder('x');
    assert.equal((await decide(parseAdmissionReview(review({ oldImage: IMAGE_A })), verify)).allowed, true);
    assert.deepEqual(verify.calls, []);
  });

  it('verifies a changed image and allows it when verification passes', async () => {
    const verify = recorder();
    const decision = await decide(
      parseAdmissionReview(review({ oldImage: IMAGE_A, newImage: IMAGE_B })),
      verify,
    );
    assert.equal(decision.allowed, true);
    assert.deepEqual(verify.calls, [IMAGE_B]);
  });

  it('verifies a first image (no old annotation) and denies with the reason', async () => {
    const decision = await decide(
      parseAdmissionReview(review({ newImage: IMAGE_B })),
      recorder('no signatures found'),
    );
    assert.deepEqual(decision, {
      allowed: false,
      message: 'Image validation failed: no signatures found',
      image: IMAGE_B,
    });
  });

  it('leaves other operations and resources alone', async () => {
    const verify = recorder('x');
    for (const options of [{ operation: 'CREATE' }, { operation: 'DELETE' }, { resource: 'configmaps' }]) {
      const decision = await decide(parseAdmissionReview(review({ ...options, newImage: IMAGE_B })), verify);
      assert.equal(decision.allowed, true);
    }
    assert.deepEqual(verify.calls, []);
    await decide(parseAdmissionReview(review({ resource: 'reposyncs', newImage: IMAGE_B })), verify);
    assert.deepEqual(verify.calls, [IMAGE_B]);
  });
});

describe('admissionResponse', () => {
  it("answers in the request's apiVersion with its uid, and a 403 status when denied", () => {
    const request = parseAdmissionReview(
      review({ apiVersion: 'admission.k8s.io/v1beta1', newImage: IMAGE_B }),
    );
    assert.deepEqual(admissionResponse(request, { allowed: false, message: 'Image validation failed: x' }), {
      apiVersion: 'admission.k8s.io/v1beta1',
      kind: 'AdmissionReview',
      response: {
        uid: 'u-1',
        allowed: false,
        status: { code: 403, reason: 'Forbidden', message: 'Image validation failed: x' },
      },
    });
    assert.deepEqual(admissionResponse(request, { allowed: true, message: 'ok' }), {
      apiVersion: 'admission.k8s.io/v1beta1',
      kind: 'AdmissionReview',
      response: { uid: 'u-1', allowed: true },
    });
  });
});
