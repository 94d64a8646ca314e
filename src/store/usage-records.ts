/**
 * Usage records: one row per finished request, whatever its end. Requests hand their row to
 * {@link UsageRecorder}, which writes them off the request's path in batches (every `flushMs`, or sooner when
 * `batchSize` rows wait); `dispose()` writes whatever is left, so a SIGTERM loses nothing and a SIGKILL at
 * most the last `flushMs`. {@link UsageStore} answers totals by day, model or key.
 */
import type { SqlDatabase, SqlValue } from './database.js';

/** One finished request. */
export interface UsageRecord {
  requestId: string;
  /** The database key's id; null for keys from the configuration and for open servers. */
  keyId: string | null;
  /** The key's name (`config` for configuration keys); null for open servers. */
  keyName: string | null;
  model: string | null;
  /** Route path, e.g. `/v1/chat/completions`. */
  endpoint: string;
  /** Prompt tokens, image tokens included. */
  promptTokens: number;
  imageTokens: number;
  imageCount: number;
  cachedTokens: number;
  completionTokens: number;
  /** HTTP status of the answer; 499 when the client went away first. */
  status: number;
  /** Milliseconds from arrival to the first generated token, when there was one. */
  ttftMs: number | null;
  durationMs: number;
  /** Arrival, ms since the epoch. */
  createdAt: number;
}

/** How totals are grouped. */
export type UsageGrouping = 'day' | 'model' | 'key';

/** Totals of one group. */
export interface UsageTotals {
  /** The day (`YYYY-MM-DD`, UTC), model id or key name. */
  group: string | null;
  requests: number;
  errors: number;
  promptTokens: number;
  imageTokens: number;
  cachedTokens: number;
  completionTokens: number;
  totalTokens: number;
}

/** What {@link UsageStore.totals} sums. */
export interface UsageQuery {
  /** Inclusive lower bound, ms since the epoch. */
  from: number;
  /** Exclusive upper bound, ms since the epoch. */
  to: number;
  groupBy: UsageGrouping;
  /** Only rows of keys with this name (every key that has had it). */
  keyName?: string;
  /** Only this key's rows. */
  keyId?: string;
}

const COLUMNS = [
  'request_id',
  'key_id',
  'key_name',
  'model',
  'endpoint',
  'prompt_tokens',
  'image_tokens',
  'image_count',
  'cached_tokens',
  'completion_tokens',
  'status',
  'ttft_ms',
  'duration_ms',
  'created_at',
] as const;

function toValues(record: UsageRecord): SqlValue[] {
  return [
    record.requestId,
    record.keyId,
    record.keyName,
    record.model,
    record.endpoint,
    record.promptTokens,
    record.imageTokens,
    record.imageCount,
    record.cachedTokens,
    record.completionTokens,
    record.status,
    record.ttftMs,
    record.durationMs,
    record.createdAt,
  ];
}

/** Reads and writes usage rows. */
export class UsageStore {
  #db: SqlDatabase;

  constructor(db: SqlDatabase) {
    this.#db = db;
  }

  /** Inserts rows in one transaction (a row already there, by request id, is kept) and marks the keys used. */
  async insert(records: readonly UsageRecord[]): Promise<void> {
    if (records.length === 0) return;
    const lastUse = new Map<string, number>();
    for (const record of records) {
      if (record.keyId !== null) lastUse.set(record.keyId, Math.max(lastUse.get(record.keyId) ?? 0, record.createdAt));
    }
    await this.#db.transaction(async (tx) => {
      // 50 rows x 14 columns per statement stays far below both databases' parameter limits.
      for (let start = 0; start < records.length; start += 50) {
        const batch = records.slice(start, start + 50);
        const placeholders = batch.map((_, row) => `(${COLUMNS.map((__, column) => `$${row * COLUMNS.length + column + 1}`).join(', ')})`);
        await tx.execute(
          `INSERT INTO usage_records (${COLUMNS.join(', ')}) VALUES ${placeholders.join(', ')} ON CONFLICT (request_id) DO NOTHING`,
          batch.flatMap(toValues),
        );
      }
      for (const [keyId, at] of lastUse) {
        await tx.execute('UPDATE api_keys SET last_used_at = $1 WHERE id = $2 AND (last_used_at IS NULL OR last_used_at < $1)', [at, keyId]);
      }
    });
  }

  /** Rows of one request, or of all (tests and audits), oldest first. */
  async rows(options: { requestId?: string } = {}): Promise<UsageRecord[]> {
    const where = options.requestId === undefined ? '' : ' WHERE request_id = $1';
    const rows = await this.#db.query<Record<(typeof COLUMNS)[number], SqlValue>>(
      `SELECT ${COLUMNS.join(', ')} FROM usage_records${where} ORDER BY created_at, request_id`,
      options.requestId === undefined ? [] : [options.requestId],
    );
    return rows.map((row) => ({
      requestId: String(row.request_id),
      keyId: row.key_id === null ? null : String(row.key_id),
      keyName: row.key_name === null ? null : String(row.key_name),
      model: row.model === null ? null : String(row.model),
      endpoint: String(row.endpoint),
      promptTokens: Number(row.prompt_tokens),
      imageTokens: Number(row.image_tokens),
      imageCount: Number(row.image_count),
      cachedTokens: Number(row.cached_tokens),
      completionTokens: Number(row.completion_tokens),
      status: Number(row.status),
      ttftMs: row.ttft_ms === null ? null : Number(row.ttft_ms),
      durationMs: Number(row.duration_ms),
      createdAt: Number(row.created_at),
    }));
  }

  /** Totals per group between `from` and `to`, groups in order. */
  async totals(query: UsageQuery): Promise<UsageTotals[]> {
    const group = { day: this.#db.utcDay('created_at'), model: 'model', key: 'key_name' }[query.groupBy];
    const params: SqlValue[] = [query.from, query.to];
    let where = 'created_at >= $1 AND created_at < $2';
    for (const [column, value] of [['key_name', query.keyName], ['key_id', query.keyId]] as const) {
      if (value === undefined) continue;
      params.push(value);
      where += ` AND ${column} = $${params.length}`;
    }
    const rows = await this.#db.query<Record<string, SqlValue>>(
      `SELECT ${group} AS grp, COUNT(*) AS requests,
              SUM(CASE WHEN status >= 400 THEN 1 ELSE 0 END) AS errors,
              SUM(prompt_tokens) AS prompt_tokens, SUM(image_tokens) AS image_tokens,
              SUM(cached_tokens) AS cached_tokens, SUM(completion_tokens) AS completion_tokens
       FROM usage_records WHERE ${where} GROUP BY ${group} ORDER BY grp`,
      params,
    );
    return rows.map((row) => {
      const promptTokens = Number(row['prompt_tokens'] ?? 0);
      const completionTokens = Number(row['completion_tokens'] ?? 0);
      return {
        group: row['grp'] === null ? null : String(row['grp']),
        requests: Number(row['requests']),
        errors: Number(row['errors'] ?? 0),
        promptTokens,
        imageTokens: Number(row['image_tokens'] ?? 0),
        cachedTokens: Number(row['cached_tokens'] ?? 0),
        completionTokens,
        totalTokens: promptTokens + completionTokens,
      };
    });
  }
}

/** Options of {@link UsageRecorder}. */
export interface UsageRecorderOptions {
  /** Longest a row waits before it is written. @default 1000 */
  flushMs?: number;
  /** Rows that trigger a write at once. @default 200 */
  batchSize?: number;
  /** Called when a write fails (the rows are kept and retried). */
  onError: (error: unknown) => void;
}

/** Buffers usage rows and writes them in batches, off the requests' path. */
export class UsageRecorder {
  #store: UsageStore;
  #pending: UsageRecord[] = [];
  #writing: Promise<void> | undefined;
  #timer: NodeJS.Timeout;
  #batchSize: number;
  #onError: (error: unknown) => void;

  constructor(store: UsageStore, options: UsageRecorderOptions) {
    this.#store = store;
    this.#batchSize = options.batchSize ?? 200;
    this.#onError = options.onError;
    this.#timer = setInterval(() => void this.flush(), options.flushMs ?? 1000);
    this.#timer.unref();
  }

  /** Queues a row; never waits for the database. */
  record(record: UsageRecord): void {
    this.#pending.push(record);
    if (this.#pending.length >= this.#batchSize) void this.flush();
  }

  /** Rows not written yet. */
  get pending(): number {
    return this.#pending.length;
  }

  /** Writes the queued rows (one write at a time); a failed write keeps them for the next one. */
  async flush(): Promise<void> {
    while (this.#writing) await this.#writing;
    if (this.#pending.length === 0) return;
    const batch = this.#pending;
    this.#pending = [];
    this.#writing = this.#store.insert(batch).then(
      () => undefined,
      (error: unknown) => {
        this.#pending = [...batch, ...this.#pending];
        this.#onError(error);
      },
    );
    try {
      await this.#writing;
    } finally {
      this.#writing = undefined;
    }
  }

  /** Stops the timer and writes everything queued. */
  async dispose(): Promise<void> {
    clearInterval(this.#timer);
    await this.flush();
    if (this.#pending.length > 0) {
      // One more try for rows a failed write put back.
      await this.flush();
    }
  }
}

const RELATIVE_UNITS: Record<string, number> = { m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 };

/**
 * A time bound for usage queries, in ms since the epoch: a span back from `now` (`30m`, `12h`, `7d`, `2w`),
 * an ISO 8601 date or date-time (`2026-01-05`, `2026-01-05T12:00:00Z`; a date is midnight UTC), or Unix
 * seconds. Undefined when the text is none of these.
 */
export function parseTimeBound(text: string, now: number): number | undefined {
  const value = text.trim();
  const relative = /^(\d+)\s*([mhdw])$/.exec(value);
  if (relative) return now - Number(relative[1]) * (RELATIVE_UNITS[relative[2] ?? 'd'] ?? 0);
  if (/^\d{9,11}(\.\d+)?$/.test(value)) return Math.round(Number(value) * 1000);
  if (/^\d{4}-\d{2}-\d{2}([T ][\d:.]+(Z|[+-]\d{2}:?\d{2})?)?$/.test(value)) {
    const parsed = Date.parse(value.length === 10 ? `${value}T00:00:00Z` : value);
    return Number.isNaN(parsed) ? undefined : parsed;
  }
  return undefined;
}
