/**
 * The store against both databases, with one suite: SQLite in a temporary folder and a throwaway
 * PostgreSQL server. Time comes from a test clock, so windows roll over without waiting.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startTestPostgres, type TestPostgres } from '../../test/helpers/postgres.js';
import { keyDigest } from './api-keys.js';
import { migrate } from './migrations.js';
import { RateLimiter, WINDOW_MS } from './rate-limiter.js';
import { openStore, type Store } from './store.js';
import { UsageRecorder, type UsageRecord } from './usage-records.js';

let postgres: TestPostgres;
const folders: string[] = [];

before(async () => {
  postgres = await startTestPostgres();
});

after(async () => {
  await postgres?.stop();
  for (const folder of folders) await rm(folder, { recursive: true, force: true });
});

/** A clock tests move by hand. */
function testClock(start = Date.UTC(2026, 0, 5, 12, 0, 0)) {
  let now = start;
  return { now: () => now, advance: (ms: number) => void (now += ms) };
}

let databases = 0;
async function freshLocation(kind: 'sqlite' | 'postgres'): Promise<{ dataDir: string; databaseUrl?: string }> {
  const dataDir = await mkdtemp(join(tmpdir(), 'iris-store-test-'));
  folders.push(dataDir);
  if (kind === 'sqlite') return { dataDir };
  databases += 1;
  return { dataDir, databaseUrl: await postgres.createDatabase(`store_test_${databases}`) };
}

function usageRow(overrides: Partial<UsageRecord>): UsageRecord {
  return {
    requestId: `req_${Math.random().toString(36).slice(2)}`,
    keyId: null,
    keyName: null,
    model: 'tiny',
    endpoint: '/v1/chat/completions',
    promptTokens: 10,
    imageTokens: 0,
    imageCount: 0,
    cachedTokens: 0,
    completionTokens: 5,
    status: 200,
    ttftMs: 3,
    durationMs: 7,
    createdAt: Date.UTC(2026, 0, 5, 12),
    ...overrides,
  };
}

for (const kind of ['sqlite', 'postgres'] as const) {
  describe(`store on ${kind}`, () => {
    let store: Store;
    const clock = testClock();

    before(async () => {
      store = await openStore(await freshLocation(kind), clock.now);
    });
    after(async () => {
      await store?.close();
    });

    test('migrations are applied once and are idempotent', async () => {
      assert.deepEqual(await migrate(store.db), []);
      const rows = await store.db.query<{ version: number }>('SELECT version FROM schema_migrations');
      assert.deepEqual(rows.map((row) => Number(row.version)), [1]);
    });

    test('keys: create stores only the digest, list, revoke, names reusable after revoking', async () => {
      const { record, secret } = await store.keys.create({ name: 'alice', limits: { rpm: 5 }, models: ['tiny'] });
      assert.match(secret, /^iris-[A-Za-z0-9_-]{43}$/);
      assert.equal(record.keyHash, keyDigest(secret));
      assert.equal(record.prefix, secret.slice(0, 9));
      assert.deepEqual(record.limits, { rpm: 5 });
      assert.deepEqual(record.models, ['tiny']);
      const stored = await store.db.query<Record<string, unknown>>('SELECT * FROM api_keys');
      assert.ok(!JSON.stringify(stored).includes(secret), 'the secret itself is never stored');
      await assert.rejects(store.keys.create({ name: 'alice' }), /exists already/);
      assert.deepEqual((await store.keys.list()).map((key) => key.name), ['alice']);
      await store.keys.revoke('alice');
      await assert.rejects(store.keys.revoke('alice'), /No active key/);
      assert.deepEqual(await store.keys.list(), []);
      assert.equal((await store.keys.list({ includeRevoked: true }))[0]?.revokedAt, clock.now());
      const again = await store.keys.create({ name: 'alice', admin: true });
      assert.equal(again.record.admin, true);
    });

    test('requests per minute: the window counts, refuses with the time to its end, then starts again', async () => {
      const limiter = new RateLimiter(store.db, { now: clock.now });
      const { record } = await store.keys.create({ name: 'rpm-key', limits: { rpm: 2 } });
      const first = await limiter.admit(record.id, record.limits, 'r1', 0);
      assert.ok(first.admitted);
      assert.equal(first.state.remainingRequests, 1);
      assert.equal(first.state.resetMs, WINDOW_MS);
      clock.advance(10_000);
      const second = await limiter.admit(record.id, record.limits, 'r2', 0);
      assert.ok(second.admitted);
      assert.equal(second.state.remainingRequests, 0);
      assert.equal(second.state.resetMs, WINDOW_MS - 10_000);
      const third = await limiter.admit(record.id, record.limits, 'r3', 0);
      assert.equal(third.admitted, false);
      assert.ok(!third.admitted && third.limit === 'requests' && third.retryAfterMs === WINDOW_MS - 10_000);
      assert.equal((await limiter.peek(record.id, record.limits)).remainingRequests, 0);
      clock.advance(WINDOW_MS - 10_000);
      const fourth = await limiter.admit(record.id, record.limits, 'r4', 0);
      assert.ok(fourth.admitted);
      assert.equal(fourth.state.remainingRequests, 1);
      limiter.dispose();
    });

    test('tokens per minute: charged with the estimate, corrected with the real usage', async () => {
      const limiter = new RateLimiter(store.db, { now: clock.now });
      const { record } = await store.keys.create({ name: 'tpm-key', limits: { tpm: 100 } });
      const first = await limiter.admit(record.id, record.limits, 't1', 60);
      assert.ok(first.admitted);
      assert.equal(first.state.remainingTokens, 40);
      const refused = await limiter.admit(record.id, record.limits, 't2', 60);
      assert.ok(!refused.admitted && refused.limit === 'tokens');
      await first.ticket.settle(30); // the request used less than estimated
      assert.equal((await limiter.peek(record.id, record.limits)).remainingTokens, 70);
      const second = await limiter.admit(record.id, record.limits, 't3', 60);
      assert.ok(second.admitted);
      await second.ticket.settle(90);
      assert.equal((await limiter.peek(record.id, record.limits)).remainingTokens, 0);
      const tooLarge = await limiter.admit(record.id, record.limits, 't4', 500);
      assert.ok(!tooLarge.admitted && /too large/.test(tooLarge.message));
      limiter.dispose();
    });

    test('concurrency: places are held until settled; a dead gateway stops counting after the stale time', async () => {
      const limiter = new RateLimiter(store.db, { now: clock.now, staleMs: 30_000 });
      const { record } = await store.keys.create({ name: 'conc-key', limits: { concurrency: 1 } });
      const first = await limiter.admit(record.id, record.limits, 'c1', 0);
      assert.ok(first.admitted);
      const second = await limiter.admit(record.id, record.limits, 'c2', 0);
      assert.ok(!second.admitted && second.limit === 'concurrency');
      await first.ticket.settle(0);
      const third = await limiter.admit(record.id, record.limits, 'c3', 0);
      assert.ok(third.admitted);
      // c3's gateway "dies": no settle, no heartbeat.
      limiter.dispose();
      const other = new RateLimiter(store.db, { now: clock.now, staleMs: 30_000 });
      assert.equal((await other.admit(record.id, record.limits, 'c4', 0)).admitted, false);
      clock.advance(31_000);
      const fourth = await other.admit(record.id, record.limits, 'c5', 0);
      assert.ok(fourth.admitted);
      await fourth.ticket.settle(0);
      other.dispose();
    });

    test('two limiters on one database share one budget', async () => {
      const a = new RateLimiter(store.db, { now: clock.now });
      const b = new RateLimiter(store.db, { now: clock.now });
      const { record } = await store.keys.create({ name: 'shared-key', limits: { rpm: 3 } });
      const outcomes = await Promise.all(
        Array.from({ length: 8 }, (_, index) => (index % 2 === 0 ? a : b).admit(record.id, record.limits, `s${index}`, 0)),
      );
      assert.equal(outcomes.filter((outcome) => outcome.admitted).length, 3);
      a.dispose();
      b.dispose();
    });

    test('usage: batched writes, nothing lost on dispose, totals by day, model and key', async () => {
      const errors: unknown[] = [];
      const recorder = new UsageRecorder(store.usage, { flushMs: 60_000, batchSize: 1000, onError: (error) => errors.push(error) });
      const { record } = await store.keys.create({ name: 'usage-key' });
      const day1 = Date.UTC(2026, 0, 5, 23, 59);
      const day2 = Date.UTC(2026, 0, 6, 0, 1);
      recorder.record(usageRow({ keyId: record.id, keyName: 'usage-key', createdAt: day1, promptTokens: 100, imageTokens: 64, imageCount: 1 }));
      recorder.record(usageRow({ keyId: record.id, keyName: 'usage-key', createdAt: day2, model: 'other', status: 400, completionTokens: 0 }));
      recorder.record(usageRow({ keyName: 'config', createdAt: day2, status: 499 }));
      assert.equal((await store.usage.rows()).length, 0, 'nothing is written before the batch is due');
      await recorder.dispose();
      assert.deepEqual(errors, []);
      assert.equal((await store.usage.rows()).length, 3);
      const range = { from: Date.UTC(2026, 0, 1), to: Date.UTC(2026, 1, 1) };
      const byDay = await store.usage.totals({ ...range, groupBy: 'day' });
      assert.deepEqual(
        byDay.map((row) => [row.group, row.requests, row.errors, row.promptTokens, row.imageTokens, row.completionTokens, row.totalTokens]),
        [
          ['2026-01-05', 1, 0, 100, 64, 5, 105],
          ['2026-01-06', 2, 2, 20, 0, 5, 25],
        ],
      );
      const byModel = await store.usage.totals({ ...range, groupBy: 'model', keyName: 'usage-key' });
      assert.deepEqual(byModel.map((row) => [row.group, row.requests]), [['other', 1], ['tiny', 1]]);
      const byKey = await store.usage.totals({ ...range, groupBy: 'key' });
      assert.deepEqual(byKey.map((row) => [row.group, row.requests]), [['config', 1], ['usage-key', 2]]);
      const [key] = (await store.keys.list()).filter((candidate) => candidate.name === 'usage-key');
      assert.equal(key?.lastUsedAt, day2);
      assert.deepEqual(await store.usage.totals({ from: day2 + 1, to: day2 + 2, groupBy: 'key' }), []);
    });
  });
}
