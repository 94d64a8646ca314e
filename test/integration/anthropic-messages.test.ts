/**
 * The Anthropic Messages API end to end: Iris started through its CLI on a synthetic tiny model pair, real
 * llama-server, driven by the official `@anthropic-ai/sdk` package and by raw fetch. Also checks that an
 * image costs the same input tokens whichever dialect (chat completions, Responses, Messages) carried it.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import Anthropic from '@anthropic-ai/sdk';
import { zodOutputFormat } from '@anthropic-ai/sdk/helpers/zod';
import { Ajv2020 } from 'ajv/dist/2020.js';
import OpenAI from 'openai';
import { z } from 'zod';
import { buildOpenApiDocument } from '../../src/http/openapi-document.js';
import { makeImage } from '../helpers/images.js';
import { COLOR_SCHEMA } from '../helpers/schemas.js';
import { componentValidators } from '../helpers/iris-openapi.js';
import { startImageHost, type ImageHost } from '../helpers/image-host.js';
import { startIris, syntheticModel, templatedModel, waitFor, type IrisProcess } from '../helpers/test-env.js';
import { tokenIds } from '../helpers/token-ids.js';

/**
 * Iris's `seed` and `logit_bias` extensions, biased towards the Llama 3.2 template's call marker: a random
 * model then starts a call at once and the grammar writes it (as in the chat-surface tests).
 */
let callStart: Record<string, number> = {};
const startCall = (seed: number): Record<string, unknown> => ({ seed, logit_bias: callStart });

/** Checks an answer against the schema Iris's own OpenAPI document declares for it. */
const irisSchema = componentValidators(buildOpenApiDocument('test') as never);
function assertDocumented(name: string, value: unknown): void {
  const validate = irisSchema(name);
  assert.ok(validate(value), `${name}: ${JSON.stringify(validate.errors)}`);
}

const KEY = 'anthropic-key-1';
const MODEL = 'tiny';

let iris: IrisProcess;
let host: ImageHost;
let anthropic: Anthropic;
let imageTokens: number;
let png: Buffer;

before(async () => {
  const model = await syntheticModel('tiny');
  imageTokens = model.imageTokensPerImage;
  png = await makeImage({ width: 64, height: 48 });
  host = await startImageHost('127.0.0.2');
  host.file('/dog.png', png);
  iris = await startIris({
    args: [
      '--model', model.modelPath, '--mmproj', model.mmprojPath, '--model-id', MODEL,
      '--api-key', KEY, '--ctx-size', '8192', '--slots', '2', '--allow-media-host', '127.0.0.2',
    ],
  });
  anthropic = new Anthropic({ baseURL: `${iris.baseUrl}/v1/anthropic`, apiKey: KEY, maxRetries: 0, timeout: 60_000 });
});

after(async () => {
  await iris?.stop();
  await host?.close();
});

const imageMessage = (text = 'Describe the image.'): Anthropic.MessageParam => ({
  role: 'user',
  content: [
    { type: 'text', text },
    { type: 'image', source: { type: 'base64', media_type: 'image/png', data: png.toString('base64') } },
  ],
});

async function post(path: string, body: unknown, headers: Record<string, string> = { 'x-api-key': KEY }): Promise<{ status: number; json: any }> {
  const response = await fetch(`${iris.baseUrl}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'anthropic-version': '2023-06-01', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  return { status: response.status, json: await response.json() };
}

function assertAnthropicError(result: { status: number; json: any }, status: number, type: string, mentions?: string): void {
  assert.equal(result.status, status, JSON.stringify(result.json));
  assert.equal(result.json.type, 'error');
  assert.equal(result.json.error.type, type);
  assert.equal(typeof result.json.error.message, 'string');
  assert.match(result.json.request_id, /^req_/);
  if (mentions !== undefined) assert.ok(result.json.error.message.includes(mentions), result.json.error.message);
}

describe('Anthropic Messages API', () => {
  test('an image message through the official SDK; count_tokens equals its input tokens', async () => {
    const request = { model: MODEL, max_tokens: 8, temperature: 0, system: 'Be terse.', messages: [imageMessage()] };
    const count = await anthropic.messages.countTokens({ model: MODEL, system: request.system, messages: request.messages });
    const message = await anthropic.messages.create(request);
    assert.match(message.id, /^msg_/);
    assert.equal(message.type, 'message');
    assert.equal(message.role, 'assistant');
    assert.equal(message.model, MODEL);
    assert.ok(message.stop_reason === 'end_turn' || message.stop_reason === 'max_tokens');
    assert.equal(message.stop_sequence, null);
    const usage = message.usage;
    const input = usage.input_tokens + (usage.cache_read_input_tokens ?? 0) + (usage.cache_creation_input_tokens ?? 0);
    assert.equal(count.input_tokens, input);
    assert.equal((usage as any).image_tokens, imageTokens);
    assert.ok(usage.output_tokens >= 1 && usage.output_tokens <= 8);
  });

  test('max_tokens reached: stop_reason max_tokens', async () => {
    // Greedy, so that the one token is not an end token by chance (this SDK's types no longer list temperature).
    const message = await anthropic.messages.create({ model: MODEL, max_tokens: 1, messages: [{ role: 'user', content: 'Count to one hundred.' }], ...{ temperature: 0 } });
    assert.equal(message.stop_reason, 'max_tokens');
    assert.equal(message.usage.output_tokens, 1);
  });

  test('a stop sequence ends the message: stop_reason stop_sequence naming the one matched, streamed and not', async () => {
    // Every token biased to 'Z': the answer runs 'ZZ…' until the second stop sequence matches.
    const [z] = await tokenIds((await syntheticModel('tiny')).modelPath, ['Z']);
    const request = {
      model: MODEL,
      max_tokens: 16,
      temperature: 0,
      stop_sequences: ['never', 'ZZ'],
      messages: [{ role: 'user' as const, content: 'Say Z.' }],
      ...{ logit_bias: { [String(z)]: 100 } },
    };
    const message = await anthropic.messages.create(request);
    assertDocumented('CreateMessageRequest', request);
    assertDocumented('AnthropicMessage', message);
    assert.equal(message.stop_reason, 'stop_sequence');
    assert.equal(message.stop_sequence, 'ZZ');
    assert.equal(message.usage.output_tokens, 2);
    assert.ok(message.content.every((block) => block.type === 'text' && !block.text.includes('ZZ')), JSON.stringify(message.content));

    const stream = anthropic.messages.stream(request);
    let delta: Record<string, unknown> | undefined;
    for await (const event of stream) if (event.type === 'message_delta') delta = event.delta as unknown as Record<string, unknown>;
    assert.deepEqual(delta, { stop_reason: 'stop_sequence', stop_sequence: 'ZZ' });
    const final = await stream.finalMessage();
    assert.equal(final.stop_reason, 'stop_sequence');
    assert.equal(final.stop_sequence, 'ZZ');

    // Without a stop sequence matching, the length limit is what ended it.
    const long = await anthropic.messages.create({ ...request, max_tokens: 3, stop_sequences: ['never'] });
    assert.equal(long.stop_reason, 'max_tokens');
    assert.equal(long.stop_sequence, null);

    // Chat completions say what they always said: finish_reason "stop", and no extra field.
    const openai = new OpenAI({ baseURL: `${iris.baseUrl}/v1`, apiKey: KEY, maxRetries: 0 });
    const chat = await openai.chat.completions.create({ model: MODEL, max_tokens: 16, temperature: 0, stop: ['never', 'ZZ'], messages: request.messages, logit_bias: { [String(z)]: 100 } });
    assert.equal(chat.choices[0]?.finish_reason, 'stop');
    assert.equal(chat.usage?.completion_tokens, 2);
    assert.deepEqual(Object.keys(chat.choices[0]!).sort(), ['finish_reason', 'index', 'logprobs', 'message']);
    const streamed = await openai.chat.completions.create({ model: MODEL, max_tokens: 16, temperature: 0, stop: ['never', 'ZZ'], messages: request.messages, logit_bias: { [String(z)]: 100 }, stream: true });
    const reasons: unknown[] = [];
    for await (const chunk of streamed) for (const choice of chunk.choices) if (choice.finish_reason !== null) reasons.push(choice.finish_reason);
    assert.deepEqual(reasons, ['stop']);
  });

  test('streamed, with an image by URL and the key as a bearer: the event sequence and final message', async () => {
    const bearer = new Anthropic({ baseURL: iris.baseUrl, authToken: KEY, apiKey: null, maxRetries: 0 });
    const stream = bearer.messages.stream({
      model: MODEL,
      max_tokens: 6,
      temperature: 0,
      messages: [{ role: 'user', content: [{ type: 'image', source: { type: 'url', url: `${host.origin}/dog.png` } }, { type: 'text', text: 'What is this?' }] }],
    });
    const types: string[] = [];
    let deltas = '';
    for await (const event of stream) {
      types.push(event.type);
      if (event.type === 'content_block_delta' && event.delta.type === 'text_delta') deltas += event.delta.text;
    }
    const final = await stream.finalMessage();
    assert.equal(types[0], 'message_start');
    assert.deepEqual(types.slice(-2), ['message_delta', 'message_stop']);
    if (deltas !== '') {
      assert.equal(types[1], 'content_block_start');
      assert.equal(types.at(-3), 'content_block_stop');
      assert.equal(final.content[0]?.type === 'text' ? final.content[0].text : undefined, deltas);
    }
    assert.ok(final.stop_reason === 'end_turn' || final.stop_reason === 'max_tokens');
    assert.ok(final.usage.input_tokens + (final.usage.cache_read_input_tokens ?? 0) > imageTokens);
    assert.ok(final.usage.output_tokens >= 1);
    assert.ok(host.requests.includes('/dog.png'));
  });

  test('output_config.format with an image: the answer is JSON matching the schema, through the SDK\'s parse, streamed and not', async () => {
    const Color = z.object({ color: z.enum(['red', 'green', 'blue']), count: z.number().int().min(0).max(9), bright: z.boolean() });
    const validate = new Ajv2020({ strict: false }).compile(COLOR_SCHEMA);
    const request = { model: MODEL, max_tokens: 200, temperature: 0, messages: [imageMessage('What colour is it? Answer as JSON.')] };
    const parsed = await anthropic.messages.parse({ ...request, output_config: { format: zodOutputFormat(Color) } });
    assert.equal(parsed.stop_reason, 'end_turn', 'the grammar closed the object before max_tokens');
    const text = parsed.content.map((block) => (block.type === 'text' ? block.text : '')).join('');
    assert.ok(validate(JSON.parse(text)), `${text}: ${JSON.stringify(validate.errors)}`);
    assert.deepEqual(parsed.parsed_output, JSON.parse(text));
    assert.equal((parsed.usage as any).image_tokens, imageTokens);

    const stream = anthropic.messages.stream({ ...request, output_config: { format: { type: 'json_schema', schema: COLOR_SCHEMA as any } } });
    const streamed = await stream.finalMessage();
    const streamedText = streamed.content.map((block) => (block.type === 'text' ? block.text : '')).join('');
    assert.ok(validate(JSON.parse(streamedText)), streamedText);

    // The schema is part of what a completion costs, so count_tokens takes it too.
    const count = await anthropic.messages.countTokens({ model: MODEL, messages: request.messages, output_config: { format: { type: 'json_schema', schema: COLOR_SCHEMA as any } } });
    assert.ok(count.input_tokens > 0);
    // An effort level and the beta output_format are refused by name.
    assertAnthropicError(await post('/v1/messages', { ...request, output_config: { effort: 'high' } }), 400, 'invalid_request_error', 'output_config.effort');
    assertAnthropicError(await post('/v1/messages', { ...request, output_format: { type: 'json_schema', schema: COLOR_SCHEMA } }), 400, 'invalid_request_error', 'output_format');
    assertAnthropicError(await post('/v1/messages', { ...request, output_config: { format: { type: 'xml' } } }), 400, 'invalid_request_error', 'output_config.format');
  });

  test('errors in Anthropic shape with its status codes', async () => {
    await assert.rejects(
      anthropic.messages.create({ model: 'no-such-model', max_tokens: 4, messages: [{ role: 'user', content: 'hi' }] }),
      (error: any) => error instanceof Anthropic.NotFoundError && (error as any).error?.error?.type === 'not_found_error',
    );
    const wrongKey = new Anthropic({ baseURL: iris.baseUrl, apiKey: 'wrong', maxRetries: 0 });
    await assert.rejects(
      wrongKey.messages.create({ model: MODEL, max_tokens: 4, messages: [{ role: 'user', content: 'hi' }] }),
      (error: any) => error instanceof Anthropic.AuthenticationError && (error as any).error?.error?.type === 'authentication_error',
    );
    assertAnthropicError(await post('/v1/messages', { model: MODEL, messages: [{ role: 'user', content: 'hi' }] }), 400, 'invalid_request_error', 'max_tokens');
    assertAnthropicError(await post('/v1/messages', '{"model":'), 400, 'invalid_request_error', 'JSON');
    assertAnthropicError(
      await post('/v1/messages', { model: MODEL, max_tokens: 4, messages: [{ role: 'user', content: [{ type: 'image', source: { type: 'base64', media_type: 'image/png', data: 'AAAA' } }] }] }),
      400,
      'invalid_request_error',
      'messages[0].content[0].source.data',
    );
    assertAnthropicError(await post('/v1/messages', { model: MODEL, max_tokens: 4, thinking: { type: 'enabled', budget_tokens: 1024 }, messages: [{ role: 'user', content: 'hi' }] }), 400, 'invalid_request_error', 'thinking');
    assertAnthropicError(await post('/v1/messages', { model: MODEL, max_tokens: 4, temperature: 1.5, messages: [{ role: 'user', content: 'hi' }] }), 400, 'invalid_request_error', 'temperature');
  });

  test("an unknown top-level field is a 400 in Anthropic's words, on messages and count_tokens", async () => {
    const base = { model: MODEL, messages: [{ role: 'user', content: 'hi' }] };
    const cases: [string, Record<string, unknown>, string][] = [
      ['/v1/messages', { ...base, max_token: 4 }, 'max_token'],
      ['/v1/messages', { ...base, max_tokens: 4, guided_json: { type: 'object' } }, 'guided_json'],
      ['/v1/messages', { ...base, max_tokens: 4, max_completion_tokens: 4 }, 'max_completion_tokens'],
      ['/v1/anthropic/v1/messages', { ...base, max_tokens: 4, stop: ['x'] }, 'stop'],
      ['/v1/messages/count_tokens', { ...base, max_tokens: 4 }, 'max_tokens'],
      ['/v1/messages/count_tokens', { ...base, temperature: 0 }, 'temperature'],
    ];
    for (const [path, body, field] of cases) {
      const result = await post(path, body);
      assertAnthropicError(result, 400, 'invalid_request_error');
      assert.equal(result.json.error.message, `${field}: Extra inputs are not permitted`, path);
    }
    await assert.rejects(
      anthropic.messages.create({ ...base, max_tokens: 4, top_n: 3 } as unknown as Anthropic.MessageCreateParamsNonStreaming),
      (error: any) => error instanceof Anthropic.BadRequestError && (error as any).error?.error?.message === 'top_n: Extra inputs are not permitted',
    );
    // Anthropic's own fields that change nothing pass; those that would change the answer are refused by name.
    const accepted = await post('/v1/messages', {
      ...base,
      max_tokens: 2,
      cache_control: { type: 'ephemeral' },
      inference_geo: 'us',
      speed: 'standard',
      thinking: { type: 'disabled' },
      output_config: null,
      container: null,
      metadata: { user_id: 'u' },
    });
    assert.equal(accepted.status, 200, JSON.stringify(accepted.json));
    assert.equal(accepted.json.type, 'message');
    const counted = await post('/v1/messages/count_tokens', { ...base, cache_control: { type: 'ephemeral' }, thinking: { type: 'disabled' } });
    assert.equal(counted.status, 200, JSON.stringify(counted.json));
    assertAnthropicError(await post('/v1/messages', { ...base, max_tokens: 2, output_config: { effort: 'low' } }), 400, 'invalid_request_error', 'output_config');
    assertAnthropicError(await post('/v1/messages/count_tokens', { ...base, output_format: { type: 'json_schema', schema: {} } }), 400, 'invalid_request_error', 'output_format');
  });

  test('an image adds the same input tokens whichever dialect carried it', async () => {
    const openai = new OpenAI({ baseURL: `${iris.baseUrl}/v1`, apiKey: KEY, maxRetries: 0 });
    const uri = `data:image/png;base64,${png.toString('base64')}`;
    const text = 'Describe the image.';
    const chatTokens = async (withImage: boolean): Promise<[number, number | undefined]> => {
      const completion = await openai.chat.completions.create({
        model: MODEL,
        max_tokens: 1,
        messages: [{ role: 'user', content: [{ type: 'text', text }, ...(withImage ? [{ type: 'image_url' as const, image_url: { url: uri } }] : [])] }],
      });
      return [completion.usage!.prompt_tokens, (completion.usage!.prompt_tokens_details as any).image_tokens];
    };
    const responsesTokens = async (withImage: boolean): Promise<[number, number | undefined]> => {
      const response = await openai.responses.create({
        model: MODEL,
        max_output_tokens: 1,
        store: false,
        input: [{ role: 'user', content: [{ type: 'input_text', text }, ...(withImage ? [{ type: 'input_image' as const, image_url: uri, detail: 'auto' as const }] : [])] }],
      });
      return [response.usage!.input_tokens, (response.usage!.input_tokens_details as any).image_tokens];
    };
    const messagesTokens = async (withImage: boolean): Promise<[number, number | undefined]> => {
      const message = await anthropic.messages.create({ model: MODEL, max_tokens: 1, messages: [withImage ? imageMessage(text) : { role: 'user', content: [{ type: 'text', text }] }] });
      const usage = message.usage;
      return [usage.input_tokens + (usage.cache_read_input_tokens ?? 0), (usage as any).image_tokens];
    };
    const before = await usageTotals();
    const added: Record<string, number> = {};
    for (const [name, measure] of [['chat', chatTokens], ['responses', responsesTokens], ['messages', messagesTokens]] as const) {
      const [plain] = await measure(false);
      const [withImage, reported] = await measure(true);
      assert.equal(reported, imageTokens, `${name}: reported image tokens`);
      // The image's placeholder text in the template is a few tokens beside the image embeddings.
      assert.ok(withImage - plain >= imageTokens && withImage - plain <= imageTokens + 4, `${name}: ${withImage} - ${plain} vs ${imageTokens}`);
      added[name] = withImage - plain;
    }
    // The very same number of input tokens, whichever dialect carried the image.
    assert.deepEqual(added, { chat: added['chat'], responses: added['chat'], messages: added['chat'] });
    // Each dialect's requests went through the same accounting: six requests, three images' tokens.
    const after = await usageTotals();
    assert.equal(after.requests - before.requests, 6);
    assert.equal(after.image_tokens - before.image_tokens, 3 * imageTokens);
  });

  async function usageTotals(): Promise<{ requests: number; image_tokens: number }> {
    const response = await fetch(`${iris.baseUrl}/v1/usage?group_by=model`, { headers: { authorization: `Bearer ${KEY}` } });
    assert.equal(response.status, 200);
    const body = (await response.json()) as { data: { model?: string | null; requests: number; image_tokens: number }[] };
    const row = body.data.find((bucket) => bucket.model === MODEL);
    return { requests: row?.requests ?? 0, image_tokens: row?.image_tokens ?? 0 };
  }
});

describe('Anthropic Messages API: limits and a busy model, with Anthropic\'s status codes', () => {
  let limited: IrisProcess;
  let dir: string;
  let bias: Record<string, number>;

  before(async () => {
    const model = await syntheticModel('tiny');
    // Every token biased to one letter: no end-of-sequence, so a long answer holds the only slot.
    const [z] = await tokenIds(model.modelPath, ['Z']);
    bias = { [String(z)]: 100 };
    dir = await mkdtemp(join(tmpdir(), 'iris-anthropic-limits-'));
    const config = join(dir, 'iris.yaml');
    await writeFile(
      config,
      [
        'models:',
        `  - { id: ${MODEL}, model: "${model.modelPath}", mmproj: "${model.mmprojPath}", context: 8192, slots: 1 }`,
        'limits:',
        '  max_body_bytes: 65536',
        '  max_image_bytes: 1024',
        '  max_body_bytes_in_flight: 2048',
        '  max_queued_per_model: 0',
      ].join('\n'),
    );
    limited = await startIris({ args: ['--config', config] });
  });

  after(async () => {
    await limited?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const send = async (body: unknown, signal?: AbortSignal): Promise<Response> =>
    fetch(`${limited.baseUrl}/v1/messages`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'anthropic-version': '2023-06-01' },
      body: JSON.stringify(body),
      ...(signal === undefined ? {} : { signal }),
    });
  const answer = async (body: unknown) => {
    const response = await send(body);
    return { status: response.status, json: (await response.json()) as any, retryAfter: response.headers.get('retry-after') };
  };
  const ask = (content: Anthropic.MessageParam['content'], extra: Record<string, unknown> = {}) => ({ model: MODEL, max_tokens: 2, messages: [{ role: 'user', content }], ...extra });

  test('413 request_too_large for a body or an image over its limit', async () => {
    assertAnthropicError(await answer(ask('x'.repeat(70_000))), 413, 'request_too_large');
    assert.ok(png.length > 1024, `the test image is ${png.length} bytes`);
    const image = { type: 'image' as const, source: { type: 'base64' as const, media_type: 'image/png' as const, data: png.toString('base64') } };
    assertAnthropicError(await answer(ask([image, { type: 'text', text: 'What is it?' }])), 413, 'request_too_large');
    assert.equal((await answer(ask('hi'))).status, 200, 'the server keeps serving');
  });

  test('the only slot busy: 429 rate_limit_error; the body budget spent: 529 overloaded_error; both with Retry-After', async () => {
    const holder = new AbortController();
    const held = await send(ask('Write forever.', { max_tokens: 7000, stream: true, logit_bias: bias }), holder.signal);
    assert.equal(held.status, 200);
    const reader = held.body!.getReader();
    let seen = '';
    while (!seen.includes('content_block_delta')) {
      const { value, done } = await reader.read();
      assert.ok(!done, seen);
      seen += new TextDecoder().decode(value);
    }
    try {
      // The slot is taken and no request may queue.
      const queued = await answer(ask('hi'));
      assertAnthropicError(queued, 429, 'rate_limit_error');
      assert.match(queued.retryAfter ?? '', /^\d+$/);
      // The held stream's body and this one's do not fit the bytes in flight: refused before it is read.
      const overloaded = await answer(ask('x'.repeat(2000)));
      assertAnthropicError(overloaded, 529, 'overloaded_error');
      assert.match(overloaded.retryAfter ?? '', /^\d+$/);
      // The official SDK reads both as API errors with Anthropic's error body.
      const sdk = new Anthropic({ baseURL: limited.baseUrl, apiKey: 'unused', maxRetries: 0 });
      await assert.rejects(
        sdk.messages.create(ask('hi') as Anthropic.MessageCreateParamsNonStreaming),
        (error: any) => error instanceof Anthropic.RateLimitError && (error as any).error?.error?.type === 'rate_limit_error',
      );
      await assert.rejects(
        sdk.messages.create(ask('x'.repeat(2000)) as Anthropic.MessageCreateParamsNonStreaming),
        (error: any) => error instanceof Anthropic.APIError && error.status === 529 && (error as any).error?.error?.type === 'overloaded_error',
      );
    } finally {
      holder.abort();
    }
    // Once the stream is gone, its slot and its bytes are free again.
    assert.ok(await waitFor(async () => (await answer(ask('hi'))).status === 200, 10_000));
  });
});

describe('Anthropic Messages API: tools', () => {
  let tools: IrisProcess;
  let client: Anthropic;
  const ajv = new Ajv2020({ strict: false });
  const REPORT_TOOL = {
    name: 'report_color',
    description: 'Report the main colour of the image.',
    input_schema: { type: 'object' as const, properties: { color: { type: 'string', enum: ['red', 'green', 'blue'] } }, required: ['color'], additionalProperties: false },
  };

  before(async () => {
    const model = await templatedModel('meta-llama-Llama-3.2-3B-Instruct', ['{"name": "']);
    const [marker] = await tokenIds(model.modelPath, ['{"name": "']);
    callStart = { [String(marker)]: 100 };
    tools = await startIris({ args: ['--model', model.modelPath, '--mmproj', model.mmprojPath, '--model-id', 'llama', '--ctx-size', '8192'] });
    client = new Anthropic({ baseURL: tools.baseUrl, apiKey: 'unused', maxRetries: 0, timeout: 120_000 });
  });

  after(async () => {
    await tools?.stop();
  });

  test('a tool_use round trip with an image; count_tokens counts the tools', async () => {
    const request = {
      model: 'llama',
      max_tokens: 300,
      ...startCall(1),
      messages: [imageMessage('What colour is it? Report it.')],
      tools: [REPORT_TOOL],
      tool_choice: { type: 'tool' as const, name: 'report_color', disable_parallel_tool_use: true },
    };
    const message = await client.messages.create(request);
    const count = await client.messages.countTokens({ model: request.model, messages: request.messages, tools: request.tools, tool_choice: request.tool_choice });
    assert.equal(message.stop_reason, 'tool_use');
    const uses = message.content.filter((block) => block.type === 'tool_use');
    assert.equal(uses.length, 1);
    const use = uses[0]!;
    assert.equal(use.name, 'report_color');
    assert.ok(ajv.validate(REPORT_TOOL.input_schema, use.input), JSON.stringify(use.input));
    const usage = message.usage;
    assert.equal(count.input_tokens, usage.input_tokens + (usage.cache_read_input_tokens ?? 0));
    assert.equal((usage as any).image_tokens, imageTokens);

    const next = await client.messages.create({
      model: 'llama',
      max_tokens: 4,
      tools: [REPORT_TOOL],
      // Random weights must not start a call llama-server then fails to parse.
      tool_choice: { type: 'none' },
      ...{ seed: 2 },
      messages: [
        ...request.messages,
        { role: 'assistant', content: message.content },
        { role: 'user', content: [{ type: 'tool_result', tool_use_id: use.id, content: 'Recorded.' }, { type: 'text', text: 'Thanks.' }] },
      ],
    });
    assert.equal(next.type, 'message');
    assert.ok(next.usage.input_tokens + (next.usage.cache_read_input_tokens ?? 0) > usage.input_tokens + (usage.cache_read_input_tokens ?? 0));
  });

  test('an image in a tool_result is carried and counted as the same image in a user message', async () => {
    const image = { type: 'image' as const, source: { type: 'base64' as const, media_type: 'image/png' as const, data: png.toString('base64') } };
    const turn = (content: Anthropic.ContentBlockParam[]): Anthropic.MessageCreateParamsNonStreaming => ({
      model: 'llama',
      max_tokens: 1,
      tools: [REPORT_TOOL],
      tool_choice: { type: 'none' },
      ...{ seed: 4 },
      messages: [
        { role: 'user', content: 'Look at the image and report its colour.' },
        { role: 'assistant', content: [{ type: 'tool_use', id: 'toolu_look', name: 'report_color', input: { color: 'red' } }] },
        { role: 'user', content },
      ],
    });
    const inResult = turn([{ type: 'tool_result', tool_use_id: 'toolu_look', content: [{ type: 'text', text: 'Here it is.' }, image] }]);
    const withImage = await client.messages.create(inResult);
    assertDocumented('CreateMessageRequest', inResult);
    assertDocumented('AnthropicMessage', withImage);
    const count = await client.messages.countTokens({ model: 'llama', messages: inResult.messages, tools: inResult.tools!, tool_choice: inResult.tool_choice! });
    const inUser = await client.messages.create(turn([{ type: 'tool_result', tool_use_id: 'toolu_look', content: 'Here it is.' }, image]));
    // The same turn with one character of text where the image was.
    const textBeside = await client.messages.create(turn([{ type: 'tool_result', tool_use_id: 'toolu_look', content: 'Here it is.' }, { type: 'text', text: '.' }]));
    const input = (message: Anthropic.Message): number => message.usage.input_tokens + (message.usage.cache_read_input_tokens ?? 0);
    assert.equal((withImage.usage as any).image_tokens, imageTokens);
    assert.equal(count.input_tokens, input(withImage));
    // The image follows the tool message, where the same image sent beside the tool_result goes.
    assert.equal(input(withImage), input(inUser));
    // Its tokens, give or take the few that the template text and one character of text make.
    const added = input(withImage) - input(textBeside);
    assert.ok(added >= imageTokens - 3 && added <= imageTokens + 4, `${input(withImage)} - ${input(textBeside)} vs ${imageTokens}`);
    // Errors about it name its field.
    const broken = { ...image, source: { ...image.source, data: 'AAAA' } };
    const response = await fetch(`${tools.baseUrl}/v1/messages`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(turn([{ type: 'tool_result', tool_use_id: 'toolu_look', content: [{ type: 'text', text: 'Here it is.' }, broken] }])),
    });
    assertAnthropicError({ status: response.status, json: await response.json() }, 400, 'invalid_request_error', 'messages[2].content[0].content[1].source.data');
  });

  test('streamed tool_use: input_json_delta events assembled by the SDK', async () => {
    const stream = client.messages.stream({
      model: 'llama',
      max_tokens: 300,
      ...startCall(1),
      messages: [{ role: 'user', content: 'What colour? Report it.' }],
      tools: [REPORT_TOOL],
      tool_choice: { type: 'any' },
    });
    let json = '';
    const types: string[] = [];
    for await (const event of stream) {
      types.push(event.type);
      if (event.type === 'content_block_delta' && event.delta.type === 'input_json_delta') json += event.delta.partial_json;
    }
    const final = await stream.finalMessage();
    assert.equal(final.stop_reason, 'tool_use');
    const use = final.content.find((block) => block.type === 'tool_use');
    assert.ok(use, JSON.stringify(final.content));
    assert.deepEqual(use.input, JSON.parse(json));
    assert.ok(ajv.validate(REPORT_TOOL.input_schema, use.input));
    assert.equal(types.filter((type) => type === 'content_block_start').length, types.filter((type) => type === 'content_block_stop').length);
  });

  test('server tools and bad tool_choice are refused in Anthropic shape', async () => {
    const post = async (body: unknown) => {
      const response = await fetch(`${tools.baseUrl}/v1/messages`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
      return { status: response.status, json: await response.json() };
    };
    const base = { model: 'llama', max_tokens: 4, messages: [{ role: 'user', content: 'hi' }] };
    assertAnthropicError(await post({ ...base, tools: [{ type: 'web_search_20250305', name: 'web_search' }] }), 400, 'invalid_request_error', 'web_search_20250305');
    assertAnthropicError(await post({ ...base, tools: [REPORT_TOOL], tool_choice: { type: 'tool', name: 'other' } }), 400, 'invalid_request_error', 'other');
    assertAnthropicError(await post({ ...base, tool_choice: { type: 'any' } }), 400, 'invalid_request_error', 'tool_choice');
  });
});
