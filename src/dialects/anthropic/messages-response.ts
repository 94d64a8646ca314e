/**
 * The Anthropic Messages API's answer, stream events and errors, built from Iris's engine results, stream
 * parts and error tree: `msg_` ids, `content` text blocks, `stop_reason` (`end_turn`, `max_tokens`,
 * `tool_use`, and `stop_sequence` with the matched `stop_sequence` when the engine says which one), usage
 * with `image_tokens` as Iris's extension; the event sequence `message_start`, `ping`,
 * `content_block_start`, `content_block_delta`*, `content_block_stop`, `message_delta`, `message_stop`;
 * and errors as `{"type":"error","error":{"type","message"},"request_id"}` with Anthropic's status codes.
 */
import { randomBytes } from 'node:crypto';
import type { EngineChoice, EngineUsage, FinishReason, StreamPart } from '../../engines/engine.js';
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

/** A block of the answer: text, or a call of one of the request's tools. */
export type AnthropicContentBlock =
  | { type: 'text'; text: string }
  | { type: 'tool_use'; id: string; name: string; input: Record<string, unknown> };

/** A message, as `POST /v1/messages` answers. */
export interface AnthropicMessage {
  id: string;
  type: 'message';
  role: 'assistant';
  model: string;
  content: AnthropicContentBlock[];
  stop_reason: 'end_turn' | 'max_tokens' | 'stop_sequence' | 'tool_use' | null;
  /** The stop sequence that ended the message (with `stop_reason: "stop_sequence"`), else null. */
  stop_sequence: string | null;
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

/**
 * `stop_reason` and `stop_sequence` of an answer. A stop sequence is named only when the engine said which
 * one matched; otherwise a stop is `end_turn` (an engine that cannot tell is never guessed for).
 */
function stopFields(finishReason: FinishReason, stopSequence: string | undefined): Pick<AnthropicMessage, 'stop_reason' | 'stop_sequence'> {
  if (finishReason === 'stop' && stopSequence !== undefined) return { stop_reason: 'stop_sequence', stop_sequence: stopSequence };
  return { stop_reason: finishReason === 'length' ? 'max_tokens' : finishReason === 'tool_calls' ? 'tool_use' : 'end_turn', stop_sequence: null };
}

/** A call's arguments as the object Anthropic's `input` is (`{}` when the model wrote no valid JSON object). */
function toInput(args: string): Record<string, unknown> {
  try {
    const value: unknown = JSON.parse(args);
    return value !== null && typeof value === 'object' && !Array.isArray(value) ? (value as Record<string, unknown>) : {};
  } catch {
    return {};
  }
}

/** A whole message from a finished choice: its text block, then a tool_use block per call. */
export function buildMessage(id: string, model: string, choice: EngineChoice, usage: EngineUsage, imageTokens: number | undefined): AnthropicMessage {
  return {
    id,
    type: 'message',
    role: 'assistant',
    model,
    content: [
      ...(choice.text === '' ? [] : [{ type: 'text' as const, text: choice.text }]),
      ...choice.toolCalls.map((call) => ({ type: 'tool_use' as const, id: call.id, name: call.name, input: toInput(call.arguments) })),
    ],
    ...stopFields(choice.finishReason, choice.stopSequence),
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

/** The block being streamed: text, or the call with this engine index. */
type OpenBlock = { kind: 'text' } | { kind: 'tool'; engineIndex: number };

/**
 * Turns stream parts into Anthropic stream events: a `text` block for text, a `tool_use` block per call
 * (its arguments as `input_json_delta`s), each opened with `content_block_start` and closed with
 * `content_block_stop` before the next. The input token count is known only at the end (the engine reports
 * usage last), so `message_start` says 0 and `message_delta` carries the real counts, which Anthropic's
 * clients take as the message's totals.
 */
export class AnthropicStreamTranslator {
  #id: string;
  #model: string;
  #imageTokens: number | undefined;
  #blocks = 0;
  #open: OpenBlock | undefined;
  #outcome = new StreamOutcome();

  constructor(id: string, model: string, imageTokens: number | undefined) {
    this.#id = id;
    this.#model = model;
    this.#imageTokens = imageTokens;
  }

  /** `message_start` and a `ping`. */
  start(): AnthropicStreamEvent[] {
    const empty = { text: '', toolCalls: [], finishReason: 'stop' as const };
    const message = { ...buildMessage(this.#id, this.#model, empty, { promptTokens: 0, completionTokens: 0 }, undefined), stop_reason: null };
    return [event('message_start', { message }), event('ping', {})];
  }

  /** The events for one stream part. */
  push(part: StreamPart): AnthropicStreamEvent[] {
    if (this.#outcome.record(part) || part.type === 'logprobs') return [];
    if (part.type === 'error') throw part.error;
    if (part.type === 'text-delta') {
      const events = this.#open?.kind === 'text' ? [] : this.#start({ type: 'text', text: '' }, { kind: 'text' });
      events.push(event('content_block_delta', { index: this.#blocks - 1, delta: { type: 'text_delta', text: part.text } }));
      return events;
    }
    const open = this.#open;
    const events =
      open?.kind === 'tool' && open.engineIndex === part.index
        ? []
        : this.#start({ type: 'tool_use', id: part.id ?? `toolu_${this.#id.slice(4)}_${part.index}`, name: part.name ?? '', input: {} }, { kind: 'tool', engineIndex: part.index });
    if (part.argumentsDelta !== '') {
      events.push(event('content_block_delta', { index: this.#blocks - 1, delta: { type: 'input_json_delta', partial_json: part.argumentsDelta } }));
    }
    return events;
  }

  /** The closing events once the engine is done. */
  finish(): AnthropicStreamEvent[] {
    const events = this.#stop();
    const usage = toAnthropicUsage(this.#outcome.usage, this.#imageTokens);
    events.push(
      event('message_delta', { delta: stopFields(this.#outcome.finishReason, this.#outcome.stopSequence), usage }),
      event('message_stop', {}),
    );
    return events;
  }

  #start(block: Record<string, unknown>, open: OpenBlock): AnthropicStreamEvent[] {
    const events = this.#stop();
    this.#open = open;
    events.push(event('content_block_start', { index: this.#blocks, content_block: block }));
    this.#blocks += 1;
    return events;
  }

  #stop(): AnthropicStreamEvent[] {
    if (this.#open === undefined) return [];
    this.#open = undefined;
    return [event('content_block_stop', { index: this.#blocks - 1 })];
  }
}

function event(name: string, fields: Record<string, unknown>): AnthropicStreamEvent {
  return { event: name, data: { type: name, ...fields } };
}
