/**
 * What a model request owes its key: the model scope, the per-key limits (admission, the `x-ratelimit-*`
 * headers, 429 with Retry-After) and the usage record written when it ends, whatever the end. Routes call
 * it at a few points (`begin`, `useModel`, `admit`, `firstToken`, `usage`, `end`); everything about keys,
 * limits and usage stays here.
 */
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { EngineUsage } from '../engines/engine.js';
import { IrisError, modelNotFound, rateLimitExceeded } from '../errors.js';
import type { Logger } from '../logger.js';
import type { ChatRequest } from '../protocol/chat-request.js';
import type { AdmissionTicket, RateLimiter, RateState } from '../store/rate-limiter.js';
import type { UsageRecorder } from '../store/usage-records.js';
import { callerOf, mayUseModel, type Caller } from './auth.js';
import { toClientError } from './error-handler.js';

/** What accounting is built from. */
export interface RequestAccountingDeps {
  limiter: RateLimiter;
  recorder: UsageRecorder;
  logger: Logger;
  /** @default Date.now */
  now?: () => number;
}

/** Per-request accounting for the model routes. */
export class RequestAccounting {
  #deps: RequestAccountingDeps;
  #now: () => number;

  constructor(deps: RequestAccountingDeps) {
    this.#deps = deps;
    this.#now = deps.now ?? Date.now;
  }

  /**
   * Sets the `x-ratelimit-*` headers of a key with limits from its current window, so that every answer
   * carries them, even one refused before admission (a 400). Admission refreshes them.
   */
  async attachHeaders(request: FastifyRequest, reply: FastifyReply): Promise<void> {
    const caller = callerOf(request);
    if (caller.keyId === null || !hasRateLimits(caller)) return;
    setRateHeaders(reply, await this.#deps.limiter.peek(caller.keyId, caller.limits));
  }

  /** Starts accounting for one request to `endpoint`. */
  begin(request: FastifyRequest, reply: FastifyReply): RequestTicket {
    return new RequestTicket(request, reply, this.#deps, this.#now);
  }
}

/** The accounting of one request; call {@link RequestTicket.end} exactly once, in a `finally`. */
export class RequestTicket {
  #request: FastifyRequest;
  #reply: FastifyReply;
  #deps: RequestAccountingDeps;
  #now: () => number;
  #caller: Caller;
  #startedAt: number;
  #model: string | null = null;
  #imageTokens = 0;
  #imageCount = 0;
  #estimatedPrompt = 0;
  #admission: AdmissionTicket | undefined;
  #firstTokenAt: number | undefined;
  #deltas = 0;
  #usage: EngineUsage | undefined;
  #error: unknown;

  constructor(request: FastifyRequest, reply: FastifyReply, deps: RequestAccountingDeps, now: () => number) {
    this.#request = request;
    this.#reply = reply;
    this.#deps = deps;
    this.#now = now;
    this.#caller = callerOf(request);
    this.#startedAt = now();
  }

  /** Names the model; a key scoped to other models gets the 404 an unknown model gets. */
  useModel(modelId: string): void {
    this.#model = modelId;
    if (!mayUseModel(this.#caller, modelId)) throw modelNotFound(modelId);
  }

  /** The request's images: their total tokens (when known) and how many. */
  images(imageTokens: number | undefined, imageCount: number): void {
    this.#imageTokens = imageTokens ?? 0;
    this.#imageCount = imageCount;
  }

  /**
   * Counts the request against its key's limits, charging `estimatedPromptTokens + maxTokens` tokens
   * until the real usage is known; throws 429 `rate_limit_exceeded` (with Retry-After) when over one.
   */
  async admit(estimatedPromptTokens: number, maxTokens = 0): Promise<void> {
    this.#estimatedPrompt = estimatedPromptTokens;
    const caller = this.#caller;
    if (caller.keyId === null || !hasAnyLimit(caller)) return;
    const admission = await this.#deps.limiter.admit(caller.keyId, caller.limits, this.#request.id, estimatedPromptTokens + maxTokens);
    if (hasRateLimits(caller)) setRateHeaders(this.#reply, admission.state);
    if (!admission.admitted) {
      void this.#reply.header('retry-after', String(Math.ceil(admission.retryAfterMs / 1000)));
      throw rateLimitExceeded(admission.message, admission.limit);
    }
    this.#admission = admission.ticket;
  }

  /** A piece of generated text went to the client (the first one sets the time to first token). */
  delta(): void {
    this.#firstTokenAt ??= this.#now();
    this.#deltas += 1;
  }

  /** A choice finished: an answer with no text still had its first token by now. */
  finished(): void {
    this.#firstTokenAt ??= this.#now();
  }

  /** The engine's usage report. */
  usage(usage: EngineUsage): void {
    this.#usage = usage;
  }

  /** The request failed with this error (its status goes into the record). */
  fail(error: unknown): void {
    this.#error = error;
  }

  /** Ends the request: frees its limits, corrects its tokens and queues its usage row. */
  end(cancelled: boolean): void {
    const status = cancelled ? 499 : this.#error === undefined ? 200 : statusOf(this.#error);
    // Without the engine's report (the client left, the engine failed), the estimate and the text sent stand in.
    const promptTokens = this.#usage?.promptTokens ?? (this.#deltas > 0 ? this.#estimatedPrompt : 0);
    const completionTokens = this.#usage?.completionTokens ?? this.#deltas;
    const admission = this.#admission;
    if (admission) {
      admission.settle(promptTokens + completionTokens).catch((error: unknown) => {
        this.#deps.logger.error({ err: error, requestId: this.#request.id }, 'could not release a request from its key\'s limits');
      });
    }
    this.#deps.recorder.record({
      requestId: this.#request.id,
      keyId: this.#caller.keyId,
      keyName: this.#caller.keyName,
      model: this.#model,
      endpoint: this.#request.routeOptions.url ?? this.#request.url.split('?')[0] ?? '',
      promptTokens,
      imageTokens: this.#usage === undefined && this.#deltas === 0 ? 0 : this.#imageTokens,
      imageCount: this.#imageCount,
      cachedTokens: this.#usage?.cachedTokens ?? 0,
      completionTokens,
      status,
      ttftMs: this.#firstTokenAt === undefined ? null : this.#firstTokenAt - this.#startedAt,
      durationMs: this.#now() - this.#startedAt,
      createdAt: this.#startedAt,
    });
  }
}

/** Rough prompt tokens of a chat request before the engine counts them: text at ~4 characters a token. */
export function estimateTextTokens(chat: ChatRequest): number {
  let characters = 0;
  for (const message of chat.messages) {
    const content: unknown = (message as { content?: unknown }).content;
    if (typeof content === 'string') characters += content.length;
    else if (Array.isArray(content)) {
      for (const part of content as { type?: string; text?: string }[]) if (part.type === 'text') characters += part.text?.length ?? 0;
    }
  }
  return Math.ceil(characters / 4);
}

function hasRateLimits(caller: Caller): boolean {
  return caller.limits.rpm !== undefined || caller.limits.tpm !== undefined;
}

function hasAnyLimit(caller: Caller): boolean {
  return hasRateLimits(caller) || caller.limits.concurrency !== undefined;
}

function statusOf(error: unknown): number {
  return error instanceof IrisError ? error.status : toClientError(error).status;
}

/** OpenAI's headers: `x-ratelimit-{limit,remaining,reset}-{requests,tokens}`, for the limits the key has. */
function setRateHeaders(reply: FastifyReply, state: RateState): void {
  const reset = formatDuration(state.resetMs);
  if (state.limits.rpm !== undefined) {
    void reply.header('x-ratelimit-limit-requests', String(state.limits.rpm));
    void reply.header('x-ratelimit-remaining-requests', String(state.remainingRequests ?? 0));
    void reply.header('x-ratelimit-reset-requests', reset);
  }
  if (state.limits.tpm !== undefined) {
    void reply.header('x-ratelimit-limit-tokens', String(state.limits.tpm));
    void reply.header('x-ratelimit-remaining-tokens', String(state.remainingTokens ?? 0));
    void reply.header('x-ratelimit-reset-tokens', reset);
  }
}

/** A duration as OpenAI writes it in reset headers: `20ms`, `1.5s`, `6m0s`. */
export function formatDuration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)}ms`;
  if (ms < 60_000) return `${Number((ms / 1000).toFixed(3))}s`;
  const minutes = Math.floor(ms / 60_000);
  return `${minutes}m${Number(((ms - minutes * 60_000) / 1000).toFixed(3))}s`;
}
