import assert from 'node:assert/strict';
import { test } from 'node:test';
import { classifyUpstreamAnswer, networkReason, streamErrorToIrisError, upstreamBusy } from './upstream-errors.js';
import { parseUpstreamError } from '../openai-error-body.js';

test('error bodies of OpenAI, Iris, llama-server, vLLM and FastAPI are read', () => {
  assert.deepEqual(
    parseUpstreamError('{"error":{"message":"Invalid value for \'stop\'.","type":"invalid_request_error","param":"stop","code":"invalid_value"}}'),
    { message: "Invalid value for 'stop'.", type: 'invalid_request_error', param: 'stop', code: 'invalid_value' },
  );
  assert.deepEqual(parseUpstreamError('{"error":{"code":400,"message":"too long","type":"exceed_context_size_error"}}'), {
    message: 'too long',
    type: 'exceed_context_size_error',
    code: 400,
  });
  assert.deepEqual(parseUpstreamError('{"object":"error","message":"bad","type":"BadRequestError","param":null,"code":400}'), {
    message: 'bad',
    type: 'BadRequestError',
    code: 400,
  });
  assert.deepEqual(parseUpstreamError('{"detail":"Not Found"}'), { message: 'Not Found' });
  assert.deepEqual(parseUpstreamError('Bad Gateway\n'), { message: 'Bad Gateway' });
  assert.deepEqual(parseUpstreamError(''), {});
});

test('4xx is the caller\'s 400 with the upstream message and field; nothing is retried', () => {
  const failure = classifyUpstreamAnswer(400, { message: "Invalid value for 'stop'.", param: 'stop', code: 'invalid_value' }, 'm');
  assert.equal(failure.kind, 'final');
  assert.ok(failure.kind === 'final');
  assert.equal(failure.error.status, 400);
  assert.equal(failure.error.param, 'stop');
  assert.equal(failure.error.code, 'invalid_value');
  assert.equal(failure.error.message, "Invalid value for 'stop'.");

  const context = classifyUpstreamAnswer(400, { message: 'too long', type: 'exceed_context_size_error', code: 400 }, 'm');
  assert.ok(context.kind === 'final' && context.error.code === 'context_length_exceeded');
  const vllm = classifyUpstreamAnswer(400, { message: "This model's maximum context length is 4096 tokens." }, 'm');
  assert.ok(vllm.kind === 'final' && vllm.error.code === 'context_length_exceeded');
  const unknownCode = classifyUpstreamAnswer(422, { message: 'nope', code: 'something_else' }, 'm');
  assert.ok(unknownCode.kind === 'final' && unknownCode.error.status === 400 && unknownCode.error.code === 'invalid_request');
  const tooLarge = classifyUpstreamAnswer(413, { message: 'body too big' }, 'm');
  assert.ok(tooLarge.kind === 'final' && tooLarge.error.status === 413);
});

test("401 and 403 are a 502 about Iris's key; 429 tries the next endpoint; 5xx is a server error; 404 fails the endpoint", () => {
  for (const status of [401, 403]) {
    const failure = classifyUpstreamAnswer(status, { message: 'Incorrect API key provided: sk-abc***' }, 'my-model');
    assert.ok(failure.kind === 'final');
    assert.equal(failure.error.status, 502);
    assert.equal(failure.error.code, 'engine_error');
    assert.match(failure.error.message, /rejected Iris's API key/);
    assert.doesNotMatch(failure.error.message, /sk-abc/, "the upstream's echo of the key is not passed on");
  }
  const busyAnswer = classifyUpstreamAnswer(429, { message: 'slow down' }, 'm', '7');
  assert.ok(busyAnswer.kind === 'busy' && busyAnswer.retryAfterSeconds === 7);
  for (const status of [500, 502, 503, 504]) {
    const failure = classifyUpstreamAnswer(status, { message: 'template crashed' }, 'm');
    assert.ok(failure.kind === 'server-error', String(status));
    assert.equal(failure.error.status, 502);
    assert.match(failure.error.message, /template crashed/);
  }
  assert.equal(classifyUpstreamAnswer(404, {}, 'm').kind, 'endpoint-failed');
  const busy = upstreamBusy('m', 'answered 429 (busy): slow down');
  assert.equal(busy.status, 429);
  assert.equal(busy.code, 'server_overloaded');
  assert.equal(busy.type, 'rate_limit_error');
});

test('an error event inside a stream: a 4xx code stays the caller\'s, anything else is engine_error', () => {
  assert.equal(streamErrorToIrisError({ message: 'bad', code: 400 }, 'm').status, 400);
  const failed = streamErrorToIrisError({ message: 'boom', code: 'engine_crashed' }, 'm');
  assert.equal(failed.status, 502);
  assert.equal(failed.code, 'engine_error');
});

test('network reasons name no address', () => {
  const refused = Object.assign(new Error('connect ECONNREFUSED 10.0.0.7:8000'), { code: 'ECONNREFUSED' });
  assert.equal(networkReason(refused), 'connection refused');
  const wrapped = Object.assign(new TypeError('fetch failed'), { cause: { code: 'UND_ERR_CONNECT_TIMEOUT' } });
  assert.equal(networkReason(wrapped), 'connect timed out');
  assert.equal(networkReason(new Error('other 10.0.0.7')), 'connection failed');
});
