import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { loadS3Config, parseS3Url, signV4 } from './s3.js';
import { ClientError } from './errors.js';

describe('signV4', () => {
  it('matches the GET-object example of the AWS Signature Version 4 documentation', () => {
    const headers = signV4(
      {
        method: 'GET',
        url: new URL('https://examplebucket.s3.amazonaws.com/test.txt'),
        headers: { range: 'bytes=0-9' },
        payloadHash: 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855',
      },
      {
        endpoint: 'https://s3.amazonaws.com',
        accessKeyId: 'AKIAIOSFODNN7EXAMPLE',
        secretAccessKey: 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY',
        region: 'us-east-1',
      },
      new Date('2013-05-24T00:00:00Z'),
    );
    assert.equal(
      headers.authorization,
      'AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41',
    );
  });
});

describe('S3 locations and settings', () => {
  it('parses s3://BUCKET/KEY and rejects anything else with a clear message', () => {
    assert.deepEqual(parseS3Url('s3://images/g/app.tar'), { bucket: 'images', key: 'g/app.tar' });
    for (const bad of ['s3://', 's3://Bucket/key', 's3://bucket', 'http://bucket/key']) {
      assert.throws(
        () => parseS3Url(bad),
        (e: unknown) => e instanceof ClientError && /is not s3:\/\/BUCKET\/KEY/.test(e.message),
      );
    }
  });

  it('takes flags over environment and says what is missing', async () => {
    const env = {
      AIRLOCK_CONFIG_DIR: '/nonexistent',
      AIRLOCK_S3_ENDPOINT: 'http://127.0.0.1:9000',
      AWS_ACCESS_KEY_ID: 'a',
      AWS_SECRET_ACCESS_KEY: 'b',
    };
    assert.equal(
      (await loadS3Config({ endpoint: 'http://127.0.0.1:9001' }, env)).endpoint,
      'http://127.0.0.1:9001',
    );
    assert.equal((await loadS3Config({}, env)).region, 'us-east-1');
    await assert.rejects(loadS3Config({}, { AIRLOCK_CONFIG_DIR: '/nonexistent' }), /No S3 endpoint/);
    await assert.rejects(
      loadS3Config({}, { AIRLOCK_CONFIG_DIR: '/nonexistent', AIRLOCK_S3_ENDPOINT: 'http://x' }),
      /No S3 credentials/,
    );
  });
});
