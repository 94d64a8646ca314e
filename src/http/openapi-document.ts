/**
 * The OpenAPI 3.1 document served at GET /openapi.json. Request bodies are generated with zod 4's
 * `z.toJSONSchema` from the very schemas the routes validate with (protocol/chat-request.ts, and the
 * dialects' request schemas for the Responses and Anthropic Messages APIs), so the document cannot drift
 * from what Iris accepts. Response shapes are declared here in zod as well, for the document only.
 *
 * Everything Iris adds to OpenAI's API (endpoints, request fields, response fields) carries
 * `x-iris-extension: true`; a client that only speaks OpenAI's API can ignore those.
 */
import { z } from 'zod';
import { countTokensRequestSchema, messagesRequestSchema, toolSchema as anthropicToolSchema } from '../dialects/anthropic/messages-request.js';
import { functionToolSchema, responsesRequestSchema } from '../dialects/responses/responses-request.js';
import { chatRequestSchema } from '../protocol/chat-request.js';

/** The marker on every Iris extension in the document. */
export const EXTENSION_MARKER = 'x-iris-extension';

const extension = { [EXTENSION_MARKER]: true } as const;

/**
 * Request fields of a chat completion that are Iris (or vLLM/llama.cpp) extensions, not OpenAI's. They are
 * marked in the generated schema; a unit test checks each still exists there.
 */
export const CHAT_REQUEST_EXTENSIONS: Readonly<Record<string, string>> = {
  top_k: 'Sample from the k most likely tokens only (0: off).',
  min_p: 'Drop tokens less likely than min_p times the most likely one.',
  repetition_penalty: 'Penalise repeated tokens (1: off).',
  repeat_penalty: "llama-server's name for repetition_penalty; taken as it.",
  ignore_eos: 'Keep generating past end-of-sequence until the token limit (as in vLLM); for benchmarks.',
  max_image_tokens: "Cap on the request's image tokens: Iris lowers image resolution within the model's policy to fit, or answers 400.",
};

const usageSchema = z.object({
  prompt_tokens: z.number().int(),
  completion_tokens: z.number().int(),
  total_tokens: z.number().int(),
  prompt_tokens_details: z.object({
    cached_tokens: z.number().int(),
    image_tokens: z.number().int().optional().meta({ ...extension, description: 'Prompt tokens of the images, when the projector is modelled.' }),
  }),
});

const finishReasonSchema = z.enum(['stop', 'length', 'content_filter', 'tool_calls']);

const topLogprobSchema = z.object({ token: z.string(), logprob: z.number(), bytes: z.array(z.number().int()).nullable() });
const logprobsSchema = z
  .object({
    content: z.array(topLogprobSchema.extend({ top_logprobs: z.array(topLogprobSchema) })).nullable(),
    refusal: z.array(topLogprobSchema.extend({ top_logprobs: z.array(topLogprobSchema) })).nullable(),
  })
  .nullable();

const toolCallSchema = z.object({
  id: z.string(),
  type: z.literal('function'),
  function: z.object({ name: z.string(), arguments: z.string() }),
});

const toolCallDeltaSchema = z.object({
  index: z.number().int(),
  id: z.string().optional(),
  type: z.literal('function').optional(),
  function: z.object({ name: z.string().optional(), arguments: z.string().optional() }).optional(),
});

/** Extension `images`: what became of each image of the request (responses, first stream chunk, tokenize). */
const imageReportsSchema = z
  .array(
    z.object({
      source: z.enum(['data', 'url']),
      format: z.string(),
      original_width: z.number().int(),
      original_height: z.number().int(),
      width: z.number().int(),
      height: z.number().int(),
      detail: z.enum(['low', 'high', 'auto']),
      tokens: z.number().int().nullable(),
    }),
  )
  .meta({ ...extension, description: 'Per image, in request order: its source, original size and format, the size it was sent to the model at, its detail and its tokens.' });

/** The fields every completion and chunk of one answer share. */
const completionIdentity = (object: 'chat.completion' | 'chat.completion.chunk') => ({
  id: z.string(),
  object: z.literal(object),
  created: z.number().int(),
  model: z.string(),
  system_fingerprint: z.string(),
});

const chatCompletionSchema = z.object({
  ...completionIdentity('chat.completion'),
  choices: z.array(z.object({
    index: z.number().int(),
    message: z.object({
      role: z.literal('assistant'),
      content: z.string().nullable(),
      refusal: z.string().nullable(),
      tool_calls: z.array(toolCallSchema).optional(),
    }),
    logprobs: logprobsSchema,
    finish_reason: finishReasonSchema,
  })),
  usage: usageSchema,
  images: imageReportsSchema.optional(),
});

const chatCompletionChunkSchema = z.object({
  ...completionIdentity('chat.completion.chunk'),
  choices: z.array(z.object({
    index: z.number().int(),
    delta: z.object({
      role: z.literal('assistant').optional(),
      content: z.string().optional(),
      refusal: z.string().nullable().optional(),
      tool_calls: z.array(toolCallDeltaSchema).optional(),
    }),
    logprobs: logprobsSchema,
    finish_reason: finishReasonSchema.nullable(),
  })),
  usage: usageSchema.nullable().optional(),
  images: imageReportsSchema.optional(),
});

const modelSchema = z.object({
  id: z.string(),
  object: z.literal('model'),
  created: z.number().int(),
  owned_by: z.string(),
  input_modalities: z.array(z.enum(['text', 'image'])).meta({ ...extension, description: 'What the model accepts.' }),
  loaded: z.boolean().meta({ ...extension, description: 'Whether the model is loaded and serving now.' }),
  state: z.string().meta({ ...extension, description: 'Lifecycle state (unloaded, loading, loaded, ...).' }),
  context_length: z.number().int().meta({ ...extension, description: 'Context size in tokens.' }),
  memory_bytes: z.number().int().nullable().meta({ ...extension, description: 'Estimated resident memory when loaded, once known.' }),
});

const modelListSchema = z.object({ object: z.literal('list'), data: z.array(modelSchema) });

const tokenizeResponseSchema = z.object({
  prompt_tokens: z.number().int().meta({ description: 'Prompt tokens, chat template and images included, as a completion would report them.' }),
  image_tokens: z.array(z.number().int().nullable()).meta({ description: 'Tokens of each image in request order; null where not modelled.' }),
  images: imageReportsSchema,
}).loose();

const errorSchema = z.object({
  error: z.object({
    message: z.string(),
    type: z.string(),
    param: z.string().nullable(),
    code: z.string().nullable(),
  }),
});

const healthSchema = z.object({ status: z.string() }).loose();

/** Iris's extension fields of the dialects' requests (as in vLLM), marked in their generated schemas. */
const DIALECT_REQUEST_EXTENSIONS: Readonly<Record<string, string>> = {
  seed: 'Sampling seed, for reproducible answers (as in chat completions).',
  logit_bias: 'Added to the logits of token ids (keys are token ids), -100..100, as in chat completions.',
};

const responseStatusSchema = z.enum(['in_progress', 'completed', 'incomplete', 'failed']);

const responseOutputItemSchema = z.discriminatedUnion('type', [
  z.object({
    type: z.literal('message'),
    id: z.string(),
    status: responseStatusSchema.exclude(['failed']),
    role: z.literal('assistant'),
    content: z.array(z.object({ type: z.literal('output_text'), text: z.string(), annotations: z.array(z.never()), logprobs: z.array(z.never()) })),
  }),
  z.object({
    type: z.literal('function_call'),
    id: z.string(),
    call_id: z.string(),
    name: z.string(),
    arguments: z.string(),
    status: responseStatusSchema.exclude(['failed']),
  }),
]);

/** The Responses API's response object (OpenAI's `Response`), as Iris fills it. */
const responseObjectSchema = z.object({
  id: z.string().meta({ description: '`resp_` and 48 hex digits.' }),
  object: z.literal('response'),
  created_at: z.number().int(),
  status: responseStatusSchema,
  completed_at: z.number().int().nullable(),
  error: z.object({ code: z.string(), message: z.string() }).nullable(),
  incomplete_details: z.object({ reason: z.literal('max_output_tokens') }).nullable(),
  instructions: z.string().nullable(),
  max_output_tokens: z.number().int().nullable(),
  model: z.string(),
  output: z.array(responseOutputItemSchema),
  parallel_tool_calls: z.boolean(),
  previous_response_id: z.string().nullable(),
  reasoning: z.object({ effort: z.null(), summary: z.null() }),
  store: z.boolean(),
  temperature: z.number().nullable(),
  text: z.object({ format: z.object({ type: z.enum(['text', 'json_object', 'json_schema']) }).loose() }),
  tool_choice: z.union([z.enum(['none', 'auto', 'required']), z.object({ type: z.literal('function'), name: z.string() })]),
  tools: z.array(z.object({ type: z.literal('function'), name: z.string(), description: z.string().nullable(), parameters: z.record(z.string(), z.unknown()).nullable(), strict: z.boolean().nullable() })),
  top_p: z.number().nullable(),
  truncation: z.literal('disabled'),
  usage: z
    .object({
      input_tokens: z.number().int(),
      input_tokens_details: z.object({
        cached_tokens: z.number().int(),
        cache_write_tokens: z.number().int(),
        image_tokens: z.number().int().optional().meta({ ...extension, description: 'Input tokens of the images, when the projector is modelled.' }),
      }),
      output_tokens: z.number().int(),
      output_tokens_details: z.object({ reasoning_tokens: z.number().int() }),
      total_tokens: z.number().int(),
    })
    .optional()
    .meta({ description: 'Absent until the response is finished.' }),
  user: z.string().optional(),
  metadata: z.record(z.string(), z.string()),
  background: z.boolean(),
  service_tier: z.string(),
});

const responseStreamEventSchema = z
  .object({ type: z.string(), sequence_number: z.number().int() })
  .loose()
  .meta({ description: "One event of a streamed response (OpenAI's `ResponseStreamEvent`), sent as `event: <type>` and `data: <event>`." });

const responseDeletedSchema = z.object({ id: z.string(), object: z.literal('response'), deleted: z.literal(true) });

const inputContentPartSchema = z.discriminatedUnion('type', [
  z.object({ type: z.literal('input_text'), text: z.string() }),
  z.object({ type: z.literal('input_image'), image_url: z.string().nullable(), detail: z.enum(['low', 'high', 'auto']) }),
]);

/** One input item of a stored response, with its id (OpenAI's `ItemResource` kinds Iris takes as input). */
const inputItemResourceSchema = z.union([
  z.object({
    type: z.literal('message'),
    id: z.string(),
    role: z.enum(['user', 'system', 'developer']),
    status: z.literal('completed'),
    content: z.array(inputContentPartSchema),
  }),
  z.object({
    type: z.literal('message'),
    id: z.string(),
    role: z.literal('assistant'),
    status: z.literal('completed'),
    content: z.array(
      z.discriminatedUnion('type', [
        z.object({ type: z.literal('output_text'), text: z.string(), annotations: z.array(z.never()), logprobs: z.array(z.never()) }),
        z.object({ type: z.literal('refusal'), refusal: z.string() }),
      ]),
    ),
  }),
  z.object({ type: z.literal('function_call'), id: z.string(), call_id: z.string(), name: z.string(), arguments: z.string(), status: z.literal('completed') }),
  z.object({
    type: z.literal('function_call_output'),
    id: z.string(),
    call_id: z.string(),
    output: z.union([z.string(), z.array(inputContentPartSchema)]),
    status: z.literal('completed'),
  }),
]);

/** A page of a stored response's input items (OpenAI's `ResponseItemList`). */
const responseItemListSchema = z.object({
  object: z.literal('list'),
  data: z.array(inputItemResourceSchema),
  first_id: z.string().meta({ description: 'The id of the first item of the page; an empty string on an empty page.' }),
  last_id: z.string().meta({ description: 'The id of the last item of the page; an empty string on an empty page.' }),
  has_more: z.boolean(),
});

/** A message of the Anthropic Messages API, as Iris answers it. */
const anthropicMessageSchema = z.object({
  id: z.string().meta({ description: '`msg_` and 24 alphanumerics.' }),
  type: z.literal('message'),
  role: z.literal('assistant'),
  model: z.string(),
  content: z.array(
    z.discriminatedUnion('type', [
      z.object({ type: z.literal('text'), text: z.string() }),
      z.object({ type: z.literal('tool_use'), id: z.string(), name: z.string(), input: z.record(z.string(), z.unknown()) }),
    ]),
  ),
  stop_reason: z.enum(['end_turn', 'max_tokens', 'stop_sequence', 'tool_use']).nullable(),
  stop_sequence: z.string().nullable().meta({ description: 'The stop sequence that matched, with `stop_reason: "stop_sequence"`.' }),
  usage: z.object({
    input_tokens: z.number().int(),
    output_tokens: z.number().int(),
    cache_creation_input_tokens: z.number().int(),
    cache_read_input_tokens: z.number().int(),
    image_tokens: z.number().int().optional().meta({ ...extension, description: 'Input tokens of the images, when the projector is modelled.' }),
  }),
});

const anthropicStreamEventSchema = z
  .object({ type: z.string() })
  .loose()
  .meta({ description: 'One event of a streamed message, sent as `event: <type>` and `data: <event>`.' });

const anthropicCountSchema = z.object({ input_tokens: z.number().int() });

const anthropicErrorSchema = z.object({
  type: z.literal('error'),
  error: z.object({ type: z.string(), message: z.string() }),
  request_id: z.string(),
});

type JsonObject = Record<string, unknown>;

/** JSON Schema 2020-12 (OpenAPI 3.1's dialect) of what a client may send, without the `$schema` line. */
function toSchema(schema: z.ZodType, io: 'input' | 'output'): JsonObject {
  const { $schema: _dialect, ...rest } = z.toJSONSchema(schema, { io, target: 'draft-2020-12', unrepresentable: 'any' }) as JsonObject;
  return rest;
}

/** `schema` with the named top-level properties marked as Iris extensions. */
function markExtensions(schema: JsonObject, extensions: Readonly<Record<string, string>>): JsonObject {
  const properties = schema['properties'] as Record<string, JsonObject>;
  for (const [name, description] of Object.entries(extensions)) {
    const property = properties[name];
    if (property) properties[name] = { ...property, ...extension, description };
  }
  return schema;
}

/**
 * A dialect's request schema, its extension fields marked and `tools` items described by `tool` (the
 * schema is loose there because hosted or server tools are refused by name in code, with a 400).
 */
function dialectRequestJsonSchema(schema: z.ZodType, tool: z.ZodType): JsonObject {
  const json = markExtensions(toSchema(schema, 'input'), DIALECT_REQUEST_EXTENSIONS);
  const properties = json['properties'] as Record<string, JsonObject>;
  if (properties['tools']) properties['tools'] = { anyOf: [{ type: 'array', items: toSchema(tool, 'input') }, { type: 'null' }] };
  return json;
}

/**
 * The Responses request: `input` is required (checked in code, to name it in the error), and an input
 * message may leave out `type` (the "easy" message), as Iris accepts.
 */
function responsesRequestJsonSchema(): JsonObject {
  const json = dialectRequestJsonSchema(responsesRequestSchema, functionToolSchema);
  json['required'] = [...new Set([...((json['required'] as string[] | undefined) ?? []), 'input'])];
  const input = (json['properties'] as Record<string, { anyOf: JsonObject[] }>)['input']!;
  for (const variant of input.anyOf) {
    const items = variant['items'] as { oneOf?: JsonObject[] } | undefined;
    for (const item of items?.oneOf ?? []) {
      const type = (item['properties'] as Record<string, { const?: unknown }> | undefined)?.['type'];
      if (type?.const === 'message') item['required'] = (item['required'] as string[]).filter((name) => name !== 'type');
    }
  }
  return json;
}

/** The chat request schema with Iris's extension fields marked. */
function chatRequestJsonSchema(): JsonObject {
  return markExtensions(toSchema(chatRequestSchema, 'input'), CHAT_REQUEST_EXTENSIONS);
}

const ref = (name: string) => ({ $ref: `#/components/schemas/${name}` });
const json = (name: string) => ({ 'application/json': { schema: ref(name) } });
const errorResponses = (statuses: Record<string, string>) =>
  Object.fromEntries(Object.entries(statuses).map(([status, description]) => [status, { description, content: json('Error') }]));
const apiErrors = errorResponses({
  '400': 'Invalid request; `param` names the field.',
  '401': 'Missing or wrong API key.',
  '404': 'Unknown model.',
  '413': 'Body or image over a limit.',
  '429': "The model's queue is full.",
  '503': 'The model cannot serve now (loading, restarting, out of memory budget).',
});

function chatOperation(operationId: string, alias: boolean): JsonObject {
  return {
    operationId,
    summary: alias ? 'Chat completion (alias of /v1/openai/chat/completions)' : 'Chat completion with images',
    description:
      'OpenAI-compatible chat completion. User messages may carry `image_url` parts (data URIs or http(s) URLs). ' +
      'With `stream: true` the answer is a `text/event-stream` of `data: <chunk>` lines ending with `data: [DONE]`; ' +
      'an error after the first chunk arrives as `data: {"error":{...}}`.',
    tags: ['chat'],
    requestBody: { required: true, content: json('ChatCompletionRequest') },
    responses: {
      '200': {
        description: 'The completion, or its chunks when streaming.',
        content: {
          'application/json': { schema: ref('ChatCompletion') },
          'text/event-stream': { schema: ref('ChatCompletionChunk') },
        },
      },
      ...apiErrors,
    },
  };
}

function tokenizeOperation(operationId: string, alias: boolean): JsonObject {
  return {
    operationId,
    ...extension,
    summary: alias ? 'Count prompt tokens (alias of /v1/openai/tokenize)' : 'Count prompt tokens without generating',
    description:
      "Takes the body of a chat completion and answers its prompt's token count from the model's own tokenizer, " +
      'chat template and image preprocessing, as `usage.prompt_tokens` of the completion would report it.',
    tags: ['chat'],
    requestBody: { required: true, content: json('ChatCompletionRequest') },
    responses: { '200': { description: 'Token counts.', content: json('TokenizeResponse') }, ...apiErrors },
  };
}

function modelsOperations(prefix: string, alias: boolean): Record<string, JsonObject> {
  const note = alias ? ` (alias of /v1/openai/models)` : '';
  return {
    [`${prefix}/models`]: {
      get: {
        operationId: alias ? 'listModelsAlias' : 'listModels',
        summary: `List models${note}`,
        tags: ['models'],
        responses: { '200': { description: 'Every model served, loaded or not.', content: json('ModelList') }, ...errorResponses({ '401': 'Missing or wrong API key.' }) },
      },
    },
    [`${prefix}/models/{model}`]: {
      get: {
        operationId: alias ? 'retrieveModelAlias' : 'retrieveModel',
        summary: `One model${note}`,
        tags: ['models'],
        parameters: [{ name: 'model', in: 'path', required: true, schema: { type: 'string' }, description: 'Model id (may contain slashes).' }],
        responses: { '200': { description: 'The model.', content: json('Model') }, ...errorResponses({ '401': 'Missing or wrong API key.', '404': 'Unknown model.' }) },
      },
    },
  };
}

/** The Responses API under one prefix: create; read and delete a stored response, and list its input items. */
function responsesOperations(prefix: string, alias: boolean): Record<string, JsonObject> {
  const suffix = alias ? 'Alias' : '';
  const note = alias ? ' (alias of /v1/openai/responses)' : '';
  const id = [{ name: 'id', in: 'path', required: true, schema: { type: 'string' }, description: 'The response id (`resp_…`).' }];
  const notFound = errorResponses({ '401': 'Missing or wrong API key.', '404': 'No stored response with this id for this API key.' });
  return {
    [`${prefix}/responses`]: {
      post: {
        operationId: `createResponse${suffix}`,
        summary: `Create a response${note}`,
        description:
          "OpenAI's Responses API, run on the same pipeline as chat completions (images, tools, structured output). " +
          'With `stream: true` the answer is a `text/event-stream` of named events (`response.created` … ' +
          '`response.completed`), each with a `sequence_number`; a failure after the first event ends it with ' +
          '`response.failed` and an `error` event. `store` (default true) keeps the response for `previous_response_id` ' +
          'and GET/DELETE, visible only to the API key that created it.',
        tags: ['responses'],
        requestBody: { required: true, content: json('CreateResponseRequest') },
        responses: {
          '200': {
            description: 'The response, or its events when streaming.',
            content: { 'application/json': { schema: ref('Response') }, 'text/event-stream': { schema: ref('ResponseStreamEvent') } },
          },
          ...apiErrors,
        },
      },
    },
    [`${prefix}/responses/{id}`]: {
      get: {
        operationId: `retrieveResponse${suffix}`,
        summary: `A stored response${note}`,
        tags: ['responses'],
        parameters: id,
        responses: { '200': { description: 'The response.', content: json('Response') }, ...notFound },
      },
      delete: {
        operationId: `deleteResponse${suffix}`,
        summary: `Delete a stored response${note}`,
        tags: ['responses'],
        parameters: id,
        responses: { '200': { description: 'Deleted.', content: json('ResponseDeleted') }, ...notFound },
      },
    },
    [`${prefix}/responses/{id}/input_items`]: {
      get: {
        operationId: `listInputItems${suffix}`,
        summary: `The input items of a stored response${note}`,
        description:
          "The stored request's own `input` (not that of the responses it continued), each item with an id. Any " +
          'other query parameter (`include`, `before`) is refused with a 400 naming it.',
        tags: ['responses'],
        parameters: [
          ...id,
          { name: 'limit', in: 'query', required: false, schema: { type: 'integer', minimum: 1, maximum: 100, default: 20 }, description: 'Items per page.' },
          {
            name: 'order',
            in: 'query',
            required: false,
            schema: { type: 'string', enum: ['asc', 'desc'], default: 'desc' },
            description: '`asc`: in input order; `desc`: the last input item first.',
          },
          { name: 'after', in: 'query', required: false, schema: { type: 'string' }, description: 'An item id: the items after it, in the order asked for.' },
        ],
        responses: {
          '200': { description: 'One page of input items.', content: json('ResponseItemList') },
          ...errorResponses({
            '400': 'A bad `limit`, `order` or `after`, or an unsupported query parameter; `param` names it.',
            '401': 'Missing or wrong API key.',
            '404': 'No stored response with this id for this API key.',
          }),
        },
      },
    },
  };
}

/** Anthropic's status codes and error shape. */
const anthropicErrors = Object.fromEntries(
  Object.entries({
    '400': 'Invalid request (`invalid_request_error`); the message names the field.',
    '401': 'Missing or wrong API key (`authentication_error`).',
    '404': 'Unknown model (`not_found_error`).',
    '413': 'Body or image over a limit (`request_too_large`).',
    '429': "The model's queue is full (`rate_limit_error`).",
    '500': 'Server error (`api_error`).',
    '529': 'The model cannot serve now: loading, restarting, overloaded (`overloaded_error`).',
  }).map(([status, description]) => [status, { description, content: json('AnthropicError') }]),
);

/** The Anthropic Messages API under one prefix. */
function anthropicOperations(prefix: string, alias: boolean): Record<string, JsonObject> {
  const suffix = alias ? 'Alias' : '';
  const note = alias ? ' (alias of /v1/messages, for a base URL of <iris>/v1/anthropic)' : '';
  const common = { ...extension, tags: ['anthropic'], security: [{ bearerAuth: [] }, { anthropicApiKey: [] }] };
  return {
    [`${prefix}/messages`]: {
      post: {
        ...common,
        operationId: `createMessage${suffix}`,
        summary: `Create a message (Anthropic Messages API)${note}`,
        description:
          "Anthropic's Messages API, run on the same pipeline as chat completions (images, tools, structured output " +
          'through `output_config.format`). Errors have ' +
          "Anthropic's shape and status codes. With `stream: true` the answer is a `text/event-stream` of named " +
          'events (`message_start`, `ping`, `content_block_start`, `content_block_delta`, `content_block_stop`, ' +
          '`message_delta`, `message_stop`); a failure after the first event ends it with an `error` event.',
        requestBody: { required: true, content: json('CreateMessageRequest') },
        responses: {
          '200': {
            description: 'The message, or its events when streaming.',
            content: { 'application/json': { schema: ref('AnthropicMessage') }, 'text/event-stream': { schema: ref('AnthropicStreamEvent') } },
          },
          ...anthropicErrors,
        },
      },
    },
    [`${prefix}/messages/count_tokens`]: {
      post: {
        ...common,
        operationId: `countMessageTokens${suffix}`,
        summary: `Count a message's input tokens without generating${note}`,
        description: "The input tokens the message would cost (chat template, tools and images included), from the model's own tokenizer.",
        requestBody: { required: true, content: json('CountMessageTokensRequest') },
        responses: { '200': { description: 'The count.', content: json('MessageTokenCount') }, ...anthropicErrors },
      },
    },
  };
}

function publicGet(operationId: string, summary: string, responses: JsonObject): JsonObject {
  return { get: { operationId, summary, ...extension, tags: ['server'], security: [], responses } };
}

/** Builds the OpenAPI 3.1 document. */
export function buildOpenApiDocument(version: string): JsonObject {
  return {
    openapi: '3.1.0',
    info: {
      title: 'Iris',
      version,
      description:
        'A self-hosted vision-language model server with an OpenAI-compatible API. Fields, endpoints and ' +
        `response properties marked \`${EXTENSION_MARKER}: true\` are Iris's additions to OpenAI's API.`,
      license: { name: 'MIT', identifier: 'MIT' },
    },
    jsonSchemaDialect: 'https://json-schema.org/draft/2020-12/schema',
    servers: [{ url: '/', description: 'This server' }],
    security: [{ bearerAuth: [] }],
    tags: [
      { name: 'chat', description: 'Chat completions with images' },
      { name: 'responses', description: "OpenAI's Responses API, on the chat pipeline" },
      { name: 'anthropic', description: "Anthropic's Messages API, on the chat pipeline" },
      { name: 'models', description: 'Models served' },
      { name: 'server', description: 'Health and this document' },
    ],
    paths: {
      '/v1/openai/chat/completions': { post: chatOperation('createChatCompletion', false) },
      '/v1/chat/completions': { post: chatOperation('createChatCompletionAlias', true) },
      '/v1/openai/tokenize': { post: tokenizeOperation('tokenize', false) },
      '/v1/tokenize': { post: tokenizeOperation('tokenizeAlias', true) },
      ...responsesOperations('/v1/openai', false),
      ...responsesOperations('/v1', true),
      ...anthropicOperations('/v1', false),
      ...anthropicOperations('/v1/anthropic/v1', true),
      ...modelsOperations('/v1/openai', false),
      ...modelsOperations('/v1', true),
      '/health': publicGet('health', 'The process is up', { '200': { description: 'Up.', content: json('Health') } }),
      '/ready': publicGet('ready', 'The preloaded models can serve', {
        '200': { description: 'Ready.', content: json('Health') },
        '503': { description: 'Still starting.', content: json('Health') },
      }),
      '/openapi.json': publicGet('openApiDocument', 'This document', { '200': { description: 'OpenAPI 3.1 document.', content: { 'application/json': { schema: { type: 'object' } } } } }),
    },
    components: {
      securitySchemes: {
        bearerAuth: { type: 'http', scheme: 'bearer', description: 'An API key given to `iris serve` (`--api-key`); not needed when the server has none.' },
        anthropicApiKey: { type: 'apiKey', in: 'header', name: 'x-api-key', description: 'The same API keys, as Anthropic clients send them (Anthropic Messages API only).' },
      },
      schemas: {
        ChatCompletionRequest: chatRequestJsonSchema(),
        ChatCompletion: toSchema(chatCompletionSchema, 'output'),
        ChatCompletionChunk: toSchema(chatCompletionChunkSchema, 'output'),
        TokenizeResponse: { ...toSchema(tokenizeResponseSchema, 'output'), ...extension },
        CreateResponseRequest: responsesRequestJsonSchema(),
        Response: toSchema(responseObjectSchema, 'output'),
        ResponseStreamEvent: toSchema(responseStreamEventSchema, 'output'),
        ResponseDeleted: toSchema(responseDeletedSchema, 'output'),
        ResponseItemList: toSchema(responseItemListSchema, 'output'),
        CreateMessageRequest: { ...dialectRequestJsonSchema(messagesRequestSchema, anthropicToolSchema), ...extension },
        CountMessageTokensRequest: { ...dialectRequestJsonSchema(countTokensRequestSchema, anthropicToolSchema), ...extension },
        AnthropicMessage: { ...toSchema(anthropicMessageSchema, 'output'), ...extension },
        AnthropicStreamEvent: { ...toSchema(anthropicStreamEventSchema, 'output'), ...extension },
        MessageTokenCount: { ...toSchema(anthropicCountSchema, 'output'), ...extension },
        AnthropicError: { ...toSchema(anthropicErrorSchema, 'output'), ...extension },
        Model: toSchema(modelSchema, 'output'),
        ModelList: toSchema(modelListSchema, 'output'),
        Error: toSchema(errorSchema, 'output'),
        Health: toSchema(healthSchema, 'output'),
      },
    },
  };
}
