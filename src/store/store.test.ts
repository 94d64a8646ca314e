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
import { openPostgres } from './database.js';
import { migrate } from './migrations.js';
import { RateLimiter, WINDOW_MS } from './rate-limiter.js';
import { ResponseRecordStore } from './response-records.js';
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

const RETENTION_MS = 86_400_000;

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
      store = await openStore(await freshLocation(kind), clock.now, { responses: { retentionMs: RETENTION_MS, maxBytes: 4096 } });
    });
    after(async () => {
      await store?.close();
    });

    test('migrations are applied once and are idempotent', async () => {
      assert.deepEqual(await migrate(store.db), []);
      const rows = await store.db.query<{ version: number }>('SELECT version FROM schema_migrations');
      assert.deepEqual(rows.map((row) => Number(row.version)).sort(), [1, 2]);
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

    test('responses: stored per owner, another owner sees and deletes nothing, deleted is gone', async () => {
      const body = { response: { id: 'resp_a', output: [{ text: 'héllo' }] }, conversation: [{ role: 'user', content: 'hi' }] };
      const outcome = await store.responses.put({ id: 'resp_a', owner: 'key:1', body });
      assert.deepEqual(outcome, { stored: true, bytes: Buffer.byteLength(JSON.stringify(body)) });
      assert.deepEqual(await store.responses.get('resp_a', 'key:1'), body);
      assert.equal(await store.responses.get('resp_a', 'key:2'), undefined);
      assert.equal(await store.responses.get('resp_missing', 'key:1'), undefined);
      assert.equal(await store.responses.delete('resp_a', 'key:2'), false);
      assert.deepEqual(await store.responses.get('resp_a', 'key:1'), body);
      assert.equal(await store.responses.delete('resp_a', 'key:1'), true);
      assert.equal(await store.responses.get('resp_a', 'key:1'), undefined);
      assert.equal(await store.responses.delete('resp_a', 'key:1'), false);
      const [row] = await store.db.query<{ count: number }>('SELECT COUNT(*) AS count FROM responses');
      assert.equal(Number(row?.count), 0);
    });

    test('responses: a body over the size cap is not stored; the cap counts UTF-8 bytes', async () => {
      const fits = { text: 'x'.repeat(4096 - 11) }; // {"text":"..."} is 11 bytes around the text
      assert.equal(Buffer.byteLength(JSON.stringify(fits)), 4096);
      assert.deepEqual(await store.responses.put({ id: 'resp_fits', owner: 'k', body: fits }), { stored: true, bytes: 4096 });
      const over = { text: 'é'.repeat(2043) }; // 2043 characters, 4097 bytes
      assert.deepEqual(await store.responses.put({ id: 'resp_over', owner: 'k', body: over }), { stored: false, reason: 'too-large', bytes: 4097 });
      assert.equal(await store.responses.get('resp_over', 'k'), undefined);
      assert.deepEqual(await store.responses.get('resp_fits', 'k'), fits);
    });

    test('responses: expired ones read as absent, cannot be deleted, and prune deletes only them', async () => {
      await store.responses.put({ id: 'resp_old', owner: 'k', body: { n: 1 } });
      clock.advance(RETENTION_MS / 2);
      await store.responses.put({ id: 'resp_new', owner: 'k', body: { n: 2 } });
      clock.advance(RETENTION_MS / 2 - 1);
      assert.deepEqual(await store.responses.get('resp_old', 'k'), { n: 1 }, 'kept for the whole retention period');
      clock.advance(1);
      assert.equal(await store.responses.get('resp_old', 'k'), undefined, 'expired exactly at the end of the period');
      assert.equal(await store.responses.delete('resp_old', 'k'), false);
      const ids = async () => (await store.db.query<{ id: string }>('SELECT id FROM responses ORDER BY id')).map((row) => row.id);
      assert.ok((await ids()).includes('resp_old'), 'still in the table until pruned');
      assert.ok((await store.responses.prune()) >= 1);
      assert.ok(!(await ids()).includes('resp_old'));
      assert.deepEqual(await store.responses.get('resp_new', 'k'), { n: 2 });
      // Pruning on a timer: at start, then every interval.
      clock.advance(RETENTION_MS);
      const errors: unknown[] = [];
      store.responses.startPruning({ intervalMs: 20, onError: (error) => errors.push(error) });
      const deadline = Date.now() + 5000;
      while ((await ids()).length > 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));
      store.responses.dispose();
      assert.deepEqual(await ids(), []);
      assert.deepEqual(errors, []);
    });

    test('responses: a retention of 0 stores nothing and reads nothing', async () => {
      const none = new ResponseRecordStore(store.db, { retentionMs: 0, maxBytes: 4096 }, clock.now);
      assert.equal(none.enabled, false);
      assert.deepEqual(await none.put({ id: 'resp_zero', owner: 'k', body: { n: 0 } }), { stored: false, reason: 'disabled', bytes: 7 });
      await store.responses.put({ id: 'resp_kept', owner: 'k', body: { n: 1 } });
      assert.equal(await none.get('resp_kept', 'k'), undefined, 'a stored one reads as expired under a retention of 0');
      assert.deepEqual(await store.responses.get('resp_kept', 'k'), { n: 1 });
      assert.equal(await store.responses.get('resp_zero', 'k'), undefined);
    });
  });
}

describe('PostgreSQL connections that the server ends', () => {
  test('a connection ended inside a transaction fails that transaction only: no crash, and the pool goes on', async () => {
    const { databaseUrl } = await freshLocation('postgres');
    const db = openPostgres(databaseUrl!);
    const admin = openPostgres(databaseUrl!);
    try {
      await db.execute('CREATE TABLE t (n integer)');
      const transaction = db.transaction(async (tx) => {
        await tx.execute('INSERT INTO t VALUES (1)');
        // Between two statements the server ends the connection (a restart, an administrator): the client
        // hears it while no query of its own is running.
        await admin.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()');
        await new Promise((resolve) => setTimeout(resolve, 300));
        await tx.execute('INSERT INTO t VALUES (2)');
      });
      await assert.rejects(transaction);
      assert.deepEqual(await db.query('SELECT count(*)::int AS n FROM t'), [{ n: 0 }], 'nothing of the failed transaction stays');
      await db.transaction(async (tx) => tx.execute('INSERT INTO t VALUES (3)'));
      assert.deepEqual(await db.query('SELECT n FROM t'), [{ n: 3 }]);
    } finally {
      await db.close();
      await admin.close();
    }
  });
});
