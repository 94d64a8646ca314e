import assert from 'node:assert/strict';
import { test } from 'node:test';
import { IrisError } from '../errors.js';
import { assertMatchesSchema, specProperties } from '../../test/helpers/openapi.js';
import { chatRequestSchema, parseChatRequest } from './chat-request.js';

const LIMITS = { maxChoices: 8 };
const base = { model: 'm', messages: [{ role: 'user', content: 'hi' }] };

/** The IrisError `parse` throws for `body`. */
function refusal(body: unknown): IrisError {
  try {
    parseChatRequest(body, LIMITS);
  } catch (error) {
    assert.ok(error instanceof IrisError, String(error));
    return error;
  }
  assert.fail(`accepted ${JSON.stringify(body)}`);
}

test("every field of OpenAI's chat request is known, and passes when unset (null)", () => {
  const fields = specProperties('CreateChatCompletionRequest');
  assert.ok(fields.length > 30, fields.join());
  for (const name of fields) assert.ok(Object.hasOwn(chatRequestSchema.shape, name), `${name} is a field of the request schema`);
  const unset = Object.fromEntries(fields.filter((name) => name !== 'model' && name !== 'messages').map((name) => [name, null]));
  assert.doesNotThrow(() => parseChatRequest({ ...base, ...unset }, LIMITS));
});

test('an unknown top-level field is a 400 unknown_parameter naming it, in the spec\'s error shape', () => {
  for (const name of ['max_token', 'guided_json', 'max_output_tokens', 'constructor', '__proto__', 'toString']) {
    const error = refusal(JSON.parse(`{"model":"m","messages":[{"role":"user","content":"hi"}],${JSON.stringify(name)}:1}`));
    assert.equal(error.status, 400);
    assert.deepEqual(error.toBody(), {
      error: { message: `Unrecognized request argument supplied: ${name}`, type: 'invalid_request_error', param: name, code: 'unknown_parameter' },
    });
    assertMatchesSchema('ErrorResponse', error.toBody());
  }
  // A typo is named as such, not reported as the field it was meant to be.
  assert.equal(refusal({ model: 'm', max_token: 4 }).param, 'max_token');
  // A long name is cut in the message and the param.
  const long = refusal({ ...base, ['x'.repeat(5000)]: 1 });
  assert.ok(long.message.length < 300 && (long.param ?? '').length < 300, long.message);
});

test('an unknown field inside an object the schema closes is named with its path', () => {
  const error = refusal({ ...base, stream_options: { include_usage: true, chunk_size: 3 } });
  assert.equal(error.param, 'stream_options.chunk_size');
  assert.equal(error.code, 'unknown_parameter');
});

test("llama-server's repeat_penalty is taken as repetition_penalty (what a remote-engine Iris sends upstream); two different values are refused", () => {
  assert.equal(parseChatRequest({ ...base, repeat_penalty: 1.2 }, LIMITS).repetition_penalty, 1.2);
  assert.equal(parseChatRequest({ ...base, repeat_penalty: 1.2, repetition_penalty: 1.2 }, LIMITS).repetition_penalty, 1.2);
  assert.equal(refusal({ ...base, repeat_penalty: 1.2, repetition_penalty: 1.1 }).param, 'repeat_penalty');
});

test("metadata within OpenAI's limits passes; more than 16 pairs, a key over 64 or a value over 512 characters is a 400 naming metadata", () => {
  const pairs = (count: number) => Object.fromEntries(Array.from({ length: count }, (_, index) => [`k${index}`, 'v']));
  assert.doesNotThrow(() => parseChatRequest({ ...base, metadata: { ...pairs(15), ['k'.repeat(64)]: 'v'.repeat(512) } }, LIMITS));
  for (const metadata of [pairs(17), { ['k'.repeat(65)]: 'v' }, { k: 'v'.repeat(513) }]) {
    const error = refusal({ ...base, metadata });
    assert.equal(error.status, 400);
    assert.match(error.param ?? '', /^metadata/);
  }
});
