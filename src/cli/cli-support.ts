/**
 * Small things every command shares: the version and the table printer. (A command-line mistake is a `CliUsageError` from
 * errors.ts, printed without a stack trace, exit code 2.)
 */
import { createRequire } from 'node:module';

/** Iris's version, from package.json. */
export const IRIS_VERSION: string = (createRequire(import.meta.url)('../../package.json') as { version: string }).version;

/** Left-aligned columns separated by two spaces. */
export function table(headers: string[], rows: string[][]): string {
  const widths = headers.map((header, column) => Math.max(header.length, ...rows.map((row) => (row[column] ?? '').length)));
  const line = (cells: string[]): string =>
    cells
      .map((cell, column) => (column === cells.length - 1 ? cell : cell.padEnd(widths[column] ?? 0)))
      .join('  ')
      .trimEnd();
  return `${[line(headers), ...rows.map(line)].join('\n')}\n`;
}
