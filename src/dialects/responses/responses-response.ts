/**
 * The Responses API's response object and stream events, built from Iris's engine results and stream
 * parts: `resp_` ids, `output` message items with `output_text` parts, `status` `completed` or
 * `incomplete` (`max_output_tokens`), usage with `input_tokens_details.image_tokens` as Iris's extension,
 * and the documented event sequence with `sequence_number`s.
 */
import { randomBytes } from 'node:crypto';
import type { EngineChoice, EngineUsage, FinishReason, StreamPart } from '../../engines/engine.js';
import type { IrisError } from '../../errors.js';
import { StreamOutcome } from '../stream-outcome.js';
import type { ChatMessage } from '../../protocol/chat-request.js';
import { inResponsesTerms, type ParsedResponsesRequest } from './responses-request.js';

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

/** A `function_call` output item. */
export interface OutputFunctionCall {
  type: 'function_call';
  id: string;
  call_id: string;
  name: string;
  arguments: string;
  status: 'in_progress' | 'completed' | 'incomplete';
}

/** One output item. */
export type OutputItem = OutputMessage | OutputFunctionCall;

/** A function tool as the response echoes it. */
export interface ResponseFunctionTool {
  type: 'function';
  name: string;
  description: string | null;
  parameters: Record<string, unknown> | null;
  strict: boolean | null;
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
  output: OutputItem[];
  parallel_tool_calls: boolean;
  previous_response_id: string | null;
  reasoning: { effort: null; summary: null };
  store: boolean;
  temperature: number | null;
  text: { format: Record<string, unknown> };
  tool_choice: 'none' | 'auto' | 'required' | { type: 'function'; name: string };
  tools: ResponseFunctionTool[];
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

function newItemId(prefix: 'msg' | 'fc'): string {
  return `${prefix}_${randomBytes(24).toString('hex')}`;
}

/** The response as it starts: `in_progress`, no output, the request's settings echoed. */
export function initialResponse(id: string, request: ParsedResponsesRequest, store: boolean): ResponseObject {
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
    text: { format: { type: 'text', ...request.text?.format } },
    tool_choice: request.tool_choice ?? 'auto',
    tools: request.functionTools.map((tool) => ({
      type: 'function',
      name: tool.name,
      description: tool.description ?? null,
      parameters: tool.parameters ?? null,
      strict: tool.strict ?? null,
    })),
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

/** The output items of a finished choice: its text as a message (unless it only called tools), then its calls. */
export function outputItems(choice: EngineChoice): OutputItem[] {
  const status = choice.finishReason === 'length' ? 'incomplete' : 'completed';
  const items: OutputItem[] = [];
  if (choice.text !== '' || choice.toolCalls.length === 0) items.push(outputMessage(newItemId('msg'), choice.text, status));
  for (const call of choice.toolCalls) items.push(functionCall(newItemId('fc'), call.id, call.name, call.arguments, status));
  return items;
}

/** The finished response, status from the finish reason. */
export function finishedResponse(
  started: ResponseObject,
  output: OutputItem[],
  finishReason: FinishReason,
  usage: EngineUsage,
  imageTokens: number | undefined,
): ResponseObject {
  const complete = finishReason !== 'length';
  return {
    ...started,
    status: complete ? 'completed' : 'incomplete',
    completed_at: complete ? Math.floor(Date.now() / 1000) : null,
    incomplete_details: complete ? null : { reason: 'max_output_tokens' },
    output,
    usage: toResponsesUsage(usage, imageTokens),
  };
}

/** A response's output as the assistant turn a follow-up (`previous_response_id`) continues from. */
export function toAssistantTurn(output: readonly OutputItem[]): ChatMessage {
  const text = output.flatMap((item) => (item.type === 'message' ? item.content.map((part) => part.text) : [])).join('');
  const calls = output.flatMap((item) =>
    item.type === 'function_call' ? [{ id: item.call_id, type: 'function' as const, function: { name: item.name, arguments: item.arguments } }] : [],
  );
  return { role: 'assistant', content: calls.length > 0 && text === '' ? null : text, ...(calls.length > 0 ? { tool_calls: calls } : {}) };
}

function outputMessage(id: string, text: string, status: OutputMessage['status']): OutputMessage {
  return { type: 'message', id, status, role: 'assistant', content: status === 'in_progress' ? [] : [outputText(text)] };
}

function functionCall(id: string, callId: string, name: string, args: string, status: OutputFunctionCall['status']): OutputFunctionCall {
  return { type: 'function_call', id, call_id: callId, name, arguments: args, status };
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

/** An output item being streamed. */
type OpenItem =
  | { kind: 'message'; id: string; index: number; text: string }
  | { kind: 'call'; id: string; index: number; callId: string; name: string; arguments: string; engineIndex: number };

/**
 * Turns stream parts into Responses stream events, in the documented order: `response.created`,
 * `response.in_progress`, then per output item `output_item.added`, its content (`content_part.added`,
 * `output_text.delta`*, `output_text.done`, `content_part.done` for a message;
 * `function_call_arguments.delta`*, `function_call_arguments.done` for a call) and `output_item.done`; and
 * `response.completed` / `response.incomplete` (or `response.failed` and `error` on an error). Numbers the
 * events.
 */
export class ResponseStreamTranslator {
  #response: ResponseObject;
  #imageTokens: number | undefined;
  #sequence = 0;
  #items: OutputItem[] = [];
  #open: OpenItem | undefined;
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

  /** The events for one stream part (none for usage and logprobs; the final event carries the usage). */
  push(part: StreamPart): ResponseStreamEvent[] {
    if (this.#outcome.record(part) || part.type === 'logprobs') return [];
    if (part.type === 'error') return this.fail(part.error);
    if (part.type === 'text-delta') {
      const events = this.#open?.kind === 'message' ? [] : this.#startMessage();
      const open = this.#open as Extract<OpenItem, { kind: 'message' }>;
      open.text += part.text;
      events.push(this.#event('response.output_text.delta', { ...this.#at(open), delta: part.text, logprobs: [] }));
      return events;
    }
    const events = this.#open?.kind === 'call' && this.#open.engineIndex === part.index ? [] : this.#startCall(part.index, part.id, part.name);
    const open = this.#open as Extract<OpenItem, { kind: 'call' }>;
    if (part.argumentsDelta === '') return events;
    open.arguments += part.argumentsDelta;
    events.push(this.#event('response.function_call_arguments.delta', { item_id: open.id, output_index: open.index, delta: part.argumentsDelta }));
    return events;
  }

  /** The closing events once the engine is done. */
  finish(): ResponseStreamEvent[] {
    const { finishReason, usage } = this.#outcome;
    const status = finishReason === 'length' ? 'incomplete' : 'completed';
    const events = this.#items.length === 0 && this.#open === undefined ? this.#startMessage() : [];
    events.push(...this.#close(status));
    this.#response = finishedResponse(this.#response, this.#items, finishReason, usage, this.#imageTokens);
    events.push(this.#event(this.#response.status === 'completed' ? 'response.completed' : 'response.incomplete', { response: this.#response }));
    return events;
  }

  /**
   * The events for an error after the stream started: `response.failed` (the response, `failed` with its
   * error, for clients that follow the response's lifecycle), then an `error` event. That one carries the
   * error twice: at its top level as the spec's `ResponseErrorEvent` has it, and nested under `error` as
   * OpenAI's own servers send it, which is what makes the official SDKs throw instead of ending quietly.
   */
  fail(failure: IrisError): ResponseStreamEvent[] {
    const error = inResponsesTerms(failure);
    const { code, message } = responseError(error);
    this.#response = { ...this.#response, status: 'failed', error: { code, message } };
    return [
      this.#event('response.failed', { response: this.#response }),
      this.#event('error', { code, message, param: error.param, error: { type: error.type, code, message, param: error.param } }),
    ];
  }

  #startMessage(): ResponseStreamEvent[] {
    const events = this.#close('completed');
    const open: OpenItem = { kind: 'message', id: newItemId('msg'), index: this.#items.length, text: '' };
    this.#open = open;
    events.push(
      this.#event('response.output_item.added', { output_index: open.index, item: outputMessage(open.id, '', 'in_progress') }),
      this.#event('response.content_part.added', { ...this.#at(open), part: outputText('') }),
    );
    return events;
  }

  #startCall(engineIndex: number, callId: string | undefined, name: string | undefined): ResponseStreamEvent[] {
    const events = this.#close('completed');
    const open: OpenItem = {
      kind: 'call',
      id: newItemId('fc'),
      index: this.#items.length,
      callId: callId ?? `call_${randomBytes(12).toString('hex')}`,
      name: name ?? '',
      arguments: '',
      engineIndex,
    };
    this.#open = open;
    events.push(this.#event('response.output_item.added', { output_index: open.index, item: functionCall(open.id, open.callId, open.name, '', 'in_progress') }));
    return events;
  }

  /** Ends the item being streamed, if any, with `status`. */
  #close(status: 'completed' | 'incomplete'): ResponseStreamEvent[] {
    const open = this.#open;
    if (open === undefined) return [];
    this.#open = undefined;
    if (open.kind === 'message') {
      const item = outputMessage(open.id, open.text, status);
      this.#items.push(item);
      return [
        this.#event('response.output_text.done', { ...this.#at(open), text: open.text, logprobs: [] }),
        this.#event('response.content_part.done', { ...this.#at(open), part: outputText(open.text) }),
        this.#event('response.output_item.done', { output_index: open.index, item }),
      ];
    }
    const item = functionCall(open.id, open.callId, open.name, open.arguments, status);
    this.#items.push(item);
    return [
      this.#event('response.function_call_arguments.done', { item_id: open.id, output_index: open.index, name: open.name, arguments: open.arguments }),
      this.#event('response.output_item.done', { output_index: open.index, item }),
    ];
  }

  #at(open: OpenItem): { item_id: string; output_index: number; content_index: number } {
    return { item_id: open.id, output_index: open.index, content_index: 0 };
  }

  #event(type: string, fields: Record<string, unknown>): ResponseStreamEvent {
    return { type, sequence_number: this.#sequence++, ...fields };
  }
}
