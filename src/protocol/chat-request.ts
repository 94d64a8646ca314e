/**
 * The OpenAI chat-completions request, as zod schemas. Parsing turns any mismatch into a 400
 * {@link IrisError} whose `param` names the exact field (`messages[0].content[1].image_url.detail`).
 *
 * Unknown top-level fields are ignored (clients and SDKs send extras such as `user` or `metadata`);
 * known fields that Iris cannot honour yet (`n` > 1, `logprobs`, `tools`) are rejected by name rather than
 * silently ignored, so a caller never gets an answer to a question it did not ask.
 */
import { z } from 'zod';
import { invalidRequest, type IrisError } from '../errors.js';

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

const assistantMessageSchema = z.looseObject({
  role: z.literal('assistant'),
  content: z.union([z.string(), z.array(textPartSchema), z.null()]).optional(),
  name: z.string().optional(),
  refusal: z.string().nullable().optional(),
});

const messageSchema = z.discriminatedUnion('role', [systemMessageSchema, userMessageSchema, assistantMessageSchema], {
  error: (issue) =>
    issue.code === 'invalid_union' ? "role must be one of 'system', 'developer', 'user', 'assistant'" : undefined,
});

const nullableNumber = (schema: z.ZodNumber) => schema.nullable().optional();

/** The request body of POST /v1/chat/completions, as Iris accepts it. */
export const chatRequestSchema = z.looseObject({
  model: z.string().min(1, 'must not be empty'),
  messages: z.array(messageSchema).min(1, 'must contain at least one message'),
  stream: z.boolean().nullable().optional(),
  stream_options: z.strictObject({ include_usage: z.boolean().optional() }).nullable().optional(),
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
  /** Extension (as in vLLM): keep generating past end-of-sequence until max_tokens; for benchmarks. */
  ignore_eos: z.boolean().nullable().optional(),
  n: nullableNumber(z.number().int().min(1)),
  logprobs: z.boolean().nullable().optional(),
  top_logprobs: z.number().int().nullable().optional(),
  tools: z.array(z.unknown()).nullable().optional(),
  user: z.string().optional(),
});

/** A parsed chat request. */
export type ChatRequest = z.output<typeof chatRequestSchema>;
/** One parsed message. */
export type ChatMessage = ChatRequest['messages'][number];
/** One parsed user content part. */
export type UserContentPart = z.output<typeof userPartSchema>;

/** Parses and validates a request body; throws a 400 IrisError naming the field on any mismatch. */
export function parseChatRequest(body: unknown): ChatRequest {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) {
    throw invalidRequest('The request body must be a JSON object.', null, 'invalid_request');
  }
  const result = chatRequestSchema.safeParse(body);
  if (!result.success) throw zodToIrisError(result.error, body);
  const request = result.data;
  if (request.n != null && request.n !== 1) {
    throw invalidRequest('Only n=1 is supported.', 'n', 'unsupported_parameter');
  }
  if (request.logprobs === true) {
    throw invalidRequest('logprobs is not supported.', 'logprobs', 'unsupported_parameter');
  }
  if (request.tools != null && request.tools.length > 0) {
    throw invalidRequest('Tool calling is not supported.', 'tools', 'unsupported_parameter');
  }
  return request;
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
    const where = param === null ? key : `${param}.${key}`;
    return invalidRequest(`Unrecognized parameter: '${where}'.`, where, 'invalid_request');
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
