import { Counter, Gauge, Histogram, Registry as PromRegistry, collectDefaultMetrics } from 'prom-client';

/** Prometheus metrics of one registry process. */
export class RegistryMetrics {
  readonly registry = new PromRegistry();
  readonly requests: Counter<'method' | 'route' | 'status'>;
  readonly duration: Histogram<'route'>;
  readonly bytesIn: Counter;
  readonly bytesOut: Counter;
  readonly uploadSessions: Gauge;
  readonly storageBytes: Gauge;

  constructor(sources: { activeUploads: () => number; storageBytes: () => Promise<number> }) {
    collectDefaultMetrics({ register: this.registry, prefix: 'airlock_' });
    this.requests = new Counter({
      name: 'airlock_http_requests_total',
      help: 'HTTP requests by route, method and status',
      labelNames: ['method', 'route', 'status'],
      registers: [this.registry],
    });
    this.duration = new Histogram({
      name: 'airlock_http_request_duration_seconds',
      help: 'HTTP request duration by route',
      labelNames: ['route'],
      buckets: [0.001, 0.005, 0.025, 0.1, 0.5, 2.5, 10, 60],
      registers: [this.registry],
    });
    this.bytesIn = new Counter({
      name: 'airlock_http_received_bytes_total',
      help: 'Request body bytes received',
      registers: [this.registry],
    });
    this.bytesOut = new Counter({
      name: 'airlock_http_sent_bytes_total',
      help: 'Response body bytes sent',
      registers: [this.registry],
    });
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
  }
}
