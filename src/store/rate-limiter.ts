/**
 * Per-key limits held in the database, so that every gateway sharing it enforces one budget: requests per
 * minute, tokens per minute and requests in flight. Each key has one window row: the window starts with
 * the first request after the previous one ended and lasts a minute (so a burst is never split by a clock
 * minute boundary). Admission is one transaction that locks the key's row (PostgreSQL `FOR UPDATE`; SQLite
 * takes the write lock), reads the window and the key's in-flight requests, decides, and counts the request.
 *
 * Tokens are charged at admission with an estimate (prompt text, exact image tokens, `max_tokens`) and
 * corrected with the real usage when the request ends. In-flight requests are rows with a heartbeat: a
 * gateway that dies without releasing its rows stops counting against the key after `staleMs`.
 */
import { randomUUID } from 'node:crypto';
import type { KeyLimits } from './api-keys.js';
import type { SqlDatabase } from './database.js';

/** Length of a rate window. */
export const WINDOW_MS = 60_000;

/** Where a key stands against its limits, for the `x-ratelimit-*` headers. */
export interface RateState {
  limits: KeyLimits;
  remainingRequests?: number;
  remainingTokens?: number;
  /** Milliseconds until the window ends and the counts start again. */
  resetMs: number;
}

/** The outcome of an admission. */
export type Admission =
  | { admitted: true; state: RateState; ticket: AdmissionTicket }
  | { admitted: false; state: RateState; limit: 'requests' | 'tokens' | 'concurrency'; retryAfterMs: number; message: string };

/** A request that was admitted; settle it exactly once when it ends. */
export interface AdmissionTicket {
  /** Corrects the charged tokens to `actualTokens` and frees the request's concurrency place. */
  settle(actualTokens: number): Promise<void>;
}

/** Options of {@link RateLimiter}. */
export interface RateLimiterOptions {
  /** Clock in ms since the epoch. @default Date.now */
  now?: () => number;
  /** How often this gateway refreshes its in-flight rows' heartbeat. @default 10000 */
  heartbeatMs?: number;
  /** An in-flight row whose heartbeat is older than this no longer counts. @default 30000 */
  staleMs?: number;
}

interface WindowRow {
  window_start: number;
  requests: number;
  tokens: number;
}

/** Enforces per-key limits through the database. */
export class RateLimiter {
  #db: SqlDatabase;
  #now: () => number;
  #staleMs: number;
  readonly gatewayId = `gw_${randomUUID().replace(/-/g, '')}`;
  #inflight = 0;
  #timer: NodeJS.Timeout;

  constructor(db: SqlDatabase, options: RateLimiterOptions = {}) {
    this.#db = db;
    this.#now = options.now ?? Date.now;
    this.#staleMs = options.staleMs ?? 30_000;
    this.#timer = setInterval(() => void this.heartbeat().catch(() => undefined), options.heartbeatMs ?? 10_000);
    this.#timer.unref();
  }

  /** Keeps this gateway's in-flight rows counting. */
  async heartbeat(): Promise<void> {
    if (this.#inflight === 0) return;
    await this.#db.execute('UPDATE inflight_requests SET heartbeat_at = $1 WHERE gateway_id = $2', [this.#now(), this.gatewayId]);
  }

  /** The key's state without counting anything (for the headers of answers that never reached admission). */
  async peek(keyId: string, limits: KeyLimits): Promise<RateState> {
    const now = this.#now();
    const [row] = await this.#db.query<WindowRow>('SELECT window_start, requests, tokens FROM rate_windows WHERE key_id = $1', [keyId]);
    return stateOf(limits, currentWindow(row, now), now);
  }

  /**
   * Admits one request of `keyId` charging `estimatedTokens`, or says which limit it is over and when to
   * retry. `requestId` names its in-flight row.
   */
  async admit(keyId: string, limits: KeyLimits, requestId: string, estimatedTokens: number): Promise<Admission> {
    const result = await this.#db.transaction(async (tx) => {
      const now = this.#now();
      // Serializes admissions of one key across gateways (the key row is the lock).
      await tx.query(`SELECT id FROM api_keys WHERE id = $1${this.#db.forUpdate}`, [keyId]);
      const [row] = await tx.query<WindowRow>('SELECT window_start, requests, tokens FROM rate_windows WHERE key_id = $1', [keyId]);
      const window = currentWindow(row, now);
      const state = stateOf(limits, window, now);
      const refuse = (limit: 'requests' | 'tokens' | 'concurrency', retryAfterMs: number, message: string) =>
        ({ admitted: false as const, state, limit, retryAfterMs: Math.max(1, retryAfterMs), message });
      if (limits.rpm !== undefined && window.requests + 1 > limits.rpm) {
        return refuse('requests', state.resetMs, `Rate limit reached: ${limits.rpm} requests per minute for this key.`);
      }
      if (limits.tpm !== undefined && window.tokens + estimatedTokens > limits.tpm) {
        const message =
          estimatedTokens > limits.tpm
            ? `Request too large: about ${estimatedTokens} tokens, over this key's ${limits.tpm} tokens per minute.`
            : `Rate limit reached: ${limits.tpm} tokens per minute for this key (${window.tokens} used).`;
        return refuse('tokens', state.resetMs, message);
      }
      if (limits.concurrency !== undefined) {
        await tx.execute('DELETE FROM inflight_requests WHERE key_id = $1 AND heartbeat_at < $2', [keyId, now - this.#staleMs]);
        const [count] = await tx.query<{ n: number }>('SELECT COUNT(*) AS n FROM inflight_requests WHERE key_id = $1', [keyId]);
        if (Number(count?.n ?? 0) >= limits.concurrency) {
          return refuse('concurrency', 1000, `Concurrency limit reached: ${limits.concurrency} requests in flight for this key.`);
        }
        await tx.execute('INSERT INTO inflight_requests (request_id, key_id, gateway_id, heartbeat_at) VALUES ($1, $2, $3, $4)', [
          requestId,
          keyId,
          this.gatewayId,
          now,
        ]);
      }
      const counted = { start: window.start, requests: window.requests + 1, tokens: window.tokens + estimatedTokens };
      await tx.execute(
        `INSERT INTO rate_windows (key_id, window_start, requests, tokens) VALUES ($1, $2, $3, $4)
         ON CONFLICT (key_id) DO UPDATE SET window_start = excluded.window_start, requests = excluded.requests, tokens = excluded.tokens`,
        [keyId, counted.start, counted.requests, counted.tokens],
      );
      return { admitted: true as const, state: stateOf(limits, counted, now), windowStart: counted.start };
    });
    if (!result.admitted) return result;
    const holdsPlace = limits.concurrency !== undefined;
    if (holdsPlace) this.#inflight += 1;
    let settled = false;
    const ticket: AdmissionTicket = {
      settle: async (actualTokens) => {
        if (settled) return;
        settled = true;
        if (holdsPlace) this.#inflight -= 1;
        await this.#db.transaction(async (tx) => {
          if (holdsPlace) await tx.execute('DELETE FROM inflight_requests WHERE request_id = $1', [requestId]);
          const correction = actualTokens - estimatedTokens;
          if (correction !== 0) {
            // Only the window that was charged is corrected; a new window started since owes nothing.
            await tx.execute(
              'UPDATE rate_windows SET tokens = CASE WHEN tokens + $1 < 0 THEN 0 ELSE tokens + $1 END WHERE key_id = $2 AND window_start = $3',
              [correction, keyId, result.windowStart],
            );
          }
        });
      },
    };
    return { admitted: true, state: result.state, ticket };
  }

  dispose(): void {
    clearInterval(this.#timer);
  }
}

function currentWindow(row: WindowRow | undefined, now: number): { start: number; requests: number; tokens: number } {
  if (!row || now >= Number(row.window_start) + WINDOW_MS) return { start: now, requests: 0, tokens: 0 };
  return { start: Number(row.window_start), requests: Number(row.requests), tokens: Number(row.tokens) };
}

function stateOf(limits: KeyLimits, window: { start: number; requests: number; tokens: number }, now: number): RateState {
  return {
    limits,
    ...(limits.rpm === undefined ? {} : { remainingRequests: Math.max(0, limits.rpm - window.requests) }),
    ...(limits.tpm === undefined ? {} : { remainingTokens: Math.max(0, limits.tpm - window.tokens) }),
    resetMs: Math.max(0, window.start + WINDOW_MS - now),
  };
}
