import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { parseManifest, ManifestError, MAX_MANIFEST_BYTES } from './manifest.js';
import { MediaType } from './media-types.js';

const D1 = `sha256:${'1'.repeat(64)}`;
const D2 = `sha256:${'2'.repeat(64)}`;
const enc = (value: unknown): Buffer => Buffer.from(JSON.stringify(value));

const image = {
  schemaVersion: 2,
  mediaType: MediaType.OciManifest,
  config: { mediaType: MediaType.OciConfig, digest: D1, size: 2 },
  layers: [{ mediaType: MediaType.OciLayerGzip, digest: D2, size: 10 }],
};

describe('parseManifest', () => {
  it('reads an OCI image manifest and uses the config media type as artifact type', () => {
    const parsed = parseManifest(enc(image), MediaType.OciManifest);
    assert.equal(parsed.kind, 'image');
    assert.equal(parsed.layers.length, 1);
    assert.equal(parsed.artifactType, MediaType.OciConfig);
  });

  it('reads an index and a Docker manifest list', () => {
    const index = {
      schemaVersion: 2,
      mediaType: MediaType.OciIndex,
      manifests: [
        {
          mediaType: MediaType.OciManifest,
          digest: D1,
          size: 5,
          platform: { architecture: 'amd64', os: 'linux' },
        },
      ],
    };
    assert.equal(parseManifest(enc(index)).kind, 'index');
    const list = { ...index, mediaType: MediaType.DockerManifestList };
    assert.equal(
      parseManifest(enc(list), MediaType.DockerManifestList).mediaType,
      MediaType.DockerManifestList,
    );
  });

  it('takes the media type from Content-Type when the manifest omits it', () => {
    const { mediaType: _omit, ...bare } = image;
    assert.equal(parseManifest(enc(bare), MediaType.DockerManifest).mediaType, MediaType.DockerManifest);
    assert.equal(parseManifest(enc(bare)).mediaType, MediaType.OciManifest);
  });

  it('keeps subject and explicit artifactType', () => {
    const parsed = parseManifest(
      enc({
        ...image,
        artifactType: 'application/x.sig',
        subject: { mediaType: MediaType.OciManifest, digest: D2, size: 3 },
      }),
    );
    assert.equal(parsed.artifactType, 'application/x.sig');
    assert.equal(parsed.subject?.digest, D2);
  });

  it('treats an empty artifactType as missing: config type for an image, none for an index', () => {
    assert.equal(parseManifest(enc({ ...image, artifactType: '' })).artifactType, MediaType.OciConfig);
    const index = { schemaVersion: 2, mediaType: MediaType.OciIndex, manifests: [], artifactType: '' };
    assert.equal('artifactType' in parseManifest(enc(index)), false);
  });

  const bad: Array<[string, Buffer, string | undefined, RegExp]> = [
    ['not JSON', Buffer.from('{'), undefined, /not valid JSON/],
    ['a JSON array', enc([]), undefined, /must be a JSON object/],
    ['schema 1', enc({ schemaVersion: 1 }), undefined, /schema 1 manifests are not supported/],
    ['no schemaVersion', enc({ ...image, schemaVersion: undefined }), undefined, /schemaVersion must be 2/],
    ['a media type that disagrees with Content-Type', enc(image), MediaType.DockerManifest, /does not match/],
    ['an unknown media type', enc({ ...image, mediaType: 'text/plain' }), undefined, /not supported/],
    [
      'an unsupported Content-Type',
      enc({ ...image, mediaType: undefined }),
      'text/plain',
      /not a supported manifest media type/,
    ],
    [
      'a bad layer digest',
      enc({ ...image, layers: [{ mediaType: 'x', digest: 'sha256:zz', size: 1 }] }),
      undefined,
      /layers\[0\]\.digest is invalid/,
    ],
    [
      'a negative size',
      enc({ ...image, config: { ...image.config, size: -1 } }),
      undefined,
      /config\.size must be a non-negative integer/,
    ],
    ['no config', enc({ ...image, config: undefined }), undefined, /config must be an object/],
    [
      'layers in an index',
      enc({ schemaVersion: 2, mediaType: MediaType.OciIndex, manifests: [], layers: [] }),
      undefined,
      /must not have/,
    ],
    [
      'non-string annotations',
      enc({ ...image, annotations: { a: 1 } }),
      undefined,
      /annotations\["a"\] must be a string/,
    ],
    ['too many bytes', Buffer.alloc(MAX_MANIFEST_BYTES + 1, 32), undefined, /more than the/],
  ];
  for (const [what, bytes, contentType, message] of bad) {
    it(`rejects ${what} with ManifestError`, () => {
      assert.throws(
        () => parseManifest(bytes, contentType),
        (error: unknown) => error instanceof ManifestError && message.test(error.message),
      );
    });
  }
});
