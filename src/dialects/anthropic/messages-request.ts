/**
 * The Anthropic Messages API request (`POST /v1/messages`, `POST /v1/messages/count_tokens`), as zod
 * schemas, and its translation into Iris's chat request: `system` becomes a system message, `text` and
 * `image` blocks become chat parts (a `base64` source becomes a data URI and a `url` source a URL, so both
 * take the one image path), `tool_result` blocks become tool messages (the images in them open the user
 * message that follows, since a chat tool message holds text only), and `max_tokens`/`temperature`/`top_p`/`top_k`/`stop_sequences` the chat
 * request's sampling fields. Errors name the Anthropic field (`messages[0].content[1].source.data`).
 *
 * Every field Anthropic defines is honoured, accepted because it changes nothing about the answer
 * (`metadata`, `service_tier`, `cache_control`, ...), or refused by name with a 400. A top-level field the
 * endpoint does not define (a typo, another server's extension) is refused by name too, in Anthropic's
 * words: `<name>: Extra inputs are not permitted`.
 */
import { z } from 'zod';
import { invalidRequest, unknownParameter } from '../../errors.js';
import { refusedField, unknownField, zodToIrisError, type ChatMessage, type ChatRequest } from '../../protocol/chat-request.js';

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

/** Anthropic's rule for tool names. */
const toolNameSchema = z.string().regex(/^[a-zA-Z0-9_-]{1,64}$/, 'must be 1 to 64 letters, digits, underscores or dashes');

const toolUseBlockSchema = z.looseObject({
  type: z.literal('tool_use'),
  id: z.string().min(1, 'must not be empty'),
  name: toolNameSchema,
  input: z.record(z.string(), z.unknown()),
  cache_control: cacheControl,
});

const toolResultBlockSchema = z.looseObject({
  type: z.literal('tool_result'),
  tool_use_id: z.string().min(1, 'must not be empty'),
  content: z.union([z.string(), z.array(z.discriminatedUnion('type', [textBlockSchema, imageBlockSchema]))]).optional(),
  is_error: z.boolean().nullable().optional(),
  cache_control: cacheControl,
});

const contentBlockSchema = z.discriminatedUnion('type', [textBlockSchema, imageBlockSchema, toolUseBlockSchema, toolResultBlockSchema], {
  error: (issue) =>
    issue.code === 'invalid_union' ? "content block 'type' must be 'text', 'image', 'tool_use' or 'tool_result'" : undefined,
});

/** A client tool, as `tools` items must be (server tools are refused by name). */
export const toolSchema = z.looseObject({
  type: z.literal('custom').nullable().optional(),
  name: toolNameSchema,
  description: z.string().nullable().optional(),
  input_schema: z.looseObject({ type: z.literal('object') }),
  cache_control: cacheControl,
});

const messageSchema = z.looseObject({
  role: z.enum(['user', 'assistant']),
  content: z.union([z.string(), z.array(contentBlockSchema)], { error: 'must be a string or an array of content blocks' }),
});

const nullableNumber = (schema: z.ZodNumber) => schema.nullable().optional();

/** Fields both endpoints take. */
const baseFields = {
  model: z.string().min(1, 'must not be empty'),
  messages: z.array(messageSchema).min(1, 'must contain at least one message'),
  system: z.union([z.string(), z.array(textBlockSchema)], { error: 'must be a string or an array of text blocks' }).nullable().optional(),
  tools: z.array(z.looseObject({ type: z.string().nullable().optional() })).nullable().optional(),
  tool_choice: z
    .discriminatedUnion('type', [
      z.strictObject({ type: z.literal('auto'), disable_parallel_tool_use: z.boolean().optional() }),
      z.strictObject({ type: z.literal('any'), disable_parallel_tool_use: z.boolean().optional() }),
      z.strictObject({ type: z.literal('tool'), name: toolNameSchema, disable_parallel_tool_use: z.boolean().optional() }),
      z.strictObject({ type: z.literal('none') }),
    ], { error: (issue) => (issue.code === 'invalid_union' ? "type must be 'auto', 'any', 'tool' or 'none'" : undefined) })
    .nullable()
    .optional(),
  // Accepted without effect: prompt caching is automatic, and Iris has one speed.
  cache_control: cacheControl,
  speed: z.string().nullable().optional(),
  // Refused when set (REFUSED_FIELDS); `thinking: {type: "disabled"}` asks for nothing.
  thinking: z.looseObject({ type: z.literal('disabled') }).nullable().optional(),
  // Structured output: a JSON schema the answer must match (the grammar chat completions' response_format
  // uses). `effort` changes nothing Iris can do and is refused when set (checkCommon).
  output_config: z
    .strictObject({
      format: z.strictObject({ type: z.literal('json_schema'), schema: z.record(z.string(), z.unknown()) }).nullable().optional(),
      effort: z.unknown().optional(),
    })
    .nullable()
    .optional(),
  output_format: refusedField,
  mcp_servers: refusedField,
  context_management: refusedField,
};

/** The body of POST /v1/messages, as Iris accepts it: any other top-level field is refused. */
export const messagesRequestSchema = z.strictObject({
  ...baseFields,
  max_tokens: z.number().int().min(1),
  temperature: nullableNumber(z.number().min(0).max(1)),
  top_p: nullableNumber(z.number().min(0).max(1)),
  top_k: nullableNumber(z.number().int().min(0)),
  stop_sequences: z.array(z.string().min(1, 'must not be empty')).max(4, 'at most 4 stop sequences').nullable().optional(),
  stream: z.boolean().nullable().optional(),
  // Iris extensions (as in vLLM): chat completions' sampling controls, for reproducible answers.
  seed: nullableNumber(z.number().int()),
  logit_bias: z.record(z.string().regex(/^\d+$/, 'keys must be token ids'), z.number().min(-100).max(100)).nullable().optional(),
  // Accepted without effect: they change nothing about the answer.
  metadata: z.looseObject({ user_id: z.string().nullable().optional() }).nullable().optional(),
  service_tier: z.string().nullable().optional(),
  inference_geo: z.string().nullable().optional(),
  container: refusedField,
  diagnostics: refusedField,
});

/** The body of POST /v1/messages/count_tokens: any other top-level field (`max_tokens` too) is refused. */
export const countTokensRequestSchema = z.strictObject(baseFields);

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
  output_format: "the beta 'output_format' is not supported: send the JSON schema as 'output_config.format'",
  diagnostics: 'prompt-cache diagnostics are not supported',
};

/** Parses a Messages request; throws a 400 naming the field on any mismatch or refused field. */
export function parseMessagesRequest(body: unknown): Checked<MessagesRequest> {
  return checkCommon(parseWith(messagesRequestSchema, body));
}

/** Parses a count_tokens request; throws a 400 naming the field on any mismatch or refused field. */
export function parseCountTokensRequest(body: unknown): Checked<CountTokensRequest> {
  return checkCommon(parseWith(countTokensRequestSchema, body));
}

function parseWith<S extends z.ZodObject>(schema: S, body: unknown): z.output<S> {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) {
    throw invalidRequest('The request body must be a JSON object.', null, 'invalid_request');
  }
  const unknown = unknownField(body, schema);
  if (unknown !== undefined) throw unknownParameter(unknown, 'anthropic');
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

/** A parsed request with its custom tools checked. */
export type Checked<T> = T & { customTools: z.output<typeof toolSchema>[] };

function checkCommon<T extends CountTokensRequest>(request: T): Checked<T> {
  const customTools = (request.tools ?? []).map((tool, index) => {
    if (tool.type != null && tool.type !== 'custom') {
      throw invalidRequest(`The server tool '${tool.type}' is not supported: Iris runs no tools itself; define client tools with 'input_schema'.`, `tools[${index}].type`, 'unsupported_parameter');
    }
    const parsed = toolSchema.safeParse(tool);
    if (!parsed.success) throw zodToIrisError(new z.ZodError(parsed.error.issues.map((issue) => ({ ...issue, path: ['tools', index, ...issue.path] }))), request);
    return parsed.data;
  });
  if (request.output_config?.effort != null) {
    throw invalidRequest("'output_config.effort' is not supported: the models served here have no effort setting.", 'output_config.effort', 'unsupported_parameter');
  }
  const choice = request.tool_choice;
  if (choice != null && choice.type !== 'none' && choice.type !== 'auto' && customTools.length === 0) {
    throw invalidRequest("'tool_choice' needs 'tools'.", 'tool_choice', 'invalid_value');
  }
  if (choice?.type === 'tool' && !customTools.some((tool) => tool.name === choice.name)) {
    throw invalidRequest(`'tool_choice' names the tool '${choice.name}', which is not in 'tools'.`, 'tool_choice.name', 'invalid_value');
  }
  return { ...request, customTools };
}

function wrongBlock(type: string, where: string, allowed: string) {
  return invalidRequest(`Invalid content block at '${where}': this message takes ${allowed} blocks, not '${type}'.`, `${where}.type`, 'invalid_value');
}

/** A chat content part of a user message. */
type UserPart = { type: 'text'; text: string } | { type: 'image_url'; image_url: { url: string } };

/** An image block as a chat `image_url` part (a base64 source becomes a data URI), and the field it came from. */
function toImagePart(block: z.output<typeof imageBlockSchema>, where: string): { part: UserPart; field: string } {
  const source = block.source;
  const url = source.type === 'base64' ? `data:${source.media_type};base64,${source.data}` : source.url;
  return { part: { type: 'image_url', image_url: { url } }, field: `${where}.source.${source.type === 'base64' ? 'data' : 'url'}` };
}

/**
 * A tool_result split into what a chat `tool` message can hold, its text (an error result says so, since
 * the model should know the call failed), and its images, which the caller carries in the user message
 * that follows the tool messages.
 */
function toolResult(
  block: { content?: string | z.output<typeof textBlockSchema | typeof imageBlockSchema>[] | undefined; is_error?: boolean | null | undefined },
  where: string,
): { text: string; images: { part: UserPart; field: string }[] } {
  const content = block.content ?? '';
  const images: { part: UserPart; field: string }[] = [];
  const text =
    typeof content === 'string'
      ? content
      : content
          .flatMap((part, index) => {
            if (part.type === 'text') return [part.text];
            images.push(toImagePart(part, `${where}.content[${index}]`));
            return [];
          })
          .join('');
  return { text: block.is_error === true ? `Error: ${text}` : text, images };
}

/** A Messages request as Iris's chat request, with the Anthropic field of each image. */
export interface TranslatedMessagesRequest {
  chat: ChatRequest;
  imageParam: (messageIndex: number, partIndex: number) => string;
}

/** Translates a Messages (or count_tokens) request into a chat request. */
export function toChatRequest(request: Checked<MessagesRequest> | Checked<CountTokensRequest>): TranslatedMessagesRequest {
  const messages: ChatMessage[] = [];
  const imageFields: (string | undefined)[][] = [];
  const system = request.system;
  if (system != null && system !== '' && !(Array.isArray(system) && system.length === 0)) {
    messages.push({ role: 'system', content: typeof system === 'string' ? system : system.map((block) => ({ type: 'text' as const, text: block.text })) });
    imageFields.push([]);
  }
  request.messages.forEach((message, index) => {
    const path = `messages[${index}]`;
    if (typeof message.content === 'string') {
      messages.push({ role: message.role, content: message.content });
      imageFields.push([]);
      return;
    }
    if (message.content.length === 0) throw invalidRequest(`'${path}.content' must not be empty.`, `${path}.content`, 'invalid_value');
    if (message.role === 'assistant') {
      let text = '';
      const calls: { id: string; type: 'function'; function: { name: string; arguments: string } }[] = [];
      message.content.forEach((block, blockIndex) => {
        if (block.type === 'text') text += block.text;
        else if (block.type === 'tool_use') calls.push({ id: block.id, type: 'function', function: { name: block.name, arguments: JSON.stringify(block.input) } });
        else throw wrongBlock(block.type, `${path}.content[${blockIndex}]`, "'text' or 'tool_use'");
      });
      messages.push({ role: 'assistant', content: calls.length > 0 && text === '' ? null : text, ...(calls.length > 0 ? { tool_calls: calls } : {}) });
      imageFields.push([]);
      return;
    }
    // Tool results answer the calls of the turn before, so they come first, as tool messages, in order. A
    // chat tool message holds text only: their images open the user message that follows.
    const parts: UserPart[] = [];
    const partFields: (string | undefined)[] = [];
    message.content.forEach((block, blockIndex) => {
      if (block.type !== 'tool_result') return;
      const result = toolResult(block, `${path}.content[${blockIndex}]`);
      messages.push({ role: 'tool', tool_call_id: block.tool_use_id, content: result.text });
      imageFields.push([]);
      for (const image of result.images) {
        partFields[parts.length] = image.field;
        parts.push(image.part);
      }
    });
    message.content.forEach((block, blockIndex) => {
      if (block.type === 'tool_result') return;
      if (block.type === 'tool_use') throw wrongBlock(block.type, `${path}.content[${blockIndex}]`, "'text', 'image' or 'tool_result'");
      if (block.type === 'text') {
        parts.push({ type: 'text', text: block.text });
        return;
      }
      const image = toImagePart(block, `${path}.content[${blockIndex}]`);
      partFields[parts.length] = image.field;
      parts.push(image.part);
    });
    if (parts.length > 0) {
      messages.push({ role: 'user', content: parts });
      imageFields.push(partFields);
    }
  });
  const chat: ChatRequest = { model: request.model, messages };
  if (request.customTools.length > 0) {
    chat.tools = request.customTools.map((tool) => ({
      type: 'function' as const,
      function: { name: tool.name, ...(tool.description == null ? {} : { description: tool.description }), parameters: tool.input_schema },
    }));
  }
  const choice = request.tool_choice;
  if (choice != null) {
    chat.tool_choice =
      choice.type === 'any' ? 'required' : choice.type === 'tool' ? { type: 'function', function: { name: choice.name } } : choice.type;
    if ('disable_parallel_tool_use' in choice && choice.disable_parallel_tool_use === true && chat.tools !== undefined) chat.parallel_tool_calls = false;
  }
  const format = request.output_config?.format;
  if (format != null) chat.response_format = { type: 'json_schema', json_schema: { name: 'output', schema: format.schema, strict: true } };
  if ('max_tokens' in request) {
    const generation = request as MessagesRequest;
    chat.max_tokens = generation.max_tokens;
    if (generation.stream != null) chat.stream = generation.stream;
    if (generation.temperature != null) chat.temperature = generation.temperature;
    if (generation.top_p != null) chat.top_p = generation.top_p;
    if (generation.top_k != null) chat.top_k = generation.top_k;
    if (generation.stop_sequences != null && generation.stop_sequences.length > 0) chat.stop = generation.stop_sequences;
    if (generation.seed != null) chat.seed = generation.seed;
    if (generation.logit_bias != null) chat.logit_bias = generation.logit_bias;
  }
  return { chat, imageParam: (messageIndex, partIndex) => imageFields[messageIndex]?.[partIndex] ?? 'messages' };
}
