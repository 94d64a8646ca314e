/**
 * The remote engine: an {@link Engine} that serves a model from one or more OpenAI-compatible
 * chat-completions deployments (vLLM, SGLang, llama-server, another Iris), for scale beyond one machine.
 *
 * Every request streams upstream, even a non-streaming one, so a client's disconnect closes the upstream
 * connection and stops generation at once. Requests go round-robin over the endpoints that are not in
 * cooldown; an endpoint that fails before the stream produced anything (connection error, timeout, a
 * stream that stalls longer than the idle timeout) is put in cooldown and the next one is tried, each at
 * most once per request. A 5xx answer is tried once more elsewhere and then goes to the client: it may be
 * the request's own doing, so only 5xx answers to several requests in a row cool an endpoint down. Once
 * text has been handed on, a failure ends the stream with an `error` part instead. See
 * {@link classifyUpstreamAnswer} for how upstream HTTP errors map onto Iris's. The request id goes
 * upstream as `x-request-id`.
 *
 * Token counts come from the upstream's final usage chunk (`stream_options.include_usage`). An upstream
 * that sends none gets usage 0/0 reported (and a debug log line): counting streamed chunks would be a
 * guess, since servers batch several tokens into one chunk.
 */
import { setMaxListeners } from 'node:events';
import { Agent, request as httpRequest, type Dispatcher } from 'undici';
import type { Engine, EngineCapabilities, EngineCompletion, EngineRequest, StreamPart } from '../engine.js';
import { IrisError, engineFailed, engineUnavailable, invalidRequest, toIrisError, requestCancelled } from '../../errors.js';
import type { Logger } from '../../logger.js';
import { decodeOpenAIChatStream } from '../openai-stream-decoder.js';
import { parseUpstreamError, type UpstreamErrorBody } from '../openai-error-body.js';
import { EndpointPool, type EndpointStatus, type ProbeResult } from './endpoint-pool.js';
import {
  classifyUpstreamAnswer,
  networkReason,
  streamErrorToIrisError,
  upstreamBusy,
  type AttemptFailure,
} from './upstream-errors.js';
import { collectCompletion } from '../collect-completion.js';
import { toOpenAIChatBody } from '../openai-chat-body.js';

/** One remote OpenAI-compatible deployment. */
export interface UpstreamEndpoint {
  /** Base URL including the API prefix, e.g. `http://gpu-1:8000/v1`; `/chat/completions` and `/models` are appended. */
  url: string;
  /** Bearer key for that endpoint, sent as `Authorization: Bearer <key>`; never logged or shown to clients. */
  apiKey?: string | undefined;
}

/** Settings of an {@link OpenAIUpstreamEngine}. */
export interface OpenAIUpstreamSettings {
  /** Our model id (for logs and errors). */
  id: string;
  /** The deployments serving the model; at least one. */
  endpoints: UpstreamEndpoint[];
  /** The model name sent upstream (and looked for in the upstream's `/models`). */
  model: string;
  /** Whether the upstream model accepts images. */
  vision: boolean;
  /** Most images one request may carry (ignored when `vision` is false). */
  maxImagesPerRequest: number;
  /**
   * Connect + response-headers timeout of one attempt, in ms. Servers that send headers only with the first
   * token (llama-server, Iris) count queueing and prompt processing in it too, so allow for them.
   */
  timeoutMs: number;
  /** Longest silence between two chunks of a streamed answer, in ms, before the attempt fails. @default 60000 */
  idleTimeoutMs?: number | undefined;
  /** First cooldown of a failed endpoint, in ms; doubles per consecutive failure. @default 10000 */
  cooldownMs?: number | undefined;
  /** Longest cooldown of a failed endpoint, in ms. @default 60000 */
  maxCooldownMs?: number | undefined;
}

/** Dependencies of an {@link OpenAIUpstreamEngine}. */
export interface OpenAIUpstreamDeps {
  logger: Logger;
  /** `User-Agent` sent upstream. @default 'iris' */
  userAgent?: string | undefined;
  /** Clock for cooldowns. @default Date.now */
  now?: () => number;
}

/** Carries an {@link AttemptFailure} out of an attempt to the failover loop. */
class AttemptFailedError extends Error {
  readonly failure: AttemptFailure;

  constructor(failure: AttemptFailure) {
    super(failure.kind === 'final' ? failure.error.message : failure.reason);
    this.name = 'AttemptFailedError';
    this.failure = failure;
  }
}

/** One attempt's abort: the client leaving, the engine being disposed, or the connect + headers timer. */
class AttemptAbort {
  readonly controller = new AbortController();
  timedOut = false;
  #timer: NodeJS.Timeout | undefined;
  #unlink: () => void;

  constructor(signals: AbortSignal[], timeoutMs: number) {
    const abort = (): void => this.controller.abort();
    for (const signal of signals) {
      if (signal.aborted) abort();
      else signal.addEventListener('abort', abort, { once: true });
    }
    this.#unlink = () => {
      for (const signal of signals) signal.removeEventListener('abort', abort);
    };
    this.#timer = setTimeout(() => {
      this.timedOut = true;
      this.controller.abort();
    }, timeoutMs);
  }

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  /** The headers arrived: from here on only the client or disposal stop the request. */
  stopTimer(): void {
    clearTimeout(this.#timer);
  }

  dispose(): void {
    clearTimeout(this.#timer);
    this.#unlink();
  }
}

/** An engine backed by remote OpenAI-compatible chat-completions endpoints. */
export class OpenAIUpstreamEngine implements Engine {
  readonly capabilities: EngineCapabilities;
  // Private: it holds the endpoints' keys.
  #settings: OpenAIUpstreamSettings;
  #pool: EndpointPool<UpstreamEndpoint>;
  #agent: Agent;
  #logger: Logger;
  #userAgent: string;
  #now: () => number;
  #disposed = new AbortController();

  constructor(settings: OpenAIUpstreamSettings, deps: OpenAIUpstreamDeps) {
    if (settings.endpoints.length === 0) throw new Error(`model '${settings.id}': an upstream model needs at least one endpoint`);
    this.#settings = settings;
    this.#logger = deps.logger.child({ model: settings.id, engine: 'openai-upstream' });
    this.#userAgent = deps.userAgent ?? 'iris';
    this.#now = deps.now ?? Date.now;
    this.capabilities = OpenAIUpstreamEngine.capabilitiesFor(settings);
    // Every attempt in flight listens for disposal (and removes its listener when it ends): as many
    // listeners as concurrent requests is expected, not a leak.
    setMaxListeners(0, this.#disposed.signal);
    this.#agent = new Agent({ keepAliveTimeout: 30_000, connect: { timeout: settings.timeoutMs } });
    this.#pool = new EndpointPool(settings.endpoints, {
      cooldownMs: settings.cooldownMs ?? 10_000,
      maxCooldownMs: settings.maxCooldownMs ?? 60_000,
      probe: (endpoint, number) => this.#probe(endpoint, number),
      logger: this.#logger,
      now: this.#now,
    });
  }

  /** Whether the last thing heard from at least one endpoint was good. */
  isReady(): boolean {
    return !this.#disposed.signal.aborted && this.#pool.anyHealthy;
  }

  /**
   * Resolves once at least one endpoint answers `GET {url}/models` with our model in its list (an empty
   * list counts as serving anything). Probes every endpoint, which also sets their health.
   * @throws {IrisError} 503 `model_unavailable` naming each endpoint's reason (for an unlisted model, the ids
   *   the upstream does list).
   */
  async ready(): Promise<void> {
    this.#assertOpen();
    const results = await this.#pool.probeAll();
    if (results.some(({ result }) => result.ok)) return;
    const reasons = results.map(({ endpoint, result }) => `endpoint ${endpoint.number}: ${result.ok ? 'ok' : result.reason}`);
    throw engineUnavailable(
      `Model '${this.#settings.id}' is not available from any upstream endpoint (${reasons.join('; ')}).`,
      'model_unavailable',
      undefined,
      this.#soonestRetrySeconds(),
    );
  }

  /** Health, failures and request counts of each endpoint (no keys). */
  endpointStatus(): EndpointStatus[] {
    return this.#pool.status();
  }

  /** Runs the request as a stream upstream (so a disconnect cancels at once) and gathers it. */
  async complete(request: EngineRequest): Promise<EngineCompletion> {
    return collectCompletion(this.stream(request));
  }

  async *stream(request: EngineRequest): AsyncIterable<StreamPart> {
    this.#assertOpen();
    this.#checkImages(request);
    if (request.signal.aborted) throw requestCancelled(request.signal.reason);
    const body = JSON.stringify(toOpenAIChatBody(request, this.#settings.model));
    const plan = this.#pool.plan();
    if (plan.length === 0) throw this.#allCoolingDown();
    let lastFailure: { number: number; reason: string } | undefined;
    let busy: { reason: string; retryAfterSeconds?: number | undefined } | undefined;
    let serverError: IrisError | undefined;
    const log = this.#logger.child({ reqId: request.requestId });

    for (const endpoint of plan) {
      const attempt = new AttemptAbort([request.signal, this.#disposed.signal], this.#settings.timeoutMs);
      let response: Dispatcher.ResponseData | undefined;
      // Whether anything reached our caller: until then a failure may still move on to the next endpoint.
      let produced = false;
      try {
        this.#pool.recordAttempt(endpoint);
        log.debug({ endpoint: endpoint.displayUrl }, 'sending the request upstream');
        try {
          response = await this.#post(endpoint.endpoint, body, attempt.signal, request.requestId);
        } catch (error) {
          throw this.#attemptError(error, request.signal, attempt);
        }
        if (response.statusCode >= 400) {
          const text = await response.body.text().catch(() => '');
          const retryAfter = response.headers['retry-after'];
          throw new AttemptFailedError(
            classifyUpstreamAnswer(response.statusCode, parseUpstreamError(text), this.#settings.id, typeof retryAfter === 'string' ? retryAfter : undefined),
          );
        }
        attempt.stopTimer();

        let usage = false;
        try {
          const decoderOptions = {
            source: `The upstream server of model '${this.#settings.id}'`,
            streamError: (error: UpstreamErrorBody) => streamErrorToIrisError(error, this.#settings.id),
            // Only what the upstream says of its own accord (vLLM, SGLang): Iris sends no extra fields.
            stop: request.params.stop,
          };
          for await (const part of decodeOpenAIChatStream(response.body, decoderOptions)) {
            if (!produced) this.#pool.recordSuccess(endpoint);
            produced = true;
            if (part.type === 'usage') usage = true;
            yield part;
          }
        } catch (error) {
          if (error instanceof IrisError) {
            // A stream that ended without finishing is the endpoint's failure: the next one may do better.
            if (error.code === 'engine_crashed' && !produced) throw new AttemptFailedError({ kind: 'endpoint-failed', reason: 'the stream ended without a finish reason' });
            throw error;
          }
          throw this.#attemptError(error, request.signal, attempt, 'the stream was cut');
        }
        this.#pool.recordSuccess(endpoint);
        if (!usage) {
          log.debug({ endpoint: endpoint.displayUrl }, 'the upstream sent no usage chunk; reporting 0 tokens');
          yield { type: 'usage', usage: { promptTokens: 0, completionTokens: 0 } };
        }
        return;
      } catch (thrown) {
        const failure: AttemptFailure =
          thrown instanceof AttemptFailedError ? thrown.failure : { kind: 'final', error: toIrisError(thrown) };
        if (failure.kind === 'final') {
          if (produced) {
            yield { type: 'error', error: failure.error };
            return;
          }
          throw failure.error;
        }
        lastFailure = { number: endpoint.number, reason: failure.reason };
        if (failure.kind === 'endpoint-failed') {
          this.#pool.recordFailure(endpoint, failure.reason, 'cause' in failure ? failure.cause : undefined);
        } else if (failure.kind === 'server-error') {
          this.#pool.recordServerError(endpoint, failure.reason);
          log.warn({ endpoint: endpoint.displayUrl, reason: failure.reason }, 'upstream endpoint answered a server error');
          // The second 5xx for the same request: the request is the likelier cause, so it goes to the client.
          if (serverError !== undefined && !produced) throw failure.error;
          serverError = failure.error;
        } else {
          log.info({ endpoint: endpoint.displayUrl, reason: failure.reason }, 'upstream endpoint is busy; trying the next one');
          busy = { reason: failure.reason, retryAfterSeconds: failure.retryAfterSeconds };
        }
        if (produced) {
          yield {
            type: 'error',
            error: engineFailed(
              `The upstream server of model '${this.#settings.id}' failed in the middle of the answer (${failure.reason}). Retry the request.`,
              'engine_error',
              'cause' in failure ? failure.cause : undefined,
            ),
          };
          return;
        }
      } finally {
        attempt.dispose();
        // Unread bytes mean an unfinished answer: closing the connection is what stops generation upstream.
        if (response !== undefined && !response.body.readableEnded) {
          response.body.on('error', () => undefined);
          response.body.destroy();
        }
      }
    }
    if (serverError !== undefined) throw serverError;
    if (busy !== undefined) throw upstreamBusy(this.#settings.id, busy.reason, busy.retryAfterSeconds ?? this.#soonestRetrySeconds());
    const last = lastFailure ?? { number: 0, reason: 'no endpoint could be tried' };
    throw engineUnavailable(
      `Model '${this.#settings.id}' is unavailable: every upstream endpoint failed (last: endpoint ${last.number}: ${last.reason}). Retry later.`,
      'model_unavailable',
      undefined,
      this.#soonestRetrySeconds(),
    );
  }

  /** Aborts requests in flight, stops health probes and closes the connections. Later calls reject. */
  async dispose(): Promise<void> {
    if (this.#disposed.signal.aborted) return;
    this.#disposed.abort();
    this.#pool.dispose();
    await this.#agent.destroy().catch(() => undefined);
  }

  async #post(endpoint: UpstreamEndpoint, body: string, signal: AbortSignal, requestId: string | undefined): Promise<Dispatcher.ResponseData> {
    return httpRequest(`${trimSlash(endpoint.url)}/chat/completions`, {
      method: 'POST',
      dispatcher: this.#agent,
      headers: {
        ...this.#headers(endpoint),
        'content-type': 'application/json',
        accept: 'text/event-stream',
        ...(requestId === undefined ? {} : { 'x-request-id': requestId }),
      },
      body,
      signal,
      // The attempt's own timer covers connect + headers; after that, the idle timeout bounds each gap
      // between chunks, so a stalled upstream cannot hold the request forever.
      headersTimeout: 0,
      bodyTimeout: this.#idleTimeoutMs,
    });
  }

  get #idleTimeoutMs(): number {
    return this.#settings.idleTimeoutMs ?? 60_000;
  }

  /** Seconds until the first endpoint in cooldown may be tried again (at least 1). */
  #soonestRetrySeconds(): number {
    const soonest = this.#pool.soonestRetry();
    return soonest ? Math.max(1, (soonest.retryAt - this.#now()) / 1000) : 1;
  }

  /** `GET {url}/models`: the endpoint answers, and lists our model (or lists nothing). */
  async #probe(endpoint: UpstreamEndpoint, number: number): Promise<ProbeResult> {
    const attempt = new AttemptAbort([this.#disposed.signal], this.#settings.timeoutMs);
    let response: Dispatcher.ResponseData;
    let text: string;
    try {
      response = await httpRequest(`${trimSlash(endpoint.url)}/models`, {
        method: 'GET',
        dispatcher: this.#agent,
        headers: { ...this.#headers(endpoint), accept: 'application/json' },
        signal: attempt.signal,
      });
      text = await response.body.text();
    } catch (error) {
      return { ok: false, reason: attempt.timedOut ? `no answer within ${this.#settings.timeoutMs} ms` : networkReason(error), cause: error };
    } finally {
      attempt.dispose();
    }
    if (response.statusCode === 401 || response.statusCode === 403) {
      return { ok: false, reason: `rejected Iris's API key (HTTP ${response.statusCode})` };
    }
    if (response.statusCode < 200 || response.statusCode >= 300) {
      const message = parseUpstreamError(text).message;
      return { ok: false, reason: `GET /models answered HTTP ${response.statusCode}${message ? `: ${message}` : ''}` };
    }
    let ids: string[];
    try {
      const list = JSON.parse(text) as { data?: { id?: unknown }[] };
      ids = (Array.isArray(list.data) ? list.data : []).map((model) => model.id).filter((id): id is string => typeof id === 'string');
    } catch (error) {
      return { ok: false, reason: 'GET /models did not answer JSON', cause: error };
    }
    if (ids.length > 0 && !ids.includes(this.#settings.model)) {
      const shown = ids.slice(0, 20).map((id) => `'${id}'`).join(', ');
      return { ok: false, reason: `does not serve model '${this.#settings.model}'; it lists ${shown}${ids.length > 20 ? ', ...' : ''}` };
    }
    this.#logger.debug({ endpoint: number }, 'upstream endpoint answered its health check');
    return { ok: true };
  }

  #headers(endpoint: UpstreamEndpoint): Record<string, string> {
    return {
      'user-agent': this.#userAgent,
      ...(endpoint.apiKey ? { authorization: `Bearer ${endpoint.apiKey}` } : {}),
    };
  }

  /** What a thrown network error means: the client left, Iris is shutting down, or the endpoint failed. */
  #attemptError(error: unknown, clientSignal: AbortSignal, attempt: AttemptAbort, what = ''): IrisError | AttemptFailedError {
    if (clientSignal.aborted) return requestCancelled(error);
    if (this.#disposed.signal.aborted) return engineUnavailable(`Model '${this.#settings.id}' is shutting down.`, 'shutting_down', error);
    if (attempt.timedOut) {
      return new AttemptFailedError({ kind: 'endpoint-failed', reason: `no response within ${this.#settings.timeoutMs} ms`, cause: error });
    }
    const stalled = (error as { code?: unknown } | null)?.code === 'UND_ERR_BODY_TIMEOUT';
    const reason = stalled ? `the stream stalled: nothing for ${this.#idleTimeoutMs} ms` : networkReason(error);
    return new AttemptFailedError({ kind: 'endpoint-failed', reason: what && !stalled ? `${what} (${reason})` : reason, cause: error });
  }

  #allCoolingDown(): IrisError {
    const soonest = this.#pool.soonestRetry();
    const detail = soonest
      ? ` (last: endpoint ${soonest.number}: ${soonest.reason}; next try in ${Math.max(0, Math.ceil((soonest.retryAt - this.#now()) / 1000))} s)`
      : '';
    return engineUnavailable(
      `Model '${this.#settings.id}' is unavailable: every upstream endpoint is failing${detail}. Retry later.`,
      'model_unavailable',
      undefined,
      this.#soonestRetrySeconds(),
    );
  }

  /** What a remote model with these settings takes, as configured (`vision`). */
  static capabilitiesFor(settings: { vision: boolean; maxImagesPerRequest: number }): EngineCapabilities {
    return {
      vision: settings.vision,
      maxImagesPerRequest: settings.vision ? settings.maxImagesPerRequest : 0,
      // Passed through: vLLM, SGLang and Iris serve all of these.
      toolCalls: true,
      structuredOutputs: true,
      logprobs: true,
      maxChoicesPerRequest: Number.MAX_SAFE_INTEGER,
    };
  }

  #checkImages(request: EngineRequest): void {
    let images = 0;
    for (const message of request.messages) for (const part of message.content) if (part.type === 'image') images += 1;
    if (images === 0) return;
    if (!this.capabilities.vision) {
      throw invalidRequest(`The model '${this.#settings.id}' does not accept images.`, 'messages', 'model_not_supported');
    }
    if (images > this.capabilities.maxImagesPerRequest) {
      throw invalidRequest(
        `Too many images: ${images} in one request, at most ${this.capabilities.maxImagesPerRequest} are allowed for model '${this.#settings.id}'.`,
        'messages',
        'too_many_images',
      );
    }
  }

  #assertOpen(): void {
    if (this.#disposed.signal.aborted) throw engineUnavailable(`Model '${this.#settings.id}' is shutting down.`, 'shutting_down');
  }
}

function trimSlash(url: string): string {
  return url.replace(/\/+$/, '');
}
