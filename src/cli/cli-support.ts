/**
 * Small things every command shares: the version. (A command-line mistake is a `CliUsageError` from
 * errors.ts, printed without a stack trace, exit code 2.)
 */
import { createRequire } from 'node:module';

/** Iris's version, from package.json. */
export const IRIS_VERSION: string = (createRequire(import.meta.url)('../../package.json') as { version: string }).version;
