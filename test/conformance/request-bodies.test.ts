/**
 * Runs after the integration tests (npm test runs it last): every chat-completion and tokenize body those
 * tests sent (recorded by test/helpers/record-request-bodies.ts) is checked against the request schema of
 * Iris's OpenAPI document. A body Iris answered with 2xx must validate, and for every body the document and
 * the zod schema that validates requests must agree, so the document is neither looser nor stricter.
 */
import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { buildOpenApiDocument } from '../../src/http/openapi-document.js';
import { chatRequestSchema } from '../../src/protocol/chat-request.js';
import { componentValidators } from '../helpers/iris-openapi.js';
import { recordsDir, type RecordedRequest } from '../helpers/record-request-bodies.js';
import { REPO_ROOT } from '../helpers/test-env.js';

async function recorded(): Promise<RecordedRequest[]> {
  const dir = recordsDir(REPO_ROOT);
  const files = await readdir(dir).catch(() => [] as string[]);
  const records: RecordedRequest[] = [];
  for (const file of files.filter((name) => name.endsWith('.jsonl'))) {
    const text = await readFile(join(dir, file), 'utf8');
    for (const line of text.split('\n')) if (line.trim()) records.push(JSON.parse(line) as RecordedRequest);
  }
  return records;
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

test('the OpenAPI chat request schema accepts every request body the integration tests sent', async () => {
  const records = await recorded();
  assert.ok(
    records.length >= 20,
    `only ${records.length} recorded request bodies in ${recordsDir(REPO_ROOT)}: run the integration tests first (npm test does)`,
  );
  const validate = componentValidators(buildOpenApiDocument('test') as never)('ChatCompletionRequest');
  const rejectedSuccesses: string[] = [];
  const disagreements: string[] = [];
  let objects = 0;
  for (const record of records) {
    const body = parseJson(record.body);
    if (body === null || typeof body !== 'object' || Array.isArray(body)) {
      // Not a JSON object: Iris must have refused it before any schema applies.
      assert.ok(record.status >= 400, `${record.file}: a non-object body got ${record.status}`);
      continue;
    }
    objects += 1;
    const accepted = validate(body) === true;
    const where = `${record.file} ${record.path} (${record.status}): ${record.body.slice(0, 300)}`;
    if (record.status < 300 && !accepted) rejectedSuccesses.push(`${where}\n  ${JSON.stringify(validate.errors)}`);
    if (accepted !== chatRequestSchema.safeParse(body).success) disagreements.push(`${where}\n  document says ${accepted}`);
  }
  assert.deepEqual(rejectedSuccesses, [], 'bodies Iris served that the document rejects');
  assert.deepEqual(disagreements, [], 'bodies the document and the zod schema judge differently');
  assert.ok(objects >= 20, `${objects} JSON bodies checked`);
});
