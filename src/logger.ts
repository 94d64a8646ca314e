/**
 * The logger type every part receives through its `deps`, and the factory main.ts uses. pino writes
 * JSON lines to stderr so that stdout stays free for command output (`iris models`, progress).
 */
import { pino, type Logger as PinoLogger } from 'pino';

/** The logger Iris parts log through. */
export type Logger = PinoLogger;

/** A JSON logger on stderr at the given level. */
export function createLogger(level: string): Logger {
  return pino({ level, base: { service: 'iris' } }, pino.destination({ dest: 2, sync: false }));
}

/** A logger that drops everything (for library use and tests that do not care). */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
