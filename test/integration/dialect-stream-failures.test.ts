/**
 * A failure in the middle of a streamed answer, in the Responses and Anthropic Messages dialects: the
 * stream that already started ends with the dialect's own failure events (`response.failed` and `error`;
 * Anthropic's `error` event), closes cleanly, and Iris goes on serving. Two real causes: the llama-server
 * child killed while it generates, and a remote upstream (a small loopback server standing in for a remote
 * deployment) that drops its connection after the first chunk.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import { startFakeUpstream, type FakeUpstream } from '../helpers/fake-upstream.js';
import { llamaChild } from '../helpers/llama-child.js';
import { assertMatchesSchema, assertResponseStreamEvent } from '../helpers/openapi.js';
import { startIris, syntheticModel, type IrisProcess } from '../helpers/test-env.js';
import { tokenIds } from '../helpers/token-ids.js';

/** A raw SSE stream read to its end: each event's name and data. Rejects if the connection breaks. */
async function readEvents(response: Response): Promise<{ event: string; data: any }[]> {
  assert.equal(response.status, 200);
  const text = await response.text();
  return text
    .split('\n\n')
    .filter((block) => block.includes('data: '))
    .map((block) => {
      const lines = block.split('\n');
      const event = lines.find((line) => line.startsWith('event: '))?.slice(7) ?? '';
      return { event, data: JSON.parse(lines.find((line) => line.startsWith('data: '))!.slice(6)) };
    });
}

describe('mid-stream failures: the llama-server child killed while generating', () => {
  const MODEL = 'tiny';
  let iris: IrisProcess;
  let bias: Record<string, number>;

  before(async () => {
    const model = await syntheticModel('tiny');
    // Every token biased to one letter: no end-of-sequence, so the answer runs until the child is killed.
    const [z] = await tokenIds(model.modelPath, ['Z']);
    bias = { [String(z)]: 100 };
    iris = await startIris({ args: ['--model', model.modelPath, '--model-id', MODEL, '--ctx-size', '8192', '--slots', '1'] });
  });

  after(async () => {
    await iris?.stop();
  });

  test('Responses (official SDK): response.failed, then an error event the SDK throws; the next request is served', async () => {
    const client = new OpenAI({ baseURL: `${iris.baseUrl}/v1`, apiKey: 'unused', maxRetries: 0, timeout: 60_000 });
    const child = await llamaChild(iris);
    const stream = await client.responses.create({ model: MODEL, input: 'Write forever.', max_output_tokens: 7000, stream: true, ...{ logit_bias: bias } });
    const events: { type: string }[] = [];
    const thrown = await (async () => {
      try {
        for await (const event of stream) {
          events.push(event);
          if (event.type === 'response.output_text.delta' && events.filter((seen) => seen.type === event.type).length === 1) process.kill(child.pid, 'SIGKILL');
        }
      } catch (error) {
        return error;
      }
      return undefined;
    })();
    for (const event of events) assertResponseStreamEvent(event);
    const types = events.map((event) => event.type);
    assert.deepEqual(types.slice(0, 4), ['response.created', 'response.in_progress', 'response.output_item.added', 'response.content_part.added']);
    assert.equal(types.at(-1), 'response.failed', types.join(' '));
    const failed = events.at(-1) as OpenAI.Responses.ResponseFailedEvent;
    assert.equal(failed.response.status, 'failed');
    assert.equal(failed.response.error?.code, 'server_error');
    assert.match(failed.response.error?.message ?? '', /stopped while working on this request/);
    // The sequence numbers run on without a gap.
    assert.deepEqual(events.map((event: any) => event.sequence_number), events.map((_, index) => index));
    // The error event that follows is thrown by the SDK as an API error (not a broken connection).
    assert.ok(thrown instanceof OpenAI.APIError, String(thrown));
    assert.match(thrown.message, /stopped while working on this request/);

    const next = await client.responses.create({ model: MODEL, input: 'hi', max_output_tokens: 2 });
    assertMatchesSchema('Response', next);
    assert.notEqual((await llamaChild(iris, child.pid)).pid, child.pid, 'a new llama-server serves it');
  });

  test('Anthropic (official SDK): an error event the SDK throws in Anthropic\'s shape; the next request is served', async () => {
    const client = new Anthropic({ baseURL: iris.baseUrl, apiKey: 'unused', maxRetries: 0, timeout: 60_000 });
    const child = await llamaChild(iris);
    const stream = client.messages.stream({ model: MODEL, max_tokens: 7000, messages: [{ role: 'user', content: 'Write forever.' }], ...{ logit_bias: bias } });
    const types: string[] = [];
    const thrown = await (async () => {
      try {
        for await (const event of stream) {
          types.push(event.type);
          if (event.type === 'content_block_delta' && types.filter((type) => type === event.type).length === 1) process.kill(child.pid, 'SIGKILL');
        }
      } catch (error) {
        return error;
      }
      return undefined;
    })();
    assert.deepEqual(types.slice(0, 3), ['message_start', 'content_block_start', 'content_block_delta'], types.join(' '));
    assert.ok(!types.includes('message_stop'), types.join(' '));
    assert.ok(thrown instanceof Anthropic.APIError, String(thrown));
    const body = (thrown as any).error;
    assert.equal(body.type, 'error');
    assert.equal(body.error.type, 'api_error');
    assert.match(body.error.message, /stopped while working on this request/);

    const next = await client.messages.create({ model: MODEL, max_tokens: 2, messages: [{ role: 'user', content: 'hi' }] });
    assert.equal(next.type, 'message');
  });
});

describe('mid-stream failures: a remote upstream that drops its connection after the first chunk', () => {
  const MODEL = 'remote';
  const upstreams: FakeUpstream[] = [];
  let dir: string;
  let iris: IrisProcess;

  before(async () => {
    // Three endpoints: each drop cools its endpoint down, and the third is left to serve what follows.
    for (let index = 0; index < 3; index += 1) {
      upstreams.push(await startFakeUpstream(MODEL, (body) => (JSON.stringify(body.messages).includes('drop') ? { kind: 'drop' } : { kind: 'complete' })));
    }
    dir = await mkdtemp(join(tmpdir(), 'iris-drop-'));
    const config = join(dir, 'iris.yaml');
    await writeFile(
      config,
      ['models:', `  - id: ${MODEL}`, '    upstream:', '      vision: false', '      endpoints:', ...upstreams.map((upstream) => `        - { url: "${upstream.url}" }`)].join('\n'),
    );
    iris = await startIris({ args: ['--config', config] });
  });

  after(async () => {
    await iris?.stop();
    for (const upstream of upstreams) await upstream.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const post = (path: string, body: unknown): Promise<Response> =>
    fetch(`${iris.baseUrl}${path}`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-request-id': 'dropped-run' }, body: JSON.stringify(body) });

  test('Responses: the events so far, response.failed, then an error event; every event valid; the stream closes', async () => {
    const events = await readEvents(await post('/v1/responses', { model: MODEL, input: 'please drop', stream: true }));
    for (const { event, data } of events) {
      assert.equal(event, data.type);
      assertResponseStreamEvent(data);
    }
    assert.deepEqual(
      events.map(({ event }) => event),
      ['response.created', 'response.in_progress', 'response.output_item.added', 'response.content_part.added', 'response.output_text.delta', 'response.failed', 'error'],
    );
    assert.equal(events[4]!.data.delta, 'hello');
    const failed = events[5]!.data;
    assert.equal(failed.response.status, 'failed');
    assert.equal(failed.response.error.code, 'server_error');
    assert.match(failed.response.error.message, /failed in the middle of the answer/);
    assert.match(failed.response.error.message, /\(request id dropped-run\)$/);
    const error = events[6]!.data;
    assert.deepEqual(
      { code: error.code, message: error.message, param: error.param, nested: error.error },
      { code: 'server_error', message: failed.response.error.message, param: null, nested: { type: 'server_error', code: 'server_error', message: failed.response.error.message, param: null } },
    );
    assert.deepEqual(events.map(({ data }) => data.sequence_number), events.map((_, index) => index));
  });

  test('Anthropic: the events so far, then an error event in Anthropic\'s shape; the stream closes', async () => {
    const events = await readEvents(await post('/v1/messages', { model: MODEL, max_tokens: 20, stream: true, messages: [{ role: 'user', content: 'please drop' }] }));
    assert.deepEqual(
      events.map(({ event }) => event),
      ['message_start', 'ping', 'content_block_start', 'content_block_delta', 'error'],
    );
    for (const { event, data } of events) assert.equal(data.type, event);
    assert.deepEqual(events[3]!.data.delta, { type: 'text_delta', text: 'hello' });
    const error = events[4]!.data;
    assert.deepEqual(Object.keys(error).sort(), ['error', 'request_id', 'type']);
    assert.equal(error.error.type, 'api_error');
    assert.match(error.error.message, /failed in the middle of the answer/);
    assert.equal(error.request_id, 'dropped-run');
  });

  test('the next requests of both dialects are served', async () => {
    const response = await post('/v1/responses', { model: MODEL, input: 'hi', stream: true });
    const events = await readEvents(response);
    assert.equal(events.at(-1)?.event, 'response.completed');
    const message = await post('/v1/messages', { model: MODEL, max_tokens: 20, messages: [{ role: 'user', content: 'hi' }] });
    assert.equal(message.status, 200);
    const body = (await message.json()) as any;
    assert.deepEqual(body.content, [{ type: 'text', text: 'hello world' }]);
    assert.equal(body.stop_reason, 'end_turn');
  });
});
