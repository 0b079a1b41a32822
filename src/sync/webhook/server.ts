import { createServer, type Server } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { silentLogger, type Logger } from '../../log/index.js';
import {
  AdmissionRequestError,
  admissionResponse,
  decide,
  parseAdmissionReview,
  type ImageVerifier,
} from './admission.js';

/** Default cap on an AdmissionReview body: two RootSync objects fit many times over. */
export const DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024;

export interface WebhookServerOptions {
  /** PEM serving certificate (and chain) and key. */
  readonly tls: { readonly cert: string | Buffer; readonly key: string | Buffer };
  /** Checks `IMAGE@DIGEST`; see `imageVerifier`. */
  readonly verify: ImageVerifier;
  /** Address to listen on. Default: 127.0.0.1. */
  readonly host?: string;
  /** Port. Default: 0 (any free one). */
  readonly port?: number;
  /** Default: a silent logger. */
  readonly log?: Logger;
  /** Largest request body read. Default: {@link DEFAULT_MAX_BODY_BYTES}. */
  readonly maxBodyBytes?: number;
  /** Time allowed for one verification, below the API server's webhook timeout. Default: 25 s. */
  readonly verifyTimeoutMs?: number;
}

export interface RunningWebhook {
  /** `https://host:port`. */
  readonly url: string;
  readonly port: number;
  readonly server: Server;
  close(): Promise<void>;
}

class BodyTooLarge extends Error {}

function readBody(req: IncomingMessage, limit: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        req.removeAllListeners('data');
        req.resume();
        reject(new BodyTooLarge(`Request body is larger than ${limit} bytes`));
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function send(res: ServerResponse, status: number, body: unknown): void {
  const text = typeof body === 'string' ? `${body}\n` : JSON.stringify(body);
  res.writeHead(status, {
    'content-type': typeof body === 'string' ? 'text/plain; charset=utf-8' : 'application/json',
    'content-length': Buffer.byteLength(text),
  });
  res.end(text);
}

/**
 * Starts the validating admission webhook over HTTPS: `POST /validate` answers AdmissionReview v1 and
 * v1beta1 for RootSync/RepoSync updates, `GET /healthz` says it is up.
 */
export async function startWebhookServer(options: WebhookServerOptions): Promise<RunningWebhook> {
  const log = options.log ?? silentLogger();
  const limit = options.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
  const timeoutMs = options.verifyTimeoutMs ?? 25_000;

  async function validate(req: IncomingMessage, res: ServerResponse): Promise<void> {
    let body: string;
    try {
      body = await readBody(req, limit);
    } catch (error) {
      if (error instanceof BodyTooLarge) return send(res, 413, error.message);
      throw error;
    }
    let request;
    try {
      request = parseAdmissionReview(body);
    } catch (error) {
      if (error instanceof AdmissionRequestError) {
        log.warn({ err: error.message }, 'bad admission request');
        return send(res, 400, error.message);
      }
      throw error;
    }
    const decision = await decide(request, options.verify, AbortSignal.timeout(timeoutMs));
    log.info(
      {
        uid: request.uid,
        operation: request.operation,
        resource: request.resource,
        namespace: request.namespace,
        name: request.name,
        image: decision.image,
        allowed: decision.allowed,
        reason: decision.message,
      },
      decision.allowed ? 'admission allowed' : 'admission denied',
    );
    send(res, 200, admissionResponse(request, decision));
  }

  const server = createServer({ cert: options.tls.cert, key: options.tls.key }, (req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    const handle = async (): Promise<void> => {
      if (path === '/healthz')
        return send(res, req.method === 'GET' || req.method === 'HEAD' ? 200 : 405, 'ok');
      if (path !== '/validate') return send(res, 404, `No route for "${path ?? ''}"`);
      if (req.method !== 'POST') return send(res, 405, 'Use POST for /validate');
      return validate(req, res);
    };
    handle().catch((error: unknown) => {
      log.error({ err: error }, 'unexpected error in the admission webhook');
      if (!res.headersSent) send(res, 500, 'Internal error');
      else res.destroy();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, options.host ?? '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address() as AddressInfo;
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  return {
    url: `https://${host}:${address.port}`,
    port: address.port,
    server,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
