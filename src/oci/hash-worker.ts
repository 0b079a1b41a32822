// The hash thread's side of hash-thread.ts: keeps one hash state per stream and answers each message in
// the order it arrived. Bytes arrive as views of shared memory, hashed where they lie (no copy).
import { createHash, type Hash } from 'node:crypto';
import { parentPort } from 'node:worker_threads';
import type { HashReply, HashRequest } from './hash-thread.js';

const hashes = new Map<number, Hash>();

function handle(message: HashRequest): HashReply {
  switch (message.op) {
    case 'update': {
      let hash = hashes.get(message.stream);
      if (!hash) {
        hash = createHash(message.algorithm);
        hashes.set(message.stream, hash);
      }
      hash.update(new Uint8Array(message.memory, message.offset, message.length));
      return { seq: message.seq };
    }
    case 'peek': {
      // A copy is finished, so the stream can go on being updated (a chunked upload's next PATCH).
      const hash = hashes.get(message.stream) ?? createHash(message.algorithm);
      return { seq: message.seq, hex: hash.copy().digest('hex') };
    }
    case 'drop':
      hashes.delete(message.stream);
      return { seq: message.seq };
  }
}

parentPort?.on('message', (message: HashRequest) => {
  let reply: HashReply;
  try {
    reply = handle(message);
  } catch (error) {
    reply = { seq: message.seq, error: error instanceof Error ? error.message : String(error) };
  }
  parentPort?.postMessage(reply);
});
