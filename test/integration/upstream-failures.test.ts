/**
 * The remote engine against upstreams that misbehave on purpose (small loopback servers the test controls):
 * a stream that stalls after its headers times out instead of hanging; a 5xx that one request causes is
 * retried once elsewhere and then reaches the client, without cooling down healthy endpoints; only 5xx
 * answers to several requests in a row put an endpoint in cooldown.
 */
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import type { EngineRequest, StreamPart } from '../../src/engines/engine.js';
import { OpenAIUpstreamEngine } from '../../src/engines/openai-upstream/openai-upstream-engine.js';
import { IrisError } from '../../src/errors.js';
import { silentLogger } from '../../src/logger.js';
import { startFakeUpstream, type FakeUpstream } from '../helpers/fake-upstream.js';

const MODEL = 'remote';
const cleanups: (() => Promise<void>)[] = [];
after(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
});

async function upstream(answer: Parameters<typeof startFakeUpstream>[1]): Promise<FakeUpstream> {
  const server = await startFakeUpstream(MODEL, answer);
  cleanups.push(() => server.close());
  return server;
}

function engine(urls: string[], idleTimeoutMs?: number): OpenAIUpstreamEngine {
  const created = new OpenAIUpstreamEngine(
    { id: MODEL, model: MODEL, endpoints: urls.map((url) => ({ url })), vision: false, maxImagesPerRequest: 0, timeoutMs: 5000, ...(idleTimeoutMs ? { idleTimeoutMs } : {}) },
    { logger: silentLogger() },
  );
  cleanups.push(() => created.dispose());
  return created;
}

function request(text: string): EngineRequest {
  return { messages: [{ role: 'user', content: [{ type: 'text', text }] }], params: {}, signal: new AbortController().signal, requestId: `id-${text}` };
}

async function collect(parts: AsyncIterable<StreamPart>): Promise<StreamPart[]> {
  const out: StreamPart[] = [];
  for await (const part of parts) out.push(part);
  return out;
}

const poisoned = (body: { messages?: { content?: unknown }[] }): boolean => JSON.stringify(body.messages).includes('poison');

describe('remote engine failures', () => {
  test('a stream that stalls after its first chunk ends with an error after the idle timeout', async () => {
    const stalled = await upstream(() => ({ kind: 'stream', stall: true }));
    const remote = engine([stalled.url], 300);
    const parts = await collect(remote.stream(request('hello')));
    assert.ok(parts[0]?.type === 'text-delta' && parts[0].text === 'hello', JSON.stringify(parts[0]));
    const last = parts.at(-1);
    assert.ok(last?.type === 'error', JSON.stringify(last));
    assert.match(last.error.message, /stalled: nothing for 300 ms/);
    assert.equal(stalled.requests[0]?.['x-request-id'], 'id-hello', 'the request id goes upstream');
  });

  test('a 5xx one request causes: one retry elsewhere, then the error; both healthy endpoints stay in rotation', async () => {
    const answer = (body: { messages?: { content?: unknown }[] }) =>
      poisoned(body) ? ({ kind: 'error', status: 500, message: 'template crashed on this input' } as const) : ({ kind: 'complete' } as const);
    const first = await upstream(answer);
    const second = await upstream(answer);
    const remote = engine([first.url, second.url]);
    await remote.ready();
    let error: unknown;
    try {
      await remote.complete(request('poison'));
    } catch (caught) {
      error = caught;
    }
    assert.ok(error instanceof IrisError);
    assert.equal(error.status, 502);
    assert.match(error.message, /template crashed on this input/);
    assert.equal(first.requests.length + second.requests.length, 2, 'tried once more elsewhere, then given up');
    for (const status of remote.endpointStatus()) {
      assert.equal(status.retryAt, undefined, `endpoint ${status.number} is not cooling down`);
      assert.notEqual(status.health, 'unhealthy');
    }
    // The next requests are served by both endpoints, round-robin.
    for (let index = 0; index < 2; index += 1) assert.equal((await remote.complete(request(`fine ${index}`))).choices[0]?.text, 'hello world');
    assert.ok(first.requests.length >= 2 && second.requests.length >= 2, `both endpoints took requests (${first.requests.length}, ${second.requests.length})`);
  });

  test('5xx answers to several requests in a row do cool the endpoint down', async () => {
    const broken = await upstream(() => ({ kind: 'error', status: 503, message: 'overloaded forever' }));
    const remote = engine([broken.url]);
    for (let attempt = 0; attempt < 3; attempt += 1) {
      await assert.rejects(remote.complete(request(`try ${attempt}`)), (error: unknown) => error instanceof IrisError && error.status === 502);
    }
    const [status] = remote.endpointStatus();
    assert.equal(status?.health, 'unhealthy');
    assert.ok(status?.retryAt !== undefined);
    const refused = await remote.complete(request('after')).catch((error: unknown) => error);
    assert.ok(refused instanceof IrisError && refused.status === 503 && refused.retryAfterSeconds !== undefined && refused.retryAfterSeconds >= 1);
    assert.equal(broken.requests.length, 3, 'no request is sent during the cooldown');
  });
});
