/**
 * Versioned schema migrations, one list for both databases (the SQL is the common subset of SQLite and
 * PostgreSQL). They run at start, in order, each once, recorded in `schema_migrations`; several gateways
 * starting together on one PostgreSQL take turns under an advisory lock. Never edit a released migration:
 * add the next one.
 */
import type { SqlDatabase } from './database.js';

/** One step of the schema. */
interface Migration {
  version: number;
  name: string;
  statements: string[];
}

const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'keys, rate windows, in-flight requests, usage records',
    statements: [
      `CREATE TABLE api_keys (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        key_hash TEXT NOT NULL UNIQUE,
        prefix TEXT NOT NULL,
        admin INTEGER NOT NULL DEFAULT 0,
        rpm INTEGER,
        tpm INTEGER,
        concurrency INTEGER,
        models TEXT,
        expires_at BIGINT,
        created_at BIGINT NOT NULL,
        last_used_at BIGINT,
        revoked_at BIGINT
      )`,
      'CREATE UNIQUE INDEX api_keys_active_name ON api_keys (name) WHERE revoked_at IS NULL',
      `CREATE TABLE rate_windows (
        key_id TEXT PRIMARY KEY,
        window_start BIGINT NOT NULL,
        requests INTEGER NOT NULL,
        tokens BIGINT NOT NULL
      )`,
      `CREATE TABLE inflight_requests (
        request_id TEXT PRIMARY KEY,
        key_id TEXT NOT NULL,
        gateway_id TEXT NOT NULL,
        heartbeat_at BIGINT NOT NULL
      )`,
      'CREATE INDEX inflight_requests_key ON inflight_requests (key_id)',
      `CREATE TABLE usage_records (
        request_id TEXT PRIMARY KEY,
        key_id TEXT,
        key_name TEXT,
        model TEXT,
        endpoint TEXT NOT NULL,
        prompt_tokens INTEGER NOT NULL,
        image_tokens INTEGER NOT NULL,
        image_count INTEGER NOT NULL,
        cached_tokens INTEGER NOT NULL,
        completion_tokens INTEGER NOT NULL,
        status INTEGER NOT NULL,
        ttft_ms INTEGER,
        duration_ms INTEGER NOT NULL,
        created_at BIGINT NOT NULL
      )`,
      'CREATE INDEX usage_records_time ON usage_records (created_at)',
      'CREATE INDEX usage_records_key_time ON usage_records (key_id, created_at)',
    ],
  },
  {
    version: 2,
    name: 'stored Responses API responses',
    statements: [
      `CREATE TABLE responses (
        id TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        body TEXT NOT NULL,
        bytes INTEGER NOT NULL,
        created_at BIGINT NOT NULL
      )`,
      'CREATE INDEX responses_owner_time ON responses (owner, created_at)',
      'CREATE INDEX responses_time ON responses (created_at)',
    ],
  },
];

/** The newest schema version this Iris knows. */
export const SCHEMA_VERSION = MIGRATIONS.at(-1)?.version ?? 0;

/** Thrown when the database holds a newer schema than this Iris knows (an older gateway after an upgrade). */
export class SchemaTooNewError extends Error {
  constructor(found: number) {
    super(`The database schema is version ${found}, newer than this Iris knows (${SCHEMA_VERSION}); upgrade Iris.`);
    this.name = 'SchemaTooNewError';
  }
}

/** Applies every migration the database lacks; resolves with the versions applied now. */
export async function migrate(db: SqlDatabase, now: () => number = Date.now): Promise<number[]> {
  return db.transaction(async (tx) => {
    if (db.dialect === 'postgres') await tx.query('SELECT pg_advisory_xact_lock(7351901)');
    await tx.execute('CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)');
    const rows = await tx.query<{ version: number }>('SELECT version FROM schema_migrations');
    const applied = new Set(rows.map((row) => Number(row.version)));
    const newest = Math.max(0, ...applied);
    if (newest > SCHEMA_VERSION) throw new SchemaTooNewError(newest);
    const done: number[] = [];
    for (const migration of MIGRATIONS) {
      if (applied.has(migration.version)) continue;
      for (const statement of migration.statements) await tx.execute(statement);
      await tx.execute('INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)', [
        migration.version,
        migration.name,
        now(),
      ]);
      done.push(migration.version);
    }
    return done;
  });
}
