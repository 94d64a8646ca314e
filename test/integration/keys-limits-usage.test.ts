/**
 * API keys, per-key limits and usage records through the real HTTP server, on SQLite and on a throwaway
 * PostgreSQL: keys made and revoked with the `iris keys` CLI while Iris runs, expiry, model scopes, rpm /
 * tpm / concurrency limits with OpenAI's headers and Retry-After, usage rows that equal the answers' usage
 * (success, 4xx, a client-cancelled stream), GET /v1/usage and `iris usage`, SIGTERM under load losing no
 * row, and two gateways on one PostgreSQL sharing one limit.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, test } from 'node:test';
import { request } from 'undici';
import { openStore, type Store } from '../../src/store/store.js';
import type { UsageRecord } from '../../src/store/usage-records.js';
import { dataUri, makeImage } from '../helpers/images.js';
import { assertMatchesSchema } from '../helpers/openapi.js';
import { startTestPostgres, type TestPostgres } from '../helpers/postgres.js';
import { REPO_ROOT, startIris, syntheticModel, waitFor, type IrisProcess } from '../helpers/test-env.js';

const run = promisify(execFile);
const ADMIN = 'admin-config-key';
/** A configuration key given only as its SHA-256. */
const HASHED_ADMIN = 'admin-key-known-by-digest';
const MODEL = 'tiny';

let postgres: TestPostgres | undefined;
const folders: string[] = [];

after(async () => {
  await postgres?.stop();
  for (const folder of folders) await rm(folder, { recursive: true, force: true });
});

interface Answer {
  status: number;
  headers: Headers;
  json: any;
}

async function call(iris: IrisProcess, key: string, path: string, body?: unknown): Promise<Answer> {
  const response = await fetch(`${iris.baseUrl}${path}`, {
    method: body === undefined ? 'GET' : 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    ...(body === undefined ? {} : { body: typeof body === 'string' ? body : JSON.stringify(body) }),
  });
  const text = await response.text();
  return { status: response.status, headers: response.headers, json: text ? JSON.parse(text) : null };
}

/** POSTs a streaming chat request and resolves once the answer's headers are in. */
function openStream(iris: IrisProcess, key: string, body: unknown, signal?: AbortSignal): Promise<Response> {
  return fetch(`${iris.baseUrl}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
    ...(signal === undefined ? {} : { signal }),
  });
}

const chatBody = (extra: Record<string, unknown> = {}, content: unknown = 'Say something.') => ({
  model: MODEL,
  max_tokens: 4,
  messages: [{ role: 'user', content }],
  ...extra,
});

function assertRateLimited(answer: Answer, limit: 'requests' | 'tokens'): void {
  assert.equal(answer.status, 429, JSON.stringify(answer.json));
  assertMatchesSchema('ErrorResponse', answer.json);
  assert.equal(answer.json.error.code, 'rate_limit_exceeded');
  assert.equal(answer.json.error.type, limit);
  const retryAfter = Number(answer.headers.get('retry-after'));
  assert.ok(retryAfter >= 1 && retryAfter <= 60, `Retry-After ${answer.headers.get('retry-after')}`);
}

for (const kind of ['sqlite', 'postgres'] as const) {
  describe(`keys, limits and usage on ${kind}`, () => {
    let iris: IrisProcess;
    let store: Store;
    let env: Record<string, string>;
    let imageTokens: number;
    let model: Awaited<ReturnType<typeof syntheticModel>>;

    /** Runs `iris <args>` against this database and resolves with its stdout. */
    const cli = async (...args: string[]): Promise<string> =>
      (await run(process.execPath, ['--import', 'tsx', join(REPO_ROOT, 'src/main.ts'), ...args], { cwd: REPO_ROOT, env: { ...process.env, ...env } })).stdout;
    const createKey = async (...args: string[]): Promise<string> => (await cli('keys', 'create', ...args)).trim();
    const irisArgs = () => ['--model', model.modelPath, '--mmproj', model.mmprojPath, '--model-id', MODEL, '--api-key', ADMIN, '--api-key', `sha256:${createHash('sha256').update(HASHED_ADMIN).digest('hex')}`, '--ctx-size', '4096', '--slots', '2'];
    /** Usage rows of one key name, once `count` of them are written. */
    const rowsOf = async (keyName: string, count: number): Promise<UsageRecord[]> => {
      let rows: UsageRecord[] = [];
      await waitFor(async () => {
        rows = (await store.usage.rows()).filter((row) => row.keyName === keyName);
        return rows.length >= count;
      });
      return rows;
    };

    before(async () => {
      model = await syntheticModel('tiny');
      imageTokens = model.imageTokensPerImage;
      const dataDir = await mkdtemp(join(tmpdir(), 'iris-keys-test-'));
      folders.push(dataDir);
      env = { IRIS_DATA_DIR: dataDir, DATABASE_URL: '' };
      if (kind === 'postgres') {
        postgres ??= await startTestPostgres();
        env['DATABASE_URL'] = await postgres.createDatabase('keys_test');
      }
      iris = await startIris({ args: irisArgs(), env });
      store = await openStore({ dataDir, databaseUrl: env['DATABASE_URL'] || undefined });
    });

    after(async () => {
      await iris?.stop();
      await store?.close();
    });

    test('a key made with iris keys works at once, is listed, and stops working within seconds of revoking', async () => {
      const key = await createKey('--name', 'alice');
      assert.match(key, /^iris-[A-Za-z0-9_-]{43}$/);
      // The running server reloads keys every 2 s: the new key works without a restart.
      assert.ok(await waitFor(async () => (await call(iris, key, '/v1/models')).status === 200), 'the new key was accepted');
      const answer = await call(iris, key, '/v1/chat/completions', chatBody());
      assert.equal(answer.status, 200, JSON.stringify(answer.json));
      assert.equal(answer.headers.get('x-ratelimit-limit-requests'), null, 'a key without limits gets no rate headers');
      await rowsOf('alice', 1);
      const listing = await cli('keys', 'list');
      const line = listing.split('\n').find((candidate) => candidate.startsWith('alice '));
      assert.ok(line, listing);
      assert.ok(line.includes(key.slice(0, 9)), 'the prefix is listed');
      assert.ok(!listing.includes(key), 'the key itself is never listed');
      assert.match(line, /\d{4}-\d{2}-\d{2}T[\d:]+Z\s+\d{4}-\d{2}-\d{2}T[\d:]+Z/, 'created and last used');
      await cli('keys', 'revoke', 'alice');
      assert.ok(await waitFor(async () => (await call(iris, key, '/v1/models')).status === 401, 5000), 'revoked within seconds');
      const refused = await call(iris, key, '/v1/chat/completions', chatBody());
      assert.equal(refused.status, 401);
      assert.equal(refused.json.error.code, 'invalid_api_key');
      assert.ok(!JSON.stringify(refused.json).includes(key), 'the key is not echoed');
      assert.ok(!iris.logs.some((entry) => entry.includes(key)), 'the key never appears in the log');
    });

    test('an expired key is refused; the configuration key is an admin key', async () => {
      const { secret } = await store.keys.create({ name: 'expired', expiresAt: Date.now() - 1000 });
      assert.ok(
        await waitFor(async () => {
          const answer = await call(iris, secret, '/v1/models');
          return answer.status === 401 && /expired/.test(answer.json.error.message);
        }, 5000),
      );
      const usage = await call(iris, ADMIN, '/v1/usage?group_by=key');
      assert.equal(usage.status, 200, JSON.stringify(usage.json));
      assert.equal(usage.json.key, null, 'an admin key reads every key');
      const hashed = await call(iris, HASHED_ADMIN, '/v1/usage?group_by=key');
      assert.equal(hashed.status, 200, 'a sha256: configuration key works');
      assert.equal(hashed.json.key, null);
      assert.equal((await call(iris, `sha256:${createHash('sha256').update(HASHED_ADMIN).digest('hex')}`, '/v1/models')).status, 401, 'the digest itself is no key');
    });

    test('a key scoped to other models gets 404 for this one, as if it did not exist', async () => {
      const scoped = await createKey('--name', 'scoped', '--models', 'some-other-model');
      const allowed = await createKey('--name', 'tiny-only', '--models', MODEL);
      assert.ok(await waitFor(async () => (await call(iris, scoped, '/v1/models')).status === 200));
      const refused = await call(iris, scoped, '/v1/chat/completions', chatBody());
      assert.equal(refused.status, 404);
      assert.equal(refused.json.error.code, 'model_not_found');
      const unknown = await call(iris, scoped, '/v1/chat/completions', { ...chatBody(), model: 'no-such-model' });
      assert.equal(unknown.json.error.message, refused.json.error.message.replace(`'${MODEL}'`, "'no-such-model'"), 'the same answer as an unknown model');
      assert.deepEqual((await call(iris, scoped, '/v1/models')).json.data, []);
      assert.equal((await call(iris, scoped, `/v1/models/${MODEL}`)).status, 404);
      assert.equal((await call(iris, scoped, '/v1/tokenize', chatBody())).status, 404);
      assert.ok(await waitFor(async () => (await call(iris, allowed, '/v1/models')).status === 200));
      assert.deepEqual((await call(iris, allowed, '/v1/models')).json.data.map((entry: { id: string }) => entry.id), [MODEL]);
      assert.equal((await call(iris, allowed, '/v1/chat/completions', chatBody())).status, 200);
    });

    test('requests per minute: headers on every answer, then 429 rate_limit_exceeded with Retry-After', async () => {
      const key = await createKey('--name', 'rpm', '--rpm', '2');
      assert.ok(await waitFor(async () => (await call(iris, key, '/v1/models')).status === 200));
      const first = await call(iris, key, '/v1/chat/completions', chatBody());
      assert.equal(first.status, 200);
      assert.equal(first.headers.get('x-ratelimit-limit-requests'), '2');
      assert.equal(first.headers.get('x-ratelimit-remaining-requests'), '1');
      assert.match(first.headers.get('x-ratelimit-reset-requests') ?? '', /^(\d+m)?[\d.]+m?s$/);
      assert.equal(first.headers.get('x-ratelimit-limit-tokens'), null, 'no token limit, no token headers');
      // A 400 carries the headers too (and does not count).
      const invalid = await call(iris, key, '/v1/chat/completions', '{"model":');
      assert.equal(invalid.status, 400);
      assert.equal(invalid.headers.get('x-ratelimit-remaining-requests'), '1');
      const streamed = await openStream(iris, key, chatBody({ stream: true }));
      assert.equal(streamed.status, 200);
      assert.equal(streamed.headers.get('x-ratelimit-remaining-requests'), '0', 'a stream carries the headers');
      await streamed.text();
      const third = await call(iris, key, '/v1/chat/completions', chatBody());
      assertRateLimited(third, 'requests');
      assert.equal(third.headers.get('x-ratelimit-remaining-requests'), '0');
      assert.ok(Number(third.headers.get('retry-after')) <= 60);
    });

    test('tokens per minute: charged with the real usage; a request larger than the limit is refused', async () => {
      const key = await createKey('--name', 'tpm', '--tpm', '2000');
      assert.ok(await waitFor(async () => (await call(iris, key, '/v1/models')).status === 200));
      const first = await call(iris, key, '/v1/chat/completions', chatBody({}, [
        { type: 'text', text: 'Describe.' },
        { type: 'image_url', image_url: { url: dataUri(await makeImage()) } },
      ]));
      assert.equal(first.status, 200, JSON.stringify(first.json));
      assert.equal(first.headers.get('x-ratelimit-limit-tokens'), '2000');
      const used = first.json.usage.total_tokens as number;
      assert.ok(used > imageTokens);
      // The estimate charged at admission is corrected to the real usage once the request ends.
      assert.ok(
        await waitFor(async () => (await call(iris, key, '/v1/models')).headers.get('x-ratelimit-remaining-tokens') === String(2000 - used)),
        'remaining tokens = limit - real usage',
      );
      const tooLarge = await call(iris, key, '/v1/chat/completions', chatBody({ max_tokens: 5000 }));
      assertRateLimited(tooLarge, 'tokens');
      assert.match(tooLarge.json.error.message, /too large/);
    });

    test('concurrency: a second request while one streams gets 429; the place frees when the client leaves', async () => {
      const key = await createKey('--name', 'conc', '--concurrency', '1');
      assert.ok(await waitFor(async () => (await call(iris, key, '/v1/models')).status === 200));
      const controller = new AbortController();
      const holding = await openStream(iris, key, chatBody({ stream: true, max_tokens: 2000, ignore_eos: true }), controller.signal);
      assert.equal(holding.status, 200);
      const reader = holding.body!.getReader();
      await reader.read();
      const second = await call(iris, key, '/v1/chat/completions', chatBody());
      assertRateLimited(second, 'requests');
      assert.match(second.json.error.message, /Concurrency/);
      controller.abort();
      assert.ok(await waitFor(async () => (await call(iris, key, '/v1/chat/completions', chatBody())).status === 200), 'the place was freed');
      const statuses = new Set((await rowsOf('conc', 3)).map((row) => row.status));
      assert.deepEqual([...statuses].sort(), [200, 429, 499]);
    });

    test('usage rows equal the answers: success with an image, a stream, a 4xx, a cancelled stream', async () => {
      const key = await createKey('--name', 'meter');
      assert.ok(await waitFor(async () => (await call(iris, key, '/v1/models')).status === 200));
      const image = { type: 'image_url', image_url: { url: dataUri(await makeImage({ seed: 3 })) } };
      const plain = await call(iris, key, '/v1/chat/completions', chatBody({}, [{ type: 'text', text: 'What is this?' }, image]));
      assert.equal(plain.status, 200);
      assert.equal(plain.json.usage.prompt_tokens_details.image_tokens, imageTokens);

      const streamed = await openStream(iris, key, chatBody({ stream: true, stream_options: { include_usage: true } }, [{ type: 'text', text: 'And this?' }, image, image]));
      const events = (await streamed.text()).split('\n\n').filter((event) => event.startsWith('data: {'));
      const streamUsage = JSON.parse(events.at(-1)!.slice(6)).usage;
      assert.equal(streamUsage.prompt_tokens_details.image_tokens, 2 * imageTokens);

      const bad = await call(iris, key, '/v1/chat/completions', chatBody({}, [{ type: 'image_url', image_url: { url: 'data:image/png;base64,AAAA' } }]));
      assert.equal(bad.status, 400);

      const controller = new AbortController();
      const cancelled = await openStream(iris, key, chatBody({ stream: true, max_tokens: 2000, ignore_eos: true }, [{ type: 'text', text: 'Go on.' }, image]), controller.signal);
      const reader = cancelled.body!.getReader();
      let received = '';
      while ((received.match(/"content":"[^"]/g) ?? []).length < 2) received += new TextDecoder().decode((await reader.read()).value);
      controller.abort();

      const rows = await rowsOf('meter', 4);
      const byId = (response: { headers: Headers }) => rows.find((row) => row.requestId === response.headers.get('x-request-id'));
      const plainRow = byId(plain);
      assert.ok(plainRow);
      assert.deepEqual(
        [plainRow.status, plainRow.promptTokens, plainRow.completionTokens, plainRow.imageTokens, plainRow.imageCount, plainRow.cachedTokens, plainRow.model, plainRow.endpoint],
        [200, plain.json.usage.prompt_tokens, plain.json.usage.completion_tokens, imageTokens, 1, plain.json.usage.prompt_tokens_details.cached_tokens, MODEL, '/v1/chat/completions'],
      );
      const streamRow = byId(streamed);
      assert.ok(streamRow);
      assert.deepEqual(
        [streamRow.status, streamRow.promptTokens, streamRow.completionTokens, streamRow.imageTokens, streamRow.imageCount],
        [200, streamUsage.prompt_tokens, streamUsage.completion_tokens, 2 * imageTokens, 2],
      );
      assert.ok(streamRow.ttftMs !== null && streamRow.ttftMs <= streamRow.durationMs);
      const badRow = byId(bad);
      assert.ok(badRow);
      assert.deepEqual([badRow.status, badRow.promptTokens, badRow.completionTokens], [400, 0, 0]);
      const cancelledRow = byId(cancelled);
      assert.ok(cancelledRow);
      assert.equal(cancelledRow.status, 499);
      assert.equal(cancelledRow.imageTokens, imageTokens);
      assert.ok(cancelledRow.completionTokens >= 2 && cancelledRow.completionTokens < 2000, `${cancelledRow.completionTokens} completion tokens`);

      // GET /v1/usage: a plain key reads its own totals, and only its own.
      const own = await call(iris, key, '/v1/usage?group_by=model');
      assert.equal(own.status, 200, JSON.stringify(own.json));
      assert.equal(own.json.key, 'meter');
      const sum = (field: 'promptTokens' | 'completionTokens' | 'imageTokens') => rows.reduce((total, row) => total + row[field], 0);
      assert.deepEqual(own.json.data, [
        {
          model: MODEL,
          requests: 4,
          errors: 2,
          prompt_tokens: sum('promptTokens'),
          image_tokens: sum('imageTokens'),
          cached_tokens: rows.reduce((total, row) => total + row.cachedTokens, 0),
          completion_tokens: sum('completionTokens'),
          total_tokens: sum('promptTokens') + sum('completionTokens'),
        },
      ]);
      assert.equal((await call(iris, key, '/v1/usage?key=alice')).status, 403);
      assert.equal((await call(iris, key, '/v1/usage?group_by=week')).json.error.param, 'group_by');
      assert.equal((await call(iris, key, '/v1/usage?since=7d')).json.error.param, 'since');
      const today = new Date().toISOString().slice(0, 10);
      const byDay = await call(iris, key, `/v1/usage?from=${today}&group_by=day`);
      assert.deepEqual(byDay.json.data.map((bucket: { day: string; requests: number }) => [bucket.day, bucket.requests]), [[today, 4]]);
      // An admin key reads any key's totals, or everyone's.
      const admin = await call(iris, ADMIN, '/v1/usage?group_by=key&key=meter');
      const ownTotals = { ...own.json.data[0] };
      delete ownTotals.model;
      assert.deepEqual(admin.json.data, [{ key: 'meter', ...ownTotals }]);
      const everyone = await call(iris, ADMIN, '/v1/usage?group_by=key');
      const names = everyone.json.data.map((bucket: { key: string }) => bucket.key);
      for (const name of ['alice', 'meter', 'rpm', 'conc']) assert.ok(names.includes(name), `${name} in ${names}`);
      // iris usage prints the same totals.
      const printed = await cli('usage', '--since', '1d', '--by', 'key');
      const meterLine = printed.split('\n').find((candidate) => candidate.startsWith('meter '));
      assert.ok(meterLine, printed);
      assert.deepEqual(meterLine.trim().split(/\s+/).slice(1).map(Number), [4, 2, sum('promptTokens'), sum('imageTokens'), own.json.data[0].cached_tokens, sum('completionTokens'), own.json.data[0].total_tokens]);
    });

    test('SIGTERM under load loses no usage row', async () => {
      const key = await createKey('--name', 'load');
      const second = await startIris({ args: irisArgs(), env });
      try {
        assert.ok(await waitFor(async () => (await call(second, key, '/v1/models')).status === 200));
        const count = 8;
        // `reset` closes each connection after its answer: idle keep-alive sockets would hold the shutdown.
        const answers = Array.from({ length: count }, () =>
          request(`${second.baseUrl}/v1/chat/completions`, {
            method: 'POST',
            headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
            body: JSON.stringify(chatBody({ max_tokens: 200, ignore_eos: true })),
            reset: true,
          }).then(
            async (response) => {
              await response.body.text();
              return response.statusCode;
            },
            (error: unknown) => error,
          ),
        );
        // Every request holds or waits for a slot (the metrics' gauges) before the signal.
        const admitted = async (): Promise<number> => {
          const text = await (await fetch(`${second.baseUrl}/metrics`, { headers: { authorization: `Bearer ${ADMIN}` } })).text();
          return [...text.matchAll(/^iris_requests_(?:running|waiting)\{model="tiny"\} (\d+)/gm)].reduce((sum, match) => sum + Number(match[1]), 0);
        };
        assert.ok(await waitFor(async () => (await admitted()) >= count));
        const exited = new Promise((resolve) => second.child.once('exit', resolve));
        second.child.kill('SIGTERM');
        const settled = await Promise.all(answers);
        assert.ok(settled.every((status) => typeof status === 'number'), `every request was answered: ${settled.map(String)}`);
        const statuses = settled as number[];
        await exited;
        assert.equal(second.child.exitCode, 0);
        const rows = (await store.usage.rows()).filter((row) => row.keyName === 'load');
        assert.equal(rows.length, count, `${rows.length} rows for ${count} answered requests (${statuses})`);
        assert.deepEqual(rows.map((row) => row.status).sort(), [...statuses].sort());
      } finally {
        await second.stop();
      }
    });

    if (kind === 'postgres') {
      test('two gateways on one PostgreSQL share a key\'s limits', async () => {
        const other = await startIris({ args: irisArgs(), env });
        try {
          const key = await createKey('--name', 'fleet', '--rpm', '3');
          const conc = await createKey('--name', 'fleet-conc', '--concurrency', '1');
          // Both gateways have loaded both keys (each reloads them every 2 s).
          for (const gateway of [iris, other]) {
            for (const secret of [key, conc]) assert.ok(await waitFor(async () => (await call(gateway, secret, '/v1/models')).status === 200));
          }
          const statuses: number[] = [];
          for (const gateway of [iris, other, iris, other]) statuses.push((await call(gateway, key, '/v1/chat/completions', chatBody())).status);
          assert.deepEqual(statuses, [200, 200, 200, 429]);
          const last = await call(iris, key, '/v1/models');
          assert.equal(last.headers.get('x-ratelimit-remaining-requests'), '0', 'both gateways see one window');

          const controller = new AbortController();
          const holding = await openStream(iris, conc, chatBody({ stream: true, max_tokens: 2000, ignore_eos: true }), controller.signal);
          assert.equal(holding.status, 200);
          await holding.body!.getReader().read();
          assertRateLimited(await call(other, conc, '/v1/chat/completions', chatBody()), 'requests');
          controller.abort();
          assert.ok(await waitFor(async () => (await call(other, conc, '/v1/chat/completions', chatBody())).status === 200));
        } finally {
          await other.stop();
        }
      });
    }
  });
}
