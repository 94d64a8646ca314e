/**
 * The one SQL interface the store speaks, over SQLite (better-sqlite3, a file in WAL mode: the default) or
 * PostgreSQL (pg, when a database URL is set). Statements are written once, with `$1`-style parameters and
 * SQL both databases accept; the SQLite side renames the parameters for better-sqlite3. Where the dialects
 * differ (a day from a millisecond timestamp, a row lock) the adapter provides the piece.
 */
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import pg from 'pg';

/** A value a statement parameter may take. */
export type SqlValue = string | number | null;

/** Runs statements; inside a transaction, on the transaction's connection. */
export interface SqlExecutor {
  /** Rows of a query. */
  query<Row extends object>(sql: string, params?: readonly SqlValue[]): Promise<Row[]>;
  /** Runs a statement and resolves with the number of rows it changed. */
  execute(sql: string, params?: readonly SqlValue[]): Promise<number>;
}

/** A database connection (pool) the store owns. */
export interface SqlDatabase extends SqlExecutor {
  readonly dialect: 'sqlite' | 'postgres';
  /**
   * Runs `work` in one transaction (SQLite: BEGIN IMMEDIATE, so two processes on one file serialize;
   * PostgreSQL: a pooled connection). Commits when it resolves, rolls back when it throws.
   */
  transaction<T>(work: (tx: SqlExecutor) => Promise<T>): Promise<T>;
  /** SQL for `SELECT ... FOR UPDATE` on PostgreSQL; empty on SQLite, whose write transaction locks the file. */
  readonly forUpdate: string;
  /** SQL turning a millisecond epoch column into its UTC day, `YYYY-MM-DD`. */
  utcDay(column: string): string;
  close(): Promise<void>;
}

/** Opens SQLite at `path` (creating its folder), in WAL mode. */
export function openSqlite(path: string): SqlDatabase {
  if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true });
  const db = new BetterSqlite3(path);
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = NORMAL');
  db.pragma('busy_timeout = 5000');
  db.pragma('foreign_keys = ON');
  const statements = new Map<string, BetterSqlite3.Statement>();
  const prepare = (sql: string): BetterSqlite3.Statement => {
    let statement = statements.get(sql);
    if (!statement) {
      statement = db.prepare(sql.replace(/\$(\d+)/g, '@p$1'));
      statements.set(sql, statement);
    }
    return statement;
  };
  const bind = (params: readonly SqlValue[]): Record<string, SqlValue> =>
    Object.fromEntries(params.map((value, index) => [`p${index + 1}`, value]));
  const executor: SqlExecutor = {
    query: async <Row extends object>(sql: string, params: readonly SqlValue[] = []) => prepare(sql).all(bind(params)) as Row[],
    execute: async (sql, params = []) => prepare(sql).run(bind(params)).changes,
  };
  // better-sqlite3 is synchronous, but a transaction's work awaits; queue whole operations so that nothing
  // else runs on the connection while a transaction is open.
  let tail: Promise<unknown> = Promise.resolve();
  const serialize = <T>(operation: () => Promise<T>): Promise<T> => {
    const result = tail.then(operation, operation);
    tail = result.catch(() => undefined);
    return result;
  };
  return {
    dialect: 'sqlite',
    forUpdate: '',
    utcDay: (column) => `strftime('%Y-%m-%d', ${column} / 1000, 'unixepoch')`,
    query: (sql, params) => serialize(() => executor.query(sql, params)),
    execute: (sql, params) => serialize(() => executor.execute(sql, params)),
    transaction: (work) =>
      serialize(async () => {
        db.exec('BEGIN IMMEDIATE');
        try {
          const result = await work(executor);
          db.exec('COMMIT');
          return result;
        } catch (error) {
          if (db.inTransaction) db.exec('ROLLBACK');
          throw error;
        }
      }),
    close: () =>
      serialize(async () => {
        db.close();
      }),
  };
}

// BIGINT (20) and NUMERIC (1700, what SUM over BIGINT gives) come back as strings by default; every such
// value Iris stores (milliseconds, token counts) fits a double exactly.
const numericTypes = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
    oid === 20 || oid === 1700 ? (value: string) => Number(value) : pg.types.getTypeParser(oid, format as 'text')) as typeof pg.types.getTypeParser,
};

/** Opens a PostgreSQL pool for `url` (`postgres://user:pass@host:port/db`). */
export function openPostgres(url: string): SqlDatabase {
  // A server that does not answer fails a query after 10 s (a 5xx to its request) instead of holding it forever.
  const pool = new pg.Pool({ connectionString: url, max: 10, types: numericTypes, connectionTimeoutMillis: 10_000 });
  // An idle client's error (server restart) must not crash the process; the next query reconnects.
  pool.on('error', () => undefined);
  const executorOf = (client: pg.Pool | pg.PoolClient): SqlExecutor => ({
    query: async <Row extends object>(sql: string, params: readonly SqlValue[] = []) =>
      (await client.query(sql, params as SqlValue[])).rows as Row[],
    execute: async (sql, params = []) => (await client.query(sql, params as SqlValue[])).rowCount ?? 0,
  });
  const poolExecutor = executorOf(pool);
  return {
    dialect: 'postgres',
    forUpdate: ' FOR UPDATE',
    utcDay: (column) => `to_char(to_timestamp(${column} / 1000.0) AT TIME ZONE 'UTC', 'YYYY-MM-DD')`,
    query: poolExecutor.query,
    execute: poolExecutor.execute,
    transaction: async (work) => {
      const client = await pool.connect();
      // While checked out, a client has no listener of the pool's: a connection the server ends between two
      // statements (a restart, pg_terminate_backend) would be an uncaught 'error' that ends Iris. It is
      // noted instead, fails the transaction's next statement, and the connection is thrown away.
      let lost: Error | undefined;
      const onError = (error: Error): void => {
        lost = error;
      };
      client.on('error', onError);
      try {
        await client.query('BEGIN');
        const result = await work(executorOf(client));
        await client.query('COMMIT');
        return result;
      } catch (error) {
        if (lost === undefined) {
          await client.query('ROLLBACK').catch((rollbackError: unknown) => {
            lost = rollbackError instanceof Error ? rollbackError : new Error(String(rollbackError));
          });
        }
        throw error;
      } finally {
        client.removeListener('error', onError);
        // Released with an error, the pool closes the connection rather than hand a broken one out again.
        client.release(lost);
      }
    },
    close: () => pool.end(),
  };
}
