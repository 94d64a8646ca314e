/**
 * The Anthropic Messages API's answer, stream events and errors, built from Iris's engine results, stream
 * parts and error tree: `msg_` ids, `content` text blocks, `stop_reason` (`end_turn`, `max_tokens`), usage
 * with `image_tokens` as Iris's extension; the event sequence `message_start`, `ping`,
 * `content_block_start`, `content_block_delta`*, `content_block_stop`, `message_delta`, `message_stop`;
 * and errors as `{"type":"error","error":{"type","message"},"request_id"}` with Anthropic's status codes.
 */
import { randomBytes } from 'node:crypto';
import type { EngineUsage, FinishReason, StreamPart } from '../../engines/engine.js';
import type { IrisError } from '../../errors.js';
import { StreamOutcome } from '../stream-outcome.js';

/** `usage` of a message. */
export interface AnthropicUsage {
  /** Input tokens not read from the prompt cache (Anthropic's meaning: the total is this plus the cache reads). */
  input_tokens: number;
  output_tokens: number;
  cache_creation_input_tokens: number;
  cache_read_input_tokens: number;
  /** An Iris extension: input tokens of the request's images; absent when not predictable. */
  image_tokens?: number;
}

/** A message, as `POST /v1/messages` answers. */
export interface AnthropicMessage {
  id: string;
  type: 'message';
  role: 'assistant';
  model: string;
  content: { type: 'text'; text: string }[];
  stop_reason: 'end_turn' | 'max_tokens' | null;
  stop_sequence: null;
  usage: AnthropicUsage;
}

/** One stream event: its name and data. */
export interface AnthropicStreamEvent {
  event: string;
  data: Record<string, unknown>;
}

/** `msg_` + 24 random alphanumerics. */
export function newMessageId(): string {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
  return `msg_${[...randomBytes(24)].map((byte) => alphabet[byte % alphabet.length]).join('')}`;
}

/** Anthropic usage from engine counts. */
export function toAnthropicUsage(usage: EngineUsage, imageTokens: number | undefined): AnthropicUsage {
  const cached = usage.cachedTokens ?? 0;
  return {
    input_tokens: usage.promptTokens - cached,
    output_tokens: usage.completionTokens,
    cache_creation_input_tokens: 0,
    cache_read_input_tokens: cached,
    ...(imageTokens === undefined ? {} : { image_tokens: imageTokens }),
  };
}

function stopReason(finishReason: FinishReason): AnthropicMessage['stop_reason'] {
  return finishReason === 'length' ? 'max_tokens' : 'end_turn';
}

/** A whole message. */
export function buildMessage(
  id: string,
  model: string,
  text: string,
  finishReason: FinishReason,
  usage: EngineUsage,
  imageTokens: number | undefined,
): AnthropicMessage {
  return {
    id,
    type: 'message',
    role: 'assistant',
    model,
    content: text === '' ? [] : [{ type: 'text', text }],
    stop_reason: stopReason(finishReason),
    stop_sequence: null,
    usage: toAnthropicUsage(usage, imageTokens),
  };
}

/** Anthropic's error types by the HTTP status Iris answers with. */
const ERROR_TYPES: Readonly<Record<number, string>> = {
  400: 'invalid_request_error',
  401: 'authentication_error',
  403: 'permission_error',
  404: 'not_found_error',
  409: 'invalid_request_error',
  413: 'request_too_large',
  429: 'rate_limit_error',
  499: 'invalid_request_error',
  529: 'overloaded_error',
};

/** The status and body of an error in Anthropic's shape; a 503 (overloaded, loading) is Anthropic's 529. */
export function toAnthropicError(error: IrisError, requestId: string): { status: number; body: Record<string, unknown> } {
  const status = error.status === 503 ? 529 : error.status >= 500 ? 500 : error.status;
  const type = ERROR_TYPES[status] ?? 'api_error';
  return { status, body: { type: 'error', error: { type, message: error.message }, request_id: requestId } };
}

/**
 * Turns stream parts into Anthropic stream events. The input token count is known only at the end (the
 * engine reports usage last), so `message_start` says 0 and `message_delta` carries the real counts, which
 * Anthropic's clients take as the message's totals.
 */
export class AnthropicStreamTranslator {
  #id: string;
  #model: string;
  #imageTokens: number | undefined;
  #opened = false;
  #outcome = new StreamOutcome();

  constructor(id: string, model: string, imageTokens: number | undefined) {
    this.#id = id;
    this.#model = model;
    this.#imageTokens = imageTokens;
  }

  /** `message_start` and a `ping`. */
  start(): AnthropicStreamEvent[] {
    const message = { ...buildMessage(this.#id, this.#model, '', 'stop', { promptTokens: 0, completionTokens: 0 }, undefined), stop_reason: null };
    return [event('message_start', { message }), event('ping', {})];
  }

  /** The events for one stream part. */
  push(part: StreamPart): AnthropicStreamEvent[] {
    if (this.#outcome.record(part)) return [];
    if (part.type === 'error') throw part.error;
    const events = this.#open();
    events.push(event('content_block_delta', { index: 0, delta: { type: 'text_delta', text: part.text } }));
    return events;
  }

  /** The closing events once the engine is done. */
  finish(): AnthropicStreamEvent[] {
    const events: AnthropicStreamEvent[] = [];
    if (this.#opened) events.push(event('content_block_stop', { index: 0 }));
    const usage = toAnthropicUsage(this.#outcome.usage, this.#imageTokens);
    events.push(
      event('message_delta', { delta: { stop_reason: stopReason(this.#outcome.finishReason), stop_sequence: null }, usage }),
      event('message_stop', {}),
    );
    return events;
  }

  #open(): AnthropicStreamEvent[] {
    if (this.#opened) return [];
    this.#opened = true;
    return [event('content_block_start', { index: 0, content_block: { type: 'text', text: '' } })];
  }
}

function event(name: string, fields: Record<string, unknown>): AnthropicStreamEvent {
  return { event: name, data: { type: name, ...fields } };
}
