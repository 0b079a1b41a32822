import { createReadStream } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import type { Socket } from 'node:net';
import type { Readable } from 'node:stream';
import {
  kernelSend,
  KernelSendError,
  KernelSendUnavailable,
  reserveKernelSend,
  socketIsIdle,
  type SendMeter,
} from './kernel-send.js';
import { discardBufferSet, returnBufferSet, takePooledBufferSet, type BufferSet } from './direct-io.js';

/** Where a stream made by `fileStream` reads from. */
export interface FileSource {
  readonly path: string;
  /** Offset of the first byte. */
  readonly start: number;
}

/** Ranges up to this size are sent from one buffer of their own size. */
const SMALL_RANGE = 256 * 1024;
/** Buffer size when no aligned set is free. */
const FALLBACK_BUFFER = 1024 * 1024;

const sources = new WeakMap<Readable, FileSource>();

/**
 * A read stream over a file that remembers the file it reads. A consumer that can send bytes with less
 * work than the stream (`fileSourceOf`, then `sendFile`) may destroy the stream unread and read the
 * file itself; every other consumer reads the stream as usual. (Go's `io.Copy` does the same when it
 * meets an `*os.File`.)
 */
export function fileStream(path: string): Readable {
  const stream = createReadStream(path, { highWaterMark: 1024 * 1024 });
  sources.set(stream, { path, start: 0 });
  return stream;
}

/** The file a `fileStream` reads, while nothing was read from it yet; else undefined. */
export function fileSourceOf(stream: Readable): FileSource | undefined {
  const source = sources.get(stream);
  if (!source || stream.readableDidRead || stream.destroyed) return undefined;
  return source;
}

/** What `sendFile` sends: `length` bytes of a file from offset `start`. */
export interface SendRange {
  /** The file, by path (opened and closed here) or as an open handle (left open). */
  readonly file: string | FileHandle;
  readonly start: number;
  readonly length: number;
  /** Names the file in errors. Default: its path. */
  readonly name?: string;
}

/**
 * Sends a range of a file through `write`: read on the thread pool into a set of page-aligned buffers
 * (`takePooledBufferSet`), each refilled once `write` called back for it. A stream allocates a fresh buffer per
 * read, and the kernel then finds and zeroes new pages; reads into reused memory from malloc (16-byte
 * aligned) were slower still on the benchmark VM (the kernel's copy took 2.6 times as long per MiB as
 * into page-aligned memory). Throws when the file ends before `length` bytes, when a write fails, or as
 * soon as `signal` aborts (a write may then never call back).
 */
export async function sendFile(
  range: SendRange,
  write: (chunk: Buffer, done: (error?: Error | null) => void) => void,
  signal: AbortSignal,
): Promise<void> {
  const { file, start, length } = range;
  const handle = typeof file === 'string' ? await open(file, 'r') : file;
  // Writes an abort fails (their promise), and writes whose callback has not run (they may still read
  // their buffer, even after an abort failed them).
  const outstanding = new Set<(error: Error) => void>();
  let unfinished = 0;
  const abortReason = (): Error =>
    signal.reason instanceof Error ? signal.reason : new Error('The send was aborted');
  const onAbort = (): void => {
    for (const fail of outstanding) fail(abortReason());
  };
  signal.addEventListener('abort', onAbort, { once: true });
  let set: BufferSet | undefined;
  try {
    // A small range needs one buffer of its size, not a set of 8 MiB; with every aligned set in use, two
    // ordinary 1 MiB buffers do (slower reads, but little memory for the collector to find).
    set = length <= SMALL_RANGE ? undefined : takePooledBufferSet();
    let buffers: readonly Buffer[];
    if (set) buffers = set.buffers;
    else if (length <= SMALL_RANGE) buffers = [Buffer.allocUnsafe(Math.max(length, 1))];
    else buffers = [Buffer.allocUnsafeSlow(FALLBACK_BUFFER), Buffer.allocUnsafeSlow(FALLBACK_BUFFER)];
    const writes: Array<Promise<void> | undefined> = [];
    let position = start;
    let remaining = length;
    for (let index = 0; remaining > 0; index = (index + 1) % buffers.length) {
      const buffer = buffers[index]!;
      await writes[index];
      if (signal.aborted) throw abortReason();
      const { bytesRead } = await handle.read(buffer, 0, Math.min(buffer.byteLength, remaining), position);
      if (bytesRead === 0) {
        const name = range.name ?? (typeof file === 'string' ? file : 'The file');
        throw new Error(`${name} ended ${remaining} bytes before the ${length} bytes to send`);
      }
      position += bytesRead;
      remaining -= bytesRead;
      writes[index] = new Promise<void>((resolve, reject) => {
        const fail = (error: Error): void => {
          outstanding.delete(fail);
          reject(error);
        };
        outstanding.add(fail);
        unfinished++;
        write(buffer.subarray(0, bytesRead), (error) => {
          unfinished--;
          outstanding.delete(fail);
          if (error) reject(error);
          else resolve();
        });
      });
      // Rejections are seen when the slot is awaited; until then they must not count as unhandled.
      writes[index]?.catch(() => undefined);
    }
    for (const pending of writes) await pending;
    if (signal.aborted) throw abortReason();
  } finally {
    signal.removeEventListener('abort', onAbort);
    if (typeof file === 'string') await handle.close();
    if (set) {
      // A write that never called back may still read its buffer: then the set is never reused.
      if (unfinished === 0) returnBufferSet(set);
      else discardBufferSet(set);
    }
  }
}

/** A socket a sink hands over for `sendFileTo` to write body bytes to directly. */
export interface DirectSocket {
  readonly socket: Socket;
  /** Called with the number of body bytes written to `socket` (once, after a successful send). */
  sent(bytes: number): void;
}

/** A destination `sendFileTo` writes to: a socket or request that says when it closed. */
export interface FileSink {
  write(chunk: Uint8Array, callback: (error?: Error | null) => void): unknown;
  once(event: 'close', listener: () => void): unknown;
  off(event: 'close', listener: () => void): unknown;
  /**
   * Optional: sends what the sink holds back (its head) and, once that has left node, hands over its
   * plain TCP socket for the rest of the body; undefined when it must go through `write` (TLS, chunked
   * framing, a body-less answer).
   */
  directSocket?(): Promise<DirectSocket | undefined>;
}

/** Ranges at least this long go through sendfile(2) when the sink and the machine allow it. */
const KERNEL_SEND_MIN = SMALL_RANGE;

/**
 * `sendFile` into `sink`: true once every byte was written, false when the sink closed first (whoever
 * owns it reports why; a write may then never call back). Other failures throw.
 *
 * A long range to a sink that hands over a plain TCP socket goes from the page cache to the socket with
 * sendfile(2) (`kernelSend`) instead: no copy into node and back out, about 0.3 CPU s per GiB less on
 * the benchmark VM. With a `meter`, the send thread copies instead where the meter found that faster.
 * A socket that fails during such a send is destroyed with the error (as node does when a write
 * fails), and the result is false.
 */
export async function sendFileTo(
  range: SendRange,
  sink: FileSink,
  options: { meter?: SendMeter } = {},
): Promise<boolean> {
  // The place is taken before the first await, so that concurrent sends cannot all pass the cap.
  const slot = range.length >= KERNEL_SEND_MIN && sink.directSocket ? reserveKernelSend() : undefined;
  if (slot && sink.directSocket) {
    try {
      const direct = await sink.directSocket();
      if (direct) {
        const outcome = await sendDirect(range, direct, options.meter);
        if (outcome !== 'unavailable') return outcome === 'sent';
      }
    } finally {
      slot.release();
    }
  }
  const closed = new AbortController();
  const onClose = (): void => closed.abort(new Error('The destination closed before the file was sent'));
  sink.once('close', onClose);
  try {
    await sendFile(range, (chunk, done) => sink.write(chunk, done), closed.signal);
    return true;
  } catch (error) {
    if (closed.signal.aborted) return false;
    throw error;
  } finally {
    sink.off('close', onClose);
  }
}

/**
 * The kernel send of `sendFileTo`: 'sent', 'closed' (the socket closed or failed first), or
 * 'unavailable' when it could not start and nothing was written (the caller sends through buffers).
 */
async function sendDirect(
  range: SendRange,
  direct: DirectSocket,
  meter: SendMeter | undefined,
): Promise<'sent' | 'closed' | 'unavailable'> {
  const { file, start, length } = range;
  const { socket } = direct;
  const handle = typeof file === 'string' ? await open(file, 'r') : file;
  const closed = new AbortController();
  const onClose = (): void => closed.abort();
  socket.once('close', onClose);
  try {
    // Checked again after the open: something may have been queued on the socket meanwhile.
    if (!socketIsIdle(socket)) return 'unavailable';
    const way = meter?.next() ?? 'sendfile';
    const began = performance.now();
    await kernelSend(socket, { fileFd: handle.fd, position: start, length, way }, closed.signal);
    meter?.record(way, length, performance.now() - began);
    direct.sent(length);
    return 'sent';
  } catch (error) {
    if (error instanceof KernelSendUnavailable) return 'unavailable';
    if (!(error instanceof KernelSendError)) throw error;
    if (error.code === 'EOF') {
      // Part of the body is out: the sink's owner ends the connection, as after a failed `sendFile`.
      const name = range.name ?? (typeof file === 'string' ? file : 'The file');
      throw new Error(`${name} ended ${length - error.sent} bytes before the ${length} bytes to send`);
    }
    if (!closed.signal.aborted) {
      const failure = new Error(`Sending to the socket failed (${error.code})`) as NodeJS.ErrnoException;
      failure.code = error.code;
      socket.destroy(failure);
    }
    return 'closed';
  } finally {
    socket.off('close', onClose);
    if (typeof file === 'string') await handle.close();
  }
}
