/**
 * The whole chat-completions surface beyond plain text, through a real llama-server on synthetic models,
 * with images: tools, structured outputs, logprobs, n, logit_bias and the parameters Iris refuses or
 * accepts without effect. The synthetic vocabulary is byte-level, so a grammar can force any JSON even from
 * random weights: every structured answer below is the grammar's doing, checked with ajv and against
 * OpenAI's spec.
 *
 * Tool calls go through real chat templates from the pinned llama.cpp source (Llama 3.2, Mistral Small 3.2,
 * Apertus), each in its model's native call format, parsed back by llama-server. Random weights would
 * never start a call on their own where a format allows text before it, so each templated model has its
 * format's call marker as one token, and the request biases towards it with `logit_bias`; from the marker
 * on, the grammar writes the call.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { createOpenAICompatible } from '@ai-sdk/openai-compatible';
import { generateObject } from 'ai';
import OpenAI from 'openai';
import { zodResponseFormat } from 'openai/helpers/zod';
import { stringify as stringifyYaml } from 'yaml';
import { z } from 'zod';
import { REFUSED_PARAMETERS } from '../../src/protocol/chat-request.js';
import { assertMatchesSchema } from '../helpers/openapi.js';
import { dataUri, makeImage } from '../helpers/images.js';
import { COLOR_SCHEMA } from '../helpers/schemas.js';
import { startIris, syntheticModel, templatedModel, type IrisProcess } from '../helpers/test-env.js';
import { tokenIds } from '../helpers/token-ids.js';

const MODEL = 'tiny';

/** Models with real chat templates and the token that starts a call in their native format. */
const TEMPLATED = [
  { id: 'llama-3.2', template: 'meta-llama-Llama-3.2-3B-Instruct', marker: '{"name": "' },
  { id: 'mistral-small-3.2', template: 'Mistral-Small-3.2-24B-Instruct-2506', marker: '[TOOL_CALLS]' },
  { id: 'apertus', template: 'Apertus-8B-Instruct', marker: '<|tools_prefix|>' },
] as const;
const TOOLS_MODEL = 'llama-3.2';

let iris: IrisProcess;
let client: OpenAI;
let image: string;
let configDir: string;
/** logit_bias that makes each templated model start its call. */
const startCall = new Map<string, Record<string, number>>();

before(async () => {
  const tiny = await syntheticModel('tiny');
  const models = [{ id: MODEL, model: tiny.modelPath, mmproj: tiny.mmprojPath, context: 8192, slots: 3 }];
  for (const entry of TEMPLATED) {
    const synthetic = await templatedModel(entry.template, [entry.marker]);
    models.push({ id: entry.id, model: synthetic.modelPath, mmproj: synthetic.mmprojPath, context: 4096, slots: 2 });
    const [marker] = await tokenIds(synthetic.modelPath, [entry.marker]);
    startCall.set(entry.id, { [String(marker)]: 100 });
  }
  configDir = await mkdtemp(join(tmpdir(), 'iris-surface-'));
  const config = join(configDir, 'iris.yaml');
  await writeFile(config, stringifyYaml({ models }));
  iris = await startIris({ args: ['--config', config] });
  client = new OpenAI({ baseURL: `${iris.baseUrl}/v1`, apiKey: 'unused', maxRetries: 0, timeout: 120_000 });
  image = dataUri(await makeImage({ width: 64, height: 48, seed: 4 }));
});

after(async () => {
  await iris?.stop();
  if (configDir) await rm(configDir, { recursive: true, force: true });
});

/** A user turn with text and the test image. */
const look = (text = 'What colour is it?'): OpenAI.Chat.ChatCompletionUserMessageParam => ({
  role: 'user',
  content: [
    { type: 'text', text },
    { type: 'image_url', image_url: { url: image } },
  ],
});


const REPORT_TOOL: OpenAI.Chat.ChatCompletionTool = {
  type: 'function',
  function: {
    name: 'report_color',
    description: 'Report the main colour of the image.',
    parameters: { type: 'object', properties: { color: { type: 'string', enum: ['red', 'green', 'blue'] } }, required: ['color'], additionalProperties: false },
  },
};

const ajv = new Ajv2020({ strict: false });

async function postRaw(body: unknown): Promise<{ status: number; json: any }> {
  const response = await fetch(`${iris.baseUrl}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  return { status: response.status, json: JSON.parse(await response.text()) };
}

/** A request that forces a call of report_color on a templated model, with an image. */
function forcedCall(model: string, seed: number): Omit<OpenAI.Chat.ChatCompletionCreateParamsNonStreaming, 'stream'> {
  return {
    model,
    messages: [look()],
    tools: [REPORT_TOOL],
    tool_choice: { type: 'function', function: { name: 'report_color' } },
    parallel_tool_calls: false,
    logit_bias: startCall.get(model)!,
    max_tokens: 300,
    seed,
  };
}

function assertToolCall(call: OpenAI.Chat.ChatCompletionMessageToolCall | undefined): void {
  assert.ok(call && call.type === 'function', 'a function tool call');
  assert.match(call.id, /^call_/);
  assert.equal(call.function.name, 'report_color');
  const args = JSON.parse(call.function.arguments) as { color: string };
  assert.ok(ajv.validate(REPORT_TOOL.type === 'function' ? REPORT_TOOL.function.parameters! : {}, args), JSON.stringify(ajv.errors));
}

describe('tools', () => {
  test('a forced tool call with an image answers tool_calls whose arguments match the schema', async () => {
    const completion = await client.chat.completions.create(forcedCall(TOOLS_MODEL, 1));
    assertMatchesSchema('CreateChatCompletionResponse', completion);
    const choice = completion.choices[0]!;
    assert.equal(choice.finish_reason, 'tool_calls');
    assert.equal(choice.message.content, null);
    assert.equal(choice.message.tool_calls?.length, 1);
    assertToolCall(choice.message.tool_calls?.[0]);
  });

  test('the same streamed: deltas as OpenAI streams them, assembled by the official client', async () => {
    const stream = client.chat.completions.stream({
      model: TOOLS_MODEL,
      messages: [look()],
      tools: [REPORT_TOOL],
      tool_choice: 'required',
      parallel_tool_calls: false,
      logit_bias: startCall.get(TOOLS_MODEL)!,
      max_tokens: 300,
      seed: 2,
      stream_options: { include_usage: true },
    });
    const deltas: OpenAI.Chat.ChatCompletionChunk.Choice.Delta.ToolCall[] = [];
    for await (const chunk of stream) {
      assertMatchesSchema('CreateChatCompletionStreamResponse', chunk);
      for (const choice of chunk.choices) deltas.push(...(choice.delta.tool_calls ?? []));
    }
    const final = await stream.finalChatCompletion();
    assert.equal(final.choices[0]!.finish_reason, 'tool_calls');
    assertToolCall(final.choices[0]!.message.tool_calls?.[0]);
    // The first delta of a call carries its id, type and name; argument fragments follow.
    assert.match(deltas[0]?.id ?? '', /^call_/);
    assert.equal(deltas[0]?.type, 'function');
    assert.equal(deltas[0]?.function?.name, 'report_color');
    assert.ok(deltas.slice(1).every((delta) => delta.id === undefined && delta.function?.name === undefined));
    assert.ok(final.usage && final.usage.completion_tokens > 0);
  });

  test('a tool-result turn (assistant tool_calls, then a tool message) is answered', async () => {
    const completion = await client.chat.completions.create({
      model: TOOLS_MODEL,
      messages: [
        look(),
        { role: 'assistant', content: null, tool_calls: [{ id: 'call_abc123', type: 'function', function: { name: 'report_color', arguments: '{"color":"red"}' } }] },
        { role: 'tool', tool_call_id: 'call_abc123', content: 'Recorded.' },
      ],
      tools: [REPORT_TOOL],
      // The history is what is under test. With "auto", random weights may start something call-like that
      // llama-server then cannot parse (a 502): "none" keeps the answer plain text.
      tool_choice: 'none',
      max_tokens: 4,
      seed: 1,
    });
    assertMatchesSchema('CreateChatCompletionResponse', completion);
    assert.ok(completion.usage!.prompt_tokens > 0);
  });

  test('a model whose chat template cannot render tools refuses them by name', async () => {
    const result = await postRaw({ model: MODEL, messages: [{ role: 'user', content: 'hi' }], tools: [REPORT_TOOL] });
    assert.equal(result.status, 400, JSON.stringify(result.json));
    assert.equal(result.json.error.param, 'tools');
    assert.equal(result.json.error.code, 'model_not_supported');
  });

  for (const entry of TEMPLATED) {
    test(`a forced call with an image through ${entry.template}'s own template and call format`, async () => {
      const completion = await client.chat.completions.create({
        ...forcedCall(entry.id, 3),
        messages: [{ role: 'system', content: 'You report colours.' }, look()],
      });
      assertMatchesSchema('CreateChatCompletionResponse', completion);
      const choice = completion.choices[0]!;
      assert.equal(choice.finish_reason, 'tool_calls', JSON.stringify(choice.message));
      assert.equal(choice.message.tool_calls?.length, 1);
      assertToolCall(choice.message.tool_calls?.[0]);
      assert.ok(completion.usage!.prompt_tokens > 16, 'the image is in the prompt');
    });
  }

  test('tokenize counts the tools the chat template renders into the prompt', async () => {
    const count = async (body: Record<string, unknown>): Promise<{ status: number; json: any }> => {
      const response = await fetch(`${iris.baseUrl}/v1/tokenize`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: TOOLS_MODEL, messages: [{ role: 'user', content: 'hi' }], ...body }),
      });
      return { status: response.status, json: await response.json() };
    };
    const plain = await count({});
    const withTools = await count({ tools: [REPORT_TOOL] });
    assert.equal(withTools.status, 200);
    assert.ok(withTools.json.prompt_tokens > plain.json.prompt_tokens, `${withTools.json.prompt_tokens} vs ${plain.json.prompt_tokens}`);
    const refused = await count({ model: MODEL, tools: [REPORT_TOOL] });
    assert.equal(refused.status, 400);
    assert.equal(refused.json.error.param, 'tools');
  });

  test('bad tool definitions and choices are a 400 naming the field', async () => {
    const base = { model: MODEL, messages: [{ role: 'user', content: 'hi' }] };
    const cases: [unknown, string][] = [
      [{ ...base, tools: [{ type: 'function', function: { name: 'bad name!' } }] }, 'tools[0].function.name'],
      [{ ...base, tools: [{ type: 'custom', custom: { name: 'x' } }] }, 'tools[0].type'],
      [{ ...base, tools: [{ type: 'function', function: { name: 'f', parameters: 'nope' } }] }, 'tools[0].function.parameters'],
      [{ ...base, tools: [REPORT_TOOL], tool_choice: { type: 'function', function: { name: 'other' } } }, 'tool_choice.function.name'],
      [{ ...base, tool_choice: 'required' }, 'tool_choice'],
      [{ ...base, tools: [REPORT_TOOL], tool_choice: 'sometimes' }, 'tool_choice'],
      [{ model: MODEL, messages: [{ role: 'tool', content: 'x' }] }, 'messages[0].tool_call_id'],
      [{ model: TOOLS_MODEL, messages: [{ role: 'user', content: 'hi' }], tools: [REPORT_TOOL], logprobs: true }, 'logprobs'],
    ];
    for (const [body, param] of cases) {
      const result = await postRaw(body);
      assert.equal(result.status, 400, JSON.stringify(result.json));
      assertMatchesSchema('ErrorResponse', result.json);
      assert.equal(result.json.error.param, param, result.json.error.message);
    }
  });
});

describe('structured outputs', () => {
  const jsonSchemaFormat = { type: 'json_schema', json_schema: { name: 'colour_report', schema: COLOR_SCHEMA, strict: true } } as const;

  test('json_schema with an image: the content validates against the schema', async () => {
    const completion = await client.chat.completions.create({ model: MODEL, messages: [look()], response_format: jsonSchemaFormat, max_tokens: 200, seed: 3 });
    assertMatchesSchema('CreateChatCompletionResponse', completion);
    assert.equal(completion.choices[0]!.finish_reason, 'stop');
    const content = JSON.parse(completion.choices[0]!.message.content!) as unknown;
    assert.ok(ajv.validate(COLOR_SCHEMA, content), JSON.stringify(ajv.errors));
  });

  test('json_schema streamed: the joined deltas validate', async () => {
    const stream = await client.chat.completions.create({ model: MODEL, messages: [look()], response_format: jsonSchemaFormat, max_tokens: 200, seed: 4, stream: true });
    let text = '';
    for await (const chunk of stream) {
      assertMatchesSchema('CreateChatCompletionStreamResponse', chunk);
      text += chunk.choices[0]?.delta.content ?? '';
    }
    assert.ok(ajv.validate(COLOR_SCHEMA, JSON.parse(text)), JSON.stringify(ajv.errors));
  });

  test('json_object: the content parses as a JSON object', async () => {
    // Random weights would ramble inside strings; tilting the logits towards closing marks keeps the
    // object short (logit_bias by token id, the ids of the byte tokens '"' and '}').
    const ids = await byteTokenIds(['"', '}']);
    const completion = await client.chat.completions.create({
      model: MODEL,
      messages: [look('Answer in JSON.')],
      response_format: { type: 'json_object' },
      logit_bias: Object.fromEntries(ids.map((id) => [String(id), 8])),
      max_tokens: 300,
      seed: 5,
    });
    assert.equal(completion.choices[0]!.finish_reason, 'stop', completion.choices[0]!.message.content ?? '');
    const value = JSON.parse(completion.choices[0]!.message.content!) as unknown;
    assert.ok(value !== null && typeof value === 'object' && !Array.isArray(value));
  });

  test('a schema the engine cannot turn into a grammar is a 400 naming response_format.json_schema.schema', async () => {
    for (const stream of [false, true]) {
      const result = await postRaw({
        model: MODEL,
        messages: [{ role: 'user', content: 'hi' }],
        response_format: { type: 'json_schema', json_schema: { name: 'broken', schema: { type: 'object', properties: { a: { $ref: '#/$defs/missing' } } } } },
        stream,
      });
      assert.equal(result.status, 400, JSON.stringify(result.json));
      assertMatchesSchema('ErrorResponse', result.json);
      assert.equal(result.json.error.param, 'response_format.json_schema.schema');
    }
  });

  test('chat.completions.parse with a zod response format and an image gives a typed object', async () => {
    const Colour = z.object({ color: z.enum(['red', 'green', 'blue']), bright: z.boolean() });
    const completion = await client.chat.completions.parse({
      model: MODEL,
      messages: [look()],
      response_format: zodResponseFormat(Colour, 'colour'),
      max_tokens: 200,
      seed: 6,
    });
    const parsed = completion.choices[0]!.message.parsed;
    assert.ok(parsed, 'parsed');
    assert.ok(['red', 'green', 'blue'].includes(parsed.color));
    assert.equal(typeof parsed.bright, 'boolean');
  });
});

test('Vercel AI SDK generateObject (openai-compatible provider) with an image gives a typed object', async () => {
  const provider = createOpenAICompatible({ name: 'iris', baseURL: `${iris.baseUrl}/v1`, supportsStructuredOutputs: true });
  const { object } = await generateObject({
    model: provider.chatModel(MODEL),
    schema: z.object({ color: z.enum(['red', 'green', 'blue']), bright: z.boolean() }),
    messages: [
      {
        role: 'user',
        content: [
          { type: 'text', text: 'What colour is it?' },
          { type: 'image', image: Buffer.from(image.slice(image.indexOf(',') + 1), 'base64'), mediaType: 'image/png' },
        ],
      },
    ],
    maxOutputTokens: 200,
    seed: 9,
    maxRetries: 0,
  });
  assert.ok(['red', 'green', 'blue'].includes(object.color));
  assert.equal(typeof object.bright, 'boolean');
});

describe('logprobs', () => {
  test('non-streamed: per-token logprobs with top_logprobs, as OpenAI\'s spec defines them', async () => {
    const completion = await client.chat.completions.create({ model: MODEL, messages: [look()], logprobs: true, top_logprobs: 3, max_tokens: 6, seed: 7 });
    assertMatchesSchema('CreateChatCompletionResponse', completion);
    const content = completion.choices[0]!.logprobs?.content ?? [];
    // llama-server reports a token's logprobs with the text it releases; a token whose text it holds back
    // (part of a character, the end of the answer) can go without, so there may be fewer entries than tokens.
    assert.ok(content.length > 0 && content.length <= completion.usage!.completion_tokens);
    for (const token of content) {
      assertMatchesSchema('ChatCompletionTokenLogprob', token);
      assert.ok(token.logprob <= 0);
      assert.ok(token.top_logprobs.length > 0 && token.top_logprobs.length <= 3);
    }
  });

  test('streamed: each content chunk carries the logprobs of its tokens', async () => {
    const stream = await client.chat.completions.create({ model: MODEL, messages: [look()], logprobs: true, top_logprobs: 0, max_tokens: 6, seed: 8, stream: true });
    let tokens = 0;
    for await (const chunk of stream) {
      assertMatchesSchema('CreateChatCompletionStreamResponse', chunk);
      for (const token of chunk.choices[0]?.logprobs?.content ?? []) {
        tokens += 1;
        assert.deepEqual(token.top_logprobs, []);
      }
    }
    assert.ok(tokens > 0);
  });

  test('top_logprobs outside 0-20 or without logprobs is a 400', async () => {
    const base = { model: MODEL, messages: [{ role: 'user', content: 'hi' }] };
    for (const body of [{ ...base, logprobs: true, top_logprobs: 21 }, { ...base, top_logprobs: 2 }]) {
      const result = await postRaw(body);
      assert.equal(result.status, 400);
      assert.equal(result.json.error.param, 'top_logprobs');
    }
  });
});

describe('n', () => {
  test('n=3 gives choices 0..2, the prompt counted once and the completions summed', async () => {
    const one = await client.chat.completions.create({ model: MODEL, messages: [look()], max_tokens: 5, seed: 10, ignore_eos: true } as OpenAI.Chat.ChatCompletionCreateParamsNonStreaming);
    const completion = await client.chat.completions.create({ model: MODEL, messages: [look()], n: 3, max_tokens: 5, seed: 10, ignore_eos: true } as OpenAI.Chat.ChatCompletionCreateParamsNonStreaming);
    assertMatchesSchema('CreateChatCompletionResponse', completion);
    assert.deepEqual(completion.choices.map((choice) => choice.index), [0, 1, 2]);
    assert.equal(completion.usage!.prompt_tokens, one.usage!.prompt_tokens);
    assert.equal(completion.usage!.completion_tokens, 15);
    // Choice 0 uses the seed itself, so it is the single-choice answer.
    assert.equal(completion.choices[0]!.message.content, one.choices[0]!.message.content);
  });

  test('n=2 streamed interleaves chunks of both choices', async () => {
    const stream = await client.chat.completions.create({ model: MODEL, messages: [look()], n: 2, max_tokens: 8, seed: 11, stream: true, stream_options: { include_usage: true } });
    const indices: number[] = [];
    const finished = new Set<number>();
    let usage: OpenAI.CompletionUsage | undefined;
    for await (const chunk of stream) {
      assertMatchesSchema('CreateChatCompletionStreamResponse', chunk);
      for (const choice of chunk.choices) {
        indices.push(choice.index);
        if (choice.finish_reason) finished.add(choice.index);
      }
      usage = chunk.usage ?? usage;
    }
    assert.deepEqual([...new Set(indices)].sort(), [0, 1]);
    assert.deepEqual([...finished].sort(), [0, 1]);
    assert.ok(usage && usage.completion_tokens > 0);
  });
});

describe('every OpenAI parameter is honoured, accepted without effect, or refused by name', () => {
  const base = { model: MODEL, messages: [{ role: 'user', content: 'hi' }], max_tokens: 2 };

  test('refused parameters are a 400 naming them', async () => {
    const values: Record<string, unknown> = {
      audio: { voice: 'alloy', format: 'mp3' },
      prediction: { type: 'content', content: 'x' },
      web_search_options: {},
      functions: [{ name: 'f' }],
      function_call: 'auto',
      reasoning_effort: 'high',
      verbosity: 'low',
      moderation: { model: 'omni' },
    };
    assert.deepEqual(Object.keys(values).sort(), Object.keys(REFUSED_PARAMETERS).sort());
    for (const [name, value] of [...Object.entries(values), ['modalities', ['text', 'audio']] as const]) {
      const result = await postRaw({ ...base, [name]: value });
      assert.equal(result.status, 400, name);
      assert.equal(result.json.error.param, name);
      assert.equal(result.json.error.code, 'unsupported_parameter');
    }
  });

  test('parameters that change nothing about the answer are accepted', async () => {
    const result = await postRaw({
      ...base,
      user: 'u-1',
      metadata: { team: 'a' },
      store: false,
      service_tier: 'auto',
      prompt_cache_key: 'k',
      safety_identifier: 's',
      modalities: ['text'],
      stream_options: null,
    });
    assert.equal(result.status, 200, JSON.stringify(result.json));
  });

  test('logit_bias by token id is honoured', async () => {
    const [id] = await byteTokenIds(['Z']);
    const completion = await client.chat.completions.create({
      model: MODEL,
      messages: [look()],
      logit_bias: { [String(id)]: 100 },
      max_tokens: 6,
      ignore_eos: true,
    } as OpenAI.Chat.ChatCompletionCreateParamsNonStreaming);
    assert.equal(completion.choices[0]!.message.content, 'ZZZZZZ');
  });
});

describe('the remote engine passes the surface through to an upstream Iris', () => {
  let front: IrisProcess;
  let frontClient: OpenAI;

  before(async () => {
    const config = join(configDir, 'front.yaml');
    const upstream = { model: TOOLS_MODEL, endpoints: [{ url: `${iris.baseUrl}/v1` }], timeout_ms: 120_000 };
    await writeFile(config, stringifyYaml({ models: [{ id: 'remote', upstream }] }));
    front = await startIris({ args: ['--config', config] });
    frontClient = new OpenAI({ baseURL: `${front.baseUrl}/v1`, apiKey: 'unused', maxRetries: 0, timeout: 120_000 });
  });

  after(async () => {
    await front?.stop();
  });

  test('tools: a forced call with an image comes back as tool_calls, plain and streamed', async () => {
    // The upstream runs TOOLS_MODEL: its call marker is what to bias towards.
    const params = { ...forcedCall(TOOLS_MODEL, 12), model: 'remote' };
    const completion = await frontClient.chat.completions.create(params);
    assertMatchesSchema('CreateChatCompletionResponse', completion);
    assert.equal(completion.choices[0]!.finish_reason, 'tool_calls');
    assertToolCall(completion.choices[0]!.message.tool_calls?.[0]);
    const streamed = await frontClient.chat.completions.stream(params).finalChatCompletion();
    assertToolCall(streamed.choices[0]!.message.tool_calls?.[0]);
  });

  test('json_schema, logprobs and n', async () => {
    const completion = await frontClient.chat.completions.create({
      model: 'remote',
      messages: [look()],
      response_format: { type: 'json_schema', json_schema: { name: 'colour_report', schema: COLOR_SCHEMA, strict: true } },
      logprobs: true,
      top_logprobs: 2,
      n: 2,
      max_tokens: 200,
      seed: 13,
    });
    assertMatchesSchema('CreateChatCompletionResponse', completion);
    assert.deepEqual(completion.choices.map((choice) => choice.index), [0, 1]);
    for (const choice of completion.choices) {
      assert.ok(ajv.validate(COLOR_SCHEMA, JSON.parse(choice.message.content!)), JSON.stringify(ajv.errors));
      const tokens = choice.logprobs?.content ?? [];
      assert.ok(tokens.length > 0);
      for (const token of tokens) assert.ok(token.top_logprobs.length > 0 && token.top_logprobs.length <= 2);
    }
  });
});

/** Token ids of the tiny model's single-character tokens. */
async function byteTokenIds(characters: string[]): Promise<number[]> {
  return tokenIds((await syntheticModel('tiny')).modelPath, characters);
}
