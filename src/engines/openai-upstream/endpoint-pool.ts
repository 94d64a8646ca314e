/**
 * Routing and health of a model's upstream endpoints: round-robin over the endpoints that are not in
 * cooldown, a cooldown that doubles with each consecutive failure (a circuit breaker per endpoint), and a
 * probe when a cooldown ends so that a recovered endpoint comes back without a client paying for the check.
 *
 * Hand-written: the pieces (a rotating cursor, a timestamp per endpoint, one timer) are smaller than any
 * load-balancer library, and the failover rules belong to the engine.
 */
import type { Logger } from '../../logger.js';

/** What is known of an endpoint: never tried, answered last time, or failing. */
export type EndpointHealth = 'unknown' | 'healthy' | 'unhealthy';

/** The outcome of a health probe. */
export type ProbeResult = { ok: true } | { ok: false; reason: string; cause?: unknown };

/** A snapshot of one endpoint, for status pages, logs and tests. Never holds its key. */
export interface EndpointStatus {
  /** 1-based position in the configured list; client-facing messages name endpoints by it. */
  number: number;
  /** The endpoint's base URL without credentials. */
  url: string;
  health: EndpointHealth;
  /** Failures since the last success. */
  consecutiveFailures: number;
  /** When an unhealthy endpoint may be tried again (ms since the epoch). */
  retryAt: number | undefined;
  /** The reason of the last failure. */
  lastFailure: string | undefined;
  /** Requests sent to it (chat completions, not probes). */
  attempts: number;
}

/** Options of an {@link EndpointPool}. */
export interface EndpointPoolOptions<E> {
  /** First cooldown after a failure, in ms; doubles per consecutive failure. */
  cooldownMs: number;
  /** 5xx answers to different requests in a row, with no success between, that cool an endpoint down. @default 3 */
  serverErrorsBeforeCooldown?: number;
  /** Longest cooldown, in ms. */
  maxCooldownMs: number;
  /** Checks an endpoint whose cooldown ended. */
  probe: (endpoint: E, number: number) => Promise<ProbeResult>;
  logger: Logger;
  /** Clock. @default Date.now */
  now?: () => number;
}

/** One endpoint's mutable state. */
export interface PooledEndpoint<E> {
  readonly endpoint: E;
  readonly number: number;
  readonly displayUrl: string;
}

interface EndpointState<E> extends PooledEndpoint<E> {
  health: EndpointHealth;
  consecutiveFailures: number;
  retryAt: number | undefined;
  lastFailure: string | undefined;
  attempts: number;
  /** 5xx answers in a row (one per request at most), reset by a success. */
  serverErrors: number;
  /** Bumped on every recorded outcome, so a probe that raced a request does not overwrite it. */
  generation: number;
  timer: NodeJS.Timeout | undefined;
}

/** The endpoints of one model, their health, and the order to try them in. */
export class EndpointPool<E extends { url: string }> {
  #states: EndpointState<E>[];
  #options: EndpointPoolOptions<E>;
  #now: () => number;
  #cursor = 0;
  #disposed = false;

  constructor(endpoints: readonly E[], options: EndpointPoolOptions<E>) {
    if (endpoints.length === 0) throw new Error('an upstream model needs at least one endpoint');
    this.#options = options;
    this.#now = options.now ?? Date.now;
    this.#states = endpoints.map((endpoint, index) => ({
      endpoint,
      number: index + 1,
      displayUrl: displayUrl(endpoint.url),
      health: 'unknown',
      consecutiveFailures: 0,
      retryAt: undefined,
      lastFailure: undefined,
      attempts: 0,
      serverErrors: 0,
      generation: 0,
      timer: undefined,
    }));
  }

  /** How many endpoints there are. */
  get size(): number {
    return this.#states.length;
  }

  /** Whether at least one endpoint answered last time. */
  get anyHealthy(): boolean {
    return this.#states.some((state) => state.health === 'healthy');
  }

  /**
   * The endpoints to try for one request, in order: a round-robin rotation of all of them, without those
   * still in cooldown. Each call moves the rotation on by one.
   */
  plan(): PooledEndpoint<E>[] {
    const now = this.#now();
    const start = this.#cursor;
    this.#cursor = (this.#cursor + 1) % this.#states.length;
    const order: PooledEndpoint<E>[] = [];
    for (let offset = 0; offset < this.#states.length; offset += 1) {
      const state = this.#states[(start + offset) % this.#states.length]!;
      if (state.health !== 'unhealthy' || state.retryAt === undefined || now >= state.retryAt) order.push(state);
    }
    return order;
  }

  /** The endpoint whose cooldown ends first, with its last failure (for "all endpoints are failing"). */
  soonestRetry(): { retryAt: number; number: number; reason: string } | undefined {
    let soonest: EndpointState<E> | undefined;
    for (const state of this.#states) {
      if (state.retryAt !== undefined && (soonest?.retryAt === undefined || state.retryAt < soonest.retryAt)) soonest = state;
    }
    if (soonest?.retryAt === undefined) return undefined;
    return { retryAt: soonest.retryAt, number: soonest.number, reason: soonest.lastFailure ?? 'failed' };
  }

  /** Counts a request sent to an endpoint. */
  recordAttempt(endpoint: PooledEndpoint<E>): void {
    this.#state(endpoint).attempts += 1;
  }

  /** The endpoint answered: it is healthy again. */
  recordSuccess(endpoint: PooledEndpoint<E>): void {
    const state = this.#state(endpoint);
    state.generation += 1;
    if (state.health === 'unhealthy') {
      this.#options.logger.info({ endpoint: state.displayUrl, after: state.consecutiveFailures }, 'upstream endpoint is healthy again');
    }
    state.health = 'healthy';
    state.consecutiveFailures = 0;
    state.serverErrors = 0;
    state.retryAt = undefined;
    clearTimeout(state.timer);
    state.timer = undefined;
  }

  /**
   * The endpoint answered a request with a 5xx. One such answer may be the request's own fault, so it does
   * not count as the endpoint failing; several in a row (to different requests) do.
   */
  recordServerError(endpoint: PooledEndpoint<E>, reason: string): void {
    const state = this.#state(endpoint);
    state.serverErrors += 1;
    if (state.serverErrors >= (this.#options.serverErrorsBeforeCooldown ?? 3)) {
      state.serverErrors = 0;
      this.recordFailure(endpoint, reason);
    } else {
      this.#options.logger.info({ endpoint: state.displayUrl, reason, inARow: state.serverErrors }, 'upstream endpoint answered a server error');
    }
  }

  /** The endpoint failed: cooldown (doubling per consecutive failure), then a probe. */
  recordFailure(endpoint: PooledEndpoint<E>, reason: string, cause?: unknown): void {
    const state = this.#state(endpoint);
    state.generation += 1;
    state.health = 'unhealthy';
    state.consecutiveFailures += 1;
    state.lastFailure = reason;
    const cooldown = Math.min(this.#options.cooldownMs * 2 ** (state.consecutiveFailures - 1), this.#options.maxCooldownMs);
    state.retryAt = this.#now() + cooldown;
    this.#options.logger.warn(
      { endpoint: state.displayUrl, reason, failures: state.consecutiveFailures, cooldownMs: cooldown, err: cause },
      'upstream endpoint failed; skipping it during its cooldown',
    );
    this.#scheduleProbe(state, cooldown);
  }

  /** Probes every endpoint now; resolves with each result in list order. */
  async probeAll(): Promise<{ endpoint: PooledEndpoint<E>; result: ProbeResult }[]> {
    return Promise.all(this.#states.map(async (state) => ({ endpoint: state as PooledEndpoint<E>, result: await this.#probe(state) })));
  }

  /** A snapshot of every endpoint. */
  status(): EndpointStatus[] {
    return this.#states.map((state) => ({
      number: state.number,
      url: state.displayUrl,
      health: state.health,
      consecutiveFailures: state.consecutiveFailures,
      retryAt: state.retryAt,
      lastFailure: state.lastFailure,
      attempts: state.attempts,
    }));
  }

  /** Stops the probe timers. */
  dispose(): void {
    this.#disposed = true;
    for (const state of this.#states) {
      clearTimeout(state.timer);
      state.timer = undefined;
    }
  }

  #state(endpoint: PooledEndpoint<E>): EndpointState<E> {
    return endpoint as EndpointState<E>;
  }

  #scheduleProbe(state: EndpointState<E>, delayMs: number): void {
    clearTimeout(state.timer);
    if (this.#disposed) return;
    state.timer = setTimeout(() => {
      state.timer = undefined;
      void this.#probe(state);
    }, delayMs);
    // A pending probe must not keep the process alive.
    state.timer.unref();
  }

  async #probe(state: EndpointState<E>): Promise<ProbeResult> {
    const generation = state.generation;
    let result: ProbeResult;
    try {
      result = await this.#options.probe(state.endpoint, state.number);
    } catch (error) {
      result = { ok: false, reason: 'the health check failed', cause: error };
    }
    // A request that finished meanwhile knows better than this probe.
    if (this.#disposed || state.generation !== generation) return result;
    if (result.ok) this.recordSuccess(state);
    else this.recordFailure(state, result.reason, result.cause);
    return result;
  }
}

/** A URL for logs: no user name or password, no query. */
export function displayUrl(url: string): string {
  try {
    const parsed = new URL(url);
    return `${parsed.protocol}//${parsed.host}${parsed.pathname.replace(/\/$/, '')}`;
  } catch {
    return '<invalid url>';
  }
}
