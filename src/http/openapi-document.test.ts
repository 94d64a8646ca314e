import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseMessagesRequest } from '../dialects/anthropic/messages-request.js';
import { buildMessage } from '../dialects/anthropic/messages-response.js';
import { parseResponsesRequest } from '../dialects/responses/responses-request.js';
import { finishedResponse, initialResponse, newResponseId, outputItems } from '../dialects/responses/responses-response.js';
import { listInputItems, toInputItems } from '../dialects/responses/stored-response.js';
import { chatRequestSchema } from '../protocol/chat-request.js';
import { assertValidOpenApi31, componentValidators } from '../../test/helpers/iris-openapi.js';
import { buildOpenApiDocument, CHAT_REQUEST_EXTENSIONS, EXTENSION_MARKER } from './openapi-document.js';

const document = buildOpenApiDocument('1.2.3') as unknown as {
  paths: Record<string, Record<string, Record<string, unknown>>>;
  components: { schemas: Record<string, { properties?: Record<string, Record<string, unknown>> }> };
};

test('the document is valid OpenAPI 3.1 and its schemas compile as JSON Schema 2020-12', async () => {
  await assertValidOpenApi31(document);
  const schema = componentValidators(document);
  for (const name of Object.keys(document.components.schemas)) assert.equal(typeof schema(name), 'function', name);
});

test("every extension field it marks is a field of the request schema, and OpenAI's own fields are not marked", () => {
  const request = document.components.schemas['ChatCompletionRequest']!.properties!;
  for (const name of Object.keys(CHAT_REQUEST_EXTENSIONS)) {
    assert.ok(name in chatRequestSchema.shape, `${name} is a request field`);
    assert.equal(request[name]?.[EXTENSION_MARKER], true, `${name} is marked`);
  }
  for (const name of ['model', 'messages', 'temperature', 'max_tokens', 'seed']) assert.equal(request[name]?.[EXTENSION_MARKER], undefined, name);
  assert.equal(document.paths['/v1/openai/tokenize']?.['post']?.[EXTENSION_MARKER], true);
  assert.equal(document.paths['/v1/openai/chat/completions']?.['post']?.[EXTENSION_MARKER], undefined);
});

test('the request schema agrees with the zod schema that validates requests', () => {
  const validate = componentValidators(document)('ChatCompletionRequest');
  const image = { type: 'image_url', image_url: { url: 'data:image/png;base64,AAAA', detail: 'low' } };
  const bodies: unknown[] = [
    { model: 'm', messages: [{ role: 'user', content: 'hi' }] },
    { model: 'm', messages: [{ role: 'system', content: 's' }, { role: 'user', content: [{ type: 'text', text: 'x' }, image] }], stream: true, stream_options: { include_usage: true }, max_tokens: 4, temperature: 0.5, seed: 3, top_k: 4, ignore_eos: true, user: 'u', metadata: { any: 1 } },
    { model: 'm', messages: [{ role: 'assistant', content: null }, { role: 'developer', content: [{ type: 'text', text: 'x' }] }] },
    { model: 'm', messages: [] },
    { model: '', messages: [{ role: 'user', content: 'hi' }] },
    { messages: [{ role: 'user', content: 'hi' }] },
    { model: 'm', messages: [{ role: 'tool', content: 'x' }] },
    { model: 'm', messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'x', detail: 'medium' } }] }] },
    { model: 'm', messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'x', extra: 1 } }] }] },
    { model: 'm', messages: [{ role: 'user', content: [] }] },
    { model: 'm', messages: [{ role: 'user', content: 'x' }], temperature: 3 },
    { model: 'm', messages: [{ role: 'user', content: 'x' }], max_tokens: 0 },
    { model: 'm', messages: [{ role: 'user', content: 'x' }], max_tokens: 1.5 },
    { model: 'm', messages: [{ role: 'user', content: 'x' }], stop: ['a', 'b', 'c', 'd', 'e'] },
    { model: 'm', messages: [{ role: 'user', content: 'x' }], stream_options: { include_usage: true, other: 1 } },
    { model: 'm', messages: [{ role: 'user', content: 'x' }], max_token: 4 },
    { model: 'm', messages: [{ role: 'user', content: 'x' }], audio: null, functions: null },
  ];
  for (const body of bodies) {
    assert.equal(validate(body), chatRequestSchema.safeParse(body).success, JSON.stringify(body));
  }
});

/** Whether a route's parser (its zod schema and the checks in code) takes `body`. */
function parses(parse: (body: unknown) => unknown, body: unknown): boolean {
  try {
    parse(body);
    return true;
  } catch {
    return false;
  }
}

test('the Responses and Anthropic Messages routes are described, and their request schemas agree with the parsers', () => {
  for (const path of ['/v1/responses', '/v1/openai/responses']) assert.ok(document.paths[path]?.['post'], path);
  for (const path of ['/v1/responses/{id}', '/v1/openai/responses/{id}']) {
    assert.ok(document.paths[path]?.['get'] && document.paths[path]?.['delete'], path);
  }
  for (const path of ['/v1/messages', '/v1/anthropic/v1/messages', '/v1/messages/count_tokens', '/v1/anthropic/v1/messages/count_tokens']) {
    assert.equal(document.paths[path]?.['post']?.[EXTENSION_MARKER], true, path);
  }
  const schema = componentValidators(document);
  const image = { type: 'input_image', image_url: 'data:image/png;base64,AAAA', detail: 'low' };
  const tool = { type: 'function', name: 'look', parameters: { type: 'object' } };
  const responses: unknown[] = [
    { model: 'm', input: 'hi' },
    { model: 'm', input: [{ role: 'user', content: [{ type: 'input_text', text: 'x' }, image] }], stream: true, store: false, seed: 1 },
    { model: 'm', input: [{ type: 'function_call', call_id: 'c', name: 'look', arguments: '{}' }, { type: 'function_call_output', call_id: 'c', output: [{ type: 'input_text', text: 'ok' }, image] }], tools: [tool] },
    { model: 'm' },
    { model: 'm', input: 'hi', tools: [{ type: 'web_search' }] },
    { model: 'm', input: 'hi', tools: [{ ...tool, name: 'no spaces' }] },
    { model: 'm', input: [{ role: 'robot', content: 'x' }] },
    { model: 'm', input: 'hi', temperature: 3 },
    { model: 'm', input: 'hi', max_tokens: 4 },
    { model: 'm', input: 'hi', prompt: null, moderation: null },
  ];
  const validateResponses = schema('CreateResponseRequest');
  for (const body of responses) assert.equal(validateResponses(body), parses(parseResponsesRequest, body), JSON.stringify(body));
  const block = { type: 'image', source: { type: 'base64', media_type: 'image/png', data: 'AAAA' } };
  const messages: unknown[] = [
    { model: 'm', max_tokens: 4, messages: [{ role: 'user', content: 'hi' }] },
    { model: 'm', max_tokens: 4, stop_sequences: ['x'], messages: [{ role: 'user', content: [{ type: 'tool_result', tool_use_id: 't', content: [{ type: 'text', text: 'x' }, block] }] }], tools: [{ name: 'look', input_schema: { type: 'object' } }] },
    { model: 'm', messages: [{ role: 'user', content: 'hi' }] },
    { model: 'm', max_tokens: 4, messages: [{ role: 'user', content: 'hi' }], tools: [{ type: 'web_search_20250305', name: 'web_search' }] },
    { model: 'm', max_tokens: 4, messages: [{ role: 'user', content: 'hi' }], temperature: 1.5 },
    { model: 'm', max_tokens: 4, messages: [] },
    { model: 'm', max_tokens: 4, messages: [{ role: 'user', content: 'hi' }], max_token: 4 },
    { model: 'm', max_tokens: 4, messages: [{ role: 'user', content: 'hi' }], thinking: { type: 'disabled' }, cache_control: { type: 'ephemeral' } },
  ];
  const validateMessages = schema('CreateMessageRequest');
  for (const body of messages) assert.equal(validateMessages(body), parses(parseMessagesRequest, body), JSON.stringify(body));
});

test('the answers the dialects build match the response schemas the document declares', () => {
  const schema = componentValidators(document);
  const request = parseResponsesRequest({ model: 'm', input: 'hi', tools: [{ type: 'function', name: 'look' }], metadata: { a: 'b' } });
  const choice = { text: 'Hello', toolCalls: [{ id: 'call_1', name: 'look', arguments: '{}' }], finishReason: 'tool_calls' as const };
  const usage = { promptTokens: 9, completionTokens: 3, cachedTokens: 2 };
  const response = finishedResponse(initialResponse(newResponseId(), request, true), outputItems(choice), 'tool_calls', usage, 4);
  const validateResponse = schema('Response');
  assert.ok(validateResponse(response), JSON.stringify(validateResponse.errors));
  const message = buildMessage('msg_1', 'm', { ...choice, finishReason: 'stop', stopSequence: 'END' }, usage, undefined);
  const validateMessage = schema('AnthropicMessage');
  assert.ok(validateMessage(message), JSON.stringify(validateMessage.errors));
});

test('the input_items route is described with its paging parameters, and the lists it answers match the declared schema', () => {
  for (const path of ['/v1/responses/{id}/input_items', '/v1/openai/responses/{id}/input_items']) {
    const operation = document.paths[path]?.['get'] as { parameters: { name: string; in: string }[]; responses: Record<string, unknown> } | undefined;
    assert.ok(operation, path);
    assert.deepEqual(operation.parameters.map((parameter) => `${parameter.in}:${parameter.name}`), ['path:id', 'query:limit', 'query:order', 'query:after']);
    assert.deepEqual(Object.keys(operation.responses).sort(), ['200', '400', '401', '404']);
  }
  const validate = componentValidators(document)('ResponseItemList');
  const image = { type: 'input_image', image_url: 'data:image/png;base64,AAAA', detail: 'low' };
  const request = parseResponsesRequest({
    model: 'm',
    input: [
      { role: 'developer', content: 'Be terse.' },
      { role: 'user', content: [{ type: 'input_text', text: 'x' }, image] },
      { role: 'assistant', content: [{ type: 'output_text', text: 'A cat.' }, { type: 'refusal', refusal: 'No.' }] },
      { type: 'function_call', call_id: 'c', name: 'look', arguments: '{}' },
      { type: 'function_call_output', call_id: 'c', output: [{ type: 'input_text', text: 'ok' }, image] },
      { type: 'function_call_output', call_id: 'c', output: 'ok' },
    ],
  });
  const items = toInputItems(request.input);
  const pages = [listInputItems(items, {}), listInputItems(items, { order: 'asc', limit: '2' }), listInputItems(items, { order: 'asc', after: items.at(-1)!.id }), listInputItems([], {})];
  for (const page of pages) assert.ok(validate(page), `${JSON.stringify(validate.errors)}\n${JSON.stringify(page)}`);
  assert.equal(pages[0]!.data.length, 6);
  assert.equal(validate({ ...pages[0], first_id: null }), false, 'first_id is a string');
});
