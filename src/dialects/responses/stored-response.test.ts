import assert from 'node:assert/strict';
import { test } from 'node:test';
import { IrisError } from '../../errors.js';
import { assertMatchesSchema } from '../../../test/helpers/openapi.js';
import { parseResponsesRequest, toChatRequest } from './responses-request.js';
import { listInputItems, toInputItems, type InputItemResource } from './stored-response.js';

/** The input items of a request body, through the same parsing and translation a request takes. */
function itemsOf(input: unknown): InputItemResource[] {
  const request = parseResponsesRequest({ model: 'm', input });
  toChatRequest(request);
  return toInputItems(request.input);
}

const IMAGE = 'data:image/png;base64,iVBORw0KGgo=';

test('every input item kind is listed as an ItemResource with an id, keeping the ids the client gave', () => {
  const items = itemsOf([
    { role: 'developer', content: 'Be terse.' },
    { role: 'user', content: [{ type: 'input_text', text: 'What is it?' }, { type: 'input_image', image_url: IMAGE }] },
    { type: 'message', id: 'msg_given', role: 'assistant', content: [{ type: 'output_text', text: 'A cat.' }] },
    { type: 'function_call', id: 'fc_given', call_id: 'call_1', name: 'look', arguments: '{}' },
    { type: 'function_call_output', call_id: 'call_1', output: [{ type: 'input_text', text: 'ok' }, { type: 'input_image', image_url: IMAGE, detail: 'low' }] },
  ]);
  const list = listInputItems(items, { order: 'asc' });
  assertMatchesSchema('ResponseItemList', list);
  assert.deepEqual(list.data.map((item) => [item.type, 'role' in item ? item.role : null]), [
    ['message', 'developer'],
    ['message', 'user'],
    ['message', 'assistant'],
    ['function_call', null],
    ['function_call_output', null],
  ]);
  assert.equal(list.data[2]?.id, 'msg_given');
  assert.equal(list.data[3]?.id, 'fc_given');
  assert.equal(new Set(list.data.map((item) => item.id)).size, 5);
  assert.deepEqual(list.data[1], { ...list.data[1], content: [{ type: 'input_text', text: 'What is it?' }, { type: 'input_image', image_url: IMAGE, detail: 'auto' }] });
  assert.deepEqual(list.data[0]?.type === 'message' && list.data[0].content, [{ type: 'input_text', text: 'Be terse.' }]);
  // A tool output keeps its image as it was sent.
  assert.deepEqual(list.data[4]?.type === 'function_call_output' && list.data[4].output, [
    { type: 'input_text', text: 'ok' },
    { type: 'input_image', image_url: IMAGE, detail: 'low' },
  ]);
  // A string input is one user message.
  const [only] = itemsOf('hello');
  assert.ok(only?.type === 'message' && only.role === 'user' && only.id.startsWith('msg_'));
  assertMatchesSchema('ResponseItemList', listInputItems([only], {}));
});

test('pages: desc by default, limit, after, has_more, first_id and last_id', () => {
  const items = itemsOf(Array.from({ length: 5 }, (_, index) => ({ role: 'user', content: `m${index}` })));
  const ids = items.map((item) => item.id);
  const page = listInputItems(items, { limit: '2' });
  assert.deepEqual(page.data.map((item) => item.id), [ids[4], ids[3]]);
  assert.equal(page.first_id, ids[4]);
  assert.equal(page.last_id, ids[3]);
  assert.equal(page.has_more, true);
  const next = listInputItems(items, { limit: '2', after: page.last_id });
  assert.deepEqual(next.data.map((item) => item.id), [ids[2], ids[1]]);
  const last = listInputItems(items, { limit: '2', after: next.last_id });
  assert.deepEqual(last.data.map((item) => item.id), [ids[0]]);
  assert.equal(last.has_more, false);
  const asc = listInputItems(items, { order: 'asc', after: ids[3]! });
  assert.deepEqual(asc.data.map((item) => item.id), [ids[4]]);
  // An empty page: the spec requires first_id and last_id as strings (not nullable), so they are empty ones.
  const empty = listInputItems(items, { order: 'asc', after: ids[4]! });
  assert.deepEqual([empty.data, empty.first_id, empty.last_id, empty.has_more], [[], '', '', false]);
  assertMatchesSchema('ResponseItemList', empty);
  assertMatchesSchema('ResponseItemList', listInputItems([], {}));
  assert.equal(listInputItems(items, {}).data.length, 5);
});

test('bad paging values and unknown parameters are 400s naming the parameter', () => {
  const items = itemsOf('hello');
  const refused = (query: Record<string, string | string[]>, param: string, code = 'invalid_value') =>
    assert.throws(
      () => listInputItems(items, query),
      (error: unknown) => error instanceof IrisError && error.status === 400 && error.param === param && error.code === code,
      JSON.stringify(query),
    );
  for (const limit of ['0', '101', '-1', '2.5', 'ten', '', '1000']) refused({ limit }, 'limit');
  refused({ order: 'newest' }, 'order');
  refused({ after: 'msg_nope' }, 'after');
  refused({ limit: ['1', '2'] }, 'limit');
  refused({ include: 'message.input_image.image_url' }, 'include', 'unsupported_parameter');
  refused({ before: 'x' }, 'before', 'unsupported_parameter');
  assert.equal(listInputItems(items, { limit: '1' }).data.length, 1);
  assert.equal(listInputItems(items, { limit: '100' }).data.length, 1);
});
