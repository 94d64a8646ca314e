import assert from 'node:assert/strict';
import { test } from 'node:test';
import { echo } from './echo.js';

test('echo escapes and cuts client values', () => {
  assert.equal(echo('smolvlm-256m'), 'smolvlm-256m');
  assert.equal(echo('a"b\nc\u0000'), 'a\\"b\\nc\\u0000');
  assert.equal(echo('x\ud800'), 'x\\ud800');
  const long = echo('m'.repeat(1_000_000));
  assert.ok(long.length < 250);
  assert.match(long, /^m{200}\.\.\. \(1000000 characters\)$/);
});
