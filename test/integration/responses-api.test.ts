/**
 * The Responses API end to end: Iris started through its CLI on a synthetic tiny model pair, real
 * llama-server, driven by the official `openai` package's `responses.create` and by Vercel AI SDK's default
 * OpenAI provider (which speaks the Responses API). Every response object and stream event is checked
 * against OpenAI's spec (`Response`, `ResponseStreamEvent`).
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createOpenAI } from '@ai-sdk/openai';
import { generateText } from 'ai';
import { Ajv2020 } from 'ajv/dist/2020.js';
import OpenAI from 'openai';
import { assertMatchesSchema, assertResponseStreamEvent } from '../helpers/openapi.js';
import { dataUri, makeImage } from '../helpers/images.js';
import { COLOR_SCHEMA } from '../helpers/schemas.js';
import { startImageHost, type ImageHost } from '../helpers/image-host.js';
import { startTestPostgres } from '../helpers/postgres.js';
import { startIris, syntheticModel, templatedModel, waitFor, type IrisProcess } from '../helpers/test-env.js';
import { tokenIds } from '../helpers/token-ids.js';

/**
 * Iris's `seed` and `logit_bias` extensions, biased towards the Llama 3.2 template's call marker: a random
 * model then starts a call at once and the grammar writes it (as in the chat-surface tests).
 */
let callStart: Record<string, number> = {};
const startCall = (seed: number): Record<string, unknown> => ({ seed, logit_bias: callStart });

const KEY = 'responses-key-1';
const OTHER_KEY = 'responses-key-2';
const MODEL = 'tiny';

let iris: IrisProcess;
let host: ImageHost;
let client: OpenAI;
let imageTokens: number;
let image: string;

before(async () => {
  const model = await syntheticModel('tiny');
  imageTokens = model.imageTokensPerImage;
  host = await startImageHost('127.0.0.2');
  host.file('/cat.png', await makeImage({ width: 64, height: 48 }));
  iris = await startIris({
    args: [
      '--model', model.modelPath, '--mmproj', model.mmprojPath, '--model-id', MODEL,
      '--api-key', KEY, '--api-key', OTHER_KEY, '--ctx-size', '8192', '--slots', '2',
      '--allow-media-host', '127.0.0.2',
    ],
  });
  client = new OpenAI({ baseURL: `${iris.baseUrl}/v1/openai`, apiKey: KEY, maxRetries: 0, timeout: 60_000 });
  image = dataUri(await makeImage({ width: 64, height: 48 }));
});

after(async () => {
  await iris?.stop();
  await host?.close();
});

async function post(path: string, body: unknown, key = KEY, origin = iris.baseUrl): Promise<{ status: number; json: any }> {
  const response = await fetch(`${origin}${path}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  return { status: response.status, json: await response.json() };
}

async function get(path: string, key = KEY, origin = iris.baseUrl): Promise<{ status: number; json: any }> {
  const response = await fetch(`${origin}${path}`, { headers: { authorization: `Bearer ${key}` } });
  return { status: response.status, json: await response.json() };
}

function assertError(result: { status: number; json: any }, status: number, param: string | null, code?: string): void {
  assert.equal(result.status, status, JSON.stringify(result.json));
  assertMatchesSchema('ErrorResponse', result.json);
  assert.equal(result.json.error.param, param, result.json.error.message);
  if (code !== undefined) assert.equal(result.json.error.code, code, result.json.error.message);
}

const ajv = new Ajv2020({ strict: false });

const REPORT_TOOL = {
  type: 'function' as const,
  name: 'report_color',
  description: 'Report the main colour of the image.',
  parameters: { type: 'object', properties: { color: { type: 'string', enum: ['red', 'green', 'blue'] } }, required: ['color'], additionalProperties: false },
  strict: true,
};

const imageInput = (url: string, text = 'Describe the image.') => [
  { role: 'user' as const, content: [{ type: 'input_text' as const, text }, { type: 'input_image' as const, image_url: url, detail: 'auto' as const }] },
];

describe('Responses API', () => {
  test('responses.create with an input_image: a completed response with image usage', async () => {
    const response = await client.responses.create({ model: MODEL, input: imageInput(image), instructions: 'Be terse.', max_output_tokens: 8, temperature: 0 });
    assertMatchesSchema('Response', response);
    assert.match(response.id, /^resp_/);
    assert.equal(response.object, 'response');
    assert.equal(response.model, MODEL);
    assert.equal(response.instructions, 'Be terse.');
    assert.ok(response.status === 'completed' || response.status === 'incomplete');
    if (response.status === 'incomplete') assert.equal(response.incomplete_details?.reason, 'max_output_tokens');
    const message = response.output[0];
    assert.equal(message?.type, 'message');
    assert.equal(typeof response.output_text, 'string');
    const usage = response.usage!;
    assert.ok(usage.output_tokens >= 1 && usage.output_tokens <= 8);
    assert.equal(usage.total_tokens, usage.input_tokens + usage.output_tokens);
    assert.equal((usage.input_tokens_details as any).image_tokens, imageTokens);
    assert.ok(usage.input_tokens > imageTokens);
    // The same pipeline observed it: the access line names the dialect, the model, the image and its tokens.
    const logged = await waitFor(() => iris.logRecords('request completed').some((line) => line['endpoint'] === 'responses' && line['images'] === 1));
    assert.ok(logged, 'an access line for the Responses request');
    const line = iris.logRecords('request completed').find((record) => record['endpoint'] === 'responses' && record['images'] === 1)!;
    assert.equal(line['model'], MODEL);
    assert.equal(line['imageTokens'], imageTokens);
    assert.equal(line['promptTokens'], usage.input_tokens);
  });

  test('max_output_tokens reached: status incomplete with the reason', async () => {
    const response = await client.responses.create({ model: MODEL, input: 'Count to one hundred.', max_output_tokens: 1, temperature: 0 });
    assertMatchesSchema('Response', response);
    assert.equal(response.status, 'incomplete');
    assert.deepEqual(response.incomplete_details, { reason: 'max_output_tokens' });
    assert.equal(response.usage?.output_tokens, 1);
  });

  test('streamed with an image URL: the documented event sequence, each event valid', async () => {
    const stream = await client.responses.create({
      model: MODEL,
      input: imageInput(`${host.origin}/cat.png`),
      max_output_tokens: 6,
      temperature: 0,
      stream: true,
    });
    const events: any[] = [];
    for await (const event of stream) {
      assertResponseStreamEvent(event);
      events.push(event);
    }
    const types = events.map((event) => event.type);
    assert.deepEqual(types.slice(0, 4), ['response.created', 'response.in_progress', 'response.output_item.added', 'response.content_part.added']);
    assert.deepEqual(types.slice(-4, -1), ['response.output_text.done', 'response.content_part.done', 'response.output_item.done']);
    assert.ok(['response.completed', 'response.incomplete'].includes(types.at(-1)));
    assert.deepEqual(events.map((event) => event.sequence_number), events.map((_event, index) => index));
    const deltas = events.filter((event) => event.type === 'response.output_text.delta').map((event) => event.delta).join('');
    const final = events.at(-1).response;
    assert.equal(final.output[0].content[0].text, deltas);
    assert.equal(events.find((event) => event.type === 'response.output_text.done').text, deltas);
    assert.equal(final.usage.input_tokens_details.image_tokens, imageTokens);
    assert.ok(host.requests.includes('/cat.png'));
  });

  test('previous_response_id continues a conversation that held an image; GET and DELETE by its key only', async () => {
    const first = await client.responses.create({ model: MODEL, input: imageInput(image), max_output_tokens: 4, temperature: 0 });
    assertMatchesSchema('Response', first);
    const second = await client.responses.create({ model: MODEL, input: 'And again?', previous_response_id: first.id, max_output_tokens: 4, temperature: 0 });
    assertMatchesSchema('Response', second);
    assert.equal(second.previous_response_id, first.id);
    // The earlier turn (with its image) is part of the prompt.
    assert.equal((second.usage!.input_tokens_details as any).image_tokens, imageTokens);
    assert.ok(second.usage!.input_tokens > first.usage!.input_tokens);

    const fetched = await client.responses.retrieve(first.id);
    assertMatchesSchema('Response', fetched);
    assert.deepEqual(fetched.output, first.output);

    const other = new OpenAI({ baseURL: `${iris.baseUrl}/v1`, apiKey: OTHER_KEY, maxRetries: 0 });
    await assert.rejects(other.responses.retrieve(first.id), (error: any) => error.status === 404);
    await assert.rejects(other.responses.inputItems.list(first.id), (error: any) => error.status === 404);
    assertError(await get(`/v1/responses/${first.id}/input_items`, OTHER_KEY), 404, null, 'not_found');
    assertError(await post('/v1/responses', { model: MODEL, input: 'hi', previous_response_id: first.id }, OTHER_KEY), 404, 'previous_response_id', 'not_found');
    await assert.rejects(other.responses.delete(first.id), (error: any) => error.status === 404);
    assert.equal((await client.responses.retrieve(first.id)).id, first.id, "the other key's DELETE deleted nothing");

    await client.responses.delete(first.id);
    await assert.rejects(client.responses.retrieve(first.id), (error: any) => error.status === 404);
    await assert.rejects(client.responses.inputItems.list(first.id), (error: any) => error.status === 404);
    await assert.rejects(client.responses.delete(first.id), (error: any) => error.status === 404);
    // The follow-up was stored on its own and still is.
    assert.equal((await client.responses.retrieve(second.id)).id, second.id);
  });

  test('input_items: the request\'s input with ids, paged by limit, order and after, valid against the spec', async () => {
    const input = [
      { role: 'developer' as const, content: 'Be terse.' },
      ...imageInput(image),
      { role: 'assistant' as const, content: 'It is a picture.' },
      { role: 'user' as const, content: 'Which colours?' },
    ];
    const first = await client.responses.create({ model: MODEL, input: 'Hello.', max_output_tokens: 2, temperature: 0 });
    const response = await client.responses.create({ model: MODEL, input, previous_response_id: first.id, max_output_tokens: 2, temperature: 0 });
    const whole = await get(`/v1/responses/${response.id}/input_items?order=asc`);
    assert.equal(whole.status, 200, JSON.stringify(whole.json));
    assertMatchesSchema('ResponseItemList', whole.json);
    // Only this request's input, not the earlier response's.
    assert.deepEqual(whole.json.data.map((item: any) => item.role), ['developer', 'user', 'assistant', 'user']);
    assert.deepEqual(whole.json.data[1].content[1], { type: 'input_image', image_url: image, detail: 'auto' });
    assert.equal(whole.json.data[2].content[0].text, 'It is a picture.');
    assert.equal(whole.json.has_more, false);
    const ids = whole.json.data.map((item: any) => item.id);
    assert.equal(new Set(ids).size, 4);
    assert.equal(whole.json.first_id, ids[0]);
    assert.equal(whole.json.last_id, ids[3]);

    // The SDK, newest first by default, two at a time.
    const page = await client.responses.inputItems.list(response.id, { limit: 2 });
    assert.deepEqual(page.data.map((item) => item.id), [ids[3], ids[2]]);
    assert.equal(page.has_more, true);
    const seen: string[] = [];
    for await (const item of client.responses.inputItems.list(response.id, { limit: 2 })) seen.push(item.id!);
    assert.deepEqual(seen, [...ids].reverse(), 'the SDK pages with after');
    const after = await get(`/v1/openai/responses/${response.id}/input_items?order=asc&after=${ids[1]}&limit=1`);
    assertMatchesSchema('ResponseItemList', after.json);
    assert.deepEqual([after.json.data.map((item: any) => item.id), after.json.has_more], [[ids[2]], true]);
    // Past the last item: an empty page, still valid (first_id and last_id are strings in the spec).
    const past = await get(`/v1/responses/${response.id}/input_items?order=asc&after=${ids[3]}`);
    assertMatchesSchema('ResponseItemList', past.json);
    assert.deepEqual([past.json.data, past.json.has_more], [[], false]);
    const firstItems = await get(`/v1/responses/${first.id}/input_items`);
    assertMatchesSchema('ResponseItemList', firstItems.json);
    assert.deepEqual(firstItems.json.data.map((item: any) => [item.role, item.content]), [['user', [{ type: 'input_text', text: 'Hello.' }]]]);

    for (const [query, param] of [
      ['limit=0', 'limit'],
      ['limit=101', 'limit'],
      ['limit=abc', 'limit'],
      ['order=up', 'order'],
      ['after=msg_unknown', 'after'],
      ['include=message.input_image.image_url', 'include'],
      ['before=x', 'before'],
    ] as const) {
      assertError(await get(`/v1/responses/${response.id}/input_items?${query}`), 400, param);
    }
    assertError(await get('/v1/responses/resp_unknown/input_items'), 404, null, 'not_found');
  });

  test('store: false keeps nothing', async () => {
    const response = await client.responses.create({ model: MODEL, input: 'hello', max_output_tokens: 2, store: false });
    assertMatchesSchema('Response', response);
    assert.equal((response as any).store, false);
    await assert.rejects(client.responses.retrieve(response.id), (error: any) => error.status === 404);
  });

  test('Vercel AI SDK default provider (Responses API): generateText with an image', async () => {
    const openai = createOpenAI({ baseURL: `${iris.baseUrl}/v1`, apiKey: KEY });
    const result = await generateText({
      model: openai(MODEL),
      maxOutputTokens: 8,
      temperature: 0,
      messages: [{ role: 'user', content: [{ type: 'text', text: 'What is in this image?' }, { type: 'image', image: new URL(image) }] }],
    });
    assert.equal(typeof result.text, 'string');
    assert.ok(result.usage.inputTokens! > imageTokens);
    assert.ok(result.usage.outputTokens! >= 1);
    assert.equal((result.usage.raw as any)?.input_tokens_details?.image_tokens, imageTokens);
    assert.match(String(result.providerMetadata?.['openai']?.['responseId']), /^resp_/);
  });

  test('refused and bad input: 400s naming the field, in OpenAI error shape', async () => {
    assertError(await post('/v1/responses', { model: MODEL, input: 'hi', tools: [{ type: 'web_search' }] }), 400, 'tools[0].type', 'unsupported_parameter');
    assertError(await post('/v1/responses', { model: MODEL, input: 'hi', tools: [{ type: 'file_search', vector_store_ids: ['vs_1'] }] }), 400, 'tools[0].type', 'unsupported_parameter');
    assertError(
      await post('/v1/responses', { model: MODEL, input: 'hi', tools: [REPORT_TOOL, { type: 'computer_use_preview', display_width: 1024, display_height: 768, environment: 'browser' }] }),
      400,
      'tools[1].type',
      'unsupported_parameter',
    );
    assertError(await post('/v1/responses', { model: MODEL, input: 'hi', tools: [{ type: 'code_interpreter', container: { type: 'auto' } }] }), 400, 'tools[0].type', 'unsupported_parameter');
    assertError(await post('/v1/responses', { model: MODEL, input: 'hi', truncation: 'auto' }), 400, 'truncation', 'unsupported_parameter');
    assertError(await post('/v1/responses', { model: MODEL, input: 'hi', background: true }), 400, 'background', 'unsupported_parameter');
    // The tiny model's chat template cannot render tools.
    assertError(await post('/v1/responses', { model: MODEL, input: 'hi', tools: [REPORT_TOOL] }), 400, 'tools', 'model_not_supported');
    assertError(
      await post('/v1/responses', { model: MODEL, input: [{ role: 'user', content: [{ type: 'input_image', image_url: 'data:image/png;base64,AAAA' }] }] }),
      400,
      'input[0].content[0].image_url',
    );
    assertError(
      await post('/v1/responses', { model: MODEL, input: [{ role: 'user', content: [{ type: 'input_image', file_id: 'file-1' }] }] }),
      400,
      'input[0].content[0].file_id',
    );
    assertError(await post('/v1/responses', { model: MODEL, input: [{ type: 'reasoning', summary: [] }] }), 400, 'input[0].type');
    assertError(await post('/v1/responses', { model: MODEL }), 400, 'input', 'missing_required_parameter');
    assertError(await post('/v1/responses', { model: 'nope', input: 'hi' }), 404, 'model', 'model_not_found');
    const response = await fetch(`${iris.baseUrl}/v1/responses/resp_unknown`, { headers: { authorization: `Bearer ${KEY}` } });
    assert.equal(response.status, 404);
    assertMatchesSchema('ErrorResponse', await response.json());
  });

  test('an unknown top-level field (a typo, a chat-completions field, another server\'s extension) is a 400 naming it', async () => {
    for (const [field, value] of [['max_output_token', 8], ['max_tokens', 8], ['guided_json', { type: 'object' }]] as const) {
      const result = await post('/v1/responses', { model: MODEL, input: 'hi', [field]: value });
      assertError(result, 400, field, 'unknown_parameter');
      assert.equal(result.json.error.type, 'invalid_request_error');
      assert.equal(result.json.error.message, `Unrecognized request argument supplied: ${field}`);
    }
    await assert.rejects(
      client.responses.create({ model: MODEL, input: 'hi', max_tokens: 8 } as unknown as OpenAI.Responses.ResponseCreateParamsNonStreaming),
      (error: unknown) => error instanceof OpenAI.BadRequestError && error.param === 'max_tokens' && error.code === 'unknown_parameter',
    );
    // OpenAI's fields that are unset pass, even the ones refused when set; prompt_cache_options changes nothing.
    const accepted = await post('/v1/responses', {
      model: MODEL,
      input: 'hi',
      max_output_tokens: 2,
      store: false,
      prompt: null,
      conversation: null,
      context_management: null,
      moderation: null,
      prompt_cache_options: null,
    });
    assert.equal(accepted.status, 200, JSON.stringify(accepted.json));
    assertMatchesSchema('Response', accepted.json);
    assertError(await post('/v1/responses', { model: MODEL, input: 'hi', moderation: { model: 'omni-moderation-latest' } }), 400, 'moderation', 'unsupported_parameter');
  });
});

describe('Responses API: stored in the database', () => {
  let model: Awaited<ReturnType<typeof syntheticModel>>;
  let dataDir: string;

  before(async () => {
    model = await syntheticModel('tiny');
    dataDir = await mkdtemp(join(tmpdir(), 'iris-responses-db-'));
  });

  after(async () => {
    await rm(dataDir, { recursive: true, force: true });
  });

  const start = (args: string[] = [], env: NodeJS.ProcessEnv = { IRIS_DATA_DIR: dataDir }) =>
    startIris({ args: ['--model', model.modelPath, '--mmproj', model.mmprojPath, '--model-id', MODEL, '--api-key', KEY, '--ctx-size', '8192', ...args], env });
  const openai = (server: IrisProcess, key = KEY) => new OpenAI({ baseURL: `${server.baseUrl}/v1`, apiKey: key, maxRetries: 0, timeout: 60_000 });

  test('a stored response survives a restart: retrieve, input_items and previous_response_id continue; a retention of 0 hides it', async () => {
    let server = await start();
    let created;
    try {
      created = await openai(server).responses.create({ model: MODEL, input: imageInput(image), max_output_tokens: 4, temperature: 0 });
      assert.equal((created as any).store, true);
    } finally {
      await server.stop();
    }

    server = await start();
    try {
      const sdk = openai(server);
      const fetched = await sdk.responses.retrieve(created.id);
      assertMatchesSchema('Response', fetched);
      assert.deepEqual(fetched, created);
      const items = await sdk.responses.inputItems.list(created.id);
      assert.deepEqual(items.data.map((item: any) => item.content[1]), [{ type: 'input_image', image_url: image, detail: 'auto' }]);
      const next = await sdk.responses.create({ model: MODEL, input: 'And again?', previous_response_id: created.id, max_output_tokens: 4, temperature: 0 });
      assertMatchesSchema('Response', next);
      assert.equal(next.previous_response_id, created.id);
      assert.equal((next.usage!.input_tokens_details as any).image_tokens, imageTokens, 'the stored image is part of the follow-up');
      assert.ok(next.usage!.input_tokens > created.usage!.input_tokens);
    } finally {
      await server.stop();
    }

    // Retention 0: nothing is stored (the response says store: false), and what was stored reads as expired.
    server = await start(['--responses-retention', '0']);
    try {
      const sdk = openai(server);
      await assert.rejects(sdk.responses.retrieve(created.id), (error: any) => error.status === 404);
      const unstored = await sdk.responses.create({ model: MODEL, input: 'hi', max_output_tokens: 2 });
      assertMatchesSchema('Response', unstored);
      assert.equal((unstored as any).store, false);
      await assert.rejects(sdk.responses.retrieve(unstored.id), (error: any) => error.status === 404);
    } finally {
      await server.stop();
    }
  });

  test('on PostgreSQL: a response over the size cap is answered, not stored; a failed write still answers, a failed read is a 500', async () => {
    const postgres = await startTestPostgres();
    let server: IrisProcess | undefined;
    try {
      const url = await postgres.createDatabase('responses_test');
      server = await start(['--responses-max-bytes', '4KiB'], { IRIS_DATA_DIR: dataDir, DATABASE_URL: url });
      const sdk = openai(server);
      const small = await sdk.responses.create({ model: MODEL, input: 'hi', max_output_tokens: 2 });
      assert.equal((await sdk.responses.retrieve(small.id)).id, small.id);
      const large = await sdk.responses.create({ model: MODEL, input: 'word '.repeat(1000), max_output_tokens: 2 });
      assertMatchesSchema('Response', large);
      await assert.rejects(sdk.responses.retrieve(large.id), (error: any) => error.status === 404);
      // The log is written asynchronously: the line may follow the answer by a moment.
      const logged = (fragment: string, id: string) => waitFor(() => server!.logRecords(fragment).some((line) => line['responseId'] === id));
      assert.ok(await logged('larger than --responses-max-bytes', large.id));

      await postgres.stop();
      const unsaved = await sdk.responses.create({ model: MODEL, input: 'hi', max_output_tokens: 2 });
      assertMatchesSchema('Response', unsaved);
      assert.match(unsaved.id, /^resp_/);
      assert.ok(await logged('could not store the response', unsaved.id));
      const streamed = await sdk.responses.create({ model: MODEL, input: 'hi', max_output_tokens: 2, stream: true });
      const types: string[] = [];
      for await (const event of streamed) {
        assertResponseStreamEvent(event);
        types.push(event.type);
      }
      assert.ok(['response.completed', 'response.incomplete'].includes(types.at(-1)!), types.join());
      for (const path of [`/v1/responses/${small.id}`, `/v1/responses/${small.id}/input_items`]) {
        assertError(await get(path, KEY, server.baseUrl), 500, null, 'internal_error');
      }
      assertError(await post('/v1/responses', { model: MODEL, input: 'hi', previous_response_id: small.id }, KEY, server.baseUrl), 500, null, 'internal_error');
    } finally {
      await server?.stop();
      await postgres.stop();
    }
  });
});

describe('Responses API: function tools and structured output', () => {
  let tools: IrisProcess;
  let toolsClient: OpenAI;

  before(async () => {
    const model = await templatedModel('meta-llama-Llama-3.2-3B-Instruct', ['{"name": "']);
    const [marker] = await tokenIds(model.modelPath, ['{"name": "']);
    callStart = { [String(marker)]: 100 };
    tools = await startIris({ args: ['--model', model.modelPath, '--mmproj', model.mmprojPath, '--model-id', 'llama', '--ctx-size', '8192'] });
    toolsClient = new OpenAI({ baseURL: `${tools.baseUrl}/v1`, apiKey: 'unused', maxRetries: 0, timeout: 120_000 });
  });

  after(async () => {
    await tools?.stop();
  });

  test('a function-call round trip with an image: function_call item, then function_call_output continues', async () => {
    const first = await toolsClient.responses.create({
      model: 'llama',
      input: imageInput(image, 'What colour is it? Report it.'),
      tools: [REPORT_TOOL],
      tool_choice: { type: 'function', name: 'report_color' },
      parallel_tool_calls: false,
      max_output_tokens: 300,
      ...startCall(1),
    });
    assertMatchesSchema('Response', first);
    assert.equal(first.status, 'completed');
    assert.deepEqual(first.tools.map((tool) => tool.type === 'function' && tool.name), ['report_color']);
    const calls = first.output.filter((item) => item.type === 'function_call');
    assert.equal(calls.length, 1);
    const call = calls[0]!;
    assert.equal(call.name, 'report_color');
    assert.match(call.call_id, /^call_/);
    assert.ok(ajv.validate(REPORT_TOOL.parameters!, JSON.parse(call.arguments)), call.arguments);

    const second = await toolsClient.responses.create({
      model: 'llama',
      previous_response_id: first.id,
      input: [{ type: 'function_call_output', call_id: call.call_id, output: '{"recorded":true}' }],
      tools: [REPORT_TOOL],
      // Random weights must not start a call llama-server then fails to parse.
      tool_choice: 'none',
      ...{ seed: 2 },
      max_output_tokens: 4,
    });
    assertMatchesSchema('Response', second);
    // The image, the call and its output are all in the prompt of the follow-up.
    assert.equal((second.usage!.input_tokens_details as any).image_tokens, imageTokens);
    assert.ok(second.usage!.input_tokens > first.usage!.input_tokens);

    // The same turn sent by value instead of by id.
    const byValue = await toolsClient.responses.create({
      model: 'llama',
      input: [...imageInput(image, 'What colour is it? Report it.'), call, { type: 'function_call_output', call_id: call.call_id, output: 'ok' }],
      tools: [REPORT_TOOL],
      tool_choice: 'none',
      ...{ seed: 3 },
      store: false,
      max_output_tokens: 2,
    });
    assertMatchesSchema('Response', byValue);
  });

  test('an input_image in a function_call_output is carried and counted as the same image in a user message', async () => {
    const call = { type: 'function_call' as const, call_id: 'call_look', name: 'report_color', arguments: '{"color":"red"}' };
    const turn = (input: OpenAI.Responses.ResponseInputItem[]) =>
      toolsClient.responses.create({
        model: 'llama',
        input: [{ role: 'user', content: 'Look at the image and report its colour.' }, call, ...input],
        tools: [REPORT_TOOL],
        tool_choice: 'none',
        ...{ seed: 4 },
        store: false,
        max_output_tokens: 1,
      });
    const picture = { type: 'input_image' as const, image_url: image, detail: 'auto' as const };
    const withImage = await turn([{ type: 'function_call_output', call_id: call.call_id, output: [{ type: 'input_text', text: 'Here it is.' }, picture] }]);
    assertMatchesSchema('Response', withImage);
    const inUser = await turn([{ type: 'function_call_output', call_id: call.call_id, output: 'Here it is.' }, { role: 'user', content: [picture] }]);
    // The same turn with one character of text where the image was.
    const textBeside = await turn([{ type: 'function_call_output', call_id: call.call_id, output: 'Here it is.' }, { role: 'user', content: [{ type: 'input_text', text: '.' }] }]);
    assert.equal((withImage.usage!.input_tokens_details as any).image_tokens, imageTokens);
    // The image follows the tool message, in a user message of its own.
    assert.equal(withImage.usage!.input_tokens, inUser.usage!.input_tokens);
    // Its tokens, give or take the few that the template text and one character of text make.
    const added = withImage.usage!.input_tokens - textBeside.usage!.input_tokens;
    assert.ok(added >= imageTokens - 3 && added <= imageTokens + 4, `${withImage.usage!.input_tokens} - ${textBeside.usage!.input_tokens} vs ${imageTokens}`);
    // Errors about it name its field.
    const bad = await fetch(`${tools.baseUrl}/v1/responses`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'llama', input: [call, { type: 'function_call_output', call_id: call.call_id, output: [{ type: 'input_image', image_url: 'data:image/png;base64,AAAA' }] }] }),
    });
    const body = (await bad.json()) as any;
    assert.equal(bad.status, 400, JSON.stringify(body));
    assert.equal(body.error.param, 'input[1].output[0].image_url');
  });

  test('streamed function call: arguments as function_call_arguments deltas, every event valid', async () => {
    const stream = await toolsClient.responses.create({
      model: 'llama',
      input: 'What colour? Report it.',
      tools: [REPORT_TOOL],
      tool_choice: 'required',
      max_output_tokens: 300,
      ...startCall(1),
      stream: true,
    });
    const events: any[] = [];
    for await (const event of stream) {
      assertResponseStreamEvent(event);
      events.push(event);
    }
    const final = events.at(-1);
    assert.equal(final.type, 'response.completed');
    const call = final.response.output.find((item: any) => item.type === 'function_call');
    assert.ok(call, JSON.stringify(final.response.output));
    const deltas = events.filter((event) => event.type === 'response.function_call_arguments.delta' && event.item_id === call.id);
    assert.ok(deltas.length > 0);
    assert.equal(deltas.map((event) => event.delta).join(''), call.arguments);
    const done = events.find((event) => event.type === 'response.function_call_arguments.done');
    assert.equal(done.arguments, call.arguments);
    assert.equal(done.name, 'report_color');
    assert.ok(ajv.validate(REPORT_TOOL.parameters!, JSON.parse(call.arguments)));
  });

  test('text.format json_schema with an image: output_text is JSON matching the schema', async () => {
    const response = await toolsClient.responses.create({
      model: 'llama',
      input: imageInput(image, 'Describe the colour as JSON.'),
      text: { format: { type: 'json_schema', name: 'colour', schema: COLOR_SCHEMA, strict: true } },
      max_output_tokens: 200,
      ...{ seed: 1 },
    });
    assertMatchesSchema('Response', response);
    assert.equal(response.status, 'completed');
    assert.equal((response.text?.format as any)?.type, 'json_schema');
    const value = JSON.parse(response.output_text);
    assert.ok(ajv.validate(COLOR_SCHEMA, value), response.output_text);
    assert.equal((response.usage!.input_tokens_details as any).image_tokens, imageTokens);
  });

  /** A raw POST to the tool-capable Iris's Responses route. */
  const post = async (body: unknown) => {
    const response = await fetch(`${tools.baseUrl}/v1/responses`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    return { status: response.status, json: await response.json() };
  };

  test('tool_choice naming a function not in tools, or without tools: 400 naming it', async () => {
    assertError(await post({ model: 'llama', input: 'hi', tools: [REPORT_TOOL], tool_choice: { type: 'function', name: 'other' } }), 400, 'tool_choice.name');
    assertError(await post({ model: 'llama', input: 'hi', tool_choice: 'required' }), 400, 'tool_choice');
    assertError(await post({ model: 'llama', input: 'hi', tools: [{ type: 'function', name: 'bad name!' }] }), 400, 'tools[0].name');
    assertError(await post({ model: 'llama', input: 'hi', max_tool_calls: 2 }), 400, 'max_tool_calls', 'unsupported_parameter');
  });

  test('errors found after the translation name the Responses fields: text.format.schema, input', async () => {
    // A schema llama-server cannot turn into a grammar; it says so only when asked to generate.
    const broken = { type: 'object', properties: { a: { $ref: '#/$defs/missing' } } };
    for (const stream of [false, true]) {
      const result = await post({ model: 'llama', input: 'hi', text: { format: { type: 'json_schema', name: 'broken', schema: broken } }, stream });
      assertError(result, 400, 'text.format.schema', 'invalid_value');
    }
    const tooLong = await post({ model: 'llama', input: 'the '.repeat(40_000), max_output_tokens: 4 });
    assertError(tooLong, 400, 'input', 'context_length_exceeded');
  });
});
