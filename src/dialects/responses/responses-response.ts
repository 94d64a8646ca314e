/**
 * The Responses API's response object and stream events, built from Iris's engine results and stream
 * parts: `resp_` ids, `output` message items with `output_text` parts, `status` `completed` or
 * `incomplete` (`max_output_tokens`), usage with `input_tokens_details.image_tokens` as Iris's extension,
 * and the documented event sequence with `sequence_number`s.
 */
import { randomBytes } from 'node:crypto';
import type { EngineUsage, FinishReason, StreamPart } from '../../engines/engine.js';
import type { IrisError } from '../../errors.js';
import { StreamOutcome } from '../stream-outcome.js';
import type { ResponsesRequest } from './responses-request.js';

/** `usage` of a response. */
export interface ResponsesUsage {
  input_tokens: number;
  /** `image_tokens` (an Iris extension): input tokens of the request's images; absent when not predictable. */
  input_tokens_details: { cached_tokens: number; cache_write_tokens: number; image_tokens?: number };
  output_tokens: number;
  output_tokens_details: { reasoning_tokens: number };
  total_tokens: number;
}

/** An `output_text` content part. */
export interface OutputTextPart {
  type: 'output_text';
  text: string;
  annotations: never[];
  logprobs: never[];
}

/** A `message` output item. */
export interface OutputMessage {
  type: 'message';
  id: string;
  status: 'in_progress' | 'completed' | 'incomplete';
  role: 'assistant';
  content: OutputTextPart[];
}

/** The response object. */
export interface ResponseObject {
  id: string;
  object: 'response';
  created_at: number;
  status: 'in_progress' | 'completed' | 'incomplete' | 'failed';
  completed_at: number | null;
  error: { code: string; message: string } | null;
  incomplete_details: { reason: 'max_output_tokens' } | null;
  instructions: string | null;
  max_output_tokens: number | null;
  model: string;
  output: OutputMessage[];
  parallel_tool_calls: boolean;
  previous_response_id: string | null;
  reasoning: { effort: null; summary: null };
  store: boolean;
  temperature: number | null;
  text: { format: { type: 'text' } };
  tool_choice: 'none' | 'auto';
  tools: never[];
  top_p: number | null;
  truncation: 'disabled';
  /** Absent until the response is finished. */
  usage?: ResponsesUsage;
  user?: string;
  metadata: Record<string, string>;
  background: boolean;
  service_tier: string;
}

/** `resp_` + 48 hex digits. */
export function newResponseId(): string {
  return `resp_${randomBytes(24).toString('hex')}`;
}

function newMessageId(): string {
  return `msg_${randomBytes(24).toString('hex')}`;
}

/** The response as it starts: `in_progress`, no output, the request's settings echoed. */
export function initialResponse(id: string, request: ResponsesRequest, store: boolean): ResponseObject {
  return {
    id,
    object: 'response',
    created_at: Math.floor(Date.now() / 1000),
    status: 'in_progress',
    completed_at: null,
    error: null,
    incomplete_details: null,
    instructions: request.instructions ?? null,
    max_output_tokens: request.max_output_tokens ?? null,
    model: request.model,
    output: [],
    parallel_tool_calls: request.parallel_tool_calls ?? true,
    previous_response_id: request.previous_response_id ?? null,
    reasoning: { effort: null, summary: null },
    store,
    temperature: request.temperature ?? null,
    text: { format: { type: 'text' } },
    tool_choice: request.tool_choice === 'none' ? 'none' : 'auto',
    tools: [],
    top_p: request.top_p ?? null,
    truncation: 'disabled',
    ...(request.user == null ? {} : { user: request.user }),
    metadata: request.metadata ?? {},
    background: false,
    service_tier: 'default',
  };
}

/** Responses `usage` from engine counts, plus the images' share of the input when it is known. */
export function toResponsesUsage(usage: EngineUsage, imageTokens: number | undefined): ResponsesUsage {
  return {
    input_tokens: usage.promptTokens,
    input_tokens_details: {
      cached_tokens: usage.cachedTokens ?? 0,
      cache_write_tokens: 0,
      ...(imageTokens === undefined ? {} : { image_tokens: imageTokens }),
    },
    output_tokens: usage.completionTokens,
    output_tokens_details: { reasoning_tokens: 0 },
    total_tokens: usage.promptTokens + usage.completionTokens,
  };
}

/** The finished response: one assistant message with the text, status from the finish reason. */
export function finishedResponse(
  started: ResponseObject,
  text: string,
  finishReason: FinishReason,
  usage: EngineUsage,
  imageTokens: number | undefined,
  messageId = newMessageId(),
): ResponseObject {
  const complete = finishReason !== 'length';
  return {
    ...started,
    status: complete ? 'completed' : 'incomplete',
    completed_at: complete ? Math.floor(Date.now() / 1000) : null,
    incomplete_details: complete ? null : { reason: 'max_output_tokens' },
    output: [outputMessage(messageId, text, complete ? 'completed' : 'incomplete')],
    usage: toResponsesUsage(usage, imageTokens),
  };
}

function outputMessage(id: string, text: string, status: OutputMessage['status']): OutputMessage {
  return { type: 'message', id, status, role: 'assistant', content: status === 'in_progress' ? [] : [outputText(text)] };
}

function outputText(text: string): OutputTextPart {
  return { type: 'output_text', text, annotations: [], logprobs: [] };
}

/** The `error` of a failed response, with a code from the spec's list where one fits. */
function responseError(error: IrisError): { code: string; message: string } {
  const codes: Partial<Record<string, string>> = {
    server_overloaded: 'rate_limit_exceeded',
    invalid_image: 'invalid_image',
    invalid_image_url: 'invalid_image_url',
    image_too_large: 'image_too_large',
  };
  return { code: codes[error.code] ?? 'server_error', message: error.message };
}

/** One stream event, before its `sequence_number` is set. */
export type ResponseStreamEvent = { type: string } & Record<string, unknown>;

/**
 * Turns stream parts into Responses stream events, in the documented order: `response.created`,
 * `response.in_progress`, then per output item `output_item.added`, `content_part.added`,
 * `output_text.delta`*, `output_text.done`, `content_part.done`, `output_item.done`, and
 * `response.completed` / `response.incomplete` (or `response.failed` on an error). Numbers the events.
 */
export class ResponseStreamTranslator {
  #response: ResponseObject;
  #imageTokens: number | undefined;
  #sequence = 0;
  #messageId = newMessageId();
  #text = '';
  #opened = false;
  #outcome = new StreamOutcome();

  constructor(started: ResponseObject, imageTokens: number | undefined) {
    this.#response = started;
    this.#imageTokens = imageTokens;
  }

  /** The response as it stands (the final one once {@link finish} ran). */
  get response(): ResponseObject {
    return this.#response;
  }

  /** The events that open the stream. */
  start(): ResponseStreamEvent[] {
    return [this.#event('response.created', { response: this.#response }), this.#event('response.in_progress', { response: this.#response })];
  }

  /** The events for one stream part (none for usage, which the final event carries). */
  push(part: StreamPart): ResponseStreamEvent[] {
    if (this.#outcome.record(part)) return [];
    if (part.type === 'error') return this.fail(part.error);
    const events = this.#open();
    this.#text += part.text;
    events.push(this.#event('response.output_text.delta', { ...this.#at(), delta: part.text, logprobs: [] }));
    return events;
  }

  /** The closing events once the engine is done. */
  finish(): ResponseStreamEvent[] {
    const events = this.#open();
    const { finishReason, usage } = this.#outcome;
    this.#response = finishedResponse(this.#response, this.#text, finishReason, usage, this.#imageTokens, this.#messageId);
    const item = this.#response.output[0];
    events.push(
      this.#event('response.output_text.done', { ...this.#at(), text: this.#text, logprobs: [] }),
      this.#event('response.content_part.done', { ...this.#at(), part: outputText(this.#text) }),
      this.#event('response.output_item.done', { output_index: 0, item }),
      this.#event(this.#response.status === 'completed' ? 'response.completed' : 'response.incomplete', { response: this.#response }),
    );
    return events;
  }

  /** A `response.failed` event for an error after the stream started. */
  fail(error: IrisError): ResponseStreamEvent[] {
    this.#response = { ...this.#response, status: 'failed', error: responseError(error) };
    return [this.#event('response.failed', { response: this.#response })];
  }

  #open(): ResponseStreamEvent[] {
    if (this.#opened) return [];
    this.#opened = true;
    return [
      this.#event('response.output_item.added', { output_index: 0, item: outputMessage(this.#messageId, '', 'in_progress') }),
      this.#event('response.content_part.added', { ...this.#at(), part: outputText('') }),
    ];
  }

  #at(): { item_id: string; output_index: number; content_index: number } {
    return { item_id: this.#messageId, output_index: 0, content_index: 0 };
  }

  #event(type: string, fields: Record<string, unknown>): ResponseStreamEvent {
    return { type, sequence_number: this.#sequence++, ...fields };
  }
}
