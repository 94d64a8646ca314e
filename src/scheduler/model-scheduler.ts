/**
 * Admission control for one model: at most `slots` requests run at once (matching llama-server's slots,
 * so queued work waits here, where it can be cancelled and bounded, rather than inside the engine); at most
 * `maxQueued` wait, and one that waits longer than `queueTimeoutMs` gives up. A waiting request whose client
 * disconnects leaves the queue at once.
 *
 * Written by hand rather than on p-queue: p-queue races a task's abort signal against the task while it
 * runs, so a queue-wait timeout handed to it also fires for a request that is already generating and frees
 * its slot early (over-admitting the engine). Here the timeout covers the wait alone: a granted slot is held
 * exactly until its release function is called.
 */
import { engineUnavailable, requestCancelled, tooManyRequests, type IrisError } from '../errors.js';

/** Limits of one model's queue. */
export interface ModelSchedulerOptions {
  /** Requests running at once. */
  slots: number;
  /** Requests waiting beyond the running ones before new ones are refused with 429. */
  maxQueued: number;
  /** Longest wait for a slot, in ms. */
  queueTimeoutMs: number;
}

interface Waiter {
  slots: number;
  grant: () => void;
}

/** Gives out a model's slots in arrival order. */
export class ModelScheduler {
  #options: ModelSchedulerOptions;
  #inUse = 0;
  #running = 0;
  #waiters: Waiter[] = [];
  #shutdown = new AbortController();
  /** Moving average of how long a request holds its slots, in ms (for the drain estimate); 1 s until measured. */
  #averageHoldMs = 1000;

  constructor(options: ModelSchedulerOptions) {
    this.#options = options;
  }

  /** Requests running now. */
  get running(): number {
    return this.#running;
  }

  /** Slots held now (a request with several choices holds several). */
  get slotsInUse(): number {
    return this.#inUse;
  }

  /** Requests waiting for a slot. */
  get waiting(): number {
    return this.#waiters.length;
  }

  /**
   * Seconds until a request arriving now would likely get a slot: the requests ahead of it, times the
   * average time a slot is held, spread over the slots. What `Retry-After` says for a full queue or a
   * queue timeout.
   */
  drainEstimateSeconds(): number {
    return Math.max(1, Math.ceil(((this.#waiters.length + 1) * this.#averageHoldMs) / this.#options.slots / 1000));
  }

  /**
   * Waits for `slots` slots (default 1, at most the model's count) and resolves with their release
   * function; call it when done (stream finished, client gone, error) — later calls do nothing. Rejects
   * with 429 when the queue is full, 503 when the wait times out or the server shuts down, and with a
   * cancellation when `signal` aborts first. Slots are granted in arrival order.
   */
  async acquire(signal: AbortSignal, slots = 1): Promise<() => void> {
    if (this.#shutdown.signal.aborted) throw shuttingDown();
    if (signal.aborted) throw requestCancelled(signal.reason);
    const need = Math.max(1, Math.min(slots, this.#options.slots));
    if (this.#waiters.length === 0 && this.#inUse + need <= this.#options.slots) return this.#take(need);
    if (this.#waiters.length >= this.#options.maxQueued) {
      throw overloaded('Too many requests are waiting for this model; retry later.', 429, 'server_overloaded', this.drainEstimateSeconds());
    }
    return new Promise<() => void>((resolve, reject) => {
      const stopWaiting = (error: IrisError) => {
        const index = this.#waiters.indexOf(waiter);
        if (index >= 0) this.#waiters.splice(index, 1);
        cleanup();
        reject(error);
        // A large request leaving the head of the queue may let smaller ones behind it in.
        this.#grantWaiting();
      };
      const onAbort = () => stopWaiting(requestCancelled(signal.reason));
      const onShutdown = () => stopWaiting(shuttingDown());
      const timer = setTimeout(
        () =>
          stopWaiting(
            overloaded(
              `No slot of this model became free within ${this.#options.queueTimeoutMs} ms; retry later.`,
              503,
              'server_overloaded',
              this.drainEstimateSeconds(),
            ),
          ),
        this.#options.queueTimeoutMs,
      );
      const cleanup = () => {
        clearTimeout(timer);
        signal.removeEventListener('abort', onAbort);
        this.#shutdown.signal.removeEventListener('abort', onShutdown);
      };
      const waiter: Waiter = {
        slots: need,
        grant: () => {
          cleanup();
          resolve(this.#take(need));
        },
      };
      signal.addEventListener('abort', onAbort, { once: true });
      this.#shutdown.signal.addEventListener('abort', onShutdown, { once: true });
      this.#waiters.push(waiter);
    });
  }

  /** Refuses new work; waiting requests are rejected. Running ones keep their slots until released. */
  dispose(): void {
    this.#shutdown.abort();
  }

  #take(slots: number): () => void {
    this.#inUse += slots;
    this.#running += 1;
    let released = false;
    const since = Date.now();
    return () => {
      if (released) return;
      released = true;
      this.#averageHoldMs = 0.8 * this.#averageHoldMs + 0.2 * (Date.now() - since);
      this.#inUse -= slots;
      this.#running -= 1;
      this.#grantWaiting();
    };
  }

  #grantWaiting(): void {
    // Strict arrival order: the head waits for enough slots even if a smaller request behind it would fit.
    while (this.#waiters.length > 0) {
      const head = this.#waiters[0]!;
      if (this.#inUse + head.slots > this.#options.slots) return;
      this.#waiters.shift();
      head.grant();
    }
  }
}

function shuttingDown(): IrisError {
  return overloaded('The server is shutting down.', 503, 'shutting_down');
}

function overloaded(
  message: string,
  status: 429 | 503,
  code: 'server_overloaded' | 'shutting_down' = 'server_overloaded',
  retryAfterSeconds?: number,
): IrisError {
  return status === 429 ? tooManyRequests(message, code, retryAfterSeconds) : engineUnavailable(message, code, undefined, retryAfterSeconds);
}
