// The worker thread of hash-pool.ts: hashes the bytes the main thread placed in a shared buffer and writes
// them to a file, so hashing and write(2) run beside the event loop that receives them.
import { closeSync, openSync, writeSync } from 'node:fs';
import { createHash, type Hash } from 'node:crypto';
import { parentPort } from 'node:worker_threads';
import type { WorkerReply, WorkerRequest } from './hash-pool.js';

interface Job {
  readonly fd: number;
  readonly hash: Hash;
}

const hashes = new Map<number, Hash>();
const jobs = new Map<number, Job>();
const port = parentPort;
if (!port) throw new Error('hash-worker.js runs only as a worker thread');

function reply(message: WorkerReply, transfer?: ArrayBuffer[]): void {
  port?.postMessage(message, transfer);
}

function failure(error: unknown): { message: string; code?: string } {
  const code = (error as NodeJS.ErrnoException).code;
  return { message: error instanceof Error ? error.message : String(error), ...(code ? { code } : {}) };
}

function closeJob(id: number): void {
  const job = jobs.get(id);
  if (!job) return;
  jobs.delete(id);
  closeSync(job.fd);
}

function handle(message: WorkerRequest): void {
  switch (message.op) {
    case 'open': {
      let hash = hashes.get(message.hash);
      if (!hash) {
        hash = createHash(message.algorithm);
        hashes.set(message.hash, hash);
      }
      const fd = openSync(message.path, message.append ? 'a' : 'w');
      jobs.set(message.job, { fd, hash });
      return;
    }
    case 'chunk': {
      const job = jobs.get(message.job);
      if (!job) return;
      const { buffer } = message;
      const view = new Uint8Array(buffer, 0, message.length);
      job.hash.update(view);
      for (let done = 0; done < view.byteLength;) done += writeSync(job.fd, view, done);
      reply({ op: 'slot', job: message.job, slot: message.slot, buffer }, [buffer]);
      return;
    }
    case 'close':
      closeJob(message.job);
      reply({ op: 'closed', job: message.job });
      return;
    case 'digest': {
      const hash = hashes.get(message.hash);
      hashes.delete(message.hash);
      if (!hash) throw new Error(`Unknown hash ${message.hash}`);
      reply({ op: 'digest', hash: message.hash, hex: hash.digest('hex') });
      return;
    }
    case 'drop':
      hashes.delete(message.hash);
      return;
  }
}

port.on('message', (message: WorkerRequest) => {
  try {
    handle(message);
  } catch (error) {
    if ('job' in message) {
      try {
        closeJob(message.job);
      } catch {
        // The write already failed; the close error adds nothing.
      }
      reply({ op: 'error', job: message.job, error: failure(error) });
    } else {
      reply({ op: 'error', hash: message.hash, error: failure(error) });
    }
  }
});
