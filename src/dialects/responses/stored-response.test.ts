import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ResponseStore, type StoredResponse } from './response-store.js';
import type { ResponseObject } from './responses-response.js';

function entry(id: string, owner: string, text = 'x'): StoredResponse {
  return { owner, response: { id } as ResponseObject, conversation: [{ role: 'user', content: text }] };
}

test('a stored response is visible and deletable only by the key that made it', () => {
  const store = new ResponseStore({ maxBytes: 1024 * 1024 });
  store.put(entry('resp_a', 'key:1'));
  assert.equal(store.get('resp_a', 'key:1')?.response.id, 'resp_a');
  assert.equal(store.get('resp_a', 'key:2'), undefined);
  assert.equal(store.delete('resp_a', 'key:2'), false);
  assert.equal(store.get('resp_a', 'key:1')?.response.id, 'resp_a');
  assert.equal(store.delete('resp_a', 'key:1'), true);
  assert.equal(store.get('resp_a', 'key:1'), undefined);
});

test('the store is bounded by bytes: the least recently used response goes first', () => {
  const big = 'y'.repeat(400);
  const store = new ResponseStore({ maxBytes: 1500 });
  store.put(entry('resp_1', 'k', big));
  store.put(entry('resp_2', 'k', big));
  assert.ok(store.get('resp_1', 'k'));
  store.put(entry('resp_3', 'k', big));
  store.put(entry('resp_4', 'k', big));
  assert.equal(store.get('resp_2', 'k'), undefined, 'the least recently used one was dropped');
  assert.ok(store.get('resp_4', 'k'));
  // Larger than the whole store: not kept.
  store.put(entry('resp_huge', 'k', 'z'.repeat(5000)));
  assert.equal(store.get('resp_huge', 'k'), undefined);
});

test('maxBytes 0 stores nothing', () => {
  const store = new ResponseStore({ maxBytes: 0 });
  store.put(entry('resp_a', 'k'));
  assert.equal(store.get('resp_a', 'k'), undefined);
});
