/**
 * Observability through the real server (a tiling synthetic model in a real llama-server): /metrics moves by
 * exactly what one image request adds and shows the child's own metrics with a model label; only the
 * operator's key reads it (or nobody on --metrics-port); request ids are echoed and logged on one access
 * line; the per-image `images` field agrees with tokenize and the model's image policy; `max_image_tokens`
 * lowers resolution to fit, or is refused with a 400.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import OpenAI from 'openai';
import { freeLoopbackPort } from '../../src/engines/llama-runner/llama-server-process.js';
import { imagePolicyFromMmproj, targetImageSize } from '../../src/images/image-policy.js';
import { expectedImageTokens } from '../../src/synth/recipes.js';
import { startImageHost, type ImageHost } from '../helpers/image-host.js';
import { dataUri, makeImage } from '../helpers/images.js';
import { assertMatchesSchema } from '../helpers/openapi.js';
import { startIris, syntheticModel, type IrisProcess } from '../helpers/test-env.js';

const MODEL = 'tiling';
const KEY = 'observe-key';

let iris: IrisProcess;
let client: OpenAI;
let host: ImageHost;
let metricsPort: number;
let mmprojPath: string;

before(async () => {
  host = await startImageHost('127.0.0.2');
  host.file('/photo.jpg', await makeImage({ width: 120, height: 80, format: 'jpeg', seed: 11 }), 'image/jpeg');
  const model = await syntheticModel('tiny-tiling');
  mmprojPath = model.mmprojPath;
  metricsPort = await freeLoopbackPort();
  iris = await startIris({
    args: [
      '--model', model.modelPath, '--mmproj', model.mmprojPath, '--model-id', MODEL, '--api-key', KEY,
      '--ctx-size', '8192', '--slots', '1', '--allow-media-host', '127.0.0.2', '--metrics-port', String(metricsPort),
    ],
  });
  client = new OpenAI({ baseURL: `${iris.baseUrl}/v1`, apiKey: KEY, maxRetries: 0, timeout: 120_000 });
});

after(async () => {
  await iris?.stop();
  await host?.close();
});

/** Samples of an exposition by name and labels (label order does not matter). */
function parseExposition(text: string): Map<string, number> {
  const samples = new Map<string, number>();
  for (const line of text.split('\n')) {
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!match) continue;
    samples.set(sampleKey(match[1]!, labelsOf(match[2] ?? '')), Number(match[3]));
  }
  return samples;
}

function labelsOf(text: string): Record<string, string> {
  const labels: Record<string, string> = {};
  for (const match of text.matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[match[1]!] = match[2]!;
  return labels;
}

function sampleKey(name: string, labels: Record<string, string>): string {
  return `${name}{${Object.keys(labels).sort().map((key) => `${key}=${labels[key]}`).join(',')}}`;
}

async function scrape(): Promise<Map<string, number>> {
  const response = await fetch(`${iris.baseUrl}/metrics`, { headers: { authorization: `Bearer ${KEY}` } });
  assert.equal(response.status, 200);
  assert.match(response.headers.get('content-type') ?? '', /^text\/plain/);
  return parseExposition(await response.text());
}

const value = (samples: Map<string, number>, name: string, labels: Record<string, string> = {}): number =>
  samples.get(sampleKey(name, labels)) ?? 0;

type Part = OpenAI.Chat.ChatCompletionContentPart;
type ImageReport = { source: string; format: string; original_width: number; original_height: number; width: number; height: number; detail: string; tokens: number | null };

async function post(path: string, body: unknown, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(`${iris.baseUrl}${path}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json', ...headers },
    body: JSON.stringify(body),
  });
}

describe('metrics', () => {
  test('one image request moves the counters and histograms by exactly what it adds', async () => {
    const before = await scrape();
    const content: Part[] = [
      { type: 'text', text: 'Describe both.' },
      { type: 'image_url', image_url: { url: dataUri(await makeImage({ width: 70, height: 50, seed: 23 })) } },
      { type: 'image_url', image_url: { url: `${host.origin}/photo.jpg`, detail: 'low' } },
    ];
    const completion = await client.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content }], max_tokens: 4, temperature: 0 });
    const after = await scrape();
    const delta = (name: string, labels: Record<string, string> = {}): number => value(after, name, labels) - value(before, name, labels);
    const usage = completion.usage!;
    const imageTokens = (usage.prompt_tokens_details as { image_tokens?: number }).image_tokens!;
    console.log(`one request: prompt_tokens=${usage.prompt_tokens} image_tokens=${imageTokens} completion_tokens=${usage.completion_tokens}`);
    const model = { model: MODEL };
    assert.equal(delta('iris_requests_total', { model: MODEL, endpoint: 'chat_completions', status: '2xx' }), 1);
    assert.equal(delta('iris_prompt_tokens_total', model), usage.prompt_tokens);
    assert.equal(delta('iris_completion_tokens_total', model), usage.completion_tokens);
    assert.equal(delta('iris_image_tokens_total', model), imageTokens);
    assert.ok(imageTokens > 0);
    assert.equal(delta('iris_images_total', { model: MODEL, source: 'data' }), 1);
    assert.equal(delta('iris_images_total', { model: MODEL, source: 'url' }), 1);
    assert.equal(delta('iris_time_to_first_token_seconds_count', model), 1);
    assert.equal(delta('iris_queue_wait_seconds_count', model), 1);
    assert.equal(delta('iris_request_duration_seconds_count', { model: MODEL, endpoint: 'chat_completions' }), 1);
    assert.equal(delta('iris_time_per_output_token_seconds_count', model), usage.completion_tokens > 1 ? 1 : 0);
    assert.equal(delta('iris_image_fetch_seconds_count'), 1);
    assert.equal(delta('iris_image_preprocess_seconds_count'), 2);
    assert.ok(delta('iris_time_to_first_token_seconds_sum', model) > 0);
    // llama-server's own counter, scraped from the child, agrees with usage
    assert.equal(delta('llamacpp:prompt_tokens_total', model), usage.prompt_tokens);
    assert.equal(value(after, 'iris_model_loaded', model), 1);
    assert.ok(value(after, 'iris_model_memory_bytes', model) > 0);
    assert.equal(value(after, 'iris_requests_running', model), 0);
    assert.ok(after.has(sampleKey('process_cpu_user_seconds_total', {})), 'Node process metrics');

    // The same image again comes from the decoded-image cache; the URL from the fetch cache.
    await client.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content }], max_tokens: 1, temperature: 0 });
    const again = await scrape();
    assert.equal(value(again, 'iris_image_cache_hits_total', { cache: 'decoded' }) - value(after, 'iris_image_cache_hits_total', { cache: 'decoded' }), 2);
    assert.equal(value(again, 'iris_image_cache_hits_total', { cache: 'fetched' }) - value(after, 'iris_image_cache_hits_total', { cache: 'fetched' }), 1);
    assert.equal(value(again, 'iris_image_fetch_seconds_count'), value(after, 'iris_image_fetch_seconds_count'));
  });

  test('a failed request is counted under its status class, an unknown model under no model', async () => {
    const before = await scrape();
    assert.equal((await post('/v1/chat/completions', { model: MODEL, messages: [] })).status, 400);
    assert.equal((await post('/v1/chat/completions', { model: 'no-such-model', messages: [{ role: 'user', content: 'hi' }] })).status, 404);
    const after = await scrape();
    assert.equal(value(after, 'iris_requests_total', { model: '', endpoint: 'chat_completions', status: '4xx' }) - value(before, 'iris_requests_total', { model: '', endpoint: 'chat_completions', status: '4xx' }), 2);
    for (const key of after.keys()) assert.ok(!key.includes('no-such-model'), `label values are bounded: ${key}`);
  });

  test('only the operator key reads /metrics; --metrics-port serves it without one', async () => {
    assert.equal((await fetch(`${iris.baseUrl}/metrics`)).status, 401);
    const wrong = await fetch(`${iris.baseUrl}/metrics`, { headers: { authorization: 'Bearer nope' } });
    assert.equal(wrong.status, 401);
    assertMatchesSchema('ErrorResponse', await wrong.json());
    const open = await fetch(`http://127.0.0.1:${metricsPort}/metrics`);
    assert.equal(open.status, 200);
    const samples = parseExposition(await open.text());
    assert.equal(value(samples, 'iris_model_loaded', { model: MODEL }), 1);
    assert.ok([...samples.keys()].some((key) => key.startsWith('llamacpp:') && key.includes(`model=${MODEL}`)));
    assert.equal((await fetch(`http://127.0.0.1:${metricsPort}/v1/models`)).status, 404);
  });
});

describe('request ids and the access log', () => {
  test("a caller's x-request-id is echoed and on the request's one access line; a bad one is replaced", async () => {
    const id = 'trace-7f3a/observe test';
    const response = await post('/v1/chat/completions', { model: MODEL, messages: [{ role: 'user', content: 'hello' }], max_tokens: 2 }, { 'x-request-id': id });
    assert.equal(response.status, 200);
    assert.equal(response.headers.get('x-request-id'), id);
    const body = (await response.json()) as OpenAI.Chat.ChatCompletion;
    const stream = await post('/v1/chat/completions', { model: MODEL, messages: [{ role: 'user', content: 'hello' }], max_tokens: 2, stream: true }, { 'x-request-id': `${id}-s` });
    assert.equal(stream.headers.get('x-request-id'), `${id}-s`);
    await stream.text();
    let lines: Record<string, unknown>[] = [];
    for (let tries = 0; tries < 50 && lines.length === 0; tries += 1) {
      lines = iris.logRecords('request completed').filter((record) => record['reqId'] === id);
      if (lines.length === 0) await new Promise((resolve) => setTimeout(resolve, 100));
    }
    assert.equal(lines.length, 1, 'one access line');
    const line = lines[0]!;
    assert.equal(line['model'], MODEL);
    assert.equal(line['endpoint'], 'chat_completions');
    assert.equal(line['key'], 'config', "the configured key's name, not the key");
    assert.equal(line['status'], 200);
    assert.equal(line['promptTokens'], body.usage!.prompt_tokens);
    assert.equal(line['completionTokens'], body.usage!.completion_tokens);
    assert.equal(typeof line['durationMs'], 'number');
    assert.equal(typeof line['ttftMs'], 'number');
    assert.ok(!iris.logs.some((log) => log.includes(KEY)), 'the key is never logged');

    for (const bad of ['x'.repeat(129), 'tab\there']) {
      const replaced = await fetch(`${iris.baseUrl}/v1/models`, { headers: { authorization: `Bearer ${KEY}`, 'x-request-id': bad } });
      const echoed = replaced.headers.get('x-request-id') ?? '';
      assert.notEqual(echoed, bad);
      assert.match(echoed, /^req_[0-9a-f]{32}$/);
    }
  });
});

describe('per-image reporting and max_image_tokens', () => {
  test('the images field equals what tokenize reports, and the sizes follow the model policy', async () => {
    const policy = await imagePolicyFromMmproj(mmprojPath);
    const content: Part[] = [
      { type: 'text', text: 'What do you see?' },
      { type: 'image_url', image_url: { url: dataUri(await makeImage({ width: 150, height: 100, format: 'webp', seed: 31 }), 'image/webp'), detail: 'high' } },
      { type: 'image_url', image_url: { url: `${host.origin}/photo.jpg` } },
      { type: 'image_url', image_url: { url: dataUri(await makeImage({ width: 20, height: 10, seed: 32 })), detail: 'low' } },
    ];
    const body = { model: MODEL, messages: [{ role: 'user', content }], max_tokens: 1, temperature: 0 };
    const completionResponse = await post('/v1/chat/completions', body);
    const completion = (await completionResponse.json()) as OpenAI.Chat.ChatCompletion & { images: ImageReport[] };
    assert.equal(completionResponse.status, 200, JSON.stringify(completion));
    assertMatchesSchema('CreateChatCompletionResponse', completion);
    const tokenized = (await (await post('/v1/tokenize', body)).json()) as { prompt_tokens: number; image_tokens: number[]; images: ImageReport[] };
    assert.deepEqual(completion.images, tokenized.images);
    assert.deepEqual(tokenized.images.map((image) => image.tokens), tokenized.image_tokens);
    assert.equal(tokenized.prompt_tokens, completion.usage!.prompt_tokens);
    const expected = [
      { source: 'data', format: 'webp', w: 150, h: 100, detail: 'high' },
      { source: 'url', format: 'jpeg', w: 120, h: 80, detail: 'auto' },
      { source: 'data', format: 'png', w: 20, h: 10, detail: 'low' },
    ] as const;
    expected.forEach((want, index) => {
      const image = completion.images[index]!;
      const size = targetImageSize(policy, want.w, want.h, want.detail);
      assert.deepEqual(image, {
        source: want.source,
        format: want.format,
        original_width: want.w,
        original_height: want.h,
        width: size.width,
        height: size.height,
        detail: want.detail,
        tokens: expectedImageTokens('tiny-tiling', size.width, size.height),
      });
    });
    const total = completion.images.reduce((sum, image) => sum + image.tokens!, 0);
    assert.equal((completion.usage!.prompt_tokens_details as { image_tokens?: number }).image_tokens, total);

    // A stream carries the same on its first chunk.
    const stream = await client.chat.completions.create({ ...body, stream: true } as OpenAI.Chat.ChatCompletionCreateParamsStreaming);
    let first: (OpenAI.Chat.ChatCompletionChunk & { images?: ImageReport[] }) | undefined;
    for await (const chunk of stream) first ??= chunk;
    assert.deepEqual(first?.images, completion.images);
  });

  test('max_image_tokens lowers the resolution to fit, and is refused when even the lowest does not', async () => {
    const image: Part = { type: 'image_url', image_url: { url: dataUri(await makeImage({ width: 128, height: 96, seed: 41 })), detail: 'high' } };
    const body = (extra: Record<string, unknown>) => ({ model: MODEL, messages: [{ role: 'user', content: [{ type: 'text', text: 'hi' }, image] }], max_tokens: 1, ...extra });
    const full = (await (await post('/v1/chat/completions', body({}))).json()) as { images: ImageReport[]; usage: OpenAI.CompletionUsage };
    const lowTokens = expectedImageTokens('tiny-tiling', 32, 24);
    const cap = Math.floor((full.images[0]!.tokens! + lowTokens) / 2);
    const cappedResponse = await post('/v1/chat/completions', body({ max_image_tokens: cap }));
    const capped = (await cappedResponse.json()) as { images: ImageReport[]; usage: OpenAI.CompletionUsage };
    assert.equal(cappedResponse.status, 200, JSON.stringify(capped));
    const [before, after] = [full.images[0]!, capped.images[0]!];
    console.log(`max_image_tokens=${cap}: ${before.width}x${before.height} (${before.tokens} tokens) -> ${after.width}x${after.height} (${after.tokens} tokens)`);
    assert.ok(after.tokens! <= cap && after.tokens! < before.tokens!);
    assert.ok(after.width < before.width && after.height < before.height);
    assert.equal(after.tokens, expectedImageTokens('tiny-tiling', after.width, after.height));
    assert.equal(full.usage.prompt_tokens - capped.usage.prompt_tokens, before.tokens! - after.tokens!, 'the prompt shrank by exactly the saved tokens');
    const tokenized = (await (await post('/v1/tokenize', body({ max_image_tokens: cap }))).json()) as { images: ImageReport[] };
    assert.deepEqual(tokenized.images, capped.images);

    const refused = await post('/v1/chat/completions', body({ max_image_tokens: lowTokens - 1 }));
    const error = (await refused.json()) as { error: { param: string; message: string } };
    assert.equal(refused.status, 400);
    assertMatchesSchema('ErrorResponse', error);
    assert.equal(error.error.param, 'max_image_tokens');
    assert.match(error.error.message, new RegExp(`at least ${lowTokens} tokens`));
    const invalid = await post('/v1/chat/completions', body({ max_image_tokens: 0 }));
    assert.equal(invalid.status, 400);
  });
});
