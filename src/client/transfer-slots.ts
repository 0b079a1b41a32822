/**
 * A blob's place among the transfers a copy runs at once (`copyImage`'s concurrency). A blob holds it
 * while its bytes are on the way and gives it back once they are all sent, before the target has
 * confirmed them: a registry's answer to the closing PUT of a large upload waits for its hashing to
 * catch up, time in which the next blob can already be sending. Both calls may be repeated: `hold` does
 * nothing while the place is held, `free` nothing while it is not.
 */
export interface TransferSlot {
  /** Waits for a place, unless this blob holds one (a retry that sends the bytes again takes one back). */
  hold(): Promise<void>;
  /** Gives the place back, if held. */
  free(): void;
}

/** Places for at most `limit` transfers, handed out in the order they are asked for. */
export class TransferSlots {
  #free: number;
  readonly #waiting: (() => void)[] = [];

  constructor(limit: number) {
    if (!Number.isSafeInteger(limit) || limit < 1) throw new RangeError(`A transfer limit of ${limit}`);
    this.#free = limit;
  }

  /** A new slot, not yet holding a place. */
  slot(): TransferSlot {
    let held = false;
    return {
      hold: async () => {
        if (held) return;
        if (this.#free > 0) this.#free--;
        else await new Promise<void>((resolve) => this.#waiting.push(resolve));
        held = true;
      },
      free: () => {
        if (!held) return;
        held = false;
        const next = this.#waiting.shift();
        if (next) next();
        else this.#free++;
      },
    };
  }
}
