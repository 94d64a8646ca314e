/**
 * Model-aware rescaling, `detail` and token accounting on a tiling model (`tiny-tiling`: idefics3, 32 px
 * tiles, capped by Iris at 4x4 tiles) served by a real llama-server: a 12 MP JPEG by URL costs fewer image
 * tokens at `low` than at `high`; `usage.prompt_tokens_details.image_tokens` is exactly what the images
 * add to `prompt_tokens`; and POST /v1/openai/tokenize answers what a real completion then reports.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import OpenAI from 'openai';
import { expectedImageTokens } from '../../src/synth/recipes.js';
import { startImageHost, type ImageHost } from '../helpers/image-host.js';
import { dataUri, makeImage, makeLargeJpeg } from '../helpers/images.js';
import { assertMatchesSchema } from '../helpers/openapi.js';
import { startIris, syntheticModel, type IrisProcess } from '../helpers/test-env.js';

const MODEL = 'tiling';
const KEY = 'detail-key';

let iris: IrisProcess;
let client: OpenAI;
let host: ImageHost;

before(async () => {
  host = await startImageHost('127.0.0.2');
  host.file('/camera.jpg', await makeLargeJpeg(4000, 3000), 'image/jpeg');
  const model = await syntheticModel('tiny-tiling');
  iris = await startIris({
    args: [
      '--model', model.modelPath, '--mmproj', model.mmprojPath, '--model-id', MODEL, '--api-key', KEY,
      '--ctx-size', '8192', '--slots', '1', '--allow-media-host', '127.0.0.2',
    ],
  });
  client = new OpenAI({ baseURL: `${iris.baseUrl}/v1/openai`, apiKey: KEY, maxRetries: 0, timeout: 120_000 });
});

after(async () => {
  await iris?.stop();
  await host?.close();
});

type Part = OpenAI.Chat.ChatCompletionContentPart;
const image = (url: string, detail?: 'low' | 'high' | 'auto'): Part => ({ type: 'image_url', image_url: detail ? { url, detail } : { url } });

async function complete(content: Part[], extra: OpenAI.Chat.ChatCompletionMessageParam[] = []): Promise<OpenAI.Chat.ChatCompletion> {
  const completion = await client.chat.completions.create({
    model: MODEL,
    messages: [...extra, { role: 'user', content }],
    max_tokens: 1,
    temperature: 0,
  });
  assertMatchesSchema('CreateChatCompletionResponse', completion);
  return completion;
}

const imageTokensOf = (completion: OpenAI.Chat.ChatCompletion): number | undefined =>
  (completion.usage?.prompt_tokens_details as { image_tokens?: number } | undefined)?.image_tokens;

async function tokenize(body: unknown, path = '/v1/openai/tokenize'): Promise<{ prompt_tokens: number; image_tokens: (number | null)[] }> {
  const response = await fetch(`${iris.baseUrl}${path}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  const json = (await response.json()) as any;
  assert.equal(response.status, 200, JSON.stringify(json));
  return json;
}

describe('detail on a tiling model', () => {
  test('a 12 MP JPEG by URL: low costs fewer image tokens than high, and usage says exactly how many', async () => {
    const url = `${host.origin}/camera.jpg`;
    const textOnly = await complete([{ type: 'text', text: 'What is this?' }]);
    const low = await complete([{ type: 'text', text: 'What is this?' }, image(url, 'low')]);
    const high = await complete([{ type: 'text', text: 'What is this?' }, image(url, 'high')]);
    const auto = await complete([{ type: 'text', text: 'What is this?' }, image(url)]);
    const lowTokens = imageTokensOf(low)!;
    const highTokens = imageTokensOf(high)!;
    console.log(`12 MP JPEG by URL on tiny-tiling: image_tokens low=${lowTokens} high=${highTokens} auto=${imageTokensOf(auto)}; prompt_tokens text=${textOnly.usage!.prompt_tokens} low=${low.usage!.prompt_tokens} high=${high.usage!.prompt_tokens}`);
    assert.ok(lowTokens < highTokens, `low ${lowTokens} < high ${highTokens}`);
    // low: one 32 px tile (32x24); high: capped at 4x4 tiles (128x96 -> a 4x3 grid)
    assert.equal(lowTokens, expectedImageTokens('tiny-tiling', 32, 24));
    assert.equal(highTokens, expectedImageTokens('tiny-tiling', 128, 96));
    assert.equal(imageTokensOf(auto), highTokens, 'auto is high for an image above the base resolution');
    assert.equal(low.usage!.prompt_tokens - textOnly.usage!.prompt_tokens, lowTokens, 'image_tokens is what the image adds');
    assert.equal(high.usage!.prompt_tokens - textOnly.usage!.prompt_tokens, highTokens);
    assert.equal(imageTokensOf(textOnly), 0);
  });

  test('several images of different sizes: image_tokens is the sum of what each adds', async () => {
    const a = dataUri(await makeImage({ width: 96, height: 64, seed: 3 }));
    const b = dataUri(await makeImage({ width: 20, height: 40, seed: 4 }));
    const textOnly = await complete([{ type: 'text', text: 'Compare.' }]);
    const both = await complete([{ type: 'text', text: 'Compare.' }, image(a, 'high'), image(b, 'auto')]);
    const expected = expectedImageTokens('tiny-tiling', 96, 64) + expectedImageTokens('tiny-tiling', 20, 40);
    assert.equal(imageTokensOf(both), expected);
    assert.equal(both.usage!.prompt_tokens - textOnly.usage!.prompt_tokens, expected);
  });

  test('the streamed usage chunk carries image_tokens too', async () => {
    const stream = await client.chat.completions.create({
      model: MODEL,
      messages: [{ role: 'user', content: [{ type: 'text', text: 'x' }, image(`${host.origin}/camera.jpg`, 'low')] }],
      max_tokens: 2,
      stream: true,
      stream_options: { include_usage: true },
    });
    let usage: OpenAI.CompletionUsage | null | undefined;
    for await (const chunk of stream) {
      assertMatchesSchema('CreateChatCompletionStreamResponse', chunk);
      if (chunk.usage) usage = chunk.usage;
    }
    assert.equal((usage?.prompt_tokens_details as { image_tokens?: number }).image_tokens, expectedImageTokens('tiny-tiling', 32, 24));
  });
});

describe('tokenize', () => {
  test('answers what a real completion then reports, for text, images at every detail and several turns', async () => {
    const small = dataUri(await makeImage({ width: 70, height: 40, seed: 8 }));
    const bodies: { messages: OpenAI.Chat.ChatCompletionMessageParam[] }[] = [
      { messages: [{ role: 'user', content: 'Hello there' }] },
      { messages: [{ role: 'user', content: [{ type: 'text', text: 'Look' }, image(`${host.origin}/camera.jpg`, 'low')] }] },
      { messages: [{ role: 'user', content: [image(`${host.origin}/camera.jpg`, 'high'), { type: 'text', text: 'and' }, image(small)] }] },
      {
        messages: [
          { role: 'system', content: 'Be brief.' },
          { role: 'user', content: [{ type: 'text', text: 'First' }, image(small, 'low')] },
          { role: 'assistant', content: 'ok' },
          { role: 'user', content: [{ type: 'text', text: 'Second' }, image(`${host.origin}/camera.jpg`)] },
        ],
      },
    ];
    for (const [index, body] of bodies.entries()) {
      const counted = await tokenize({ model: MODEL, ...body });
      const completion = await client.chat.completions.create({ model: MODEL, ...body, max_tokens: 1 });
      assert.equal(counted.prompt_tokens, completion.usage!.prompt_tokens, `body ${index}`);
      const total = counted.image_tokens.reduce<number>((sum, tokens) => sum + (tokens ?? 0), 0);
      assert.equal(total, imageTokensOf(completion), `body ${index}`);
    }
    const viaShortPath = await tokenize({ model: MODEL, ...bodies[1] }, '/v1/tokenize');
    assert.deepEqual(viaShortPath.image_tokens, [expectedImageTokens('tiny-tiling', 32, 24)]);
  });

  test('refuses what a completion refuses, in the OpenAI error shape', async () => {
    const response = await fetch(`${iris.baseUrl}/v1/openai/tokenize`, {
      method: 'POST',
      headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: MODEL, messages: [{ role: 'user', content: [image('http://127.0.0.3/x.png')] }] }),
    });
    const json = (await response.json()) as any;
    assert.equal(response.status, 400);
    assertMatchesSchema('ErrorResponse', json);
    assert.equal(json.error.param, 'messages[0].content[0].image_url.url');
    const unauthorized = await fetch(`${iris.baseUrl}/v1/tokenize`, { method: 'POST', body: '{}' });
    assert.equal(unauthorized.status, 401);
    const detail = await fetch(`${iris.baseUrl}/v1/tokenize`, {
      method: 'POST',
      headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: MODEL, messages: [{ role: 'user', content: [image(`${host.origin}/camera.jpg`, 'ultra' as never)] }] }),
    });
    const detailJson = (await detail.json()) as any;
    assert.equal(detail.status, 400);
    assert.equal(detailJson.error.param, 'messages[0].content[0].image_url.detail');
  });
});
