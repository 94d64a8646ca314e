/**
 * Nobody gets in around the gateway, and no single client can exhaust it: the findings of an audit of the
 * running server, each as a test over real loopback HTTP against a real Iris and llama-server. Connection
 * floods are a few hundred sockets and every deadline is configured short, so the file stays bounded in time.
 */
import assert from 'node:assert/strict';
import { readFileSync, statSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { assertMatchesSchema } from '../helpers/openapi.js';
import { childArgs, childEnvironment, childKeyFile, childRequestsProcessing, fetchChild, llamaChild } from '../helpers/llama-child.js';
import { REPO_ROOT, startIris, syntheticModel, waitFor, type IrisProcess } from '../helpers/test-env.js';

const MODEL = 'tiny';
const FILE_KEY = 'iris-file-key-0123456789';
const ENV_KEY = 'iris-env-key-0123456789';
const HUB_TOKEN = 'hf_secret_hub_token_0123456789';

/** A raw TCP client that records what it got back and when it was closed. */
interface RawClient {
  socket: Socket;
  received: string;
  closed: boolean;
}

function rawClient(port: number, send?: string): Promise<RawClient> {
  return new Promise((resolve, reject) => {
    const client: RawClient = { socket: connect(port, '127.0.0.1'), received: '', closed: false };
    client.socket.setEncoding('latin1');
    client.socket.on('data', (data: string) => {
      client.received += data;
    });
    client.socket.on('error', () => undefined);
    client.socket.on('close', () => {
      client.closed = true;
    });
    client.socket.once('connect', () => {
      if (send !== undefined) client.socket.write(send);
      resolve(client);
    });
    client.socket.once('error', reject);
  });
}

/** The status code of the first response a raw client received, if any. */
const statusOf = (client: RawClient): number | undefined => {
  const match = /^HTTP\/1\.1 (\d{3})/.exec(client.received);
  return match ? Number(match[1]) : undefined;
};

/** The JSON body of the first response a raw client received. */
const bodyOf = (client: RawClient): any => JSON.parse(client.received.slice(client.received.indexOf('\r\n\r\n') + 4));

const headersFor = (key: string, contentLength: number): string =>
  'POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n' +
  `Authorization: Bearer ${key}\r\nContent-Length: ${contentLength}\r\n\r\n`;

describe('hardening', { timeout: 300_000 }, () => {
  let iris: IrisProcess;
  let dir: string;

  const chat = (body: unknown, key = FILE_KEY) =>
    fetch(`${iris.baseUrl}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
      body: typeof body === 'string' ? body : JSON.stringify(body),
    });

  before(async () => {
    const model = await syntheticModel('tiny');
    dir = await mkdtemp(join(tmpdir(), 'iris-hardening-'));
    await writeFile(join(dir, 'keys.txt'), `# keys of the test\n${FILE_KEY}\n\n`);
    await writeFile(
      join(dir, 'iris.yaml'),
      [
        'limits:',
        '  headers_timeout_ms: 1500',
        '  body_timeout_ms: 2000',
        '  keep_alive_timeout_ms: 1000',
        '  max_connections: 150',
        '  max_body_bytes: 2000000',
        '  max_body_bytes_in_flight: 3000000',
        '  max_messages: 1000',
        '  max_text_bytes: 300000',
        '',
      ].join('\n'),
    );
    iris = await startIris({
      args: [
        '--model', model.modelPath, '--mmproj', model.mmprojPath, '--model-id', MODEL, '--ctx-size', '2048', '--slots', '1',
        '--config', join(dir, 'iris.yaml'), '--api-key-file', join(dir, 'keys.txt'), '--prompt-cache', '64MiB',
      ],
      env: { IRIS_API_KEYS: ENV_KEY, HF_TOKEN: HUB_TOKEN },
    });
  });

  after(async () => {
    await iris?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  test('keys come from --api-key-file and IRIS_API_KEYS; a wrong key is a 401', async () => {
    assert.equal((await chat({ model: MODEL, messages: [{ role: 'user', content: 'hi' }], max_tokens: 2 })).status, 200);
    assert.equal((await chat({ model: MODEL, messages: [{ role: 'user', content: 'hi' }], max_tokens: 2 }, ENV_KEY)).status, 200);
    const wrong = await chat({ model: MODEL, messages: [{ role: 'user', content: 'hi' }] }, 'wrong');
    assert.equal(wrong.status, 401);
    assertMatchesSchema('ErrorResponse', await wrong.json());
  });

  test('a flood of unauthenticated and slow connections never keeps a valid key out, and is cleared within the deadlines', async () => {
    const silent = await Promise.all(Array.from({ length: 100 }, () => rawClient(iris.port)));
    const slowHeaders = await Promise.all(
      Array.from({ length: 100 }, () => rawClient(iris.port, 'POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n')),
    );
    const wrongKey = await Promise.all(Array.from({ length: 100 }, () => rawClient(iris.port, `${headersFor('wrong', 100_000)}{"model":`)));

    // 300 connections against a cap of 150: a client with a valid key is still served, at once.
    const served = await chat({ model: MODEL, messages: [{ role: 'user', content: 'still there?' }], max_tokens: 2 });
    assert.equal(served.status, 200);
    assertMatchesSchema('CreateChatCompletionResponse', await served.json());

    // Wrong keys got their 401 before their bodies arrived, and their connections were closed.
    assert.ok(await waitFor(() => wrongKey.every((client) => client.closed), 5000), 'every wrong-key connection was closed');
    const answered = wrongKey.filter((client) => statusOf(client) !== undefined);
    assert.ok(answered.length > 0);
    for (const client of answered) assert.equal(statusOf(client), 401);
    // Connections that never finish their headers are answered 408 (or closed to make room) within the deadline.
    assert.ok(await waitFor(() => [...silent, ...slowHeaders].every((client) => client.closed), 10_000), 'slow connections were closed');
    const timedOut = [...silent, ...slowHeaders].filter((client) => statusOf(client) !== undefined);
    assert.ok(timedOut.length > 0, 'some slow connections were answered before being closed');
    for (const client of timedOut) {
      assert.equal(statusOf(client), 408);
      assertMatchesSchema('ErrorResponse', bodyOf(client));
      assert.equal(bodyOf(client).error.code, 'request_timeout');
    }
  });

  test('a body that does not arrive in time is a 408; an idle keep-alive connection is closed', async () => {
    const slowBody = await rawClient(iris.port, `${headersFor(FILE_KEY, 1000)}{"model":`);
    assert.ok(await waitFor(() => slowBody.closed, 10_000), 'the slow body was cut off');
    assert.equal(statusOf(slowBody), 408);
    assert.equal(bodyOf(slowBody).error.code, 'request_timeout');

    const keepAlive = await rawClient(iris.port, 'GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n');
    assert.ok(await waitFor(() => statusOf(keepAlive) === 200, 5000));
    assert.ok(await waitFor(() => keepAlive.closed, 5000), 'the idle keep-alive connection was closed');
  });

  test('request bodies in flight are capped: 503 + Retry-After before reading the body, and the connection closed', async () => {
    // Holds 1.5 MB of the 3 MB budget while its body trickles.
    const holder = await rawClient(iris.port, `${headersFor(FILE_KEY, 1_500_000)}{"model":`);
    await waitFor(() => false, 200);
    const refused = await rawClient(iris.port, headersFor(FILE_KEY, 1_600_000));
    assert.ok(await waitFor(() => refused.closed, 5000), 'the refused connection was closed');
    assert.equal(statusOf(refused), 503);
    assert.match(refused.received, /\r\nretry-after: \d+\r\n/i);
    assert.equal(bodyOf(refused).error.code, 'server_overloaded');
    holder.socket.destroy();
    // Once the first body is gone, the budget is free again.
    assert.ok(
      await waitFor(async () => (await chat({ model: MODEL, messages: [{ role: 'user', content: 'x'.repeat(500_000) }] })).status !== 503, 5000),
    );
  });

  test('the llama-server child takes no request without its per-start key, and holds no secret', async () => {
    const child = await llamaChild(iris);
    const body = JSON.stringify({ messages: [{ role: 'user', content: 'hi' }], max_tokens: 2 });
    for (const path of ['/v1/chat/completions', '/completion']) {
      const direct = await fetch(`${child.baseUrl}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
      assert.equal(direct.status, 401, `${path} without the key`);
    }
    for (const path of ['/metrics', '/props', '/slots', '/v1/models']) {
      assert.equal((await fetch(`${child.baseUrl}${path}`)).status, 401, `${path} without the key`);
    }
    // It fetches no image URL for anyone: a request naming one is refused before anything is fetched.
    let fetched = 0;
    const imageHost = createServer((socket) => {
      fetched += 1;
      socket.destroy();
    });
    await new Promise<void>((resolve) => imageHost.listen(0, '127.0.0.1', resolve));
    const address = imageHost.address();
    const imageUrl = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}/cat.png`;
    const withUrl = await fetch(`${child.baseUrl}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: imageUrl } }] }] }),
    });
    assert.equal(withUrl.status, 401);
    imageHost.close();
    assert.equal(fetched, 0);

    // CORS grants no other origin, and no credentials.
    const preflight = await fetch(`${child.baseUrl}/v1/chat/completions`, {
      method: 'OPTIONS',
      headers: { origin: 'http://evil.example', 'access-control-request-method': 'POST' },
    });
    assert.notEqual(preflight.headers.get('access-control-allow-origin'), 'http://evil.example');
    assert.notEqual(preflight.headers.get('access-control-allow-origin'), '*');
    assert.notEqual(preflight.headers.get('access-control-allow-credentials'), 'true');

    // With the key (readable by Iris's user only) it answers; /slots is not even there.
    assert.equal(statSync(childKeyFile(child)).mode & 0o077, 0, 'the key file is private');
    assert.equal((await fetchChild(child, '/metrics')).status, 200);
    assert.notEqual((await fetchChild(child, '/slots')).status, 200);

    // Neither its environment nor its command line holds Iris's keys, the hub token or its own key.
    const key = readFileSync(childKeyFile(child), 'utf8').trim();
    const environment = childEnvironment(child).join('\n');
    const args = childArgs(child);
    for (const secret of [FILE_KEY, ENV_KEY, HUB_TOKEN, key]) {
      assert.ok(!environment.includes(secret), 'no secret in the environment');
      assert.ok(!args.join(' ').includes(secret), 'no secret on the command line');
    }
    assert.ok(!/^(IRIS_|HF_|LLAMA_)/m.test(environment), 'no IRIS_*, HF_* or LLAMA_* variables');
    // Its prompt cache is the configured size, counted in Iris's memory estimate.
    assert.equal(args[args.indexOf('--cache-ram') + 1], '64');
  });

  test('text that is not valid UTF-16 is a 400 naming the field, never an engine error', async () => {
    const cases: [string, string][] = [
      [`{"model":"${MODEL}","messages":[{"role":"user","content":"t\\ud800t"}]}`, 'messages[0].content'],
      [`{"model":"${MODEL}","messages":[{"role":"user","content":[{"type":"text","text":"a\\udc00"}]}]}`, 'messages[0].content[0].text'],
      [`{"model":"${MODEL}","messages":[{"role":"user","content":"hi"}],"stop":["\\ud83d"]}`, 'stop[0]'],
    ];
    for (const [body, param] of cases) {
      const response = await chat(body);
      assert.equal(response.status, 400, body);
      const error = (await response.json()) as any;
      assertMatchesSchema('ErrorResponse', error);
      assert.equal(error.error.param, param);
      assert.equal(error.error.code, 'invalid_value');
    }
    // A well-formed pair (an emoji) is fine.
    const emoji = await chat(`{"model":"${MODEL}","messages":[{"role":"user","content":"\\ud83d\\ude00"}],"max_tokens":2}`);
    assert.equal(emoji.status, 200);
  });

  test('a 1 MB model id is answered with a short 404 and a short log line', async () => {
    const longId = 'x'.repeat(1_000_000);
    const response = await chat({ model: longId, messages: [{ role: 'user', content: 'hi' }] });
    assert.equal(response.status, 404);
    const text = await response.text();
    assert.ok(text.length < 1000, `404 body of ${text.length} characters`);
    assert.match(text, /1000000 characters/);
    await waitFor(() => false, 200);
    const longest = Math.max(...iris.logs.map((line) => line.length));
    assert.ok(longest < 5000, `longest log line ${longest} characters`);
  });

  test('bounded work per request: too many messages, too much text, a prompt over the context: 400 before generating', async () => {
    const many = await chat({ model: MODEL, messages: Array.from({ length: 50_000 }, () => ({ role: 'user', content: 'hi' })) });
    assert.equal(many.status, 400);
    const manyError = (await many.json()) as any;
    assert.equal(manyError.error.code, 'array_above_max_length');
    assert.equal(manyError.error.param, 'messages');

    const long = await chat({ model: MODEL, messages: [{ role: 'user', content: 'word '.repeat(70_000) }] });
    assert.equal(long.status, 400);
    assert.equal(((await long.json()) as any).error.code, 'string_above_max_length');

    // Fits the text limit, not the model's 2048-token context: a 400 decided before any token is generated,
    // streamed or not, and its message quotes none of the prompt.
    for (const stream of [false, true]) {
      const overContext = await chat({ model: MODEL, messages: [{ role: 'user', content: 'secret-word '.repeat(20_000) }], stream });
      assert.equal(overContext.status, 400);
      const error = (await overContext.json()) as any;
      assertMatchesSchema('ErrorResponse', error);
      assert.equal(error.error.code, 'context_length_exceeded');
      assert.equal(error.error.param, 'messages');
      assert.doesNotMatch(error.error.message, /secret-word/);
    }
    assert.equal(await childRequestsProcessing(await llamaChild(iris)), 0);
  });
});

describe('/ready', { timeout: 120_000 }, () => {
  test('stays 200 after the --model model is unloaded on keep_alive', async () => {
    const model = await syntheticModel('tiny');
    const iris = await startIris({ args: ['--model', model.modelPath, '--model-id', MODEL, '--keep-alive', '1s'] });
    try {
      assert.ok(await waitFor(() => iris.logRecords('unloading model').length > 0, 20_000), 'the model was unloaded');
      const ready = await fetch(`${iris.baseUrl}/ready`);
      assert.equal(ready.status, 200);
      assert.deepEqual(((await ready.json()) as any).models, [{ id: MODEL, ready: true }]);
    } finally {
      await iris.stop();
    }
  });
});

describe('a huge prompt', { timeout: 180_000 }, () => {
  test('a client that leaves a huge prompt frees the engine within seconds', async () => {
    const model = await syntheticModel('tiny');
    const iris = await startIris({ args: ['--model', model.modelPath, '--model-id', MODEL, '--ctx-size', '4096', '--slots', '1'] });
    try {
      // A prompt that nearly fills the model's context (sized with its own tokenizer), then a long generation.
      const words = (count: number) => Array.from({ length: count }, (_, index) => `w${index % 997}`).join(' ');
      const tokens = async (text: string) =>
        ((await (await fetch(`${iris.baseUrl}/v1/tokenize`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ model: MODEL, messages: [{ role: 'user', content: text }] }),
        })).json()) as { prompt_tokens: number }).prompt_tokens;
      const perWord = (await tokens(words(1000))) / 1000;
      const prompt = words(Math.floor(3000 / perWord));
      assert.ok((await tokens(prompt)) < 3500);

      const child = await llamaChild(iris);
      const controller = new AbortController();
      const pending = fetch(`${iris.baseUrl}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: MODEL, messages: [{ role: 'user', content: prompt }], max_tokens: 2000, ignore_eos: true, stream: true }),
        signal: controller.signal,
      }).catch(() => undefined);
      assert.ok(await waitFor(async () => (await childRequestsProcessing(child)) > 0, 10_000), 'the engine took the request');
      controller.abort();
      await pending;
      assert.ok(await waitFor(async () => (await childRequestsProcessing(child)) === 0, 5000), 'the engine dropped the work');
      // And it is really idle: its CPU time stops growing.
      const cpu = () => {
        const fields = readFileSync(`/proc/${child.pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
        return Number(fields[11]) + Number(fields[12]);
      };
      assert.ok(
        await waitFor(async () => {
          const before = cpu();
          await sleep(500);
          return cpu() - before <= 10; // clock ticks: at most 0.1 s of CPU in 0.5 s
        }, 10_000),
        'llama-server is idle',
      );
    } finally {
      await iris.stop();
    }
  });
});

describe('engine deadlines', { timeout: 120_000 }, () => {
  // A stand-in llama-server (an external program) that stalls, so the deadlines are exercised exactly.
  const stalling = join(REPO_ROOT, 'test/fixtures/stalling-llama-server.mjs');

  test('an engine that does not start answering in time: 504 engine_timeout, and its connection is closed', async () => {
    const model = await syntheticModel('tiny');
    const dir = await mkdtemp(join(tmpdir(), 'iris-deadline-'));
    await writeFile(join(dir, 'iris.yaml'), 'limits:\n  engine_first_byte_timeout_ms: 500\n  engine_idle_timeout_ms: 500\n');
    const iris = await startIris({
      args: ['--model', model.modelPath, '--model-id', 'stall-first-byte', '--config', join(dir, 'iris.yaml'), '--llama-server', stalling],
    });
    try {
      const response = await fetch(`${iris.baseUrl}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'stall-first-byte', messages: [{ role: 'user', content: 'hi' }] }),
      });
      assert.equal(response.status, 504);
      const body = (await response.json()) as any;
      assertMatchesSchema('ErrorResponse', body);
      assert.equal(body.error.code, 'engine_timeout');
      assert.ok(await waitFor(() => iris.logs.some((line) => line.includes('connection closed by iris')), 5000));
      assert.ok(iris.logs.some((line) => line.includes('authorization present')), 'iris sent its key');
    } finally {
      await iris.stop();
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('an engine that goes silent mid-stream: the stream ends with an engine_timeout error event', async () => {
    const model = await syntheticModel('tiny');
    const dir = await mkdtemp(join(tmpdir(), 'iris-deadline-'));
    await writeFile(join(dir, 'iris.yaml'), 'limits:\n  engine_idle_timeout_ms: 500\n');
    const iris = await startIris({
      args: ['--model', model.modelPath, '--model-id', 'stall-mid-stream', '--config', join(dir, 'iris.yaml'), '--llama-server', stalling],
    });
    try {
      const response = await fetch(`${iris.baseUrl}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'stall-mid-stream', messages: [{ role: 'user', content: 'hi' }], stream: true }),
      });
      assert.equal(response.status, 200);
      const text = await response.text();
      assert.match(text, /"content":"Once"/);
      assert.match(text, /"code":"engine_timeout"/);
      assert.ok(await waitFor(() => iris.logs.some((line) => line.includes('connection closed by iris')), 5000));
    } finally {
      await iris.stop();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
