import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseSseData } from './sse-lines.js';

async function collect(chunks: (Uint8Array | string)[]): Promise<string[]> {
  const out: string[] = [];
  for await (const events of parseSseData((async function* () { yield* chunks; })())) out.push(...events);
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

test('every event one read completes comes at once; an event split across reads comes with the read that ends it', async () => {
  const batches: string[][] = [];
  const reads = ['data: 1\n\ndata: 2\n\ndata: 3', '\n\n', 'data: 4\n', '\ndata: 5\n\n'];
  for await (const events of parseSseData((async function* () { yield* reads; })())) batches.push(events);
  assert.deepEqual(batches, [['1', '2'], ['3'], ['4', '5']]);
});
