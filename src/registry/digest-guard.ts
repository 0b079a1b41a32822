/**
 * Keeps garbage collection and writes of the same digest apart, inside one process. A write (a blob
 * upload, a mount, a manifest push) pins the digests it is about to rely on, before its first await;
 * the collector claims a digest before it removes anything for it, and gets no claim on a pinned one.
 * A write that pins a digest while a claim on it is being carried out waits for that removal to end
 * (`ready`) before it looks at storage, so it then sees the blob gone and stores it again (or fails a
 * mount, which falls back to an upload) instead of linking bytes that are about to disappear.
 */
export class DigestGuard {
  readonly #pins = new Map<string, number>();
  readonly #claims = new Map<string, Promise<void>>();

  /**
   * Pins `digests` until `release()` (once; later calls do nothing). Taken at once, before any await;
   * `ready` settles when no removal of them is under way any more.
   */
  pin(digests: Iterable<string>): { ready: Promise<void>; release(): void } {
    const held = [...new Set(digests)];
    const waits: Promise<void>[] = [];
    for (const digest of held) {
      this.#pins.set(digest, (this.#pins.get(digest) ?? 0) + 1);
      const claim = this.#claims.get(digest);
      if (claim) waits.push(claim);
    }
    let released = false;
    return {
      ready: waits.length === 0 ? Promise.resolve() : Promise.all(waits).then(() => undefined),
      release: () => {
        if (released) return;
        released = true;
        for (const digest of held) {
          const count = (this.#pins.get(digest) ?? 1) - 1;
          if (count === 0) this.#pins.delete(digest);
          else this.#pins.set(digest, count);
        }
      },
    };
  }

  /** Whether a write holds `digest` right now. */
  pinned(digest: string): boolean {
    return this.#pins.has(digest);
  }

  /**
   * Claims `digest` for a removal: undefined when it is pinned or claimed already, else the function that
   * ends the claim (call it once the removal is done or given up; later calls do nothing).
   */
  claim(digest: string): (() => void) | undefined {
    if (this.#pins.has(digest) || this.#claims.has(digest)) return undefined;
    let end = (): void => undefined;
    const claim = new Promise<void>((resolve) => {
      end = resolve;
    });
    this.#claims.set(digest, claim);
    let ended = false;
    return () => {
      if (ended) return;
      ended = true;
      this.#claims.delete(digest);
      end();
    };
  }
}
