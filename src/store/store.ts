/**
 * Iris's database: SQLite in the data directory by default (`<data dir>/iris.db`, WAL mode), PostgreSQL
 * when a database URL is configured (several gateways then share keys, limits, usage and stored
 * responses). Opening it applies the migrations; the parts (keys, limiter, usage, responses) are built on
 * the one connection.
 */
import { join } from 'node:path';
import { OperatorError } from '../errors.js';
import { ApiKeyStore } from './api-keys.js';
import { openPostgres, openSqlite, type SqlDatabase } from './database.js';
import { migrate } from './migrations.js';
import { ResponseRecordStore, type ResponseRetention } from './response-records.js';
import { UsageStore } from './usage-records.js';

/** Where the database is. */
export interface StoreLocation {
  /** `postgres://...`: use PostgreSQL. */
  databaseUrl?: string | undefined;
  /** Otherwise SQLite at `<dataDir>/iris.db`. */
  dataDir: string;
}

/** The opened database and its tables' interfaces. */
export interface Store {
  readonly db: SqlDatabase;
  readonly keys: ApiKeyStore;
  readonly usage: UsageStore;
  /** Stored Responses API responses. */
  readonly responses: ResponseRecordStore;
  /** `sqlite:<path>` or `postgres://host:port/db` (never a password), for logs. */
  readonly description: string;
  close(): Promise<void>;
}

/** What the parts of the store keep. */
export interface StoreOptions {
  /** Retention and size cap of stored responses; absent: none are stored or read (commands that do not serve the API). */
  responses?: ResponseRetention;
}

/** The database cannot be opened or migrated (a set-up mistake); the message says which and why. */
export class StoreOpenError extends OperatorError {}

/** Opens (and migrates) the database. */
export async function openStore(location: StoreLocation, now: () => number = Date.now, options: StoreOptions = {}): Promise<Store> {
  const description = describe(location);
  let db: SqlDatabase;
  try {
    db = location.databaseUrl ? openPostgres(location.databaseUrl) : openSqlite(join(location.dataDir, 'iris.db'));
  } catch (error) {
    throw new StoreOpenError(`Cannot open the database ${description}: ${(error as Error).message}`, { cause: error });
  }
  try {
    await migrate(db, now);
  } catch (error) {
    await db.close().catch(() => undefined);
    throw new StoreOpenError(`Cannot prepare the database ${description}: ${(error as Error).message}`, { cause: error });
  }
  const responses = new ResponseRecordStore(db, options.responses ?? { retentionMs: 0, maxBytes: 0 }, now);
  return {
    db,
    keys: new ApiKeyStore(db, now),
    usage: new UsageStore(db),
    responses,
    description,
    close: () => {
      responses.dispose();
      return db.close();
    },
  };
}

function describe(location: StoreLocation): string {
  if (!location.databaseUrl) return `sqlite:${join(location.dataDir, 'iris.db')}`;
  try {
    const url = new URL(location.databaseUrl);
    return `${url.protocol}//${url.host}${url.pathname}`;
  } catch {
    return 'postgres (DATABASE_URL)';
  }
}
