import assert from 'node:assert/strict';
import { test } from 'node:test';
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
  ];
  for (const body of bodies) {
    assert.equal(validate(body), chatRequestSchema.safeParse(body).success, JSON.stringify(body));
  }
});
