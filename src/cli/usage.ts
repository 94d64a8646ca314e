/**
 * `iris usage [--since 7d] [--until DATE] [--by day|model|key] [--key NAME]`: token totals from the usage
 * records in Iris's database, as a table (what GET /v1/usage answers an admin key).
 */
import { parseArgs } from 'node:util';
import { parseTimeBound, type UsageGrouping } from '../store/usage-records.js';
import { CliUsageError } from '../errors.js';
import { table } from './cli-support.js';
import { openConfiguredStore, STORE_OPTIONS, STORE_OPTIONS_USAGE } from './keys.js';

/** Help text of `iris usage`. */
export const USAGE_USAGE = `Usage: iris usage [--since 7d] [--until DATE] [--by day|model|key] [--key NAME] [options]

Print requests and tokens per day (UTC), model or key from the usage records.
--since and --until take a span back from now (30m, 12h, 7d, 2w), an ISO 8601 date or date-time, or Unix
seconds (defaults: 7d, now). --key shows one key's usage.

Options:
  --json                print JSON instead of a table
${STORE_OPTIONS_USAGE}`;

/** Runs `iris usage`. */
export async function usageCommand(argv: string[], env: NodeJS.ProcessEnv): Promise<void> {
  const { values, positionals } = parseArgs({
    args: argv,
    options: {
      ...STORE_OPTIONS,
      since: { type: 'string' },
      until: { type: 'string' },
      by: { type: 'string' },
      key: { type: 'string' },
      json: { type: 'boolean' },
    },
    strict: true,
    allowPositionals: true,
  });
  if (values.help) {
    process.stdout.write(USAGE_USAGE);
    return;
  }
  if (positionals.length > 0) throw new CliUsageError(`Unexpected argument '${positionals[0]}'.\n\n${USAGE_USAGE}`);
  const now = Date.now();
  const bound = (flag: string, text: string | undefined, fallback: number): number => {
    if (text === undefined) return fallback;
    const parsed = parseTimeBound(text, now);
    if (parsed === undefined) throw new CliUsageError(`--${flag} must be a span such as 7d, an ISO 8601 date or Unix seconds, not '${text}'.`);
    return parsed;
  };
  const from = bound('since', values.since, now - 7 * 86_400_000);
  const to = bound('until', values.until, now);
  if (from >= to) throw new CliUsageError('--since must be before --until.');
  const groupBy = (values.by ?? 'day') as UsageGrouping;
  if (!['day', 'model', 'key'].includes(groupBy)) throw new CliUsageError(`--by must be day, model or key, not '${values.by}'.`);
  const store = await openConfiguredStore(values, env);
  try {
    const totals = await store.usage.totals({ from, to, groupBy, ...(values.key === undefined ? {} : { keyName: values.key }) });
    if (values.json) {
      process.stdout.write(`${JSON.stringify({ from: new Date(from).toISOString(), to: new Date(to).toISOString(), group_by: groupBy, data: totals }, null, 2)}\n`);
      return;
    }
    if (totals.length === 0) {
      process.stdout.write(`No requests between ${new Date(from).toISOString()} and ${new Date(to).toISOString()}.\n`);
      return;
    }
    const rows = totals.map((row) => [
      row.group ?? (groupBy === 'key' ? '(no key)' : '-'),
      ...[row.requests, row.errors, row.promptTokens, row.imageTokens, row.cachedTokens, row.completionTokens, row.totalTokens].map(String),
    ]);
    process.stdout.write(table([groupBy.toUpperCase(), 'REQUESTS', 'ERRORS', 'PROMPT', 'IMAGE', 'CACHED', 'COMPLETION', 'TOTAL'], rows));
  } finally {
    await store.close();
  }
}
