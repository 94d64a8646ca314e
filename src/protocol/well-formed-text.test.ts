import assert from 'node:assert/strict';
import { test } from 'node:test';
import { checkRequestLimits } from './request-limits.js';
import { parseChatRequest } from './chat-request.js';
import { findIllFormedText } from './well-formed-text.js';

test('a lone surrogate anywhere in a body is found and named by its path', () => {
  assert.equal(findIllFormedText(JSON.parse('{"model":"m","messages":[{"role":"user","content":"\\ud83d\\ude00 fine"}]}')), null);
  const cases: [string, string][] = [
    ['{"messages":[{"role":"user","content":"t\\ud800t"}]}', 'messages[0].content'],
    ['{"messages":[{"content":[{"type":"text","text":"ok"},{"type":"text","text":"\\udfff"}]}]}', 'messages[0].content[1].text'],
    ['{"stop":["a","b\\ud83d"]}', 'stop[1]'],
    ['{"metadata":{"\\ud800":"key"}}', 'metadata'],
    ['"\\ud800"', '(body)'],
  ];
  for (const [json, param] of cases) {
    const error = findIllFormedText(JSON.parse(json));
    assert.ok(error, json);
    assert.equal(error.status, 400);
    assert.equal(error.param, param);
  }
});

test('deep nesting does not overflow the stack', () => {
  const deep = JSON.parse(`${'['.repeat(50_000)}"\\ud800"${']'.repeat(50_000)}`);
  assert.equal(findIllFormedText(deep)?.status, 400);
});

test('request limits: messages and text bytes', () => {
  const limits = { maxMessages: 3, maxTextBytes: 10 };
  const chat = (messages: unknown[]) => parseChatRequest({ model: 'm', messages }, { maxChoices: 1 });
  assert.doesNotThrow(() => checkRequestLimits(chat([{ role: 'user', content: 'é'.repeat(5) }]), limits));
  assert.throws(
    () => checkRequestLimits(chat(Array.from({ length: 4 }, () => ({ role: 'user', content: 'a' }))), limits),
    (error: any) => error.code === 'array_above_max_length' && error.param === 'messages',
  );
  // Bytes, not characters: six two-byte characters are 12 bytes.
  assert.throws(
    () => checkRequestLimits(chat([{ role: 'user', content: [{ type: 'text', text: 'é'.repeat(6) }] }]), limits),
    (error: any) => error.code === 'string_above_max_length',
  );
});
