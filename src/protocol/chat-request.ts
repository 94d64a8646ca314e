/**
 * The OpenAI chat-completions request, as zod schemas. Parsing turns any mismatch into a 400
 * {@link IrisError} whose `param` names the exact field (`messages[0].content[1].image_url.detail`).
 *
 * Every parameter of OpenAI's request is either honoured, accepted because it changes nothing about the
 * answer (`user`, `metadata`, `store`, ...), or refused by name (`audio`, `prediction`, the legacy
 * `functions`, ...): a caller never gets an answer to a question it did not ask. The README's parameter
 * table lists each. A top-level field that is neither OpenAI's nor one of Iris's extensions (a typo such as
 * `max_token`, another server's `guided_json`) is refused by name too, as OpenAI refuses it.
 */
import { z } from 'zod';
import { invalidRequest, unknownParameter, type IrisError } from '../errors.js';

/** `detail` of an image part: how much resolution (and how many tokens) to spend on it. */
export type ImageDetail = 'low' | 'high' | 'auto';

const textPartSchema = z.strictObject({
  type: z.literal('text'),
  text: z.string(),
});

const imagePartSchema = z.strictObject({
  type: z.literal('image_url'),
  image_url: z.strictObject({
    url: z.string().min(1, 'must not be empty'),
    detail: z.enum(['low', 'high', 'auto']).optional(),
  }),
});

const userPartSchema = z.discriminatedUnion('type', [textPartSchema, imagePartSchema], {
  error: (issue) =>
    issue.code === 'invalid_union' ? "content part 'type' must be 'text' or 'image_url'" : undefined,
});

const systemMessageSchema = z.looseObject({
  role: z.enum(['system', 'developer']),
  content: z.union([z.string(), z.array(textPartSchema).min(1)], {
    error: 'must be a string or a non-empty array of text parts',
  }),
  name: z.string().optional(),
});

const userMessageSchema = z.looseObject({
  role: z.literal('user'),
  content: z.union([z.string(), z.array(userPartSchema).min(1)], {
    error: 'must be a string or a non-empty array of text and image_url parts',
  }),
  name: z.string().optional(),
});

/** OpenAI's rule for function names (tools and named tool_choice). */
const functionNameSchema = z.string().regex(/^[a-zA-Z0-9_-]{1,64}$/, 'must be 1 to 64 letters, digits, underscores or dashes');

const toolCallSchema = z.strictObject({
  id: z.string().min(1, 'must not be empty'),
  type: z.literal('function'),
  function: z.strictObject({ name: functionNameSchema, arguments: z.string() }),
});

const assistantMessageSchema = z.looseObject({
  role: z.literal('assistant'),
  content: z.union([z.string(), z.array(textPartSchema), z.null()]).optional(),
  name: z.string().optional(),
  refusal: z.string().nullable().optional(),
  tool_calls: z.array(toolCallSchema).nullable().optional(),
  function_call: z.undefined({ error: "the legacy 'function_call' is not supported; use 'tool_calls'" }).optional(),
  audio: z.null({ error: 'audio output is not supported' }).optional(),
});

const toolMessageSchema = z.looseObject({
  role: z.literal('tool'),
  content: z.union([z.string(), z.array(textPartSchema).min(1)], {
    error: 'must be a string or a non-empty array of text parts',
  }),
  tool_call_id: z.string().min(1, 'must not be empty'),
});

const messageSchema = z.discriminatedUnion('role', [systemMessageSchema, userMessageSchema, assistantMessageSchema, toolMessageSchema], {
  error: (issue) =>
    issue.code === 'invalid_union' ? "role must be one of 'system', 'developer', 'user', 'assistant', 'tool'" : undefined,
});

const toolSchema = z.strictObject({
  type: z.literal('function', { error: "only 'function' tools are supported" }),
  function: z.strictObject({
    name: functionNameSchema,
    description: z.string().optional(),
    parameters: z.record(z.string(), z.unknown()).optional(),
    strict: z.boolean().nullable().optional(),
  }),
});

const toolChoiceSchema = z.union(
  [z.enum(['none', 'auto', 'required']), z.strictObject({ type: z.literal('function'), function: z.strictObject({ name: functionNameSchema }) })],
  { error: "must be 'none', 'auto', 'required' or {\"type\":\"function\",\"function\":{\"name\":...}}" },
);

const responseFormatSchema = z.discriminatedUnion(
  'type',
  [
    z.strictObject({ type: z.literal('text') }),
    z.strictObject({ type: z.literal('json_object') }),
    z.strictObject({
      type: z.literal('json_schema'),
      json_schema: z.strictObject({
        name: functionNameSchema,
        description: z.string().optional(),
        schema: z.record(z.string(), z.unknown()).optional(),
        strict: z.boolean().nullable().optional(),
      }),
    }),
  ],
  { error: (issue) => (issue.code === 'invalid_union' ? "type must be 'text', 'json_object' or 'json_schema'" : undefined) },
);

/**
 * Fields of OpenAI's request that Iris refuses by name when set (null counts as unset), and why. Each would
 * change the answer, and Iris cannot do what it asks.
 */
export const REFUSED_PARAMETERS: Readonly<Record<string, string>> = {
  audio: 'audio output is not supported',
  prediction: 'predicted outputs are not supported',
  web_search_options: 'web search is not supported',
  functions: "the legacy 'functions' is not supported; use 'tools'",
  function_call: "the legacy 'function_call' is not supported; use 'tool_choice'",
  reasoning_effort: 'the models served here have no reasoning effort setting',
  verbosity: 'the models served here have no verbosity setting',
  moderation: 'moderation is not supported',
};

const nullableNumber = (schema: z.ZodNumber) => schema.nullable().optional();

/** OpenAI's `metadata`: at most 16 pairs, keys up to 64 characters, values up to 512 (kept and echoed back). */
export const metadataSchema = z
  .record(z.string().max(64, 'keys must be at most 64 characters'), z.string().max(512, 'must be at most 512 characters'))
  .refine((metadata) => Object.keys(metadata).length <= 16, 'must have at most 16 key-value pairs');

/**
 * A field a dialect refuses by name when set (its refused-fields table): known, so null (unset) passes; any
 * value is refused with the reason before the schema parses.
 */
export const refusedField = z.null().optional();

/** The request body of POST /v1/chat/completions, as Iris accepts it: any other top-level field is refused. */
export const chatRequestSchema = z.strictObject({
  model: z.string().min(1, 'must not be empty'),
  messages: z.array(messageSchema).min(1, 'must contain at least one message'),
  stream: z.boolean().nullable().optional(),
  stream_options: z
    .strictObject({ include_usage: z.boolean().nullable().optional(), include_obfuscation: z.boolean().nullable().optional() })
    .nullable()
    .optional(),
  max_tokens: nullableNumber(z.number().int().min(1)),
  max_completion_tokens: nullableNumber(z.number().int().min(1)),
  temperature: nullableNumber(z.number().min(0).max(2)),
  top_p: nullableNumber(z.number().min(0).max(1)),
  top_k: nullableNumber(z.number().int().min(0)),
  min_p: nullableNumber(z.number().min(0).max(1)),
  seed: nullableNumber(z.number().int()),
  stop: z.union([z.string(), z.array(z.string()).max(4, 'at most 4 stop sequences')]).nullable().optional(),
  presence_penalty: nullableNumber(z.number().min(-2).max(2)),
  frequency_penalty: nullableNumber(z.number().min(-2).max(2)),
  repetition_penalty: nullableNumber(z.number().gt(0).max(10)),
  /** llama-server's name for `repetition_penalty`, taken as it: an Iris serving a remote engine sends both names upstream. */
  repeat_penalty: nullableNumber(z.number().gt(0).max(10)),
  /** Extension (as in vLLM): keep generating past end-of-sequence until max_tokens; for benchmarks. */
  ignore_eos: z.boolean().nullable().optional(),
  /** Extension: the most prompt tokens the request's images may cost together; Iris lowers their resolution to fit. */
  max_image_tokens: nullableNumber(z.number().int().min(1)),
  n: nullableNumber(z.number().int().min(1)),
  logprobs: z.boolean().nullable().optional(),
  top_logprobs: nullableNumber(z.number().int().min(0).max(20)),
  logit_bias: z
    .record(z.string().regex(/^\d+$/, 'keys must be token ids'), z.number().min(-100).max(100))
    .nullable()
    .optional(),
  tools: z.array(toolSchema).nullable().optional(),
  tool_choice: toolChoiceSchema.nullable().optional(),
  parallel_tool_calls: z.boolean().nullable().optional(),
  response_format: responseFormatSchema.nullable().optional(),
  // Accepted without effect: they change nothing about the answer.
  user: z.string().nullable().optional(),
  metadata: metadataSchema.nullable().optional(),
  store: z.boolean().nullable().optional(),
  service_tier: z.string().nullable().optional(),
  prompt_cache_key: z.string().nullable().optional(),
  prompt_cache_retention: z.string().nullable().optional(),
  prompt_cache_options: z.unknown().optional(),
  safety_identifier: z.string().nullable().optional(),
  // Text is the only output modality: asking for it is fine, anything else is refused in parseChatRequest.
  modalities: z.array(z.string()).nullable().optional(),
  audio: refusedField,
  prediction: refusedField,
  web_search_options: refusedField,
  functions: refusedField,
  function_call: refusedField,
  reasoning_effort: refusedField,
  verbosity: refusedField,
  moderation: refusedField,
});

/** A parsed chat request. */
export type ChatRequest = z.output<typeof chatRequestSchema>;
/** One parsed message. */
export type ChatMessage = ChatRequest['messages'][number];
/** One parsed user content part. */
export type UserContentPart = z.output<typeof userPartSchema>;

/** Limits of a chat request that come from configuration. */
export interface ChatRequestLimits {
  /** Largest `n`. */
  maxChoices: number;
}

/** Parses and validates a request body; throws a 400 IrisError naming the field on any mismatch. */
export function parseChatRequest(body: unknown, limits: ChatRequestLimits): ChatRequest {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) {
    throw invalidRequest('The request body must be a JSON object.', null, 'invalid_request');
  }
  const unknown = unknownField(body, chatRequestSchema);
  if (unknown !== undefined) throw unknownParameter(unknown);
  for (const [name, why] of Object.entries(REFUSED_PARAMETERS)) {
    if ((body as Record<string, unknown>)[name] != null) throw invalidRequest(`'${name}' is not supported: ${why}.`, name, 'unsupported_parameter');
  }
  const result = chatRequestSchema.safeParse(body);
  if (!result.success) throw zodToIrisError(result.error, body);
  const request = result.data;
  if (request.repeat_penalty != null) {
    if (request.repetition_penalty != null && request.repetition_penalty !== request.repeat_penalty) {
      throw invalidRequest("'repeat_penalty' (llama-server's name for 'repetition_penalty') differs from 'repetition_penalty'; send one of them.", 'repeat_penalty', 'invalid_value');
    }
    request.repetition_penalty = request.repeat_penalty;
  }
  if (request.modalities != null && request.modalities.some((modality) => modality !== 'text')) {
    throw invalidRequest("'modalities' is not supported beyond [\"text\"]: only text output is supported.", 'modalities', 'unsupported_parameter');
  }
  if (request.n != null && request.n > limits.maxChoices) {
    throw invalidRequest(`Invalid value for 'n': at most ${limits.maxChoices} choices per request.`, 'n', 'invalid_value');
  }
  if (request.top_logprobs != null && request.logprobs !== true) {
    throw invalidRequest("'top_logprobs' needs 'logprobs' set to true.", 'top_logprobs', 'invalid_value');
  }
  const toolNames = new Set((request.tools ?? []).map((tool) => tool.function.name));
  const choice = request.tool_choice;
  if (choice != null && choice !== 'none' && toolNames.size === 0) {
    throw invalidRequest("'tool_choice' needs 'tools'.", 'tool_choice', 'invalid_value');
  }
  if (typeof choice === 'object' && choice !== null && !toolNames.has(choice.function.name)) {
    throw invalidRequest(`'tool_choice' names the function '${choice.function.name}', which is not in 'tools'.`, 'tool_choice.function.name', 'invalid_value');
  }
  if (request.parallel_tool_calls != null && toolNames.size === 0) {
    throw invalidRequest("'parallel_tool_calls' needs 'tools'.", 'parallel_tool_calls', 'invalid_value');
  }
  return request;
}

/**
 * The first top-level field of `body` that `schema` does not define, if any. Checked before the schema
 * parses, so a typo (`max_token`) is named as such rather than reported as some other field's problem.
 */
export function unknownField(body: object, schema: z.ZodObject): string | undefined {
  return Object.keys(body).find((name) => !Object.hasOwn(schema.shape, name));
}

/** Formats a zod path as OpenAI does: `messages[0].content[1].image_url.detail`. */
export function formatParamPath(path: readonly PropertyKey[]): string | null {
  let out = '';
  for (const key of path) {
    if (typeof key === 'number') out += `[${key}]`;
    else out += out === '' ? String(key) : `.${String(key)}`;
  }
  return out === '' ? null : out;
}

/** Turns the first zod issue into a 400 that names the field and says what was wrong. */
export function zodToIrisError(error: z.ZodError, input: unknown): IrisError {
  const issue = pickIssue(error.issues);
  if (issue === undefined) return invalidRequest('Invalid request.');
  const param = formatParamPath(issue.path);
  const missing = issue.code === 'invalid_type' && valueAt(input, issue.path) === undefined;
  if (missing && param !== null) {
    return invalidRequest(`Missing required parameter: '${param}'.`, param, 'missing_required_parameter');
  }
  if (issue.code === 'unrecognized_keys') {
    const key = issue.keys[0] ?? '';
    return unknownParameter(param === null ? key : `${param}.${key}`);
  }
  const message = param === null ? issue.message : `Invalid value for '${param}': ${issue.message}.`;
  return invalidRequest(message.replace(/\.\.$/, '.'), param, 'invalid_value');
}

/**
 * Prefers the deepest issue: it names the most precise field. A union that failed as a whole (content is
 * "a string or an array of parts") is looked into, so a bad part is reported as that part, not as the union.
 */
function pickIssue(issues: readonly z.core.$ZodIssue[], prefix: readonly PropertyKey[] = []): z.core.$ZodIssue | undefined {
  let best: z.core.$ZodIssue | undefined;
  for (const issue of issues) {
    let candidate: z.core.$ZodIssue = { ...issue, path: [...prefix, ...issue.path] } as z.core.$ZodIssue;
    if (issue.code === 'invalid_union' && issue.errors.length > 0) {
      const inner = pickIssue(issue.errors.flat(), candidate.path);
      if (inner && inner.path.length > candidate.path.length) candidate = inner;
    }
    if (best === undefined || candidate.path.length > best.path.length) best = candidate;
  }
  return best;
}

function valueAt(input: unknown, path: readonly PropertyKey[]): unknown {
  let current: unknown = input;
  for (const key of path) {
    if (current === null || typeof current !== 'object') return undefined;
    current = (current as Record<PropertyKey, unknown>)[key];
  }
  return current;
}

/** An output format written flat, as the Responses API's `text.format` and the engine spec write it. */
export type FlatResponseFormat =
  | { type: 'text' | 'json_object' }
  | { type: 'json_schema'; name: string; schema: Record<string, unknown>; strict?: boolean | null | undefined; description?: string | null | undefined };

/** A flat output format as chat's `response_format` (`json_schema` nested under its own key). */
export function toChatResponseFormat(format: FlatResponseFormat): NonNullable<ChatRequest['response_format']> {
  if (format.type !== 'json_schema') return { type: format.type };
  return {
    type: 'json_schema',
    json_schema: {
      name: format.name,
      schema: format.schema,
      ...(format.strict == null ? {} : { strict: format.strict }),
      ...(format.description == null ? {} : { description: format.description }),
    },
  };
}
