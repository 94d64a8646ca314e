/**
 * The Anthropic Messages API request (`POST /v1/messages`, `POST /v1/messages/count_tokens`), as zod
 * schemas, and its translation into Iris's chat request: `system` becomes a system message, `text` and
 * `image` blocks become chat parts (a `base64` source becomes a data URI and a `url` source a URL, so both
 * take the one image path), and `max_tokens`/`temperature`/`top_p`/`top_k`/`stop_sequences` the chat
 * request's sampling fields. Errors name the Anthropic field (`messages[0].content[1].source.data`).
 *
 * Every field Anthropic defines is honoured, accepted because it changes nothing about the answer
 * (`metadata`, `service_tier`, `cache_control`), or refused by name with a 400.
 */
import { z } from 'zod';
import { invalidRequest } from '../../errors.js';
import { zodToIrisError, type ChatMessage, type ChatRequest } from '../../protocol/chat-request.js';

const cacheControl = z.unknown().optional();

const textBlockSchema = z.looseObject({ type: z.literal('text'), text: z.string(), cache_control: cacheControl });

const imageSourceSchema = z.discriminatedUnion(
  'type',
  [
    z.strictObject({
      type: z.literal('base64'),
      media_type: z.enum(['image/jpeg', 'image/png', 'image/gif', 'image/webp']),
      data: z.string().min(1, 'must not be empty'),
    }),
    z.strictObject({ type: z.literal('url'), url: z.string().min(1, 'must not be empty') }),
  ],
  { error: (issue) => (issue.code === 'invalid_union' ? "source 'type' must be 'base64' or 'url'" : undefined) },
);

const imageBlockSchema = z.looseObject({ type: z.literal('image'), source: imageSourceSchema, cache_control: cacheControl });

const contentBlockSchema = z.discriminatedUnion('type', [textBlockSchema, imageBlockSchema], {
  error: (issue) => (issue.code === 'invalid_union' ? "content block 'type' must be 'text' or 'image'" : undefined),
});

const messageSchema = z.looseObject({
  role: z.enum(['user', 'assistant']),
  content: z.union([z.string(), z.array(contentBlockSchema)], { error: 'must be a string or an array of content blocks' }),
});

const nullableNumber = (schema: z.ZodNumber) => schema.nullable().optional();

const baseFields = {
  model: z.string().min(1, 'must not be empty'),
  messages: z.array(messageSchema).min(1, 'must contain at least one message'),
  system: z.union([z.string(), z.array(textBlockSchema)], { error: 'must be a string or an array of text blocks' }).nullable().optional(),
  tools: z.array(z.looseObject({ name: z.string().optional(), type: z.string().optional() })).nullable().optional(),
  tool_choice: z.looseObject({ type: z.enum(['auto', 'any', 'tool', 'none']) }).nullable().optional(),
};

/** The body of POST /v1/messages, as Iris accepts it. */
export const messagesRequestSchema = z.looseObject({
  ...baseFields,
  max_tokens: z.number().int().min(1),
  temperature: nullableNumber(z.number().min(0).max(1)),
  top_p: nullableNumber(z.number().min(0).max(1)),
  top_k: nullableNumber(z.number().int().min(0)),
  stop_sequences: z.array(z.string().min(1, 'must not be empty')).max(4, 'at most 4 stop sequences').nullable().optional(),
  stream: z.boolean().nullable().optional(),
  // Accepted without effect: they change nothing about the answer.
  metadata: z.looseObject({ user_id: z.string().nullable().optional() }).nullable().optional(),
  service_tier: z.string().nullable().optional(),
});

/** The body of POST /v1/messages/count_tokens. */
export const countTokensRequestSchema = z.looseObject(baseFields);

/** A parsed Messages request. */
export type MessagesRequest = z.output<typeof messagesRequestSchema>;
/** A parsed count_tokens request. */
export type CountTokensRequest = z.output<typeof countTokensRequestSchema>;

/** Fields Iris refuses by name when set, and why: each would change the answer and Iris cannot do it. */
const REFUSED_FIELDS: Readonly<Record<string, string>> = {
  thinking: 'extended thinking is not supported by the models served here',
  mcp_servers: 'remote MCP servers are not supported',
  container: 'code execution containers are not supported',
  context_management: 'context management is not supported',
};

/** Parses a Messages request; throws a 400 naming the field on any mismatch or refused field. */
export function parseMessagesRequest(body: unknown): MessagesRequest {
  return checkCommon(parseWith(messagesRequestSchema, body));
}

/** Parses a count_tokens request; throws a 400 naming the field on any mismatch or refused field. */
export function parseCountTokensRequest(body: unknown): CountTokensRequest {
  return checkCommon(parseWith(countTokensRequestSchema, body));
}

function parseWith<S extends z.ZodType>(schema: S, body: unknown): z.output<S> {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) {
    throw invalidRequest('The request body must be a JSON object.', null, 'invalid_request');
  }
  for (const [name, why] of Object.entries(REFUSED_FIELDS)) {
    const value = (body as Record<string, unknown>)[name];
    // `thinking: {type: "disabled"}` asks for nothing.
    if (value == null || (name === 'thinking' && (value as { type?: unknown }).type === 'disabled')) continue;
    throw invalidRequest(`'${name}' is not supported: ${why}.`, name, 'unsupported_parameter');
  }
  const result = schema.safeParse(body);
  if (!result.success) throw zodToIrisError(result.error, body);
  return result.data;
}

function checkCommon<T extends CountTokensRequest>(request: T): T {
  if (request.tools != null && request.tools.length > 0) {
    throw invalidRequest('Tools are not supported yet.', 'tools', 'unsupported_parameter');
  }
  if (request.tool_choice != null && request.tool_choice.type !== 'none' && request.tool_choice.type !== 'auto') {
    throw invalidRequest("'tool_choice' needs 'tools'.", 'tool_choice', 'invalid_value');
  }
  return request;
}

/** A Messages request as Iris's chat request, with the Anthropic field of each image. */
export interface TranslatedMessagesRequest {
  chat: ChatRequest;
  imageParam: (messageIndex: number, partIndex: number) => string;
}

/** Translates a Messages (or count_tokens) request into a chat request. */
export function toChatRequest(request: MessagesRequest | CountTokensRequest): TranslatedMessagesRequest {
  const messages: ChatMessage[] = [];
  const imageFields: (string | undefined)[][] = [];
  const system = request.system;
  if (system != null && system !== '' && !(Array.isArray(system) && system.length === 0)) {
    messages.push({ role: 'system', content: typeof system === 'string' ? system : system.map((block) => ({ type: 'text' as const, text: block.text })) });
    imageFields.push([]);
  }
  request.messages.forEach((message, index) => {
    const path = `messages[${index}]`;
    const fields: (string | undefined)[] = [];
    imageFields.push(fields);
    if (typeof message.content === 'string') {
      messages.push({ role: message.role, content: message.content });
      return;
    }
    if (message.content.length === 0) throw invalidRequest(`'${path}.content' must not be empty.`, `${path}.content`, 'invalid_value');
    if (message.role === 'assistant') {
      const texts = message.content.map((block, blockIndex) => {
        if (block.type !== 'text') {
          throw invalidRequest(`Invalid content block at '${path}.content[${blockIndex}]': assistant messages take text blocks only.`, `${path}.content[${blockIndex}].type`, 'invalid_value');
        }
        return block.text;
      });
      messages.push({ role: 'assistant', content: texts.join('') });
      return;
    }
    const parts = message.content.map((block, blockIndex) => {
      if (block.type === 'text') return { type: 'text' as const, text: block.text };
      const where = `${path}.content[${blockIndex}].source`;
      const source = block.source;
      fields[blockIndex] = source.type === 'base64' ? `${where}.data` : `${where}.url`;
      const url = source.type === 'base64' ? `data:${source.media_type};base64,${source.data}` : source.url;
      return { type: 'image_url' as const, image_url: { url } };
    });
    messages.push({ role: 'user', content: parts });
  });
  const chat: ChatRequest = { model: request.model, messages };
  if ('max_tokens' in request) {
    const generation = request as MessagesRequest;
    chat.max_tokens = generation.max_tokens;
    if (generation.stream != null) chat.stream = generation.stream;
    if (generation.temperature != null) chat.temperature = generation.temperature;
    if (generation.top_p != null) chat.top_p = generation.top_p;
    if (generation.top_k != null) chat.top_k = generation.top_k;
    if (generation.stop_sequences != null && generation.stop_sequences.length > 0) chat.stop = generation.stop_sequences;
  }
  return { chat, imageParam: (messageIndex, partIndex) => imageFields[messageIndex]?.[partIndex] ?? 'messages' };
}
