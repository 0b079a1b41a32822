import { createRequire } from 'node:module';
import type { Logger, LevelWithSilent, pino as PinoFactory } from 'pino';

export type { Logger } from 'pino';

export const LOG_LEVELS: readonly LevelWithSilent[] = [
  'fatal',
  'error',
  'warn',
  'info',
  'debug',
  'trace',
  'silent',
];

export interface LoggerOptions {
  /** Lowest level written. Default: 'info'. */
  readonly level?: LevelWithSilent;
  /** Name stamped on every line. Default: 'airlock'. */
  readonly name?: string;
  /** Where lines go. Default: standard error, so standard output stays for command results. */
  readonly destination?: NodeJS.WritableStream;
}

/**
 * pino, loaded on the first logger: the client commands only check `--log-level` and never log, and
 * loading pino is a sixth of their start-up time.
 */
let loaded: { pino: typeof PinoFactory } | undefined;
function pinoModule(): { pino: typeof PinoFactory } {
  loaded ??= createRequire(import.meta.url)('pino') as { pino: typeof PinoFactory };
  return loaded;
}

/** The one logger factory: JSON lines, with secrets redacted wherever they appear in a bound object. */
export function createLogger(options: LoggerOptions = {}): Logger {
  const { pino } = pinoModule();
  return pino(
    {
      name: options.name ?? 'airlock',
      level: options.level ?? 'info',
      base: { pid: process.pid },
      redact: {
        paths: [
          'req.headers.authorization',
          'headers.authorization',
          'password',
          '*.password',
          'token',
          '*.token',
        ],
        censor: '[redacted]',
      },
    },
    options.destination ?? pino.destination({ dest: 2, sync: false }),
  );
}

/** A logger that writes nothing, for tests and library callers that do not care. */
export function silentLogger(): Logger {
  const { pino } = pinoModule();
  return pino({ level: 'silent' });
}
