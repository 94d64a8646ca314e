/**
 * Unit tests of the registry's lifecycle rules with an in-memory engine standing in for llama-server (the
 * integration tests run the same rules against real llama-server children).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Engine, EngineCompletion, StreamPart } from '../engines/engine.js';
import { IrisError } from '../errors.js';
import { GENERIC_IMAGE_POLICY } from '../images/image-policy.js';
import { silentLogger } from '../logger.js';
import { ModelRegistry, type ModelDefinition, type PreparedModel } from './model-registry.js';

const MiB = 1024 * 1024;
/** Capabilities beyond images, which the registry does not look at. */
const TEXT_FEATURES = { toolCalls: false, structuredOutputs: false, logprobs: false, maxChoicesPerRequest: 1 };

class TestEngine implements Engine {
  readonly capabilities = { vision: true, maxImagesPerRequest: 4, ...TEXT_FEATURES };
  started = 0;
  disposed = false;
  async complete(): Promise<EngineCompletion> {
    return { choices: [{ text: 'ok', toolCalls: [], finishReason: 'stop' }], usage: { promptTokens: 1, completionTokens: 1 } };
  }
  async *stream(): AsyncIterable<StreamPart> {
    yield { type: 'text-delta', text: 'ok' };
  }
  isReady(): boolean {
    return this.started > 0 && !this.disposed;
  }
  async ready(): Promise<void> {
    this.started += 1;
  }
  async dispose(): Promise<void> {
    this.disposed = true;
  }
}

function definition(id: string, overrides: Partial<ModelDefinition> = {}): ModelDefinition {
  return { id, vision: true, context: 1024, slots: 1, keepAliveMs: -1, created: 0, ownedBy: 'iris', ...overrides };
}

interface Harness {
  registry: ModelRegistry;
  prepares: string[];
  engines: Map<string, TestEngine[]>;
}

function harness(definitions: ModelDefinition[], options: { budget?: number; sizes?: Record<string, number>; failPrepare?: Set<string> } = {}): Harness {
  const prepares: string[] = [];
  const engines = new Map<string, TestEngine[]>();
  const registry = new ModelRegistry(definitions, {
    logger: silentLogger(),
    memoryBudgetBytes: options.budget ?? 1024 * MiB,
    queue: { maxQueued: 4, queueTimeoutMs: 1000 },
    prepare: async (model): Promise<PreparedModel> => {
      prepares.push(model.id);
      await Promise.resolve();
      if (options.failPrepare?.has(model.id)) throw new IrisError('pull failed', { status: 503, type: 'service_unavailable_error', code: 'model_unavailable' });
      return {
        memoryBytes: options.sizes?.[model.id] ?? 100 * MiB,
        imagePolicy: GENERIC_IMAGE_POLICY,
        capabilities: { vision: model.id !== 'text-only', maxImagesPerRequest: 4, ...TEXT_FEATURES },
        createEngine: () => {
          const engine = new TestEngine();
          engines.set(model.id, [...(engines.get(model.id) ?? []), engine]);
          return engine;
        },
      };
    },
    discover: async (id) => (id.startsWith('catalog/') ? definition(id.toUpperCase()) : undefined),
  });
  return { registry, prepares, engines };
}

describe('ModelRegistry', () => {
  it('admission prepares the model (once) without starting its engine', async () => {
    const { registry, prepares, engines } = harness([definition('a'), definition('text-only')]);
    const model = await registry.resolve('a');
    const [first, second] = await Promise.all([model.admission(), model.admission()]);
    assert.equal(first, second);
    assert.deepEqual(prepares, ['a']);
    assert.equal(engines.get('a'), undefined, 'no engine was created');
    assert.equal(registry.list()[0]?.state, 'unloaded');
    const textOnly = await registry.resolve('text-only');
    assert.equal((await textOnly.admission()).capabilities.vision, false);
    assert.equal(textOnly.definition.vision, false, 'the definition learns the real capability');
  });

  it('concurrent leases share one load; a leased model reports loaded', async () => {
    const { registry, engines } = harness([definition('a')]);
    const model = await registry.resolve('a');
    const leases = await Promise.all([model.lease(), model.lease(), model.lease()]);
    assert.equal(engines.get('a')?.length, 1);
    assert.equal(engines.get('a')?.[0]?.started, 1);
    assert.equal(registry.list()[0]?.active, 3);
    for (const lease of leases) lease.release();
    assert.equal(registry.list()[0]?.active, 0);
    assert.equal(registry.list()[0]?.state, 'loaded');
  });

  it('a failed preparation is tried afresh by the next request', async () => {
    const failPrepare = new Set(['a']);
    const { registry, prepares } = harness([definition('a')], { failPrepare });
    const model = await registry.resolve('a');
    await assert.rejects(model.lease(), /pull failed/);
    failPrepare.delete('a');
    (await model.lease()).release();
    assert.deepEqual(prepares, ['a', 'a']);
  });

  it('evicts the least recently used idle model to make room, never a leased one', async () => {
    const { registry, engines } = harness([definition('a'), definition('b'), definition('c')], { budget: 250 * MiB });
    const a = await (await registry.resolve('a')).lease();
    const b = await (await registry.resolve('b')).lease();
    b.release();
    a.release();
    // b was used before a: b goes.
    const c = await (await registry.resolve('c')).lease();
    const states = Object.fromEntries(registry.list().map((status) => [status.definition.id, status.state]));
    assert.equal(states['b'], 'unloaded');
    assert.equal(states['a'], 'loaded');
    assert.equal(engines.get('b')?.[0]?.disposed, true);
    // a is idle, c is leased: loading b again evicts a.
    const bAgain = await (await registry.resolve('b')).lease();
    assert.equal(engines.get('a')?.[0]?.disposed, true);
    assert.equal(engines.get('c')?.[0]?.disposed, false);
    // Both remaining models are leased: a cannot be made room for.
    await assert.rejects((await registry.resolve('a')).lease(), (error: unknown) => error instanceof IrisError && error.status === 503 && error.code === 'server_overloaded');
    c.release();
    bAgain.release();
  });

  it('a model larger than the budget is refused with model_unavailable without preparing it again', async () => {
    const { registry, prepares } = harness([definition('huge')], { budget: 50 * MiB });
    const model = await registry.resolve('huge');
    for (let i = 0; i < 2; i++) {
      await assert.rejects(model.lease(), (error: unknown) => error instanceof IrisError && error.code === 'model_unavailable' && /--memory-budget/.test(error.message));
    }
    assert.deepEqual(prepares, ['huge']);
  });

  it('keep_alive 0 unloads right after the last lease is released', async () => {
    const { registry, engines } = harness([definition('a', { keepAliveMs: 0 })]);
    const model = await registry.resolve('a');
    const first = await model.lease();
    const second = await model.lease();
    first.release();
    assert.equal(registry.list()[0]?.state, 'loaded', 'still leased');
    second.release();
    assert.notEqual(registry.list()[0]?.state, 'loaded');
    assert.equal(engines.get('a')?.[0]?.disposed, true);
  });

  it('resolves unknown ids with 404, and discovers on-demand ids once under their canonical id', async () => {
    const { registry } = harness([definition('a')]);
    await assert.rejects(registry.resolve('nope'), (error: unknown) => error instanceof IrisError && error.status === 404);
    const [one, two] = await Promise.all([registry.resolve('catalog/x'), registry.resolve('catalog/x')]);
    assert.equal(one.definition.id, 'CATALOG/X');
    assert.equal(two.definition.id, 'CATALOG/X');
    assert.equal((await registry.resolve('CATALOG/X')).definition.id, 'CATALOG/X');
    assert.deepEqual(registry.list().map((status) => status.definition.id), ['a', 'CATALOG/X']);
  });

  it('dispose stops loaded engines and refuses new leases', async () => {
    const { registry, engines } = harness([definition('a')]);
    const model = await registry.resolve('a');
    (await model.lease()).release();
    await registry.dispose();
    assert.equal(engines.get('a')?.[0]?.disposed, true);
    await assert.rejects(model.lease(), (error: unknown) => error instanceof IrisError && error.status === 503);
  });
});
