/**
 * Admission control for one model: at most `slots` requests run at once (matching llama-server's slots,
 * so queued work waits here, where it can be cancelled and bounded, rather than inside the engine); at most
 * `maxQueued` wait, and one that waits longer than `queueTimeoutMs` gives up. A waiting request whose client
 * disconnects leaves the queue at once.
 */
import PQueue from 'p-queue';
import { IrisError, requestCancelled } from '../errors.js';

/** Limits of one model's queue. */
export interface ModelSchedulerOptions {
  /** Requests running at once. */
  slots: number;
  /** Requests waiting beyond the running ones before new ones are refused with 429. */
  maxQueued: number;
  /** Longest wait for a slot, in ms. */
  queueTimeoutMs: number;
}

/** Gives out a model's slots in arrival order. */
export class ModelScheduler {
  #queue: PQueue;
  #options: ModelSchedulerOptions;
  #shutdown = new AbortController();

  constructor(options: ModelSchedulerOptions) {
    this.#options = options;
    this.#queue = new PQueue({ concurrency: options.slots });
  }

  /** Requests running now. */
  get running(): number {
    return this.#queue.pending;
  }

  /** Requests waiting for a slot. */
  get waiting(): number {
    return this.#queue.size;
  }

  /**
   * Waits for a slot and resolves with its release function; call it exactly once when done (stream
   * finished, client gone, error). Rejects with 429 when the queue is full, 503 when the wait times out,
   * and 499 when `signal` aborts first.
   */
  async acquire(signal: AbortSignal): Promise<() => void> {
    if (this.#shutdown.signal.aborted) throw overloaded('The server is shutting down.', 503, 'shutting_down');
    if (this.#queue.size >= this.#options.maxQueued && this.#queue.pending >= this.#options.slots) {
      throw overloaded('Too many requests are waiting for this model; retry later.', 429, 'server_overloaded');
    }
    const waitSignal = AbortSignal.any([signal, this.#shutdown.signal, AbortSignal.timeout(this.#options.queueTimeoutMs)]);
    let release!: () => void;
    const held = new Promise<void>((resolve) => {
      release = resolve;
    });
    let started!: () => void;
    const running = new Promise<void>((resolve) => {
      started = resolve;
    });
    const task = this.#queue.add(
      async () => {
        started();
        await held;
      },
      { signal: waitSignal },
    );
    try {
      await Promise.race([running, task]);
    } catch (error) {
      if (signal.aborted) {
        throw requestCancelled(error);
      }
      if (this.#shutdown.signal.aborted) throw overloaded('The server is shutting down.', 503, 'shutting_down');
      throw overloaded(`No slot of this model became free within ${this.#options.queueTimeoutMs} ms; retry later.`, 503, 'server_overloaded');
    }
    let released = false;
    return () => {
      if (released) return;
      released = true;
      release();
    };
  }

  /** Refuses new work; waiting requests are rejected. */
  dispose(): void {
    this.#shutdown.abort();
  }
}

function overloaded(message: string, status: number, code: 'server_overloaded' | 'shutting_down'): IrisError {
  return new IrisError(message, {
    status,
    type: status === 429 ? 'rate_limit_error' : 'service_unavailable_error',
    code,
  });
}
