/**
 * Graceful drain on shutdown: once begun, /ready answers 503 and new API requests are refused with 503
 * `shutting_down` (and `Retry-After`), while the requests already in flight, streams included, may run to
 * completion within the grace period. When the grace period is over, {@link Drain.signal} aborts them: their
 * streams end with an error event. Idle keep-alive connections are closed at once, and each connection
 * whose response finishes during the drain is closed too, so clients reconnect elsewhere.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { engineUnavailable, type IrisError } from '../errors.js';

/** The part of the HTTP server a drain uses. */
interface DrainedServer {
  closeIdleConnections(): void;
}

/** How long requests ended at the end of the grace period get to write their error event and close. */
const FINAL_WRITE_MS = 2000;

/** Tracks the API requests in flight and drains them on shutdown. */
export class Drain {
  #inFlight = 0;
  #deadline: number | undefined;
  #expired = new AbortController();
  #idle: (() => void) | undefined;
  #server: DrainedServer | undefined;

  /** Whether a drain has begun. */
  get draining(): boolean {
    return this.#deadline !== undefined;
  }

  /** Requests in flight now. */
  get inFlight(): number {
    return this.#inFlight;
  }

  /** Aborted (with a 503 `shutting_down` as its reason) when the grace period ends with requests still running. */
  get signal(): AbortSignal {
    return this.#expired.signal;
  }

  /** Seconds until this process is gone: what `Retry-After` says while draining (at least 1). */
  retryAfterSeconds(): number {
    return Math.max(1, Math.ceil(((this.#deadline ?? Date.now()) - Date.now()) / 1000));
  }

  /** The error new requests get while draining. */
  refusal(): IrisError {
    return engineUnavailable('The server is shutting down; retry the request.', 'shutting_down', undefined, this.retryAfterSeconds());
  }

  /** Counts one request in flight; call the returned function once when its response is over. */
  track(): () => void {
    this.#inFlight += 1;
    let done = false;
    return () => {
      if (done) return;
      done = true;
      this.#inFlight -= 1;
      if (this.draining) {
        // The connection of a finished response is idle now: close it, and any other idle one.
        setImmediate(() => this.#server?.closeIdleConnections());
        if (this.#inFlight === 0) this.#idle?.();
      }
    };
  }

  /**
   * Begins the drain: resolves once every request in flight has finished, or when `graceMs` is over and the
   * remaining ones have been ended (with a short allowance for their error events to be written).
   */
  async begin(graceMs: number, server: DrainedServer): Promise<void> {
    if (this.draining) return;
    this.#server = server;
    this.#deadline = Date.now() + graceMs;
    server.closeIdleConnections();
    const idle = new Promise<void>((resolve) => {
      this.#idle = resolve;
      if (this.#inFlight === 0) resolve();
    });
    const timer = new AbortController();
    const finished = await Promise.race([idle.then(() => true), sleep(graceMs, false, { signal: timer.signal }).catch(() => true)]);
    timer.abort();
    if (finished) return;
    this.#expired.abort(engineUnavailable('The server shut down before the request finished; retry it.', 'shutting_down', undefined, 1));
    await Promise.race([idle, sleep(FINAL_WRITE_MS)]);
  }
}
