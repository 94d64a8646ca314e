/**
 * The OpenAPI 3.1 document served at GET /openapi.json. Request bodies are generated with zod 4's
 * `z.toJSONSchema` from the very schemas the routes validate with (protocol/chat-request.ts), so the document
 * cannot drift from what Iris accepts. Response shapes are declared here in zod as well, for the document only.
 *
 * Everything Iris adds to OpenAI's API (endpoints, request fields, response fields) carries
 * `x-iris-extension: true`; a client that only speaks OpenAI's API can ignore those.
 */
import { z } from 'zod';
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

type JsonObject = Record<string, unknown>;

/** JSON Schema 2020-12 (OpenAPI 3.1's dialect) of what a client may send, without the `$schema` line. */
function toSchema(schema: z.ZodType, io: 'input' | 'output'): JsonObject {
  const { $schema: _dialect, ...rest } = z.toJSONSchema(schema, { io, target: 'draft-2020-12', unrepresentable: 'any' }) as JsonObject;
  return rest;
}

/** The chat request schema with Iris's extension fields marked. */
function chatRequestJsonSchema(): JsonObject {
  const schema = toSchema(chatRequestSchema, 'input');
  const properties = schema['properties'] as Record<string, JsonObject>;
  for (const [name, description] of Object.entries(CHAT_REQUEST_EXTENSIONS)) {
    const property = properties[name];
    if (property) properties[name] = { ...property, ...extension, description };
  }
  return schema;
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
      { name: 'models', description: 'Models served' },
      { name: 'server', description: 'Health and this document' },
    ],
    paths: {
      '/v1/openai/chat/completions': { post: chatOperation('createChatCompletion', false) },
      '/v1/chat/completions': { post: chatOperation('createChatCompletionAlias', true) },
      '/v1/openai/tokenize': { post: tokenizeOperation('tokenize', false) },
      '/v1/tokenize': { post: tokenizeOperation('tokenizeAlias', true) },
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
      },
      schemas: {
        ChatCompletionRequest: chatRequestJsonSchema(),
        ChatCompletion: toSchema(chatCompletionSchema, 'output'),
        ChatCompletionChunk: toSchema(chatCompletionChunkSchema, 'output'),
        TokenizeResponse: { ...toSchema(tokenizeResponseSchema, 'output'), ...extension },
        Model: toSchema(modelSchema, 'output'),
        ModelList: toSchema(modelListSchema, 'output'),
        Error: toSchema(errorSchema, 'output'),
        Health: toSchema(healthSchema, 'output'),
      },
    },
  };
}
