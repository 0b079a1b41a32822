import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { digestOf } from '../oci/index.js';
import { HttpStats, RegistryMetrics } from './metrics.js';

describe('HttpStats', () => {
  it('counts requests by method, route and status, and sums body bytes', () => {
    const stats = new HttpStats();
    stats.record({ method: 'GET', route: 'manifests', status: 200, seconds: 0.0005, received: 0, sent: 120 });
    stats.record({ method: 'GET', route: 'manifests', status: 200, seconds: 0.002, received: 0, sent: 120 });
    stats.record({ method: 'GET', route: 'manifests', status: 404, seconds: 0.0001, received: 0, sent: 0 });
    stats.record({ method: 'PUT', route: 'manifests', status: 201, seconds: 0.003, received: 500, sent: 0 });
    const text = stats.render();
    assert.match(text, /^airlock_http_requests_total\{method="GET",route="manifests",status="200"\} 2$/m);
    assert.match(text, /^airlock_http_requests_total\{method="GET",route="manifests",status="404"\} 1$/m);
    assert.match(text, /^airlock_http_requests_total\{method="PUT",route="manifests",status="201"\} 1$/m);
    assert.match(text, /^airlock_http_received_bytes_total 500$/m);
    assert.match(text, /^airlock_http_sent_bytes_total 240$/m);
    assert.match(text, /^# TYPE airlock_http_requests_total counter$/m);
    assert.match(text, /^# TYPE airlock_http_request_duration_seconds histogram$/m);
  });

  it('renders cumulative duration buckets with +Inf, sum and count per route', () => {
    const stats = new HttpStats();
    for (const seconds of [0.0005, 0.001, 0.004, 0.2, 100])
      stats.record({ method: 'GET', route: 'blobs', status: 200, seconds: seconds, received: 0, sent: 0 });
    const lines = stats
      .render()
      .split('\n')
      .filter((line) => line.startsWith('airlock_http_request_duration_seconds'));
    assert.deepEqual(lines, [
      // A value equal to a bound falls in that bucket (le = less or equal).
      'airlock_http_request_duration_seconds_bucket{le="0.001",route="blobs"} 2',
      'airlock_http_request_duration_seconds_bucket{le="0.005",route="blobs"} 3',
      'airlock_http_request_duration_seconds_bucket{le="0.025",route="blobs"} 3',
      'airlock_http_request_duration_seconds_bucket{le="0.1",route="blobs"} 3',
      'airlock_http_request_duration_seconds_bucket{le="0.5",route="blobs"} 4',
      'airlock_http_request_duration_seconds_bucket{le="2.5",route="blobs"} 4',
      'airlock_http_request_duration_seconds_bucket{le="10",route="blobs"} 4',
      'airlock_http_request_duration_seconds_bucket{le="60",route="blobs"} 4',
      'airlock_http_request_duration_seconds_bucket{le="+Inf",route="blobs"} 5',
      'airlock_http_request_duration_seconds_sum{route="blobs"} 100.2055',
      'airlock_http_request_duration_seconds_count{route="blobs"} 5',
    ]);
  });

  it('counts unknown methods as "other" so clients cannot grow the label set', () => {
    const stats = new HttpStats();
    for (let i = 0; i < 100; i++)
      stats.record({ method: `M${i}`, route: 'base', status: 405, seconds: 0.001, received: 0, sent: 0 });
    const text = stats.render();
    assert.match(text, /^airlock_http_requests_total\{method="other",route="base",status="405"\} 100$/m);
    assert.equal(text.match(/^airlock_http_requests_total\{/gm)?.length, 1);
  });

  it('escapes label values as the text format requires', () => {
    const stats = new HttpStats();
    stats.record({ method: 'GET', route: 'a"b\\c\nd', status: 200, seconds: 0, received: 0, sent: 0 });
    assert.match(stats.render(), /route="a\\"b\\\\c\\nd"/);
  });

  it('renders the metric families with no requests yet', () => {
    const text = new HttpStats().render();
    assert.match(text, /^airlock_http_received_bytes_total 0$/m);
    assert.doesNotMatch(text, /^airlock_http_requests_total\{/m);
  });
});

describe('RegistryMetrics blob send ways', () => {
  const base = { activeUploads: () => 0, storageBytes: () => Promise.resolve(0) };

  it('shows neither way chosen and no rates before the meter has timed any send', async () => {
    const metrics = new RegistryMetrics({
      ...base,
      sendWays: { chosen: undefined, rates: () => ({ sendfile: undefined, copy: undefined }) },
    });
    const text = await metrics.text();
    assert.match(text, /^airlock_blob_send_way\{way="sendfile"\} 0$/m);
    assert.match(text, /^airlock_blob_send_way\{way="copy"\} 0$/m);
    assert.doesNotMatch(text, /^airlock_blob_send_rate_bytes_per_second\{/m);
  });

  it('marks the chosen way and the median rate each way was timed at', async () => {
    const metrics = new RegistryMetrics({
      ...base,
      sendWays: { chosen: 'copy', rates: () => ({ sendfile: 1_050_000_000.4, copy: 1_750_000_000 }) },
    });
    const text = await metrics.text();
    assert.match(text, /^airlock_blob_send_way\{way="sendfile"\} 0$/m);
    assert.match(text, /^airlock_blob_send_way\{way="copy"\} 1$/m);
    assert.match(text, /^airlock_blob_send_rate_bytes_per_second\{way="sendfile"\} 1050000000$/m);
    assert.match(text, /^airlock_blob_send_rate_bytes_per_second\{way="copy"\} 1750000000$/m);
  });

  it('leaves the send metrics out when the process has no meter', async () => {
    const text = await new RegistryMetrics(base).text();
    assert.doesNotMatch(text, /airlock_blob_send/);
  });
});

describe('RegistryMetrics garbage collection', () => {
  it('counts finished and failed runs and what they freed, leaving dry runs out', async () => {
    const metrics = new RegistryMetrics({ activeUploads: () => 0, storageBytes: () => Promise.resolve(0) });
    const report = {
      dryRun: false,
      repositories: 2,
      manifestsDeleted: [{ repository: 'p/app', digest: digestOf('m') }],
      linksRemoved: 3,
      blobsDeleted: 2,
      bytesFreed: 4096,
      problems: [],
    };
    metrics.recordGc(report, 1_700_000_000_000);
    metrics.recordGc({ ...report, dryRun: true });
    metrics.recordGc(report, 1_700_000_060_000);
    metrics.recordGc(new Error('disk gone'));
    const text = await metrics.text();
    assert.match(text, /^airlock_gc_runs_total\{result="ok"\} 2$/m);
    assert.match(text, /^airlock_gc_runs_total\{result="failed"\} 1$/m);
    assert.match(text, /^airlock_gc_manifests_deleted_total 2$/m);
    assert.match(text, /^airlock_gc_links_removed_total 6$/m);
    assert.match(text, /^airlock_gc_blobs_deleted_total 4$/m);
    assert.match(text, /^airlock_gc_freed_bytes_total 8192$/m);
    assert.match(text, /^airlock_gc_last_success_timestamp_seconds 1700000060$/m);
  });
});
