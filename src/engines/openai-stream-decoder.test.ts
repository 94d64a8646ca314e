import assert from 'node:assert/strict';
import { test } from 'node:test';
import { IrisError, invalidRequest } from '../errors.js';
import type { StreamPart } from './engine.js';
import { decodeOpenAIChatStream } from './openai-stream-decoder.js';

const options = { source: 'test upstream', streamError: (error: { message?: string }) => invalidRequest(error.message ?? '?') };

function body(events: unknown[], tail = ''): AsyncIterable<string> {
  const text = events.map((event) => `data: ${typeof event === 'string' ? event : JSON.stringify(event)}\n\n`).join('') + tail;
  return (async function* () {
    // One byte at a time: framing must not depend on how the network cuts the body.
    for (const character of text) yield character;
  })();
}

async function decode(events: unknown[], tail = ''): Promise<StreamPart[]> {
  const parts: StreamPart[] = [];
  for await (const part of decodeOpenAIChatStream(body(events, tail), options)) parts.push(part);
  return parts;
}

test('text, tool-call and logprob deltas of two choices, finishes, then the usage', async () => {
  const parts = await decode([
    { choices: [{ index: 0, delta: { role: 'assistant', content: null } }] },
    { choices: [{ index: 0, delta: { content: 'Hi' }, logprobs: { content: [{ token: 'Hi', logprob: -0.5, bytes: [72, 105], top_logprobs: [{ token: 'Hi', logprob: -0.5, bytes: [72, 105] }] }] } }] },
    { choices: [{ index: 1, delta: { tool_calls: [{ index: 0, id: 'abc', type: 'function', function: { name: 'look', arguments: '' } }] } }] },
    { choices: [{ index: 1, delta: { tool_calls: [{ index: 0, function: { arguments: '{"a":1}' } }] } }] },
    { choices: [{ index: 0, delta: {}, finish_reason: 'stop' }] },
    { choices: [{ index: 1, delta: {}, finish_reason: 'tool_calls' }] },
    { choices: [], usage: { prompt_tokens: 7, completion_tokens: 3, prompt_tokens_details: { cached_tokens: 2 } } },
    '[DONE]',
  ]);
  assert.deepEqual(parts, [
    { type: 'text-delta', choice: 0, text: 'Hi' },
    { type: 'logprobs', choice: 0, content: [{ token: 'Hi', logprob: -0.5, bytes: [72, 105], topLogprobs: [{ token: 'Hi', logprob: -0.5, bytes: [72, 105] }] }] },
    { type: 'tool-call-delta', choice: 1, index: 0, id: 'call_abc', name: 'look', argumentsDelta: '' },
    { type: 'tool-call-delta', choice: 1, index: 0, argumentsDelta: '{"a":1}' },
    { type: 'finish', choice: 0, finishReason: 'stop' },
    { type: 'finish', choice: 1, finishReason: 'tool_calls' },
    { type: 'usage', usage: { promptTokens: 7, completionTokens: 3, cachedTokens: 2 } },
  ]);
});

test('llama-server\'s "lowest float" log-probability becomes OpenAI\'s -9999', async () => {
  const parts = await decode([{ choices: [{ index: 0, delta: { content: 'x' }, logprobs: { content: [{ token: 'x', logprob: -3.4028234663852886e38, bytes: null, top_logprobs: [] }] }, finish_reason: 'length' }] }]);
  const logprobs = parts.find((part) => part.type === 'logprobs');
  assert.ok(logprobs?.type === 'logprobs');
  assert.equal(logprobs.content[0]?.logprob, -9999);
});

test('an error event is thrown (as the upstream classifies it), never yielded', async () => {
  await assert.rejects(decode([{ choices: [{ index: 0, delta: { role: 'assistant', content: null } }] }, { error: { code: 400, message: 'bad grammar' } }]), (error) => {
    assert.ok(error instanceof IrisError);
    assert.equal(error.status, 400);
    assert.match(error.message, /bad grammar/);
    return true;
  });
});

test('a chunk that is not JSON, or a stream that ends without a finish reason, is thrown', async () => {
  await assert.rejects(decode(['{oops']), /not JSON/);
  await assert.rejects(decode([{ choices: [{ index: 0, delta: { content: 'cut' } }] }]), (error) => error instanceof IrisError && error.code === 'engine_crashed');
});

test('the body is read to its end, past [DONE]', async () => {
  let drained = false;
  const source = (async function* () {
    yield `data: ${JSON.stringify({ choices: [{ index: 0, delta: { content: 'a' }, finish_reason: 'stop' }] })}\n\ndata: [DONE]\n\n`;
    drained = true;
  })();
  for await (const part of decodeOpenAIChatStream(source, options)) void part;
  assert.equal(drained, true);
});

test('the stop sequence that ended a choice, as llama-server, vLLM and SGLang report it; only one of the request\'s', async () => {
  const decodeWith = async (stop: string[] | undefined, events: unknown[]): Promise<StreamPart[]> => {
    const parts: StreamPart[] = [];
    for await (const part of decodeOpenAIChatStream(body(events), { ...options, stop })) if (part.type === 'finish') parts.push(part);
    return parts;
  };
  // llama-server: the debug object rides on the first chunk of the final result, before the finish.
  assert.deepEqual(
    await decodeWith(['END', 'STOP'], [
      { choices: [{ index: 0, delta: { content: 'Hi' } }] },
      { choices: [{ index: 0, delta: { content: '!' }, finish_reason: null }], __verbose: { stop_type: 'word', stopping_word: 'STOP' } },
      { choices: [{ index: 0, delta: {}, finish_reason: 'stop' }] },
    ]),
    [{ type: 'finish', choice: 0, finishReason: 'stop', stopSequence: 'STOP' }],
  );
  // An end-of-sequence stop names none.
  assert.deepEqual(
    await decodeWith(['END'], [{ choices: [{ index: 0, delta: {}, finish_reason: 'stop' }], __verbose: { stop_type: 'eos', stopping_word: '' } }]),
    [{ type: 'finish', choice: 0, finishReason: 'stop' }],
  );
  // vLLM's stop_reason and SGLang's matched_stop, per choice; a token id says nothing about the stop strings.
  assert.deepEqual(
    await decodeWith(['a', 'b'], [
      { choices: [{ index: 0, delta: {}, finish_reason: 'stop', stop_reason: 'b' }] },
      { choices: [{ index: 1, delta: {}, finish_reason: 'stop', matched_stop: 'a' }] },
      { choices: [{ index: 2, delta: {}, finish_reason: 'stop', stop_reason: 128009 }] },
    ]),
    [
      { type: 'finish', choice: 0, finishReason: 'stop', stopSequence: 'b' },
      { type: 'finish', choice: 1, finishReason: 'stop', stopSequence: 'a' },
      { type: 'finish', choice: 2, finishReason: 'stop' },
    ],
  );
  // A string the request did not ask to stop on, or no stop sequences at all, is never reported.
  assert.deepEqual(await decodeWith(['a'], [{ choices: [{ index: 0, delta: {}, finish_reason: 'stop', stop_reason: 'z' }] }]), [{ type: 'finish', choice: 0, finishReason: 'stop' }]);
  assert.deepEqual(await decodeWith(undefined, [{ choices: [{ index: 0, delta: {}, finish_reason: 'stop', stop_reason: 'z' }] }]), [{ type: 'finish', choice: 0, finishReason: 'stop' }]);
});
