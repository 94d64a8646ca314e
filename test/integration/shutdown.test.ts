/**
 * Retry-After and graceful drain through the real server. Iris serves a synthetic model in a real
 * llama-server and a remote model whose upstream (a fake the test controls) holds its streams open until
 * released, so "two streams in flight" is a fact, not a race: a full queue answers 429 and a queue timeout
 * 503, both with Retry-After; on SIGTERM /ready turns 503, new requests get 503 + Retry-After, both streams
 * still end with [DONE], and the process exits 0 leaving no llama-server behind. A stream still running at
 * the end of --shutdown-grace ends with an error event.
 */
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { startFakeUpstream, type FakeUpstream } from '../helpers/fake-upstream.js';
import { processExists, startIris, syntheticModel, waitFor, type IrisProcess } from '../helpers/test-env.js';

const KEY = 'drain-key';
const REMOTE = 'remote';

const cleanups: (() => Promise<void>)[] = [];
after(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
});

async function startServer(upstream: FakeUpstream, extraArgs: string[] = []): Promise<IrisProcess> {
  const model = await syntheticModel('tiny');
  const config = join(tmpdir(), `iris-drain-${process.pid}-${Date.now()}.yaml`);
  await writeFile(
    config,
    [
      'limits:',
      '  max_queued_per_model: 1',
      '  queue_timeout_ms: 3000',
      'models:',
      `  - id: ${REMOTE}`,
      '    slots: 2',
      '    upstream:',
      `      endpoints: [{ url: "${upstream.url}" }]`,
    ].join('\n'),
  );
  const iris = await startIris({
    args: ['--config', config, '--model', model.modelPath, '--mmproj', model.mmprojPath, '--model-id', 'local', '--api-key', KEY, ...extraArgs],
  });
  cleanups.push(() => iris.stop());
  return iris;
}

/**
 * fetch, tried once more when the connection was closed under it: while draining, Iris closes idle
 * keep-alive connections, and a pooled one may be closed just as a request goes out on it (the
 * keep-alive race every HTTP client retries).
 */
async function send(url: string, init?: RequestInit): Promise<Response> {
  try {
    return await fetch(url, init);
  } catch (error) {
    if (!(error instanceof TypeError)) throw error;
    return fetch(url, init);
  }
}

function chat(iris: IrisProcess, body: Record<string, unknown>, headers: Record<string, string> = {}): Promise<Response> {
  return send(`${iris.baseUrl}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json', ...headers },
    body: JSON.stringify({ model: REMOTE, messages: [{ role: 'user', content: 'hi' }], ...body }),
  });
}

/** Opens a stream and waits for its first chunk; `rest` resolves with everything it sent. */
async function openStream(iris: IrisProcess, id: string): Promise<{ rest: Promise<string> }> {
  const response = await chat(iris, { stream: true }, { 'x-request-id': id });
  assert.equal(response.status, 200);
  const reader = response.body!.getReader();
  const decoder = new TextDecoder();
  let text = '';
  while (!text.includes('hello')) {
    const { value, done } = await reader.read();
    if (done) break;
    text += decoder.decode(value, { stream: true });
  }
  const rest = (async () => {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return text;
      text += decoder.decode(value, { stream: true });
    }
  })();
  return { rest };
}

function retryAfter(response: Response): number {
  const header = response.headers.get('retry-after');
  assert.ok(header !== null, `status ${response.status} without Retry-After`);
  assert.match(header, /^\d+$/);
  return Number(header);
}

function exitOf(iris: IrisProcess): Promise<number | null> {
  if (iris.child.exitCode !== null) return Promise.resolve(iris.child.exitCode);
  return new Promise((resolve) => iris.child.once('exit', (code) => resolve(code)));
}

describe('Retry-After and graceful drain', () => {
  test('429 and 503 carry Retry-After; SIGTERM during two streams: both end with [DONE], exit 0, no llama-server left', async () => {
    const upstream = await startFakeUpstream(REMOTE, () => ({ kind: 'stream' }));
    cleanups.push(() => upstream.close());
    const iris = await startServer(upstream);
    // Log lines reach the pipe asynchronously, possibly after the /ready answer.
    const readyRecord = () => iris.logRecords('llama-server ready')[0];
    assert.ok(await waitFor(() => readyRecord() !== undefined), 'iris logged that llama-server is ready');
    const llamaPid = Number(readyRecord()!['pid']);
    assert.ok(llamaPid > 0 && processExists(llamaPid));

    const first = await openStream(iris, 'stream-1');
    const second = await openStream(iris, 'stream-2');
    assert.equal(upstream.held, 2);
    assert.equal(upstream.requests[0]?.['x-request-id'], 'stream-1', 'the request id goes upstream');

    // Both slots are held: one more waits in the queue (and times out), the next finds the queue full.
    const waiting = chat(iris, {});
    assert.ok(await waitFor(async () => (await metric(iris, `iris_requests_waiting{model="${REMOTE}"}`)) === 1));
    const full = await chat(iris, {});
    assert.equal(full.status, 429);
    assert.ok(retryAfter(full) >= 1);
    assert.equal(((await full.json()) as { error: { code: string } }).error.code, 'server_overloaded');
    const timedOut = await waiting;
    assert.equal(timedOut.status, 503);
    assert.ok(retryAfter(timedOut) >= 1);

    iris.child.kill('SIGTERM');
    assert.ok(await waitFor(async () => (await send(`${iris.baseUrl}/ready`)).status === 503), '/ready turns 503');
    const ready = (await (await send(`${iris.baseUrl}/ready`)).json()) as { status: string };
    assert.equal(ready.status, 'draining');
    const refused = await chat(iris, {});
    assert.equal(refused.status, 503);
    const refusal = (await refused.json()) as { error: { code: string } };
    assert.equal(refusal.error.code, 'shutting_down');
    const wait = retryAfter(refused);
    assert.ok(wait >= 1 && wait <= 30, `Retry-After ${wait} is the time left of the 30 s grace`);

    assert.equal(iris.child.exitCode, null, 'still draining while the streams run');
    upstream.releaseAll();
    for (const stream of [first, second]) {
      const text = await stream.rest;
      assert.match(text, /world/);
      assert.ok(text.trimEnd().endsWith('data: [DONE]'), text.slice(-200));
    }
    assert.equal(await exitOf(iris), 0);
    assert.ok(await waitFor(() => !processExists(llamaPid), 10_000), 'no llama-server left');
  });

  test('a stream still running when --shutdown-grace ends gets an error event', async () => {
    const upstream = await startFakeUpstream(REMOTE, () => ({ kind: 'stream', stall: true }));
    cleanups.push(() => upstream.close());
    const iris = await startServer(upstream, ['--shutdown-grace', '1s']);
    const stream = await openStream(iris, 'late');
    iris.child.kill('SIGTERM');
    const text = await stream.rest;
    const events = text.split('\n\n').filter((event) => event.startsWith('data: '));
    const last = JSON.parse(events.at(-1)!.slice(6)) as { error?: { code: string; message: string } };
    assert.equal(last.error?.code, 'shutting_down');
    assert.match(last.error.message, /request id late/);
    assert.equal(await exitOf(iris), 0);
  });
});

async function metric(iris: IrisProcess, sample: string): Promise<number | undefined> {
  const text = await (await fetch(`${iris.baseUrl}/metrics`, { headers: { authorization: `Bearer ${KEY}` } })).text();
  const line = text.split('\n').find((candidate) => candidate.startsWith(`${sample} `));
  return line === undefined ? undefined : Number(line.split(' ')[1]);
}
