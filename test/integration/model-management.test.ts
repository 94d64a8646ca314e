/**
 * Several models in one server: loaded on first request (concurrent first requests share one load),
 * side by side, unloaded after keep_alive, evicted least-recently-used under a memory budget, refused with a
 * 503 when they cannot fit, and listed with their state.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import OpenAI from 'openai';
import { stringify as toYaml } from 'yaml';
import { estimateModelMemory } from '../../src/models/memory-estimate.js';
import { assertMatchesSchema } from '../helpers/openapi.js';
import { dataUri, makeImage } from '../helpers/images.js';
import { processExists, startIris, syntheticModel, waitFor, type IrisProcess } from '../helpers/test-env.js';

const SMALL = 'org/small';
const LARGER = 'larger';
const CONTEXT_SMALL = 2048;
const CONTEXT_LARGER = 4096;

let configDir: string;
let small: { model: string; mmproj: string };
let larger: { model: string; mmproj: string };
let smallBytes: number;
let largerBytes: number;

const PROMPT_CACHE_BYTES = 16 * 1024 * 1024;

before(async () => {
  configDir = await mkdtemp(join(tmpdir(), 'iris-models-'));
  const a = await syntheticModel('tiny');
  const b = await syntheticModel('tiny-tiling', 3);
  small = { model: a.modelPath, mmproj: a.mmprojPath };
  larger = { model: b.modelPath, mmproj: b.mmprojPath };
  // Each model's prompt cache (prompt_cache below) is part of its memory.
  smallBytes = (await estimateModelMemory({ ...small, context: CONTEXT_SMALL, promptCacheBytes: PROMPT_CACHE_BYTES })).totalBytes;
  largerBytes = (await estimateModelMemory({ ...larger, context: CONTEXT_LARGER, promptCacheBytes: PROMPT_CACHE_BYTES })).totalBytes;
  assert.notEqual(smallBytes, largerBytes, 'the two models differ in size');
});

after(async () => {
  await rm(configDir, { recursive: true, force: true });
});

/** Writes a config file with both models and starts Iris on it. */
async function serveBoth(options: { keepAlive?: Record<string, string | number>; memoryBudget?: number; preload?: string[] }): Promise<IrisProcess> {
  const path = join(configDir, `config-${Date.now()}-${Math.random().toString(36).slice(2)}.yaml`);
  const config = {
    models: [
      { id: SMALL, ...small, context: CONTEXT_SMALL, slots: 1, ...(options.keepAlive?.[SMALL] === undefined ? {} : { keep_alive: options.keepAlive[SMALL] }) },
      { id: LARGER, ...larger, context: CONTEXT_LARGER, slots: 1, ...(options.keepAlive?.[LARGER] === undefined ? {} : { keep_alive: options.keepAlive[LARGER] }) },
    ],
    preload: options.preload ?? [],
    prompt_cache: PROMPT_CACHE_BYTES,
    ...(options.memoryBudget === undefined ? {} : { memory_budget: options.memoryBudget }),
  };
  await writeFile(path, toYaml(config));
  return startIris({ args: ['--config', path] });
}

async function models(iris: IrisProcess): Promise<Map<string, any>> {
  const list = (await fetch(`${iris.baseUrl}/v1/openai/models`).then((response) => response.json())) as any;
  assertMatchesSchema('ListModelsResponse', list);
  return new Map(list.data.map((model: any) => [model.id, model]));
}

function clientFor(iris: IrisProcess): OpenAI {
  return new OpenAI({ baseURL: `${iris.baseUrl}/v1/openai`, apiKey: 'unused', maxRetries: 0 });
}

async function ask(iris: IrisProcess, model: string): Promise<OpenAI.Chat.ChatCompletion> {
  const completion = await clientFor(iris).chat.completions.create({
    model,
    messages: [{ role: 'user', content: [{ type: 'text', text: 'hi' }, { type: 'image_url', image_url: { url: dataUri(await makeImage({ width: 32, height: 32 })) } }] }],
    max_tokens: 3,
  });
  assertMatchesSchema('CreateChatCompletionResponse', completion);
  assert.equal(completion.model, model);
  return completion;
}

/** pid of the model's current llama-server, from Iris's logs. */
function runnerPid(iris: IrisProcess, model: string): number | undefined {
  const record = iris.logRecords('llama-server ready').filter((entry) => entry['model'] === model).at(-1);
  return record ? Number(record['pid']) : undefined;
}

function startsOf(iris: IrisProcess, model: string): number {
  return iris.logRecords('starting llama-server').filter((entry) => entry['model'] === model).length;
}

describe('model lifecycle', () => {
  test('lazy load, one shared load for concurrent first requests, two models side by side, keep_alive unload', async () => {
    const iris = await serveBoth({ keepAlive: { [SMALL]: '2s', [LARGER]: -1 } });
    try {
      let list = await models(iris);
      assert.equal(list.get(SMALL).loaded, false);
      assert.equal(list.get(LARGER).loaded, false);
      assert.deepEqual(list.get(SMALL).input_modalities, ['text', 'image']);
      assert.equal(list.get(LARGER).context_length, CONTEXT_LARGER);
      assert.equal(startsOf(iris, SMALL), 0, 'nothing is loaded before it is asked for');

      await Promise.all([ask(iris, SMALL), ask(iris, SMALL), ask(iris, SMALL)]);
      assert.equal(startsOf(iris, SMALL), 1, 'three concurrent first requests shared one load');
      await ask(iris, LARGER);
      list = await models(iris);
      assert.equal(list.get(SMALL).loaded, true);
      assert.equal(list.get(LARGER).loaded, true);
      assert.equal(list.get(LARGER).memory_bytes, largerBytes);
      const smallPid = runnerPid(iris, SMALL)!;
      const largerPid = runnerPid(iris, LARGER)!;
      assert.notEqual(smallPid, largerPid);

      // The model id has a slash; retrieving it works through the SDK and raw paths alike.
      const retrieved = await clientFor(iris).models.retrieve(SMALL);
      assertMatchesSchema('Model', retrieved);
      assert.equal(retrieved.id, SMALL);

      assert.ok(await waitFor(async () => (await models(iris)).get(SMALL).loaded === false, 15_000), 'small unloaded after keep_alive');
      assert.ok(await waitFor(() => !processExists(smallPid), 5000), 'its llama-server exited');
      assert.equal((await models(iris)).get(LARGER).loaded, true, 'keep_alive -1 stays loaded');
      assert.ok(processExists(largerPid));

      await ask(iris, SMALL);
      assert.equal(startsOf(iris, SMALL), 2, 'loaded again on demand');
    } finally {
      await iris.stop();
    }
  });

  test('under a memory budget the least recently used idle model is evicted', async () => {
    const iris = await serveBoth({ memoryBudget: Math.max(smallBytes, largerBytes) + 1024 });
    try {
      await ask(iris, SMALL);
      const smallPid = runnerPid(iris, SMALL)!;
      await ask(iris, LARGER);
      let list = await models(iris);
      assert.equal(list.get(SMALL).loaded, false, 'small was evicted to make room');
      assert.equal(list.get(LARGER).loaded, true);
      assert.equal(processExists(smallPid), false);
      await ask(iris, SMALL);
      list = await models(iris);
      assert.equal(list.get(SMALL).loaded, true);
      assert.equal(list.get(LARGER).loaded, false, 'and back');
    } finally {
      await iris.stop();
    }
  });

  test('a model busy serving is not evicted: the newcomer gets a 503, and the server keeps serving', async () => {
    const iris = await serveBoth({ memoryBudget: Math.max(smallBytes, largerBytes) + 1024, keepAlive: { [SMALL]: -1, [LARGER]: -1 } });
    try {
      await ask(iris, SMALL);
      const controller = new AbortController();
      const busy = await fetch(`${iris.baseUrl}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: SMALL, messages: [{ role: 'user', content: 'go on' }], max_tokens: 1500, ignore_eos: true, stream: true }),
        signal: controller.signal,
      });
      const reader = busy.body!.getReader();
      await reader.read();
      const refused = await fetch(`${iris.baseUrl}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: LARGER, messages: [{ role: 'user', content: 'hi' }], max_tokens: 2 }),
      });
      assert.equal(refused.status, 503);
      const body = (await refused.json()) as any;
      assertMatchesSchema('ErrorResponse', body);
      assert.match(body.error.message, /memory budget/);
      controller.abort();
      await reader.cancel().catch(() => undefined);
      // Once the busy model is idle, it can be evicted and the other model loads.
      assert.ok(await waitFor(async () => (await models(iris)).get(SMALL).loaded, 5000));
      await waitFor(async () => {
        const response = await fetch(`${iris.baseUrl}/v1/chat/completions`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ model: LARGER, messages: [{ role: 'user', content: 'hi' }], max_tokens: 2 }),
        });
        await response.body?.cancel();
        return response.status === 200;
      }, 10_000);
      assert.equal((await models(iris)).get(LARGER).loaded, true);
    } finally {
      await iris.stop();
    }
  });

  test('a model larger than the whole budget is refused with a 503 that says why; others still serve', async () => {
    const iris = await serveBoth({ memoryBudget: smallBytes + 1024 });
    try {
      const refused = await fetch(`${iris.baseUrl}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: LARGER, messages: [{ role: 'user', content: 'hi' }] }),
      });
      assert.equal(refused.status, 503);
      const body = (await refused.json()) as any;
      assertMatchesSchema('ErrorResponse', body);
      assert.equal(body.error.code, 'model_unavailable');
      assert.match(body.error.message, /--memory-budget/);
      await ask(iris, SMALL);
    } finally {
      await iris.stop();
    }
  });

  test('a request whose image is bad is refused before its model is loaded', async () => {
    const iris = await serveBoth({});
    try {
      const post = (content: unknown) =>
        fetch(`${iris.baseUrl}/v1/chat/completions`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ model: SMALL, max_tokens: 2, messages: [{ role: 'user', content }] }),
        });
      const notAnImage = await post([{ type: 'image_url', image_url: { url: `data:image/png;base64,${Buffer.from('not an image at all').toString('base64')}` } }]);
      assert.equal(notAnImage.status, 400);
      assert.equal(((await notAnImage.json()) as any).error.code, 'invalid_image');
      const refusedUrl = await post([{ type: 'image_url', image_url: { url: 'http://127.0.0.1:1/cat.png' } }]);
      assert.equal(refusedUrl.status, 400);
      assert.equal(((await refusedUrl.json()) as any).error.code, 'invalid_image_url');
      assert.equal(startsOf(iris, SMALL), 0, 'no llama-server was started for requests refused for their images');
      assert.equal((await models(iris)).get(SMALL).loaded, false);
      await ask(iris, SMALL);
      assert.equal(startsOf(iris, SMALL), 1);
    } finally {
      await iris.stop();
    }
  });

  test('preloaded models are loaded before /ready says ready', async () => {
    const iris = await serveBoth({ preload: [LARGER] });
    try {
      const list = await models(iris);
      assert.equal(list.get(LARGER).loaded, true);
      assert.equal(list.get(SMALL).loaded, false);
      const ready = (await fetch(`${iris.baseUrl}/ready`).then((response) => response.json())) as any;
      assert.deepEqual(ready.models, [{ id: LARGER, ready: true }]);
    } finally {
      await iris.stop();
    }
  });
});
