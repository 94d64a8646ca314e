/**
 * Small things every command shares: the version, and the error type that means "the user typed
 * something wrong" (printed without a stack trace, exit code 2).
 */
import { createRequire } from 'node:module';

/** Iris's version, from package.json. */
export const IRIS_VERSION: string = (createRequire(import.meta.url)('../../package.json') as { version: string }).version;

/** A mistake in the command line or configuration; main prints its message and exits with 2. */
export class CliUsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CliUsageError';
  }
}
