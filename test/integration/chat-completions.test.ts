/**
 * End to end: Iris started through its CLI on a synthetic tiny model pair, real llama-server, driven by
 * the official `openai` client and by raw fetch. Every response, chunk, model list and error is checked
 * against OpenAI's OpenAPI spec.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import OpenAI from 'openai';
import { assertMatchesSchema } from '../helpers/openapi.js';
import { dataUri, makeImage } from '../helpers/images.js';
import { startIris, syntheticModel, type IrisProcess } from '../helpers/test-env.js';

const KEY = 'test-key-123';
const MODEL = 'tiny';

let iris: IrisProcess;
let client: OpenAI;
let imageTokens: number;

before(async () => {
  const model = await syntheticModel('tiny');
  imageTokens = model.imageTokensPerImage;
  iris = await startIris({
    args: ['--model', model.modelPath, '--mmproj', model.mmprojPath, '--model-id', MODEL, '--api-key', KEY, '--ctx-size', '8192', '--slots', '2'],
  });
  client = new OpenAI({ baseURL: `${iris.baseUrl}/v1/openai`, apiKey: KEY, maxRetries: 0, timeout: 60_000 });
});

after(async () => {
  await iris?.stop();
});

/** POSTs a raw body to the chat endpoint and returns status and parsed JSON. */
async function postRaw(body: string, headers: Record<string, string> = {}): Promise<{ status: number; json: any }> {
  const response = await fetch(`${iris.baseUrl}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json', ...headers },
    body,
  });
  const text = await response.text();
  return { status: response.status, json: JSON.parse(text) };
}

function assertError(result: { status: number; json: any }, status: number, param?: string | null, code?: string): void {
  assert.equal(result.status, status, JSON.stringify(result.json));
  assertMatchesSchema('ErrorResponse', result.json);
  if (param !== undefined) assert.equal(result.json.error.param, param, result.json.error.message);
  if (code !== undefined) assert.equal(result.json.error.code, code, result.json.error.message);
  assert.ok(result.json.error.message.length > 0);
}

const userImage = (url: string, text = 'Describe the image.') => ({
  role: 'user' as const,
  content: [
    { type: 'text' as const, text },
    { type: 'image_url' as const, image_url: { url } },
  ],
});

describe('chat completions through the real runner', () => {
  test('text only, through the official openai client', async () => {
    const completion = await client.chat.completions.create({
      model: MODEL,
      messages: [
        { role: 'system', content: 'You are terse.' },
        { role: 'user', content: 'Hello there' },
      ],
      max_tokens: 8,
      temperature: 0,
    });
    assertMatchesSchema('CreateChatCompletionResponse', completion);
    assert.match(completion.id, /^chatcmpl-/);
    assert.equal(completion.object, 'chat.completion');
    assert.equal(completion.model, MODEL);
    const choice = completion.choices[0]!;
    assert.equal(choice.message.role, 'assistant');
    assert.equal(choice.message.refusal, null);
    assert.equal(choice.logprobs, null);
    assert.ok(['stop', 'length'].includes(choice.finish_reason));
    assert.ok(completion.usage!.prompt_tokens > 0);
    assert.ok(completion.usage!.completion_tokens > 0 && completion.usage!.completion_tokens <= 8);
    assert.equal(completion.usage!.total_tokens, completion.usage!.prompt_tokens + completion.usage!.completion_tokens);
  });

  test('each image adds its tokens to prompt_tokens', async () => {
    const png = dataUri(await makeImage({ width: 64, height: 48 }));
    const png2 = dataUri(await makeImage({ width: 40, height: 40, seed: 7 }));
    const ask = async (content: OpenAI.Chat.ChatCompletionContentPart[]) => {
      const completion = await client.chat.completions.create({
        model: MODEL,
        messages: [{ role: 'user', content }],
        max_tokens: 1,
        temperature: 0,
      });
      assertMatchesSchema('CreateChatCompletionResponse', completion);
      return completion.usage!.prompt_tokens;
    };
    const text = await ask([{ type: 'text', text: 'Look.' }]);
    const one = await ask([{ type: 'text', text: 'Look.' }, { type: 'image_url', image_url: { url: png } }]);
    const two = await ask([
      { type: 'text', text: 'Look.' },
      { type: 'image_url', image_url: { url: png } },
      { type: 'image_url', image_url: { url: png2, detail: 'high' } },
    ]);
    assert.ok(one >= text + imageTokens, `one image: ${one} vs text ${text} (+${imageTokens} expected)`);
    assert.ok(two >= one + imageTokens, `two images: ${two} vs one ${one}`);
    assert.equal(two - one, one - text, 'every image of the same model costs the same here');
  });

  test('images across turns are all counted', async () => {
    const a = dataUri(await makeImage({ seed: 2 }));
    const b = dataUri(await makeImage({ seed: 3 }));
    const single = await client.chat.completions.create({ model: MODEL, messages: [userImage(a)], max_tokens: 1 });
    const multi = await client.chat.completions.create({
      model: MODEL,
      messages: [userImage(a), { role: 'assistant', content: 'ok' }, userImage(b, 'And this one?')],
      max_tokens: 1,
    });
    assert.ok(multi.usage!.prompt_tokens >= single.usage!.prompt_tokens + imageTokens);
  });

  test('WebP bytes labelled as JPEG, PNG with alpha, JPEG, GIF, AVIF and TIFF are all accepted', async () => {
    const cases: [string, string][] = [
      ['webp as jpeg', dataUri(await makeImage({ format: 'webp' }), 'image/jpeg')],
      ['png with alpha', dataUri(await makeImage({ format: 'png', alpha: true }))],
      ['jpeg', dataUri(await makeImage({ format: 'jpeg' }), 'image/jpeg')],
      ['gif', dataUri(await makeImage({ format: 'gif' }), 'image/gif')],
      ['avif', dataUri(await makeImage({ format: 'avif' }), 'image/avif')],
      ['tiff', dataUri(await makeImage({ format: 'tiff' }), 'application/octet-stream')],
    ];
    for (const [name, url] of cases) {
      const completion = await client.chat.completions.create({ model: MODEL, messages: [userImage(url)], max_tokens: 2 });
      assertMatchesSchema('CreateChatCompletionResponse', completion);
      assert.ok(completion.usage!.prompt_tokens > imageTokens, name);
    }
  });

  test('streaming gives the same text as non-streaming at temperature 0 with the same seed', async () => {
    const request = {
      model: MODEL,
      messages: [userImage(dataUri(await makeImage({ seed: 5 })))],
      max_tokens: 24,
      temperature: 0,
      seed: 42,
    };
    const whole = await client.chat.completions.create(request);
    const stream = await client.chat.completions.create({ ...request, stream: true });
    let text = '';
    let sawRole = false;
    let finish: string | null = null;
    let chunks = 0;
    let id: string | undefined;
    for await (const chunk of stream) {
      assertMatchesSchema('CreateChatCompletionStreamResponse', chunk);
      id ??= chunk.id;
      assert.equal(chunk.id, id, 'every chunk of a stream has the same id');
      if (chunks === 0) {
        assert.equal(chunk.choices[0]?.delta.role, 'assistant', 'the first chunk carries the role');
        sawRole = true;
      }
      chunks += 1;
      text += chunk.choices[0]?.delta.content ?? '';
      finish = chunk.choices[0]?.finish_reason ?? finish;
      assert.equal('usage' in chunk, false, 'no usage field without include_usage');
    }
    assert.ok(sawRole);
    assert.equal(text, whole.choices[0]!.message.content);
    assert.equal(finish, whole.choices[0]!.finish_reason);
  });

  test('stream_options.include_usage ends with a usage chunk with no choices', async () => {
    const response = await fetch(`${iris.baseUrl}/v1/openai/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify({
        model: MODEL,
        messages: [userImage(dataUri(await makeImage()))],
        max_tokens: 6,
        stream: true,
        stream_options: { include_usage: true },
      }),
    });
    assert.equal(response.status, 200);
    assert.match(response.headers.get('content-type') ?? '', /^text\/event-stream/);
    const raw = await response.text();
    assert.ok(raw.endsWith('data: [DONE]\n\n'), 'ends with [DONE]');
    const events = raw.split('\n\n').filter(Boolean).map((block) => block.replace(/^data: /, ''));
    assert.equal(events.pop(), '[DONE]');
    const chunks = events.map((event) => JSON.parse(event));
    const ids = new Set(chunks.map((chunk) => chunk.id));
    assert.equal(ids.size, 1, 'every chunk has the same id');
    for (const chunk of chunks) assertMatchesSchema('CreateChatCompletionStreamResponse', chunk);
    const last = chunks.at(-1);
    assert.deepEqual(last.choices, []);
    assert.ok(last.usage.prompt_tokens > imageTokens);
    assert.ok(last.usage.completion_tokens >= 1);
    for (const chunk of chunks.slice(0, -1)) assert.equal(chunk.usage, null, 'usage is null before the last chunk');
    const text = chunks.map((chunk) => chunk.choices[0]?.delta?.content ?? '').join('');
    // Random weights produce invalid UTF-8 byte sequences; what reaches the client is still whole characters.
    assert.doesNotMatch(text, /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/, 'no split surrogate pairs');
  });

  test('the models list', async () => {
    const list = await fetch(`${iris.baseUrl}/v1/openai/models`, { headers: { authorization: `Bearer ${KEY}` } }).then((r) => r.json() as Promise<any>);
    assertMatchesSchema('ListModelsResponse', list);
    assert.deepEqual(list.data.map((model: { id: string }) => model.id), [MODEL]);
    assert.deepEqual(list.data[0].input_modalities, ['text', 'image']);
    const viaSdk = await client.models.list();
    assert.equal(viaSdk.data[0]?.id, MODEL);
    const one = await client.models.retrieve(MODEL);
    assertMatchesSchema('Model', one);
    const plain = await fetch(`${iris.baseUrl}/v1/models`, { headers: { authorization: `Bearer ${KEY}` } });
    assert.equal(plain.status, 200);
  });

  test('health and readiness need no key', async () => {
    assert.equal((await fetch(`${iris.baseUrl}/health`)).status, 200);
    const ready = await fetch(`${iris.baseUrl}/ready`);
    assert.equal(ready.status, 200);
    assert.deepEqual(((await ready.json()) as any).models, [{ id: MODEL, ready: true }]);
  });
});

describe('errors in the OpenAI shape', () => {
  test('401 without a key, with a wrong key, and through the SDK', async () => {
    const body = JSON.stringify({ model: MODEL, messages: [{ role: 'user', content: 'hi' }] });
    const none = await fetch(`${iris.baseUrl}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
    const noneJson = await none.json();
    assertError({ status: none.status, json: noneJson }, 401, null, 'invalid_api_key');
    const wrong = await postRaw(body, { authorization: 'Bearer wrong' });
    assertError(wrong, 401, null, 'invalid_api_key');
    const models = await fetch(`${iris.baseUrl}/v1/models`);
    assert.equal(models.status, 401);
    // OpenAI types a bad key as an authentication error, not an invalid request.
    for (const json of [noneJson, wrong.json, await models.json()]) assert.equal(json.error.type, 'authentication_error');
    const bad = new OpenAI({ baseURL: `${iris.baseUrl}/v1/openai`, apiKey: 'nope', maxRetries: 0 });
    await assert.rejects(bad.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'x' }] }), (error: unknown) => {
      assert.ok(error instanceof OpenAI.AuthenticationError);
      assert.equal(error.code, 'invalid_api_key');
      assert.equal(error.type, 'authentication_error');
      return true;
    });
  });

  test('400 for malformed JSON, empty bodies and non-objects', async () => {
    assertError(await postRaw('{"model": "tiny", "messages": ['), 400, null, 'invalid_json');
    assertError(await postRaw('[1,2,3]'), 400, null);
    assertError(await postRaw('"text"'), 400, null);
    const formEncoded = await postRaw('{"model":"tiny"', { 'content-type': 'application/x-www-form-urlencoded' });
    assertError(formEncoded, 400, null, 'invalid_json');
  });

  test('400 naming the field for wrong types and bad parts', async () => {
    const base = { model: MODEL, messages: [{ role: 'user', content: 'hi' }] };
    const cases: [unknown, string][] = [
      [{ messages: base.messages }, 'model'],
      [{ model: MODEL }, 'messages'],
      [{ model: MODEL, messages: [] }, 'messages'],
      [{ ...base, temperature: 'hot' }, 'temperature'],
      [{ ...base, max_tokens: -1 }, 'max_tokens'],
      [{ ...base, stop: ['a', 'b', 'c', 'd', 'e'] }, 'stop'],
      [{ ...base, n: 999 }, 'n'],
      [{ ...base, n: 0 }, 'n'],
      [{ model: MODEL, messages: [{ role: 'wizard', content: 'hi' }] }, 'messages[0].role'],
      [{ model: MODEL, messages: [{ role: 'user', content: 42 }] }, 'messages[0].content'],
      [{ model: MODEL, messages: [{ role: 'user', content: [{ type: 'video', video: {} }] }] }, 'messages[0].content[0].type'],
      [{ model: MODEL, messages: [{ role: 'user', content: [{ type: 'text' }] }] }, 'messages[0].content[0].text'],
      [
        { model: MODEL, messages: [{ role: 'user', content: [{ type: 'text', text: 'x' }, { type: 'image_url', image_url: { url: 'data:image/png;base64,AAAA', detail: 'ultra' } }] }] },
        'messages[0].content[1].image_url.detail',
      ],
      [{ model: MODEL, messages: [{ role: 'user', content: [{ type: 'image_url', image_url: {} }] }] }, 'messages[0].content[0].image_url.url'],
    ];
    for (const [body, param] of cases) assertError(await postRaw(JSON.stringify(body)), 400, param);
  });

  test('an unknown top-level field (a typo, another server\'s extension) is a 400 naming it, on chat completions and tokenize', async () => {
    const base = { model: MODEL, messages: [{ role: 'user', content: 'hi' }] };
    for (const [field, value] of [['max_token', 8], ['guided_json', { type: 'object' }], ['temprature', 0]] as const) {
      for (const path of ['/v1/chat/completions', '/v1/openai/tokenize']) {
        const response = await fetch(`${iris.baseUrl}${path}`, {
          method: 'POST',
          headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' },
          body: JSON.stringify({ ...base, [field]: value }),
        });
        const result: { status: number; json: any } = { status: response.status, json: await response.json() };
        assertError(result, 400, field, 'unknown_parameter');
        assert.equal(result.json.error.type, 'invalid_request_error');
        assert.equal(result.json.error.message, `Unrecognized request argument supplied: ${field}`, path);
      }
    }
    // Named even beside another mistake, and escaped when the name holds control characters or quotes.
    assertError(await postRaw(JSON.stringify({ model: MODEL, max_token: 8 })), 400, 'max_token', 'unknown_parameter');
    const odd = await postRaw(JSON.stringify({ ...base, 'a"\nb': 1 }));
    assertError(odd, 400, 'a\\"\\nb', 'unknown_parameter');
    assert.equal(odd.json.error.message, 'Unrecognized request argument supplied: a\\"\\nb');
    // The official client sends whatever it is given; the answer is its BadRequestError naming the field.
    await assert.rejects(
      client.chat.completions.create({ ...base, max_token: 8 } as unknown as OpenAI.ChatCompletionCreateParamsNonStreaming),
      (error: unknown) => error instanceof OpenAI.BadRequestError && error.param === 'max_token' && error.code === 'unknown_parameter',
    );
    // OpenAI fields that are unset (null) pass, even the ones refused when set.
    const accepted = await postRaw(JSON.stringify({ ...base, max_tokens: 2, audio: null, functions: null, prediction: null, moderation: null, user: 'u', prompt_cache_options: null }));
    assert.equal(accepted.status, 200, JSON.stringify(accepted.json));
  });

  test('400 for bad base64, non-image bytes, truncated images and SVG, naming the part', async () => {
    const part = (url: string) => JSON.stringify({
      model: MODEL,
      messages: [{ role: 'user', content: [{ type: 'text', text: 'x' }, { type: 'image_url', image_url: { url } }] }],
    });
    const param = 'messages[0].content[1].image_url.url';
    assertError(await postRaw(part('data:image/png;base64,@@not base64!!')), 400, param, 'invalid_image');
    assertError(await postRaw(part(`data:image/png;base64,${Buffer.from('just some text, not an image').toString('base64')}`)), 400, param, 'invalid_image');
    const jpeg = await makeImage({ format: 'jpeg', width: 128, height: 128 });
    assertError(await postRaw(part(dataUri(jpeg.subarray(0, Math.floor(jpeg.length / 2)), 'image/jpeg'))), 400, param, 'invalid_image');
    const svg = Buffer.from('<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect width="10" height="10"/></svg>');
    assertError(await postRaw(part(dataUri(svg, 'image/svg+xml'))), 400, param, 'invalid_image');
    assertError(await postRaw(part('data:image/png,rawbytes')), 400, param, 'invalid_image_url');
  });

  test('404 model_not_found for an unknown model, 404 for an unknown path', async () => {
    const result = await postRaw(JSON.stringify({ model: 'no-such-model', messages: [{ role: 'user', content: 'hi' }] }));
    assertError(result, 404, 'model', 'model_not_found');
    const path = await fetch(`${iris.baseUrl}/v1/nothing-here`, { headers: { authorization: `Bearer ${KEY}` } });
    assertError({ status: path.status, json: await path.json() }, 404);
    await assert.rejects(client.models.retrieve('nope'), (error: unknown) => error instanceof OpenAI.NotFoundError);
  });
});

describe('request limits', () => {
  test('a body over max_body_bytes is a 413 in the OpenAI shape, too many images a 400, and the server keeps serving', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'iris-limits-'));
    const model = await syntheticModel('tiny');
    const config = join(dir, 'iris.yaml');
    await writeFile(
      config,
      [
        'models:',
        `  - { id: ${MODEL}, model: "${model.modelPath}", mmproj: "${model.mmprojPath}" }`,
        'limits:',
        '  max_body_bytes: 65536',
        '  max_images_per_request: 2',
      ].join('\n'),
    );
    const limited = await startIris({ args: ['--config', config] });
    try {
      const post = async (body: string) => {
        const response = await fetch(`${limited.baseUrl}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
        return { status: response.status, json: (await response.json()) as any };
      };
      const huge = JSON.stringify({ model: MODEL, messages: [{ role: 'user', content: 'x'.repeat(100_000) }] });
      assertError(await post(huge), 413, null, 'payload_too_large');
      const image = dataUri(await makeImage({ width: 16, height: 16 }));
      const three = JSON.stringify({
        model: MODEL,
        messages: [{ role: 'user', content: [1, 2, 3].map(() => ({ type: 'image_url', image_url: { url: image } })) }],
      });
      assertError(await post(three), 400, 'messages', 'too_many_images');
      const ok = await post(JSON.stringify({ model: MODEL, messages: [{ role: 'user', content: 'hi' }], max_tokens: 2 }));
      assert.equal(ok.status, 200);
    } finally {
      await limited.stop();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
