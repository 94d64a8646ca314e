/**
 * Records every chat-completion and tokenize request body the tests send to an Iris, with the status Iris
 * answered, so test/conformance can check that the OpenAPI document's request schema accepts each of them.
 * It wraps the global `fetch` of the test process (which the official `openai` client uses too) and leaves
 * requests and responses untouched. Records go to test-output/request-bodies/<pid>.jsonl.
 */
import { appendFileSync, mkdirSync } from 'node:fs';
import { join, relative } from 'node:path';

/** One recorded request. */
export interface RecordedRequest {
  /** The test file that sent it. */
  file: string;
  path: string;
  status: number;
  /** The body as sent (a string; most are JSON). */
  body: string;
}

/** Where the records go. */
export function recordsDir(repoRoot: string): string {
  return join(repoRoot, 'test-output', 'request-bodies');
}

const RECORDED_PATH = /\/(chat\/completions|tokenize)$/;

/** Wraps the global fetch once per process; records requests whose URL `isIris` says went to an Iris. */
export function recordRequestBodies(repoRoot: string, isIris: (url: URL) => boolean): void {
  const marker = Symbol.for('iris.test.recordRequestBodies');
  const global = globalThis as { [marker]?: boolean };
  if (global[marker]) return;
  global[marker] = true;
  const dir = recordsDir(repoRoot);
  const file = join(dir, `${process.pid}.jsonl`);
  const argument = process.argv.find((candidate) => candidate.endsWith('.test.ts'));
  const testFile = argument === undefined ? 'unknown' : relative(repoRoot, argument);
  const original = globalThis.fetch;
  globalThis.fetch = async (input, init) => {
    const response = await original(input, init);
    const url = new URL(input instanceof Request ? input.url : String(input));
    const body = init?.body;
    if ((init?.method ?? 'GET').toUpperCase() === 'POST' && RECORDED_PATH.test(url.pathname) && isIris(url) && body != null) {
      const text = typeof body === 'string' ? body : body instanceof Uint8Array ? Buffer.from(body).toString('utf8') : undefined;
      if (text !== undefined) {
        const record: RecordedRequest = { file: testFile, path: url.pathname, status: response.status, body: text };
        mkdirSync(dir, { recursive: true });
        appendFileSync(file, `${JSON.stringify(record)}\n`);
      }
    }
    return response;
  };
}
