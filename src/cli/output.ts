/** The CLI's one way to print: knows about --output json and --quiet. */
export interface Output {
  readonly json: boolean;
  readonly quiet: boolean;
  /**
   * A result for people, or its JSON form for scripts; with --quiet, `quiet` instead of `human` when the
   * command gives one (the line a script needs: a digest, a reference; empty for nothing).
   */
  result(human: string, data: unknown, quiet?: string): void;
  /** Progress or advice on standard error; hidden by --quiet. */
  info(message: string): void;
  /** A one-line error on standard error. */
  error(message: string): void;
}

/** `n` and the noun, singular for one: "1 blob", "3 blobs" (`plural` when the noun is not made with -s). */
export function counted(n: number, noun: string, plural = `${noun}s`): string {
  return `${n} ${n === 1 ? noun : plural}`;
}

export function createOutput(options: { output?: string; quiet?: boolean } = {}): Output {
  const json = options.output === 'json';
  const quiet = options.quiet ?? false;
  return {
    json,
    quiet,
    result(human, data, quietText) {
      const text = quiet && quietText !== undefined ? quietText : human;
      // An empty list (no tags) prints nothing, not an empty line a `while read` loop would see.
      if (!json && text === '') return;
      process.stdout.write(
        json ? `${JSON.stringify(data, null, 2)}\n` : text.endsWith('\n') ? text : `${text}\n`,
      );
    },
    info(message) {
      if (!quiet) process.stderr.write(`${message}\n`);
    },
    error(message) {
      process.stderr.write(`Error: ${message}\n`);
    },
  };
}
