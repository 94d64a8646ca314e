/**
 * Stored Responses API responses: one row per response, its JSON body (the response and what a follow-up
 * or a listing needs from it, which the Responses dialect defines; this module only keeps it), the API key
 * that made it (as the hash `http/auth.ts` computes) and when. A row is visible only to its owner and only
 * for the retention period; after it, it reads as absent and {@link ResponseRecordStore.prune} deletes it.
 * The retention applies to every row by its age, so shortening it hides and then deletes older rows at once.
 */
import type { SqlDatabase } from './database.js';

/** How long stored responses are kept, and how large one may be. */
export interface ResponseRetention {
  /** Milliseconds a stored response is kept; 0 keeps none (nothing is stored). */
  retentionMs: number;
  /** Largest JSON body of one response in bytes (UTF-8); a larger one is not stored. */
  maxBytes: number;
}

/** What became of a response handed to {@link ResponseRecordStore.put}. */
export type PutOutcome =
  | { stored: true; bytes: number }
  /** `disabled`: the retention is 0; `too-large`: the body is over `maxBytes`. */
  | { stored: false; reason: 'disabled' | 'too-large'; bytes: number };

/** One response to store. */
export interface NewResponseRecord {
  /** The response's id (`resp_...`). */
  id: string;
  /** Who may read and delete it. */
  owner: string;
  /** Anything JSON can carry; read back with {@link ResponseRecordStore.get}. */
  body: object;
}

/** How often expired rows are deleted by {@link ResponseRecordStore.startPruning} (hourly). */
export const PRUNE_INTERVAL_MS = 3_600_000;

/** Stored responses in the database. */
export class ResponseRecordStore {
  readonly #db: SqlDatabase;
  readonly #retention: ResponseRetention;
  readonly #now: () => number;
  #timer: NodeJS.Timeout | undefined;

  constructor(db: SqlDatabase, retention: ResponseRetention, now: () => number = Date.now) {
    this.#db = db;
    this.#retention = retention;
    this.#now = now;
  }

  /** Whether responses are stored at all (a retention above 0). */
  get enabled(): boolean {
    return this.#retention.retentionMs > 0;
  }

  /** The largest body stored, in bytes. */
  get maxBytes(): number {
    return this.#retention.maxBytes;
  }

  /** Stores a response unless storing is off or its body is too large; rejects when the database does. */
  async put(record: NewResponseRecord): Promise<PutOutcome> {
    const json = JSON.stringify(record.body);
    const bytes = Buffer.byteLength(json, 'utf8');
    if (!this.enabled) return { stored: false, reason: 'disabled', bytes };
    if (bytes > this.#retention.maxBytes) return { stored: false, reason: 'too-large', bytes };
    await this.#db.execute('INSERT INTO responses (id, owner, body, bytes, created_at) VALUES ($1, $2, $3, $4, $5)', [
      record.id,
      record.owner,
      json,
      bytes,
      this.#now(),
    ]);
    return { stored: true, bytes };
  }

  /**
   * The body of the response `id` if `owner` stored it and it has not expired (the caller names its type:
   * the body is what it stored).
   */
  async get<Body>(id: string, owner: string): Promise<Body | undefined> {
    const [row] = await this.#db.query<{ body: string }>('SELECT body FROM responses WHERE id = $1 AND owner = $2 AND created_at > $3', [
      id,
      owner,
      this.#cutoff(),
    ]);
    return row === undefined ? undefined : (JSON.parse(row.body) as Body);
  }

  /** Deletes the response `id` if `owner` stored it and it has not expired; says whether it did. */
  async delete(id: string, owner: string): Promise<boolean> {
    const changed = await this.#db.execute('DELETE FROM responses WHERE id = $1 AND owner = $2 AND created_at > $3', [id, owner, this.#cutoff()]);
    return changed > 0;
  }

  /** Deletes every expired response; resolves with how many. */
  async prune(): Promise<number> {
    return this.#db.execute('DELETE FROM responses WHERE created_at <= $1', [this.#cutoff()]);
  }

  /** Prunes now and then every `intervalMs` (the timer does not keep the process alive) until disposed. */
  startPruning(options: { intervalMs?: number; onError: (error: unknown) => void }): void {
    this.dispose();
    const prune = (): void => void this.prune().catch(options.onError);
    prune();
    this.#timer = setInterval(prune, options.intervalMs ?? PRUNE_INTERVAL_MS);
    this.#timer.unref();
  }

  /** Stops pruning. */
  dispose(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  /** Rows created at or before this instant have expired. */
  #cutoff(): number {
    return this.#now() - this.#retention.retentionMs;
  }
}
