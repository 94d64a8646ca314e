/**
 * `iris keys create|list|revoke`: API keys in Iris's database (the SQLite file in the data directory, or
 * PostgreSQL with DATABASE_URL). A running Iris on the same database picks changes up within seconds.
 */
import { parseArgs } from 'node:util';
import { loadConfig } from '../config/load-config.js';
import type { ApiKeyRecord, KeyLimits } from '../store/api-keys.js';
import { openStore, type Store } from '../store/store.js';
import { CliUsageError } from '../errors.js';
import { table } from './cli-support.js';

/** Options every store command takes. */
export const STORE_OPTIONS = {
  config: { type: 'string' },
  'data-dir': { type: 'string' },
  'database-url': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

/** Help lines of {@link STORE_OPTIONS}. */
export const STORE_OPTIONS_USAGE = `  --data-dir DIR        where the SQLite database iris.db is (env IRIS_DATA_DIR, default ~/.local/share/iris)
  --database-url URL    use PostgreSQL instead (env DATABASE_URL)
  --config FILE         YAML config file (env IRIS_CONFIG; its data_dir / database_url)
`;

/** Opens the database the configuration names, as `iris serve` would. */
export async function openConfiguredStore(
  values: { config?: string | undefined; 'data-dir'?: string | undefined; 'database-url'?: string | undefined },
  env: NodeJS.ProcessEnv,
): Promise<Store> {
  const config = loadConfig({ config: values.config, dataDir: values['data-dir'], databaseUrl: values['database-url'] }, env);
  return openStore({ databaseUrl: config.databaseUrl, dataDir: config.dataDir });
}

/** Help text of `iris keys`. */
export const KEYS_USAGE = `Usage: iris keys <create|list|revoke> [options]

  iris keys create --name NAME [--admin] [--rpm N] [--tpm N] [--concurrency N] [--models a,b] [--expires DATE]
      make a key and print it once (only its SHA-256 is stored)
  iris keys list        name, prefix, created, last used, limits, models, expiry, admin
  iris keys revoke NAME the key stops working within seconds

Limits: --rpm requests per minute, --tpm tokens per minute (prompt with images + completion),
--concurrency requests at once. --models limits the key to those model ids (others answer 404).
--expires takes an ISO 8601 date or date-time (2026-12-31, 2026-12-31T18:00:00Z). --admin keys may read
every key's usage.

Options:
${STORE_OPTIONS_USAGE}`;

/** Runs `iris keys`. */
export async function keysCommand(argv: string[], env: NodeJS.ProcessEnv): Promise<void> {
  const { values, positionals } = parseArgs({
    args: argv,
    options: {
      ...STORE_OPTIONS,
      name: { type: 'string' },
      admin: { type: 'boolean' },
      rpm: { type: 'string' },
      tpm: { type: 'string' },
      concurrency: { type: 'string' },
      models: { type: 'string' },
      expires: { type: 'string' },
      all: { type: 'boolean' },
    },
    strict: true,
    allowPositionals: true,
  });
  const [action, ...rest] = positionals;
  if (values.help || action === undefined) {
    process.stdout.write(KEYS_USAGE);
    return;
  }
  if (!['create', 'list', 'revoke'].includes(action)) throw new CliUsageError(`Unknown keys command '${action}'.\n\n${KEYS_USAGE}`);
  // Check the arguments before touching the database.
  const creation = action === 'create' ? newKeyFrom(values) : undefined;
  if (action === 'revoke' && rest.length !== 1) throw new CliUsageError('Name one key to revoke: iris keys revoke NAME.');
  const store = await openConfiguredStore(values, env);
  try {
    if (creation) {
      const { record, secret } = await store.keys.create(creation);
      process.stderr.write(`Created key '${record.name}'. It is shown only now; store it safely:\n`);
      process.stdout.write(`${secret}\n`);
    } else if (action === 'list') {
      process.stdout.write(keysTable(await store.keys.list({ includeRevoked: values.all === true })));
    } else {
      await store.keys.revoke(rest[0] ?? '');
      process.stdout.write(`Revoked key '${rest[0]}'; running servers refuse it within seconds.\n`);
    }
  } finally {
    await store.close();
  }
}

function newKeyFrom(values: {
  name?: string | undefined;
  admin?: boolean | undefined;
  rpm?: string | undefined;
  tpm?: string | undefined;
  concurrency?: string | undefined;
  models?: string | undefined;
  expires?: string | undefined;
}) {
  const name = values.name?.trim();
  if (!name) throw new CliUsageError('iris keys create needs --name NAME.');
  if (!/^[\w.@-]{1,100}$/.test(name)) throw new CliUsageError(`--name '${name}': use letters, digits, '.', '_', '-' or '@' (at most 100).`);
  const limits: KeyLimits = {};
  for (const flag of ['rpm', 'tpm', 'concurrency'] as const) {
    const text = values[flag];
    if (text === undefined) continue;
    if (!/^\d+$/.test(text) || Number(text) < 1 || !Number.isSafeInteger(Number(text))) {
      throw new CliUsageError(`--${flag} must be a whole number of at least 1, not '${text}'.`);
    }
    limits[flag] = Number(text);
  }
  const models = values.models?.split(',').map((model) => model.trim()).filter((model) => model.length > 0);
  if (values.models !== undefined && (models === undefined || models.length === 0)) throw new CliUsageError('--models needs at least one model id.');
  let expiresAt: number | undefined;
  if (values.expires !== undefined) {
    const text = values.expires.trim();
    expiresAt = /^\d{4}-\d{2}-\d{2}$/.test(text) ? Date.parse(`${text}T00:00:00Z`) : /^\d{4}-\d{2}-\d{2}T/.test(text) ? Date.parse(text) : Number.NaN;
    if (Number.isNaN(expiresAt)) throw new CliUsageError(`--expires must be an ISO 8601 date or date-time, not '${text}'.`);
    if (expiresAt <= Date.now()) throw new CliUsageError(`--expires ${text} is in the past.`);
  }
  return {
    name,
    admin: values.admin === true,
    limits,
    ...(models === undefined ? {} : { models }),
    ...(expiresAt === undefined ? {} : { expiresAt }),
  };
}

function keysTable(keys: readonly ApiKeyRecord[]): string {
  if (keys.length === 0) return 'No keys. Make one with: iris keys create --name NAME\n';
  const when = (ms: number | undefined): string => (ms === undefined ? '-' : new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z'));
  const limit = (value: number | undefined): string => (value === undefined ? '-' : String(value));
  return table(
    ['NAME', 'PREFIX', 'CREATED', 'LAST USED', 'RPM', 'TPM', 'CONCURRENCY', 'MODELS', 'EXPIRES', 'ADMIN', ...(keys.some((key) => key.revokedAt) ? ['REVOKED'] : [])],
    keys.map((key) => [
      key.name,
      `${key.prefix}...`,
      when(key.createdAt),
      when(key.lastUsedAt),
      limit(key.limits.rpm),
      limit(key.limits.tpm),
      limit(key.limits.concurrency),
      key.models?.join(',') ?? 'all',
      when(key.expiresAt),
      key.admin ? 'yes' : 'no',
      ...(keys.some((candidate) => candidate.revokedAt) ? [when(key.revokedAt)] : []),
    ]),
  );
}
