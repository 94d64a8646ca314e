import assert from 'node:assert/strict';
import { test } from 'node:test';
import { IrisError, invalidRequest } from '../../errors.js';
import { assertMatchesSchema, specProperties } from '../../../test/helpers/openapi.js';
import { inResponsesTerms, parseResponsesRequest, responsesRequestSchema } from './responses-request.js';

test("every field of OpenAI's Responses request is known, and passes when unset (null)", () => {
  const fields = specProperties('CreateResponse');
  assert.ok(fields.length > 25, fields.join());
  for (const name of fields) assert.ok(Object.hasOwn(responsesRequestSchema.shape, name), `${name} is a field of the request schema`);
  const unset = Object.fromEntries(fields.filter((name) => name !== 'model' && name !== 'input').map((name) => [name, null]));
  assert.doesNotThrow(() => parseResponsesRequest({ model: 'm', input: 'hi', ...unset }));
});

test('an unknown top-level field is a 400 unknown_parameter naming it, in the spec\'s error shape', () => {
  for (const name of ['max_output_token', 'max_tokens', 'messages', 'guided_json']) {
    assert.throws(
      () => parseResponsesRequest({ model: 'm', input: 'hi', [name]: 1 }),
      (error: unknown) => {
        assert.ok(error instanceof IrisError);
        assert.deepEqual(error.toBody(), {
          error: { message: `Unrecognized request argument supplied: ${name}`, type: 'invalid_request_error', param: name, code: 'unknown_parameter' },
        });
        assertMatchesSchema('ErrorResponse', error.toBody());
        return true;
      },
    );
  }
});

test("metadata over OpenAI's limits is a 400 naming metadata", () => {
  const metadata = Object.fromEntries(Array.from({ length: 17 }, (_, index) => [`k${index}`, 'v']));
  assert.throws(
    () => parseResponsesRequest({ model: 'm', input: 'hi', metadata }),
    (error: unknown) => error instanceof IrisError && error.status === 400 && (error.param ?? '').startsWith('metadata'),
  );
  assert.doesNotThrow(() => parseResponsesRequest({ model: 'm', input: 'hi', metadata: { user: 'u1' } }));
});

test('inResponsesTerms', async (t) => {
  await t.test("names the Responses request's fields for errors raised in chat terms, and leaves the rest", () => {
    const param = (name: string | null) => (inResponsesTerms(invalidRequest('x', name)) as IrisError).param;
    assert.equal(param('response_format.json_schema.schema'), 'text.format.schema');
    assert.equal(param('response_format'), 'text.format');
    assert.equal(param('messages'), 'input');
    assert.equal(param('max_tokens'), 'max_output_tokens');
    assert.equal(param('max_completion_tokens'), 'max_output_tokens');
    for (const kept of ['input[0].content[1].image_url', 'tools', 'tool_choice.name', 'temperature', 'messages_extra', 'messages[2].content', null]) assert.equal(param(kept), kept);
    const other = new Error('not an IrisError');
    assert.equal(inResponsesTerms(other), other);
  });
});
