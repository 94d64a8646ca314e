/**
 * The remote engine against real upstreams on loopback: an Iris started through its CLI (with an API key)
 * and a bare llama-server, both on the tiny synthetic model. The engine is driven directly; closed ports
 * stand in for dead endpoints.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { EngineImage, EngineMessage, EngineRequest, GenerationParams, StreamPart } from '../../src/engines/engine.js';
import { freeLoopbackPort } from '../../src/engines/llama-runner/llama-server-process.js';
import { OpenAIUpstreamEngine, type OpenAIUpstreamSettings } from '../../src/engines/openai-upstream/openai-upstream-engine.js';
import { IrisError } from '../../src/errors.js';
import { createLogger, silentLogger } from '../../src/logger.js';
import { makeImage } from '../helpers/images.js';
import { assertMatchesSchema } from '../helpers/openapi.js';
import { llamaServerBinary, llamaServerSlots, startIris, syntheticModel, waitFor, type IrisProcess } from '../helpers/test-env.js';
import { childRequestsProcessing, llamaChild } from '../helpers/llama-child.js';

const KEY = 'upstream-key-123';
const WRONG_KEY = 'wrong-key-9f8e7d6c5b4a';
const IRIS_MODEL = 'tiny';
const LLAMA_MODEL = 'tiny-llama';

/** A bare llama-server on a loopback port. */
interface LlamaServer {
  url: string;
  port: number;
  child: ChildProcess;
  stop(): Promise<void>;
}

async function startLlamaServer(options: { port?: number; slots?: number } = {}): Promise<LlamaServer> {
  const model = await syntheticModel('tiny');
  const port = options.port ?? (await freeLoopbackPort());
  const child = spawn(
    await llamaServerBinary(),
    [
      '--model', model.modelPath, '--mmproj', model.mmprojPath, '--host', '127.0.0.1', '--port', String(port),
      '--ctx-size', '8192', '--parallel', String(options.slots ?? 1), '--alias', LLAMA_MODEL, '--no-webui', '--jinja', '--slots',
    ],
    { stdio: ['ignore', 'ignore', process.env['IRIS_TEST_VERBOSE'] ? 'inherit' : 'ignore'] },
  );
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const stop = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(timer);
    }
  };
  const healthy = await waitFor(
    () => fetch(`http://127.0.0.1:${port}/health`).then((response) => response.ok, () => false),
    60_000,
  );
  if (!healthy) {
    await stop();
    throw new Error('llama-server did not become healthy');
  }
  return { url: `http://127.0.0.1:${port}/v1`, port, child, stop };
}

const logger = process.env['IRIS_TEST_VERBOSE'] ? createLogger('debug') : silentLogger();
const engines: OpenAIUpstreamEngine[] = [];

function engine(settings: Partial<OpenAIUpstreamSettings> & Pick<OpenAIUpstreamSettings, 'endpoints' | 'model'>): OpenAIUpstreamEngine {
  const created = new OpenAIUpstreamEngine(
    { id: 'remote', vision: true, maxImagesPerRequest: 8, timeoutMs: 30_000, ...settings },
    { logger },
  );
  engines.push(created);
  return created;
}

/** Reads a stream to its end and returns its last part. */
async function lastPart(iterator: AsyncIterator<StreamPart>): Promise<StreamPart | undefined> {
  let last: StreamPart | undefined;
  for (;;) {
    const next = await iterator.next();
    if (next.done) return last;
    last = next.value;
  }
}

function text(value: string): EngineMessage {
  return { role: 'user', content: [{ type: 'text', text: value }] };
}

function request(messages: EngineMessage[], params: GenerationParams = {}, signal = new AbortController().signal): EngineRequest {
  return { messages, params, signal };
}

async function pngImage(seed = 1): Promise<EngineImage> {
  return { data: await makeImage({ width: 64, height: 48, seed }), mimeType: 'image/png', width: 64, height: 48 };
}

async function collect(parts: AsyncIterable<StreamPart>): Promise<StreamPart[]> {
  const out: StreamPart[] = [];
  for await (const part of parts) out.push(part);
  return out;
}

/** The rejection of `promise`, which must be an IrisError. */
async function rejection(promise: Promise<unknown>): Promise<IrisError> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof IrisError, `expected an IrisError, got ${String(error)}`);
    assertMatchesSchema('ErrorResponse', error.toBody());
    return error;
  }
  assert.fail('expected a rejection');
}

/** A loopback port nothing listens on. */
const deadUrl = async (): Promise<string> => `http://127.0.0.1:${await freeLoopbackPort()}/v1`;

let iris: IrisProcess;
let llama: LlamaServer;
let imageTokens: number;

before(async () => {
  const model = await syntheticModel('tiny');
  imageTokens = model.imageTokensPerImage;
  [iris, llama] = await Promise.all([
    startIris({
      args: ['--model', model.modelPath, '--mmproj', model.mmprojPath, '--model-id', IRIS_MODEL, '--api-key', KEY, '--ctx-size', '8192', '--slots', '1'],
    }),
    startLlamaServer(),
  ]);
});

after(async () => {
  await Promise.all(engines.map((created) => created.dispose()));
  await Promise.all([iris?.stop(), llama?.stop()]);
});

const upstreams = () => [
  { name: 'an upstream Iris', endpoint: { url: `${iris.baseUrl}/v1`, apiKey: KEY }, model: IRIS_MODEL },
  { name: 'llama-server', endpoint: { url: llama.url }, model: LLAMA_MODEL },
];

describe('completions through upstreams', () => {
  test('an image through an upstream Iris: prompt_tokens counts it', async () => {
    const remote = engine({ endpoints: [{ url: `${iris.baseUrl}/v1`, apiKey: KEY }], model: IRIS_MODEL });
    assert.equal(remote.isReady(), false, 'not ready before anything was heard from the upstream');
    await remote.ready();
    assert.equal(remote.isReady(), true);
    const plain = await remote.complete(request([text('Look.')], { maxTokens: 2, temperature: 0 }));
    const withImage = await remote.complete(
      request([{ role: 'user', content: [{ type: 'text', text: 'Look.' }, { type: 'image', image: await pngImage() }] }], { maxTokens: 2, temperature: 0 }),
    );
    assert.ok(plain.usage.promptTokens > 0);
    assert.ok(
      withImage.usage.promptTokens >= plain.usage.promptTokens + imageTokens,
      `with image ${withImage.usage.promptTokens} vs text ${plain.usage.promptTokens} (+${imageTokens} expected)`,
    );
    assert.ok(withImage.usage.completionTokens > 0 && withImage.usage.completionTokens <= 2);
    assert.ok(['stop', 'length'].includes(withImage.choices[0]!.finishReason));
  });

  for (const kind of ['an upstream Iris', 'llama-server']) {
    test(`streaming through ${kind}: text deltas, then finish and usage; equal to non-streaming at temperature 0 with a seed`, async () => {
      const upstream = upstreams().find((candidate) => candidate.name === kind)!;
      const remote = engine({ endpoints: [upstream.endpoint], model: upstream.model });
      const messages: EngineMessage[] = [
        { role: 'system', content: [{ type: 'text', text: 'You are terse.' }] },
        { role: 'user', content: [{ type: 'text', text: 'Describe it.' }, { type: 'image', image: await pngImage(5) }] },
      ];
      const params: GenerationParams = { maxTokens: 16, temperature: 0, seed: 42, topK: 40, minP: 0.05, repetitionPenalty: 1.1 };
      const parts = await collect(remote.stream(request(messages, params)));
      const deltas = parts.filter((part) => part.type === 'text-delta');
      assert.ok(deltas.length > 0, 'text arrived in deltas');
      assert.deepEqual(parts.slice(-2).map((part) => part.type), ['finish', 'usage']);
      assert.ok(parts.slice(0, -2).every((part) => part.type === 'text-delta'));
      const usage = parts.find((part) => part.type === 'usage');
      assert.ok(usage?.type === 'usage');
      assert.ok(usage.usage.promptTokens > imageTokens, `prompt tokens ${usage.usage.promptTokens}`);
      assert.ok(usage.usage.completionTokens > 0 && usage.usage.completionTokens <= 16);
      const streamed = deltas.map((part) => (part.type === 'text-delta' ? part.text : '')).join('');

      const whole = await remote.complete(request(messages, params));
      assert.equal(whole.choices[0]!.text, streamed);
      assert.equal(whole.usage.completionTokens, usage.usage.completionTokens);
      assert.equal(whole.usage.promptTokens, usage.usage.promptTokens);
    });
  }
});

describe('failover', () => {
  test('a dead endpoint is skipped for the next requests after one failed attempt', async () => {
    const remote = engine({
      endpoints: [{ url: await deadUrl() }, { url: `${iris.baseUrl}/v1`, apiKey: KEY }],
      model: IRIS_MODEL,
      cooldownMs: 60_000,
    });
    for (let index = 0; index < 4; index += 1) {
      const answer = await remote.complete(request([text(`hello ${index}`)], { maxTokens: 2 }));
      assert.ok(answer.usage.completionTokens > 0);
    }
    const [dead, live] = remote.endpointStatus();
    assert.equal(dead?.attempts, 1, 'the dead endpoint was tried once, then skipped during its cooldown');
    assert.equal(dead?.health, 'unhealthy');
    assert.equal(dead?.lastFailure, 'connection refused');
    assert.equal(live?.attempts, 4);
    assert.equal(live?.health, 'healthy');
    assert.equal(remote.isReady(), true);
  });

  test('all endpoints dead: 503 model_unavailable naming the model and the reason, then fast while they cool down', async () => {
    const remote = engine({ id: 'remote-dead', endpoints: [{ url: await deadUrl() }, { url: await deadUrl() }], model: IRIS_MODEL });
    const first = await rejection(remote.complete(request([text('hi')])));
    assert.equal(first.status, 503);
    assert.equal(first.code, 'model_unavailable');
    assert.match(first.message, /remote-dead/);
    assert.match(first.message, /connection refused/);
    assert.doesNotMatch(first.message, /127\.0\.0\.1/, 'client messages do not reveal upstream addresses');
    assert.deepEqual(remote.endpointStatus().map((status) => status.attempts), [1, 1]);

    const second = await rejection(collect(remote.stream(request([text('hi')]))));
    assert.equal(second.code, 'model_unavailable');
    assert.match(second.message, /next try in/);
    assert.deepEqual(remote.endpointStatus().map((status) => status.attempts), [1, 1], 'no attempt while cooling down');
    assert.equal(remote.isReady(), false);
    await assert.rejects(remote.ready(), (error: IrisError) => error.code === 'model_unavailable' && /connection refused/.test(error.message));
  });

  test('an endpoint that comes back is probed after its cooldown and used again', async () => {
    const port = await freeLoopbackPort();
    const remote = engine({ endpoints: [{ url: `http://127.0.0.1:${port}/v1` }], model: LLAMA_MODEL, cooldownMs: 200, maxCooldownMs: 400 });
    const failed = await rejection(remote.complete(request([text('hi')], { maxTokens: 2 })));
    assert.equal(failed.code, 'model_unavailable');
    const revived = await startLlamaServer({ port });
    try {
      assert.ok(await waitFor(() => remote.isReady(), 10_000), 'the background probe found the endpoint healthy');
      const answer = await remote.complete(request([text('hi')], { maxTokens: 2 }));
      assert.ok(answer.usage.completionTokens > 0);
      assert.equal(remote.endpointStatus()[0]?.attempts, 2);
    } finally {
      await revived.stop();
    }
  });
});

describe('failures mid-way', () => {
  test('an upstream that sends no headers in time is skipped for the next endpoint', async () => {
    // The upstream Iris has one slot and sends headers with the first token: a long generation holding the
    // slot leaves the next request without an answer.
    const holder = engine({ endpoints: [{ url: `${iris.baseUrl}/v1`, apiKey: KEY }], model: IRIS_MODEL });
    const hold = new AbortController();
    const holding = holder.stream(longRequest(hold.signal))[Symbol.asyncIterator]();
    try {
      assert.equal((await holding.next()).value?.type, 'text-delta');
      const remote = engine({
        endpoints: [{ url: `${iris.baseUrl}/v1`, apiKey: KEY }, { url: llama.url }],
        model: IRIS_MODEL,
        timeoutMs: 1000,
      });
      const started = Date.now();
      const answer = await remote.complete(request([text('hi')], { maxTokens: 2 }));
      assert.ok(answer.usage.completionTokens > 0);
      assert.ok(Date.now() - started >= 1000);
      const [slow, fast] = remote.endpointStatus();
      assert.equal(slow?.health, 'unhealthy');
      assert.equal(slow?.lastFailure, 'no response within 1000 ms');
      assert.equal(fast?.health, 'healthy');
    } finally {
      hold.abort();
      await holding.return?.();
    }
  });

  test('an upstream that dies in the middle of a stream ends it with an engine_error part', async () => {
    const doomed = await startLlamaServer();
    try {
      const remote = engine({ endpoints: [{ url: doomed.url }], model: LLAMA_MODEL });
      const iterator = remote.stream(longRequest(new AbortController().signal))[Symbol.asyncIterator]();
      assert.equal((await iterator.next()).value?.type, 'text-delta');
      doomed.child.kill('SIGKILL');
      const last = await lastPart(iterator);
      assert.ok(last?.type === 'error', 'the stream ended with an error part');
      assert.equal(last.error.code, 'engine_error');
      assert.equal(last.error.status, 502);
      assert.match(last.error.message, /in the middle of the answer/);
      assert.equal(remote.endpointStatus()[0]?.health, 'unhealthy');
    } finally {
      await doomed.stop();
    }
  });
});

describe('upstream errors', () => {
  test('an upstream 400 is our 400 with its message, and is not retried on the next endpoint', async () => {
    const irisEndpoint = { url: `${iris.baseUrl}/v1`, apiKey: KEY };
    const remote = engine({ endpoints: [irisEndpoint, { ...irisEndpoint }], model: IRIS_MODEL });
    const error = await rejection(remote.complete(request([text('hi')], { maxTokens: 2, stop: ['a', 'b', 'c', 'd', 'e'] })));
    assert.equal(error.status, 400);
    assert.equal(error.type, 'invalid_request_error');
    assert.equal(error.param, 'stop');
    assert.match(error.message, /Invalid value for 'stop'/, "the upstream Iris's own message");
    assert.deepEqual(remote.endpointStatus().map((status) => status.attempts).sort(), [0, 1]);
    assert.ok(remote.endpointStatus().every((status) => status.health !== 'unhealthy'), 'a bad request says nothing about the endpoint');
  });

  test("an upstream that rejects Iris's key: 502, and the key is never shown", async () => {
    const remote = engine({ endpoints: [{ url: `${iris.baseUrl}/v1`, apiKey: WRONG_KEY }], model: IRIS_MODEL });
    const error = await rejection(remote.complete(request([text('hi')], { maxTokens: 2 })));
    assert.equal(error.status, 502);
    assert.equal(error.code, 'engine_error');
    assert.match(error.message, /rejected Iris's API key/);
    assert.ok(!JSON.stringify(error.toBody()).includes(WRONG_KEY));
    const notReady = await rejection(remote.ready());
    assert.match(notReady.message, /rejected Iris's API key/);
    assert.ok(!notReady.message.includes(WRONG_KEY));
  });

  test('ready() names the ids an upstream lists when it does not serve our model', async () => {
    for (const upstream of upstreams()) {
      const remote = engine({ endpoints: [upstream.endpoint], model: 'no-such-model' });
      const error = await rejection(remote.ready());
      assert.equal(error.status, 503);
      assert.equal(error.code, 'model_unavailable');
      assert.match(error.message, /no-such-model/, upstream.name);
      assert.ok(error.message.includes(`'${upstream.model}'`), `${upstream.name}: ${error.message}`);
      assert.equal(remote.isReady(), false);
    }
  });
});

/** A request that generates for a long time: random weights stop early, ignore_eos keeps them going. */
function longRequest(signal: AbortSignal): EngineRequest {
  return request([text('Write a very long story.')], { maxTokens: 7000, ignoreEos: true, temperature: 1 }, signal);
}

describe('cancellation', () => {
  test('a client that stops reading a stream stops the generation in llama-server', async () => {
    const remote = engine({ endpoints: [{ url: llama.url }], model: LLAMA_MODEL });
    const controller = new AbortController();
    const iterator = remote.stream(longRequest(controller.signal))[Symbol.asyncIterator]();
    assert.equal((await iterator.next()).value?.type, 'text-delta');
    assert.equal((await iterator.next()).value?.type, 'text-delta');
    assert.ok((await llamaServerSlots(llama.port)).some((slot) => slot.is_processing), 'generating');
    controller.abort();
    await iterator.return?.();
    assert.ok(await waitFor(async () => (await llamaServerSlots(llama.port)).every((slot) => !slot.is_processing), 5000), 'llama-server stopped generating');
  });

  test('an aborted non-streaming request through an upstream Iris frees its runner, and rejects with request_cancelled', async () => {
    // Iris's own runner takes only Iris's per-start key; the test reads it as Iris's user could.
    const runner = await llamaChild(iris);
    const remote = engine({ endpoints: [{ url: `${iris.baseUrl}/v1`, apiKey: KEY }], model: IRIS_MODEL });
    const controller = new AbortController();
    const pending = remote.complete(longRequest(controller.signal));
    assert.ok(await waitFor(async () => (await childRequestsProcessing(runner)) > 0, 10_000), 'generation started');
    controller.abort();
    const error = await rejection(pending);
    assert.equal(error.code, 'request_cancelled');
    assert.ok(await waitFor(async () => (await childRequestsProcessing(runner)) === 0, 5000), 'slot freed upstream');
  });

  test('dispose() ends requests in flight with shutting_down and refuses new ones', async () => {
    const remote = engine({ endpoints: [{ url: llama.url }], model: LLAMA_MODEL });
    const iterator = remote.stream(longRequest(new AbortController().signal))[Symbol.asyncIterator]();
    assert.equal((await iterator.next()).value?.type, 'text-delta');
    await remote.dispose();
    const last = await lastPart(iterator);
    assert.ok(last?.type === 'error', 'the stream ended with an error part');
    assert.equal(last.error.code, 'shutting_down');
    const refused = await rejection(remote.complete(request([text('hi')])));
    assert.equal(refused.code, 'shutting_down');
    assert.equal(remote.isReady(), false);
    assert.ok(await waitFor(async () => (await llamaServerSlots(llama.port)).every((slot) => !slot.is_processing), 5000));
  });
});

describe('a remote model from the config file', () => {
  test('Iris serves a model from upstream endpoints (one dead) named in its config, without loading anything itself', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'iris-remote-'));
    const dead = await freeLoopbackPort();
    const config = join(dir, 'iris.yaml');
    await writeFile(
      config,
      [
        'models:',
        '  - id: big/remote-vlm',
        '    upstream:',
        `      model: ${IRIS_MODEL}`,
        '      endpoints:',
        `        - { url: "http://127.0.0.1:${dead}/v1" }`,
        `        - { url: "${iris.baseUrl}/v1", api_key: ${KEY} }`,
        'preload: [big/remote-vlm]',
      ].join('\n'),
    );
    const front = await startIris({ args: ['--config', config] });
    try {
      const image = `data:image/png;base64,${(await makeImage({ width: 64, height: 64 })).toString('base64')}`;
      const body = (imageCount: number) =>
        JSON.stringify({
          model: 'big/remote-vlm',
          max_tokens: 3,
          // Sent upstream under both its names (vLLM's and llama-server's): the Iris upstream takes both.
          repetition_penalty: 1.1,
          top_k: 5,
          messages: [{ role: 'user', content: [{ type: 'text', text: 'hi' }, ...Array.from({ length: imageCount }, () => ({ type: 'image_url', image_url: { url: image } }))] }],
        });
      const ask = async (imageCount: number) => {
        const response = await fetch(`${front.baseUrl}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: body(imageCount) });
        const json = (await response.json()) as any;
        assert.equal(response.status, 200, JSON.stringify(json));
        assertMatchesSchema('CreateChatCompletionResponse', json);
        assert.equal(json.model, 'big/remote-vlm');
        return json.usage.prompt_tokens as number;
      };
      const none = await ask(0);
      const one = await ask(1);
      assert.equal(one - none, imageTokens, 'the upstream counted the image');
      const models = (await fetch(`${front.baseUrl}/v1/models`).then((response) => response.json())) as any;
      assert.deepEqual(models.data.map((model: any) => [model.id, model.owned_by, model.loaded, model.memory_bytes]), [['big/remote-vlm', 'remote', true, 0]]);
      assert.equal(front.logRecords('starting llama-server').length, 0, 'the front Iris runs no llama-server');
    } finally {
      await front.stop();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
