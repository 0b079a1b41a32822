import { Counter, Gauge, Registry as PromRegistry, collectDefaultMetrics } from 'prom-client';
import { SEND_WAYS, type SendWay } from '../oci/index.js';
import type { GarbageCollectionReport } from './gc.js';

/** What the metrics read of the process's send meter (SendMeter in src/oci/kernel-send.ts). */
export interface SendWays {
  readonly chosen: SendWay | undefined;
  rates(): Record<SendWay, number | undefined>;
}

/** Upper bounds of the request duration histogram, in seconds. */
const DURATION_BUCKETS = [0.001, 0.005, 0.025, 0.1, 0.5, 2.5, 10, 60] as const;

/** Methods counted by name; any other method is counted as `other`, so clients cannot grow the label set. */
const METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']);

interface RouteStats {
  /** Requests by method, then status. */
  readonly counts: Map<string, Map<number, number>>;
  /** Observations per bucket (not cumulative; the last is above the highest bound). */
  readonly buckets: Float64Array;
  sum: number;
}

/** What the metrics keep of a request once its answer was sent. */
export interface FinishedRequest {
  readonly method: string;
  readonly route: string;
  readonly status: number;
  readonly seconds: number;
  /** Request body bytes. */
  readonly received: number;
  /** Response body bytes. */
  readonly sent: number;
}

/**
 * The per-request metrics: requests by method, route and status, durations by route, bytes in and out.
 * The request path only adds to plain numbers; the Prometheus text is built when `/metrics` is read.
 * (prom-client hashes the label set on every update, which cost about a fifth of a manifest GET.)
 */
export class HttpStats {
  readonly #routes = new Map<string, RouteStats>();
  #received = 0;
  #sent = 0;

  /** Records one finished request. */
  record(request: FinishedRequest): void {
    const { method, route, status, seconds, received, sent } = request;
    let stats = this.#routes.get(route);
    if (!stats) {
      stats = { counts: new Map(), buckets: new Float64Array(DURATION_BUCKETS.length + 1), sum: 0 };
      this.#routes.set(route, stats);
    }
    const methodLabel = METHODS.has(method) ? method : 'other';
    let byStatus = stats.counts.get(methodLabel);
    if (!byStatus) {
      byStatus = new Map();
      stats.counts.set(methodLabel, byStatus);
    }
    byStatus.set(status, (byStatus.get(status) ?? 0) + 1);
    let bucket = 0;
    while (bucket < DURATION_BUCKETS.length && seconds > DURATION_BUCKETS[bucket]!) bucket++;
    stats.buckets[bucket]!++;
    stats.sum += seconds;
    if (received > 0) this.#received += received;
    if (sent > 0) this.#sent += sent;
  }

  /** The Prometheus text exposition (format 0.0.4) of these metrics. */
  render(): string {
    const routes = [...this.#routes].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    let text =
      '# HELP airlock_http_requests_total HTTP requests by route, method and status\n' +
      '# TYPE airlock_http_requests_total counter\n';
    for (const [route, stats] of routes) {
      for (const [method, byStatus] of stats.counts) {
        for (const [status, count] of byStatus) {
          text += `airlock_http_requests_total{method="${label(method)}",route="${label(route)}",status="${status}"} ${count}\n`;
        }
      }
    }
    text +=
      '\n# HELP airlock_http_request_duration_seconds HTTP request duration by route\n' +
      '# TYPE airlock_http_request_duration_seconds histogram\n';
    for (const [route, stats] of routes) {
      const name = label(route);
      let cumulative = 0;
      DURATION_BUCKETS.forEach((bound, index) => {
        cumulative += stats.buckets[index]!;
        text += `airlock_http_request_duration_seconds_bucket{le="${bound}",route="${name}"} ${cumulative}\n`;
      });
      const count = cumulative + stats.buckets[DURATION_BUCKETS.length]!;
      text += `airlock_http_request_duration_seconds_bucket{le="+Inf",route="${name}"} ${count}\n`;
      text += `airlock_http_request_duration_seconds_sum{route="${name}"} ${stats.sum}\n`;
      text += `airlock_http_request_duration_seconds_count{route="${name}"} ${count}\n`;
    }
    text +=
      '\n# HELP airlock_http_received_bytes_total Request body bytes received\n' +
      '# TYPE airlock_http_received_bytes_total counter\n' +
      `airlock_http_received_bytes_total ${this.#received}\n` +
      '\n# HELP airlock_http_sent_bytes_total Response body bytes sent\n' +
      '# TYPE airlock_http_sent_bytes_total counter\n' +
      `airlock_http_sent_bytes_total ${this.#sent}\n`;
    return text;
  }
}

/** A label value as the text format wants it: backslash, double quote and newline escaped. */
function label(value: string): string {
  return value.replace(/[\\"\n]/g, (c) => (c === '\n' ? '\\n' : `\\${c}`));
}

/** Prometheus metrics of one registry process. */
export class RegistryMetrics {
  readonly registry = new PromRegistry();
  readonly http = new HttpStats();
  readonly uploadSessions: Gauge;
  readonly storageBytes: Gauge;

  constructor(sources: {
    activeUploads: () => number;
    storageBytes: () => Promise<number>;
    /** How blob downloads are sent (the process's SendMeter), when they go by kernel sends. */
    sendWays?: SendWays;
  }) {
    collectDefaultMetrics({ register: this.registry, prefix: 'airlock_' });
    this.uploadSessions = new Gauge({
      name: 'airlock_upload_sessions_active',
      help: 'Blob uploads receiving data right now',
      registers: [this.registry],
      collect() {
        this.set(sources.activeUploads());
      },
    });
    this.storageBytes = new Gauge({
      name: 'airlock_storage_blob_bytes',
      help: 'Bytes of blob content stored',
      registers: [this.registry],
      async collect() {
        this.set(await sources.storageBytes());
      },
    });
    const ways = sources.sendWays;
    if (ways) {
      new Gauge({
        name: 'airlock_blob_send_way',
        help: 'The way large blob downloads are sent, once chosen by timing both (1 for the chosen one)',
        labelNames: ['way'],
        registers: [this.registry],
        collect() {
          for (const way of SEND_WAYS) this.set({ way }, ways.chosen === way ? 1 : 0);
        },
      });
      new Gauge({
        name: 'airlock_blob_send_rate_bytes_per_second',
        help: 'Median rate of the timed large blob downloads each way, by which the way was chosen',
        labelNames: ['way'],
        registers: [this.registry],
        collect() {
          const rates = ways.rates();
          for (const way of SEND_WAYS) {
            const rate = rates[way];
            if (rate !== undefined) this.set({ way }, Math.round(rate));
          }
        },
      });
    }
  }

  readonly #gcRuns = new Counter({
    name: 'airlock_gc_runs_total',
    help: 'Garbage collections that ended (dry runs not counted), by result',
    labelNames: ['result'],
    registers: [this.registry],
  });
  readonly #gcManifests = this.#counter('manifests_deleted', 'Untagged manifests deleted');
  readonly #gcLinks = this.#counter('links_removed', 'Blob links removed');
  readonly #gcBlobs = this.#counter('blobs_deleted', 'Blob files deleted');
  readonly #gcBytes = this.#counter('freed_bytes', 'Bytes of blob files deleted');
  readonly #gcLast = new Gauge({
    name: 'airlock_gc_last_success_timestamp_seconds',
    help: 'When the last garbage collection that succeeded ended (Unix time)',
    registers: [this.registry],
  });

  /** A garbage-collection counter `airlock_gc_<what>_total` in this registry. */
  #counter(what: string, deleted: string): Counter {
    return new Counter({
      name: `airlock_gc_${what}_total`,
      help: `${deleted} by garbage collection`,
      registers: [this.registry],
    });
  }

  /** Counts a garbage collection that ended (a report) or failed (an error); dry runs are left out. */
  recordGc(outcome: GarbageCollectionReport | Error, now = Date.now()): void {
    if (outcome instanceof Error) {
      this.#gcRuns.inc({ result: 'failed' });
      return;
    }
    if (outcome.dryRun) return;
    this.#gcRuns.inc({ result: 'ok' });
    this.#gcManifests.inc(outcome.manifestsDeleted.length);
    this.#gcLinks.inc(outcome.linksRemoved);
    this.#gcBlobs.inc(outcome.blobsDeleted);
    this.#gcBytes.inc(outcome.bytesFreed);
    this.#gcLast.set(now / 1000);
  }

  /** Content type of `text()`. */
  get contentType(): string {
    return this.registry.contentType;
  }

  /** Every metric of the process in the Prometheus text format. */
  async text(): Promise<string> {
    return `${await this.registry.metrics()}\n${this.http.render()}`;
  }
}
