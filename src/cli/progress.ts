import type { CopyProgress } from '../client/index.js';
import { counted } from './output.js';

function human(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value.toFixed(unit === 0 ? 0 : 1)} ${units[unit]}`;
}

/**
 * Copy progress on a terminal: one line redrawn in place (blobs done, bytes moved, rate). When standard
 * error is not a terminal, or with --quiet or --output json, it prints nothing.
 */
export class ProgressLine {
  readonly #enabled: boolean;
  readonly #stream: NodeJS.WriteStream;
  readonly #started = Date.now();
  #blobs = 0;
  #skipped = 0;
  #bytes = 0;
  #manifests = 0;
  #last = 0;
  #ended = false;

  constructor(options: { quiet?: boolean; json?: boolean; stream?: NodeJS.WriteStream } = {}) {
    this.#stream = options.stream ?? process.stderr;
    this.#enabled = Boolean(this.#stream.isTTY) && !options.quiet && !options.json;
  }

  update(event: CopyProgress): void {
    if (event.kind === 'manifest') this.#manifests++;
    else if (event.result === 'uploaded') {
      this.#blobs++;
      this.#bytes += event.size;
    } else this.#skipped++;
    const now = Date.now();
    if (!this.#enabled || now - this.#last < 100) return;
    this.#last = now;
    this.#draw();
  }

  #draw(): void {
    const seconds = Math.max((Date.now() - this.#started) / 1000, 0.001);
    const line = `  ${counted(this.#blobs, 'blob')} copied (${human(this.#bytes)}, ${human(this.#bytes / seconds)}/s), ${this.#skipped} already there or mounted, ${counted(this.#manifests, 'manifest')}`;
    this.#stream.write(`\r\x1b[2K${line}`);
  }

  /** Draws the final state and ends the line (once; later calls do nothing), so an error starts a line. */
  done(): void {
    if (!this.#enabled || this.#ended) return;
    this.#ended = true;
    this.#draw();
    this.#stream.write('\n');
  }
}
