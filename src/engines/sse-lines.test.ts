import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseSseData } from './sse-lines.js';

async function collect(chunks: (Uint8Array | string)[]): Promise<string[]> {
  const out: string[] = [];
  for await (const data of parseSseData((async function* () { yield* chunks; })())) out.push(data);
  return out;
}

test('a multi-byte character split across network chunks stays whole', async () => {
  const bytes = Buffer.from('data: {"t":"héllo 🌈"}\n\n', 'utf8');
  const cut = bytes.indexOf(0xf0) + 2; // in the middle of the rainbow's 4 bytes
  assert.deepEqual(await collect([bytes.subarray(0, cut), bytes.subarray(cut)]), ['{"t":"héllo 🌈"}']);
});

test('CRLF, comments, multi-line data and a missing final blank line', async () => {
  const text = ': ping\r\ndata: a\r\ndata: b\r\n\r\nevent: x\ndata: [DONE]';
  assert.deepEqual(await collect([text]), ['a\nb', '[DONE]']);
});
