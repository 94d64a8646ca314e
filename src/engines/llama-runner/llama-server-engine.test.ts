import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, test } from 'node:test';
import { IrisError } from '../../errors.js';
import { silentLogger } from '../../logger.js';
import { LlamaServerEngine } from './llama-server-engine.js';

const FAKE = fileURLToPath(new URL('../../../test/fixtures/fake-llama-server.mjs', import.meta.url));

const scriptDirectories: string[] = [];
after(() => {
  for (const directory of scriptDirectories) rmSync(directory, { recursive: true, force: true });
});

function engineStreaming(events: unknown[]): LlamaServerEngine {
  const stream = events.map((event) => (typeof event === 'string' ? event : JSON.stringify(event))).join('\n');
  // The fake streams the file it is given as its model.
  const directory = mkdtempSync(join(tmpdir(), 'iris-fake-llama-'));
  scriptDirectories.push(directory);
  const script = join(directory, 'stream.txt');
  writeFileSync(script, stream);
  return new LlamaServerEngine(
    {
      id: 'fake',
      binary: FAKE,
      model: script,
      context: 512,
      slots: 1,
      threads: 0,
      startTimeoutMs: 30_000,
      promptCacheMiB: 0,
      firstByteTimeoutMs: 30_000,
      idleTimeoutMs: 30_000,
      maxImagesPerRequest: 0,
    },
    { logger: silentLogger(), env: process.env },
  );
}

const request = () => ({ messages: [{ role: 'user' as const, content: [{ type: 'text' as const, text: 'hi' }] }], params: {} });

test('an error event before any part rejects the stream, so the client gets an HTTP error, not a 200', async () => {
  const engine = engineStreaming([
    { choices: [{ index: 0, delta: { role: 'assistant', content: null } }] },
    { error: { code: 400, message: 'the grammar cannot be applied', type: 'invalid_request_error' } },
  ]);
  try {
    const iterator = engine.stream({ ...request(), signal: new AbortController().signal })[Symbol.asyncIterator]();
    await assert.rejects(iterator.next(), (error) => {
      assert.ok(error instanceof IrisError);
      assert.equal(error.status, 400);
      assert.match(error.message, /grammar cannot be applied/);
      return true;
    });
  } finally {
    await engine.dispose();
  }
});

test('an error event after text ends the stream with an error part', async () => {
  const engine = engineStreaming([
    { choices: [{ index: 0, delta: { content: 'Hel' } }] },
    { error: { code: 500, message: 'decode failed', type: 'server_error' } },
  ]);
  try {
    const parts = [];
    for await (const part of engine.stream({ ...request(), signal: new AbortController().signal })) parts.push(part);
    assert.deepEqual(parts.map((part) => part.type), ['text-delta', 'error']);
    const last = parts[1];
    assert.ok(last?.type === 'error' && last.error.status === 502);
  } finally {
    await engine.dispose();
  }
});
