/**
 * The supervised runner under stress: clients that disconnect mid-stream, a llama-server killed in the
 * middle of a request, and Iris itself killed with SIGKILL (no orphaned llama-server may survive it).
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { connect } from 'node:net';
import { basename, dirname } from 'node:path';
import { after, before, describe, test } from 'node:test';
import OpenAI from 'openai';
import { assertMatchesSchema } from '../helpers/openapi.js';
import { dataUri, makeImage } from '../helpers/images.js';
import { childKeyFile, childRequestsProcessing, llamaChild, type LlamaChild } from '../helpers/llama-child.js';
import { llamaServerOf, processExists, startIris, syntheticModel, waitFor, type IrisProcess } from '../helpers/test-env.js';

const MODEL = 'tiny';

/** The llama-server child: the latest, or with `previousPid`, the first one started after that child. */
const runner = (iris: IrisProcess, previousPid?: number): Promise<LlamaChild> => llamaChild(iris, previousPid);
/** Whether the child is working on a request (from its metrics, asked with its per-start key). */
const busy = async (child: LlamaChild): Promise<boolean> => (await childRequestsProcessing(child)) > 0;

/** A request that generates for a long time (a high token budget on a big context). */
function longRequest(image: string, stream: boolean) {
  return {
    model: MODEL,
    messages: [{ role: 'user', content: [{ type: 'text', text: 'Write a very long story.' }, { type: 'image_url', image_url: { url: image } }] }],
    max_tokens: 7000,
    // Random weights hit end-of-sequence within tens of tokens; this keeps the runner busy for ~20 s.
    ignore_eos: true,
    temperature: 1,
    stream,
  };
}

describe('runner resilience', () => {
  let iris: IrisProcess;
  let client: OpenAI;
  let image: string;

  before(async () => {
    const model = await syntheticModel('tiny');
    image = dataUri(await makeImage());
    iris = await startIris({
      args: ['--model', model.modelPath, '--mmproj', model.mmprojPath, '--model-id', MODEL, '--ctx-size', '8192', '--slots', '1'],
    });
    client = new OpenAI({ baseURL: `${iris.baseUrl}/v1/openai`, apiKey: 'unused', maxRetries: 0 });
  });

  after(async () => {
    await iris?.stop();
  });

  test('a client that disconnects mid-stream stops the generation, and the next request is served', async () => {
    const child = await runner(iris);
    const controller = new AbortController();
    const response = await fetch(`${iris.baseUrl}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(longRequest(image, true)),
      signal: controller.signal,
    });
    assert.equal(response.status, 200);
    const reader = response.body!.getReader();
    await reader.read();
    await reader.read();
    controller.abort();
    // With one slot, the runner must drop the work rather than generate all 7000 tokens for nobody.
    const idle = await waitFor(async () => !(await busy(child)), 5000);
    assert.ok(idle, 'llama-server stopped generating after the client left');
    const next = await client.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'hi' }], max_tokens: 4 });
    assertMatchesSchema('CreateChatCompletionResponse', next);
  });

  test('a non-streaming client that disconnects also frees the slot', async () => {
    const child = await runner(iris);
    const controller = new AbortController();
    const pending = fetch(`${iris.baseUrl}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(longRequest(image, false)),
      signal: controller.signal,
    }).catch(() => undefined);
    assert.ok(await waitFor(async () => await busy(child), 10_000), 'generation started');
    controller.abort();
    await pending;
    assert.ok(await waitFor(async () => !(await busy(child)), 5000), 'slot freed');
  });

  test('llama-server killed mid-request: the request fails cleanly, the runner restarts, the next request succeeds', async () => {
    const before = await runner(iris);
    const restartsBefore = await restartsMetric(iris);
    const pending = fetch(`${iris.baseUrl}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-request-id': 'killed-run' },
      body: JSON.stringify(longRequest(image, false)),
    });
    assert.ok(await waitFor(async () => await busy(before), 10_000));
    process.kill(before.pid, 'SIGKILL');
    const failed = await pending;
    assert.ok(failed.status >= 500 && failed.status < 600, `status ${failed.status}`);
    const body = (await failed.json()) as any;
    assertMatchesSchema('ErrorResponse', body);
    assert.equal(body.error.code, 'engine_crashed');
    assert.match(body.error.message, /\(request id killed-run\)$/, 'a 5xx names the request id');

    // A stream cut by a dying runner ends with an error event, not a hang.
    const next = await client.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'again' }], max_tokens: 4 });
    assertMatchesSchema('CreateChatCompletionResponse', next);
    const after = await runner(iris, before.pid);
    assert.notEqual(after.pid, before.pid, 'a new llama-server was started');
    assert.equal(processExists(before.pid), false);
    assert.equal((await restartsMetric(iris)) - restartsBefore, 1, 'iris_engine_restarts_total counted the restart');
  });

  test('a request sent just after the runner died, before anything noticed, waits for the restart instead of failing', async () => {
    const strict = new OpenAI({ baseURL: `${iris.baseUrl}/v1`, apiKey: 'unused', maxRetries: 0 });
    for (let round = 0; round < 4; round += 1) {
      const current = await runner(iris);
      // Half the rounds leave a kept-alive connection to the child in Iris's pool (its /metrics are read
      // through it), which the request then finds reset rather than refused.
      if (round % 2 === 1) assert.equal((await fetch(`${iris.baseUrl}/metrics`)).status, 200);
      process.kill(current.pid, 'SIGKILL');
      // The signal is delivered asynchronously: a request that reached the child before it died is one it was
      // working on (a 502 engine_crashed, tested above). This one is sent once the child's port refuses.
      assert.ok(await portRefuses(current.port), `llama-server ${current.pid} stopped listening`);
      const answer = await strict.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'hi' }], max_tokens: 2 });
      assertMatchesSchema('CreateChatCompletionResponse', answer);
      assert.notEqual((await runner(iris, current.pid)).pid, current.pid, 'a new llama-server answered');
    }
  });

  test('a stream whose runner dies ends with an error event', async () => {
    const current = await runner(iris);
    const response = await fetch(`${iris.baseUrl}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(longRequest(image, true)),
    });
    assert.equal(response.status, 200);
    const reader = response.body!.getReader();
    await reader.read();
    process.kill(current.pid, 'SIGKILL');
    let raw = '';
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      raw += Buffer.from(value).toString('utf8');
    }
    const events = raw.split('\n\n').filter((event) => event.startsWith('data: ')).map((event) => event.slice(6));
    const last = JSON.parse(events.at(-1)!);
    assertMatchesSchema('ErrorResponse', last);
    assert.equal(last.error.code, 'engine_crashed');
    await llamaServerOf(iris, current.pid);
    const next = await client.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'hi' }], max_tokens: 2 });
    assertMatchesSchema('CreateChatCompletionResponse', next);
  });
});

describe('no orphans', () => {
  test('SIGKILL of Iris takes its llama-server with it; the next Iris removes the key file it left', async () => {
    const model = await syntheticModel('tiny');
    const args = ['--model', model.modelPath, '--mmproj', model.mmprojPath, '--model-id', MODEL];
    const iris = await startIris({ args });
    let keyFile: string;
    try {
      const { pid } = await llamaServerOf(iris);
      assert.ok(processExists(pid));
      keyFile = childKeyFile(await llamaChild(iris));
      iris.child.kill('SIGKILL');
      assert.ok(await waitFor(() => !processExists(pid), 5000), `llama-server ${pid} outlived a SIGKILLed Iris`);
    } finally {
      await iris.stop();
    }
    // No exit hook ran: the key is still on disk, in a directory named after the dead Iris.
    assert.ok(existsSync(keyFile), 'a SIGKILLed Iris cannot remove its key file');
    assert.match(basename(dirname(keyFile)), new RegExp(`^iris-llama-${iris.child.pid}-`));
    const next = await startIris({ args });
    try {
      const keptFile = childKeyFile(await llamaChild(next));
      assert.equal(existsSync(dirname(keyFile)), false, "the dead Iris's key directory is removed");
      assert.ok(existsSync(keptFile), "the running Iris's own key file stays");
    } finally {
      await next.stop();
    }
  });

  test('a second signal during the drain stops Iris at once, and its llama-server with it', async () => {
    const model = await syntheticModel('tiny');
    const iris = await startIris({ args: ['--model', model.modelPath, '--mmproj', model.mmprojPath, '--model-id', MODEL, '--ctx-size', '8192'] });
    const { pid } = await llamaServerOf(iris);
    const response = await fetch(`${iris.baseUrl}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(longRequest(dataUri(await makeImage()), true)),
    });
    const reader = response.body!.getReader();
    await reader.read();
    const exited = new Promise<number | null>((resolve) => iris.child.once('exit', (code) => resolve(code)));
    iris.child.kill('SIGTERM');
    // The drain waits for the 7000-token stream; the second signal does not.
    assert.ok(await waitFor(() => iris.logs.some((line) => line.includes('draining requests in flight'))));
    iris.child.kill('SIGTERM');
    assert.equal(await exited, 143);
    assert.ok(await waitFor(() => !processExists(pid), 5000), 'llama-server stopped with Iris');
    await reader.cancel().catch(() => undefined);
    await iris.stop();
  });

  test('SIGTERM of Iris stops its llama-server and exits 0, leaving no key file behind', async () => {
    const model = await syntheticModel('tiny');
    const iris = await startIris({ args: ['--model', model.modelPath, '--mmproj', model.mmprojPath, '--model-id', MODEL] });
    const { pid } = await llamaServerOf(iris);
    const keyFile = childKeyFile(await llamaChild(iris));
    assert.ok(existsSync(keyFile));
    const exited = new Promise<number | null>((resolve) => iris.child.once('exit', (code) => resolve(code)));
    iris.child.kill('SIGTERM');
    assert.equal(await exited, 0);
    assert.equal(processExists(pid), false);
    assert.equal(existsSync(dirname(keyFile)), false, "the child's key directory is removed");
    await iris.stop();
  });
});

/** Waits (polling every millisecond, at most 5 s) until nothing listens on the loopback port any more. */
async function portRefuses(port: number): Promise<boolean> {
  const refused = () =>
    new Promise<boolean>((resolve) => {
      const socket = connect(port, '127.0.0.1');
      socket.once('connect', () => {
        socket.destroy();
        resolve(false);
      });
      socket.once('error', () => resolve(true));
    });
  const deadline = Date.now() + 5000;
  while (Date.now() < deadline) {
    if (await refused()) return true;
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
  return false;
}

/** iris_engine_restarts_total of the model, read from /metrics (no keys configured: open on loopback). */
async function restartsMetric(iris: IrisProcess): Promise<number> {
  const text = await (await fetch(`${iris.baseUrl}/metrics`)).text();
  const line = text.split('\n').find((candidate) => candidate.startsWith(`iris_engine_restarts_total{model="${MODEL}"}`));
  return line === undefined ? 0 : Number(line.split(' ').at(-1));
}
