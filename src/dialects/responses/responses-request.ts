/**
 * The OpenAI Responses API request (`POST /v1/responses`), as zod schemas, and its translation into Iris's
 * chat request: `instructions` and the input items become chat messages (`input_image` parts become
 * `image_url` parts, so they take the one image path; those of `function_call_output` items follow the
 * tool messages in a user message, since a chat tool message holds text only), `max_output_tokens`/`temperature`/`top_p` become the
 * chat request's sampling fields. Errors name the Responses field (`input[0].content[1].image_url`).
 *
 * Every field OpenAI defines is honoured, accepted because it changes nothing about the answer (`user`,
 * `metadata`, `service_tier`, ...), or refused by name with a 400; hosted tools (`web_search`,
 * `file_search`, `computer_use_preview`, `code_interpreter`, ...) are refused by their type. A top-level field
 * OpenAI does not define (a typo, another server's extension) is refused by name, as OpenAI refuses it.
 */
import { z } from 'zod';
import { IrisError, invalidRequest, unknownParameter } from '../../errors.js';
import { metadataSchema, refusedField, toChatResponseFormat, unknownField, zodToIrisError, type ChatMessage, type ChatRequest } from '../../protocol/chat-request.js';

const detailSchema = z.enum(['low', 'high', 'auto']);

const inputTextSchema = z.looseObject({ type: z.literal('input_text'), text: z.string() });
const inputImageSchema = z.looseObject({
  type: z.literal('input_image'),
  image_url: z.string().min(1, 'must not be empty').nullable().optional(),
  file_id: z.string().nullable().optional(),
  detail: detailSchema.nullable().optional(),
});
const inputFileSchema = z.looseObject({ type: z.literal('input_file') });
const outputTextSchema = z.looseObject({ type: z.literal('output_text'), text: z.string() });
const refusalSchema = z.looseObject({ type: z.literal('refusal'), refusal: z.string() });

const contentPartSchema = z.discriminatedUnion('type', [inputTextSchema, inputImageSchema, inputFileSchema, outputTextSchema, refusalSchema], {
  error: (issue) =>
    issue.code === 'invalid_union' ? "content part 'type' must be 'input_text', 'input_image', 'output_text' or 'refusal'" : undefined,
});

const messageItemSchema = z.looseObject({
  type: z.literal('message'),
  role: z.enum(['user', 'system', 'developer', 'assistant']),
  content: z.union([z.string(), z.array(contentPartSchema)], { error: 'must be a string or an array of content parts' }),
});

const functionCallItemSchema = z.looseObject({
  type: z.literal('function_call'),
  call_id: z.string().min(1, 'must not be empty'),
  name: z.string().regex(/^[a-zA-Z0-9_-]{1,64}$/, 'must be 1 to 64 letters, digits, underscores or dashes'),
  arguments: z.string(),
});

const functionCallOutputItemSchema = z.looseObject({
  type: z.literal('function_call_output'),
  call_id: z.string().min(1, 'must not be empty'),
  output: z.union([z.string(), z.array(contentPartSchema)]),
});

/** A message without `type` (the "easy" input message) is a message. */
const inputItemSchema = z.preprocess(
  (value) =>
    value !== null && typeof value === 'object' && !Array.isArray(value) && !('type' in value) && 'role' in value ? { ...value, type: 'message' } : value,
  z.discriminatedUnion('type', [messageItemSchema, functionCallItemSchema, functionCallOutputItemSchema], {
    error: (issue) =>
      issue.code === 'invalid_union' ? "input item 'type' must be 'message', 'function_call' or 'function_call_output'" : undefined,
  }),
);

const textFormatSchema = z.discriminatedUnion(
  'type',
  [
    z.looseObject({ type: z.literal('text') }),
    z.looseObject({ type: z.literal('json_object') }),
    z.looseObject({
      type: z.literal('json_schema'),
      name: z.string().min(1, 'must not be empty'),
      schema: z.record(z.string(), z.unknown()),
      description: z.string().nullable().optional(),
      strict: z.boolean().nullable().optional(),
    }),
  ],
  { error: (issue) => (issue.code === 'invalid_union' ? "type must be 'text', 'json_object' or 'json_schema'" : undefined) },
);

const nullableNumber = (schema: z.ZodNumber) => schema.nullable().optional();
const nullableString = z.string().nullable().optional();

/** OpenAI's rule for function names (tools and named tool_choice). */
const functionNameSchema = z.string().regex(/^[a-zA-Z0-9_-]{1,64}$/, 'must be 1 to 64 letters, digits, underscores or dashes');

/** A function tool, as `tools` items must be (hosted tools are refused by name). */
export const functionToolSchema = z.looseObject({
  type: z.literal('function'),
  name: functionNameSchema,
  description: nullableString,
  parameters: z.record(z.string(), z.unknown()).nullable().optional(),
  strict: z.boolean().nullable().optional(),
});

/** The request body of POST /v1/responses, as Iris accepts it: any other top-level field is refused. */
export const responsesRequestSchema = z.strictObject({
  model: z.string().min(1, 'must not be empty'),
  input: z.union([z.string(), z.array(inputItemSchema)], { error: 'must be a string or an array of input items' }).optional(),
  instructions: nullableString,
  max_output_tokens: nullableNumber(z.number().int().min(1)),
  temperature: nullableNumber(z.number().min(0).max(2)),
  top_p: nullableNumber(z.number().min(0).max(1)),
  stream: z.boolean().nullable().optional(),
  stream_options: z.looseObject({ include_obfuscation: z.boolean().nullable().optional() }).nullable().optional(),
  store: z.boolean().nullable().optional(),
  previous_response_id: nullableString,
  metadata: metadataSchema.nullable().optional(),
  text: z.looseObject({ format: textFormatSchema.nullable().optional(), verbosity: nullableString }).nullable().optional(),
  tools: z.array(z.looseObject({ type: z.string() })).nullable().optional(),
  tool_choice: z
    .union([z.enum(['none', 'auto', 'required']), z.strictObject({ type: z.literal('function'), name: functionNameSchema })], {
      error: "must be 'none', 'auto', 'required' or {\"type\":\"function\",\"name\":...}",
    })
    .nullable()
    .optional(),
  parallel_tool_calls: z.boolean().nullable().optional(),
  truncation: z.enum(['auto', 'disabled']).nullable().optional(),
  reasoning: z.looseObject({ effort: nullableString, summary: nullableString, generate_summary: nullableString }).nullable().optional(),
  include: z.array(z.string()).nullable().optional(),
  background: z.boolean().nullable().optional(),
  top_logprobs: nullableNumber(z.number().int().min(0).max(20)),
  max_tool_calls: nullableNumber(z.number().int().min(1)),
  prompt: refusedField,
  conversation: refusedField,
  context_management: refusedField,
  moderation: refusedField,
  // Iris extensions (as in vLLM): chat completions' sampling controls, for reproducible answers.
  seed: nullableNumber(z.number().int()),
  logit_bias: z.record(z.string().regex(/^\d+$/, 'keys must be token ids'), z.number().min(-100).max(100)).nullable().optional(),
  // Accepted without effect: they change nothing about the answer.
  user: nullableString,
  safety_identifier: nullableString,
  prompt_cache_key: nullableString,
  prompt_cache_retention: nullableString,
  prompt_cache_options: z.unknown().optional(),
  service_tier: nullableString,
});

/** A parsed Responses request. */
export type ResponsesRequest = z.output<typeof responsesRequestSchema> & { input: NonNullable<z.output<typeof responsesRequestSchema>['input']> };
/** A parsed request with its function tools checked. */
export type ParsedResponsesRequest = ResponsesRequest & { functionTools: z.output<typeof functionToolSchema>[] };
/** One parsed input item. */
export type ResponsesInputItem = Exclude<ResponsesRequest['input'], string>[number];

/**
 * Fields Iris refuses by name when set (null counts as unset), and why: each would change the answer and
 * Iris cannot do what it asks.
 */
const REFUSED_FIELDS: Readonly<Record<string, string>> = {
  prompt: 'stored prompt templates are not supported; send instructions and input',
  conversation: 'conversations are not supported; use previous_response_id',
  background: 'background responses are not supported',
  max_tool_calls: 'a cap on tool calls is not supported; use parallel_tool_calls: false for one call per response',
  context_management: 'context management (compaction) is not supported',
  moderation: 'moderation is not supported',
};

/** Hosted tools OpenAI runs on its side; Iris has none of them. */
const HOSTED_TOOLS: Readonly<Record<string, string>> = {
  web_search: 'web search',
  web_search_preview: 'web search',
  web_search_2025_08_26: 'web search',
  web_search_preview_2025_03_11: 'web search',
  file_search: 'file search',
  computer_use: 'computer use',
  computer_use_preview: 'computer use',
  code_interpreter: 'a code interpreter',
  image_generation: 'image generation',
  mcp: 'remote MCP servers',
  local_shell: 'a local shell',
  shell: 'a shell',
  apply_patch: 'patch application',
};

/** Parses and validates a request body; throws a 400 naming the field on any mismatch or refused field. */
export function parseResponsesRequest(body: unknown): ParsedResponsesRequest {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) {
    throw invalidRequest('The request body must be a JSON object.', null, 'invalid_request');
  }
  const fields = body as Record<string, unknown>;
  const unknown = unknownField(body, responsesRequestSchema);
  if (unknown !== undefined) throw unknownParameter(unknown);
  for (const [name, why] of Object.entries(REFUSED_FIELDS)) {
    // `background: false` and `parallel_tool_calls: true` (the defaults SDKs send) ask for nothing special.
    const value = fields[name];
    if (value == null || (name === 'background' && value === false)) continue;
    throw invalidRequest(`'${name}' is not supported: ${why}.`, name, 'unsupported_parameter');
  }
  const result = responsesRequestSchema.safeParse(body);
  if (!result.success) throw zodToIrisError(result.error, body);
  const { input, ...rest } = result.data;
  if (input === undefined) throw invalidRequest("Missing required parameter: 'input'.", 'input', 'missing_required_parameter');
  const request = { ...rest, input };
  const tools = (request.tools ?? []).map((tool, index) => {
    const hosted = HOSTED_TOOLS[tool.type];
    if (hosted !== undefined) {
      throw invalidRequest(`The hosted tool '${tool.type}' is not supported: Iris does not run ${hosted}.`, `tools[${index}].type`, 'unsupported_parameter');
    }
    if (tool.type !== 'function') {
      throw invalidRequest(`The tool type '${tool.type}' is not supported; only 'function' tools are.`, `tools[${index}].type`, 'unsupported_parameter');
    }
    const parsed = functionToolSchema.safeParse(tool);
    if (!parsed.success) throw zodToIrisError(prefixIssues(parsed.error, ['tools', index]), body);
    return parsed.data;
  });
  const choice = request.tool_choice;
  if (choice != null && choice !== 'none' && tools.length === 0) {
    throw invalidRequest("'tool_choice' needs function tools in 'tools'.", 'tool_choice', 'invalid_value');
  }
  if (typeof choice === 'object' && choice !== null && !tools.some((tool) => tool.name === choice.name)) {
    throw invalidRequest(`'tool_choice' names the function '${choice.name}', which is not in 'tools'.`, 'tool_choice.name', 'invalid_value');
  }
  if (request.text?.verbosity != null) {
    throw invalidRequest("'text.verbosity' is not supported: the models served here have no verbosity setting.", 'text.verbosity', 'unsupported_parameter');
  }
  if (request.truncation === 'auto') {
    throw invalidRequest("'truncation: auto' is not supported: input that does not fit the context is refused.", 'truncation', 'unsupported_parameter');
  }
  if (request.reasoning?.effort != null || request.reasoning?.summary != null || request.reasoning?.generate_summary != null) {
    throw invalidRequest("'reasoning' is not supported: the models served here have no reasoning settings.", 'reasoning', 'unsupported_parameter');
  }
  if (request.include != null && request.include.length > 0) {
    throw invalidRequest(`'include' value '${request.include[0]}' is not supported.`, 'include[0]', 'unsupported_parameter');
  }
  if (request.top_logprobs != null && request.top_logprobs > 0) {
    throw invalidRequest("'top_logprobs' is not supported yet.", 'top_logprobs', 'unsupported_parameter');
  }
  return { ...request, functionTools: tools };
}

function prefixIssues(error: z.ZodError, prefix: readonly PropertyKey[]): z.ZodError {
  return new z.ZodError(error.issues.map((issue) => ({ ...issue, path: [...prefix, ...issue.path] })));
}

/** Where each chat message came from, so errors about its images name the Responses field. */
interface MessageSource {
  /** The field of each chat content part, by part index; undefined for parts from a stored response. */
  parts: (string | undefined)[];
}

/** A Responses request as Iris's chat request, and what is needed to answer and store it. */
export interface TranslatedResponsesRequest {
  chat: ChatRequest;
  /**
   * The conversation without `instructions` (they are not carried over to a follow-up response): the
   * previous response's conversation, then this request's input. The answer is appended when stored.
   */
  conversation: ChatMessage[];
  /** The Responses field of an image, by chat message and part index. */
  imageParam: (messageIndex: number, partIndex: number) => string;
}

/**
 * Translates a request into a chat request. `history` is the stored conversation of
 * `previous_response_id` (its input and answer), if any.
 */
export function toChatRequest(request: ParsedResponsesRequest, history: readonly ChatMessage[] = []): TranslatedResponsesRequest {
  const sources: MessageSource[] = [];
  const messages: ChatMessage[] = [];
  if (request.instructions != null && request.instructions !== '') {
    messages.push({ role: 'system', content: request.instructions });
    sources.push({ parts: [] });
  }
  for (const message of history) {
    messages.push(message);
    sources.push({ parts: [] });
  }
  const conversationStart = messages.length - history.length;
  if (typeof request.input === 'string') {
    messages.push({ role: 'user', content: request.input });
    sources.push({ parts: [] });
  } else {
    // A chat tool message holds text only: images of function_call_output items follow them, in one user
    // message after the run of outputs they belong to.
    let toolImages: { parts: ImagePart[]; fields: string[] } = { parts: [], fields: [] };
    const flushToolImages = (): void => {
      if (toolImages.parts.length === 0) return;
      messages.push({ role: 'user', content: toolImages.parts });
      sources.push({ parts: toolImages.fields });
      toolImages = { parts: [], fields: [] };
    };
    request.input.forEach((item, index) => {
      const path = `input[${index}]`;
      if (item.type !== 'function_call_output') flushToolImages();
      if (item.type === 'function_call') {
        // Calls join the assistant turn they belong to: the message just before, or a new one.
        const call = { id: item.call_id, type: 'function' as const, function: { name: item.name, arguments: item.arguments } };
        const last = messages.at(-1);
        if (last?.role === 'assistant' && messages.length > conversationStart + history.length) {
          last.tool_calls = [...(last.tool_calls ?? []), call];
        } else {
          messages.push({ role: 'assistant', content: null, tool_calls: [call] });
          sources.push({ parts: [] });
        }
        return;
      }
      if (item.type === 'function_call_output') {
        const output = toolOutput(item.output, `${path}.output`);
        messages.push({ role: 'tool', tool_call_id: item.call_id, content: output.text });
        sources.push({ parts: [] });
        toolImages.parts.push(...output.images.map((image) => image.part));
        toolImages.fields.push(...output.images.map((image) => image.field));
        return;
      }
      const { message, parts } = toChatMessage(item, path);
      messages.push(message);
      sources.push({ parts });
    });
    flushToolImages();
  }
  if (messages.length === 0) throw invalidRequest("'input' must contain at least one item.", 'input', 'invalid_value');
  const chat: ChatRequest = {
    model: request.model,
    messages,
    ...(request.stream == null ? {} : { stream: request.stream }),
    ...(request.max_output_tokens == null ? {} : { max_tokens: request.max_output_tokens }),
    ...(request.temperature == null ? {} : { temperature: request.temperature }),
    ...(request.top_p == null ? {} : { top_p: request.top_p }),
    ...(request.seed == null ? {} : { seed: request.seed }),
    ...(request.logit_bias == null ? {} : { logit_bias: request.logit_bias }),
  };
  if (request.functionTools.length > 0) {
    chat.tools = request.functionTools.map((tool) => ({
      type: 'function' as const,
      function: {
        name: tool.name,
        ...(tool.description == null ? {} : { description: tool.description }),
        ...(tool.parameters == null ? {} : { parameters: tool.parameters }),
        ...(tool.strict == null ? {} : { strict: tool.strict }),
      },
    }));
    if (request.parallel_tool_calls != null) chat.parallel_tool_calls = request.parallel_tool_calls;
  }
  const choice = request.tool_choice;
  if (choice != null) chat.tool_choice = typeof choice === 'string' ? choice : { type: 'function', function: { name: choice.name } };
  const format = request.text?.format;
  if (format != null) chat.response_format = toChatResponseFormat(format);
  return {
    chat,
    conversation: messages.slice(conversationStart),
    imageParam: (messageIndex, partIndex) => sources[messageIndex]?.parts[partIndex] ?? 'previous_response_id',
  };
}

/** A chat `image_url` part. */
type ImagePart = { type: 'image_url'; image_url: { url: string; detail?: 'low' | 'high' | 'auto' } };

/** An `input_image` part as a chat image part, and the field of its URL; `file_id` is refused. */
function toImagePart(part: z.output<typeof inputImageSchema>, where: string): { part: ImagePart; field: string } {
  if (part.image_url == null) {
    const why = part.file_id == null ? "'image_url' is required" : "'file_id' is not supported (Iris has no file store); send 'image_url'";
    throw invalidRequest(`Invalid input image at '${where}': ${why}.`, `${where}.${part.file_id == null ? 'image_url' : 'file_id'}`, 'invalid_value');
  }
  return {
    part: { type: 'image_url', image_url: { url: part.image_url, ...(part.detail == null ? {} : { detail: part.detail }) } },
    field: `${where}.image_url`,
  };
}

/** A function_call_output's text (a string, or its input_text parts) and its input_image parts. */
function toolOutput(output: string | z.output<typeof contentPartSchema>[], path: string): { text: string; images: { part: ImagePart; field: string }[] } {
  if (typeof output === 'string') return { text: output, images: [] };
  const images: { part: ImagePart; field: string }[] = [];
  const text = output
    .flatMap((part, index) => {
      const where = `${path}[${index}]`;
      if (part.type === 'input_text') return [part.text];
      if (part.type === 'input_image') {
        images.push(toImagePart(part, where));
        return [];
      }
      throw invalidRequest(`Invalid tool output part at '${where}': only 'input_text' and 'input_image' parts are supported.`, `${where}.type`, 'unsupported_parameter');
    })
    .join('');
  return { text, images };
}

function toChatMessage(item: Extract<ResponsesInputItem, { type: 'message' }>, path: string): { message: ChatMessage; parts: (string | undefined)[] } {
  const { role, content } = item;
  if (typeof content === 'string') return { message: { role, content }, parts: [] };
  const parts: (string | undefined)[] = [];
  if (role === 'user') {
    const chatParts = content.map((part, index) => {
      const where = `${path}.content[${index}]`;
      if (part.type === 'input_text') return { type: 'text' as const, text: part.text };
      if (part.type !== 'input_image') throw wrongPart(part.type, where, role, "'input_text' or 'input_image'");
      const image = toImagePart(part, where);
      parts[index] = image.field;
      return image.part;
    });
    if (chatParts.length === 0) throw invalidRequest(`'${path}.content' must not be empty.`, `${path}.content`, 'invalid_value');
    return { message: { role, content: chatParts }, parts };
  }
  const texts = content.map((part, index) => {
    const where = `${path}.content[${index}]`;
    if (role === 'assistant') {
      if (part.type === 'output_text') return part.text;
      if (part.type === 'refusal') return part.refusal;
      throw wrongPart(part.type, where, role, "'output_text' or 'refusal'");
    }
    if (part.type === 'input_text') return part.text;
    throw wrongPart(part.type, where, role, "'input_text'");
  });
  if (role === 'assistant') return { message: { role, content: texts.join('') }, parts };
  if (texts.length === 0) throw invalidRequest(`'${path}.content' must not be empty.`, `${path}.content`, 'invalid_value');
  return { message: { role, content: texts.map((text) => ({ type: 'text' as const, text })) }, parts };
}

function wrongPart(type: string, where: string, role: string, allowed: string) {
  return invalidRequest(`Invalid content part at '${where}': a ${role} message takes ${allowed} parts, not '${type}'.`, `${where}.type`, 'invalid_value');
}

/**
 * Chat request fields and the Responses fields they came from, for errors the pipeline and the engines raise
 * after translation (a schema the engine cannot enforce, a prompt over the context): the client is told the
 * field of its own request. Image and content fields are already named in Responses terms by the translation.
 */
const RESPONSES_FIELDS: readonly [chat: string, responses: string][] = [
  ['response_format.json_schema', 'text.format'],
  ['response_format', 'text.format'],
  ['max_completion_tokens', 'max_output_tokens'],
  ['max_tokens', 'max_output_tokens'],
];

/**
 * The error with its `param` named as the Responses request names it; anything else as it is. `messages`
 * becomes `input` only as a whole: a message's index in the chat request is not its item's in `input`.
 */
export function inResponsesTerms<T>(error: T): T | IrisError {
  if (!(error instanceof IrisError) || error.param === null) return error;
  const param = error.param;
  if (param === 'messages') return error.with({ param: 'input' });
  for (const [chat, responses] of RESPONSES_FIELDS) {
    if (param === chat || param.startsWith(`${chat}.`)) return error.with({ param: responses + param.slice(chat.length) });
  }
  return error;
}
