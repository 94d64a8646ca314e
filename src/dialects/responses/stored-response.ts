/**
 * What Iris keeps of a stored response (`store: true`, the default) and reads back from it: the response
 * object (`GET /v1/responses/{id}`), the conversation that led to it with its answer (what
 * `previous_response_id` continues from) and the request's input as OpenAI lists it
 * (`GET /v1/responses/{id}/input_items`, paged here). The database row around it, with its owner and
 * retention, is store/response-records.ts.
 */
import { randomBytes } from 'node:crypto';
import { echo } from '../../echo.js';
import { invalidRequest } from '../../errors.js';
import type { ChatMessage } from '../../protocol/chat-request.js';
import type { ParsedResponsesRequest, ResponsesInputItem } from './responses-request.js';
import type { ResponseObject } from './responses-response.js';

/** The stored body of one response. */
export interface StoredResponse {
  response: ResponseObject;
  /** Its conversation without instructions, the answer included: what a follow-up continues from. */
  conversation: ChatMessage[];
  /** The request's own `input` (not that of the responses it continued from), as input items with ids. */
  inputItems: InputItemResource[];
}

/** A content part of a user, system or developer message. */
export type InputContentPart = { type: 'input_text'; text: string } | { type: 'input_image'; image_url: string | null; detail: 'low' | 'high' | 'auto' };

/** A content part of an assistant message sent as input. */
export type AssistantContentPart = { type: 'output_text'; text: string; annotations: never[]; logprobs: never[] } | { type: 'refusal'; refusal: string };

/** An input item as listed: OpenAI's `ItemResource` kinds Iris takes as input. */
export type InputItemResource =
  | { type: 'message'; id: string; role: 'user' | 'system' | 'developer'; status: 'completed'; content: InputContentPart[] }
  | { type: 'message'; id: string; role: 'assistant'; status: 'completed'; content: AssistantContentPart[] }
  | { type: 'function_call'; id: string; call_id: string; name: string; arguments: string; status: 'completed' }
  | { type: 'function_call_output'; id: string; call_id: string; output: string | InputContentPart[]; status: 'completed' };

/**
 * OpenAI's `ResponseItemList`. On an empty page (`after` the last item, or a response whose `input` was an
 * empty list) `first_id` and `last_id` are empty strings: the spec requires both and types them as strings,
 * not nullable ones (unlike the lists it marks nullable, such as the audit logs), and the SDKs type them so.
 */
export interface InputItemList {
  object: 'list';
  data: InputItemResource[];
  first_id: string;
  last_id: string;
  has_more: boolean;
}

/**
 * A request's input as input items: each keeps the `id` the client gave it, or gets one. Call it on a
 * request {@link toChatRequest} accepted (it refused the parts a role does not take).
 */
export function toInputItems(input: ParsedResponsesRequest['input']): InputItemResource[] {
  if (typeof input === 'string') {
    return [{ type: 'message', id: newId('msg'), role: 'user', status: 'completed', content: [{ type: 'input_text', text: input }] }];
  }
  return input.map(toInputItem);
}

function toInputItem(item: ResponsesInputItem): InputItemResource {
  const given = 'id' in item && typeof item.id === 'string' && item.id !== '' ? item.id : undefined;
  if (item.type === 'function_call') {
    return { type: 'function_call', id: given ?? newId('fc'), call_id: item.call_id, name: item.name, arguments: item.arguments, status: 'completed' };
  }
  if (item.type === 'function_call_output') {
    const output = typeof item.output === 'string' ? item.output : item.output.flatMap(toInputContentPart);
    return { type: 'function_call_output', id: given ?? newId('fco'), call_id: item.call_id, output, status: 'completed' };
  }
  const id = given ?? newId('msg');
  const parts = typeof item.content === 'string' ? [{ type: 'input_text' as const, text: item.content }] : item.content;
  if (item.role === 'assistant') {
    const content = parts.flatMap((part): AssistantContentPart[] => {
      if (part.type === 'input_text' || part.type === 'output_text') return [{ type: 'output_text', text: part.text, annotations: [], logprobs: [] }];
      if (part.type === 'refusal') return [{ type: 'refusal', refusal: part.refusal }];
      return [];
    });
    return { type: 'message', id, role: 'assistant', status: 'completed', content };
  }
  return { type: 'message', id, role: item.role, status: 'completed', content: parts.flatMap(toInputContentPart) };
}

/** A text or image part as listed; other parts (files, output text) were refused when the request was translated. */
function toInputContentPart(part: Exclude<Extract<ResponsesInputItem, { type: 'message' }>['content'], string>[number]): InputContentPart[] {
  if (part.type === 'input_text') return [{ type: 'input_text', text: part.text }];
  if (part.type === 'input_image') return [{ type: 'input_image', image_url: part.image_url ?? null, detail: part.detail ?? 'auto' }];
  return [];
}

function newId(prefix: 'msg' | 'fc' | 'fco'): string {
  return `${prefix}_${randomBytes(24).toString('hex')}`;
}

const LIST_PARAMS = new Set(['limit', 'order', 'after']);

/**
 * One page of a response's input items, as `GET /v1/responses/{id}/input_items` asks for it: `limit` (1 to
 * 100, default 20), `order` (`asc` or `desc`, default `desc`: the last input item first), `after` (an item
 * id: the items after it in that order). Anything else, or a bad value, is a 400 naming the parameter.
 */
export function listInputItems(items: readonly InputItemResource[], query: Record<string, string | string[] | undefined>): InputItemList {
  for (const [name, value] of Object.entries(query)) {
    if (name === 'include') {
      throw invalidRequest("'include' is not supported: input items are always listed whole.", 'include', 'unsupported_parameter');
    }
    if (!LIST_PARAMS.has(name)) throw invalidRequest(`Unknown query parameter '${echo(name)}'; use limit, order or after.`, name, 'unsupported_parameter');
    if (Array.isArray(value)) throw invalidRequest(`Give '${name}' once.`, name);
  }
  const text = (name: string): string | undefined => query[name] as string | undefined;
  const limitText = text('limit') ?? '20';
  const limit = /^\d{1,3}$/.test(limitText) ? Number(limitText) : Number.NaN;
  if (!(limit >= 1 && limit <= 100)) throw invalidRequest(`Invalid 'limit': '${echo(limitText)}'; use a whole number from 1 to 100.`, 'limit');
  const order = text('order') ?? 'desc';
  if (order !== 'asc' && order !== 'desc') throw invalidRequest(`Invalid 'order': '${echo(order)}'; use 'asc' or 'desc'.`, 'order');
  const ordered = order === 'asc' ? [...items] : [...items].reverse();
  const after = text('after');
  let start = 0;
  if (after !== undefined) {
    const index = ordered.findIndex((item) => item.id === after);
    if (index < 0) throw invalidRequest(`Invalid 'after': this response has no input item '${echo(after)}'.`, 'after');
    start = index + 1;
  }
  const data = ordered.slice(start, start + limit);
  return { object: 'list', data, first_id: data[0]?.id ?? '', last_id: data.at(-1)?.id ?? '', has_more: start + limit < ordered.length };
}
