import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { IrisError } from '../errors.js';
import { ModelScheduler } from './model-scheduler.js';

const never = new AbortController().signal;

/** Lets granted promises settle. */
async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await Promise.resolve();
}

function track<T>(promise: Promise<T>): { state: () => 'pending' | 'resolved' | 'rejected'; error: () => unknown; value: () => T | undefined } {
  let state: 'pending' | 'resolved' | 'rejected' = 'pending';
  let error: unknown;
  let value: T | undefined;
  promise.then(
    (v) => {
      state = 'resolved';
      value = v;
    },
    (e: unknown) => {
      state = 'rejected';
      error = e;
    },
  );
  return { state: () => state, error: () => error, value: () => value };
}

describe('ModelScheduler', () => {
  it('holds a granted slot past the queue timeout: the timeout only bounds waiting', async () => {
    const scheduler = new ModelScheduler({ slots: 1, maxQueued: 4, queueTimeoutMs: 40 });
    const releaseFirst = await scheduler.acquire(never);
    // The first request generates for far longer than the queue timeout.
    await delay(200);
    assert.equal(scheduler.running, 1);
    const second = track(scheduler.acquire(never));
    await delay(5);
    assert.equal(second.state(), 'pending', 'no second slot is handed out while the first is held');
    await delay(200);
    assert.equal(second.state(), 'rejected', 'the second request waited past the queue timeout');
    const error = second.error();
    assert.ok(error instanceof IrisError);
    assert.equal(error.status, 503);
    assert.equal(scheduler.running, 1, 'still one running: no over-admission');
    releaseFirst();
    assert.equal(scheduler.running, 0);
  });

  it('grants waiting requests in arrival order as slots are released', async () => {
    const scheduler = new ModelScheduler({ slots: 2, maxQueued: 8, queueTimeoutMs: 60_000 });
    const a = await scheduler.acquire(never);
    const b = await scheduler.acquire(never);
    const order: string[] = [];
    const c = scheduler.acquire(never).then((release) => (order.push('c'), release));
    const d = scheduler.acquire(never).then((release) => (order.push('d'), release));
    await settle();
    assert.deepEqual(order, []);
    assert.equal(scheduler.waiting, 2);
    b();
    await settle();
    assert.deepEqual(order, ['c']);
    a();
    await settle();
    assert.deepEqual(order, ['c', 'd']);
    (await c)();
    (await d)();
    assert.equal(scheduler.running, 0);
    assert.equal(scheduler.slotsInUse, 0);
  });

  it('refuses with 429 once the queue is full, and a release called twice frees one slot', async () => {
    const scheduler = new ModelScheduler({ slots: 1, maxQueued: 1, queueTimeoutMs: 60_000 });
    const first = await scheduler.acquire(never);
    const queued = scheduler.acquire(never);
    await assert.rejects(scheduler.acquire(never), (error: unknown) => error instanceof IrisError && error.status === 429);
    first();
    first();
    const second = await queued;
    assert.equal(scheduler.running, 1);
    const third = track(scheduler.acquire(never));
    await settle();
    assert.equal(third.state(), 'pending', 'the double release did not free a second slot');
    second();
    await settle();
    assert.equal(third.state(), 'resolved');
    third.value()?.();
  });

  it('a waiting request whose client leaves is removed from the queue at once', async () => {
    const scheduler = new ModelScheduler({ slots: 1, maxQueued: 4, queueTimeoutMs: 60_000 });
    const held = await scheduler.acquire(never);
    const client = new AbortController();
    const waiting = track(scheduler.acquire(client.signal));
    await settle();
    assert.equal(scheduler.waiting, 1);
    client.abort();
    await settle();
    assert.equal(waiting.state(), 'rejected');
    assert.equal(scheduler.waiting, 0);
    held();
    assert.equal(scheduler.running, 0);
  });

  it('a request for several slots waits until they are all free, and keeps its place in line', async () => {
    const scheduler = new ModelScheduler({ slots: 3, maxQueued: 8, queueTimeoutMs: 60_000 });
    const one = await scheduler.acquire(never);
    const two = await scheduler.acquire(never);
    const wide = track(scheduler.acquire(never, 3));
    const narrow = track(scheduler.acquire(never));
    await settle();
    assert.equal(wide.state(), 'pending');
    assert.equal(narrow.state(), 'pending', 'a later request does not overtake the one waiting for three slots');
    one();
    await settle();
    assert.equal(wide.state(), 'pending');
    two();
    await settle();
    assert.equal(wide.state(), 'resolved');
    assert.equal(scheduler.slotsInUse, 3);
    wide.value()?.();
    await settle();
    assert.equal(narrow.state(), 'resolved');
    narrow.value()?.();
    assert.equal(scheduler.slotsInUse, 0);
  });

  it('asks for at most the model’s slots, so a wide request can still run', async () => {
    const scheduler = new ModelScheduler({ slots: 2, maxQueued: 8, queueTimeoutMs: 60_000 });
    const release = await scheduler.acquire(never, 8);
    assert.equal(scheduler.slotsInUse, 2);
    release();
  });

  it('dispose rejects waiting requests with 503 and refuses new ones; held slots stay held', async () => {
    const scheduler = new ModelScheduler({ slots: 1, maxQueued: 4, queueTimeoutMs: 60_000 });
    const held = await scheduler.acquire(never);
    const waiting = track(scheduler.acquire(never));
    scheduler.dispose();
    await settle();
    assert.equal(waiting.state(), 'rejected');
    assert.equal((waiting.error() as IrisError).status, 503);
    await assert.rejects(scheduler.acquire(never), (error: unknown) => error instanceof IrisError && error.status === 503);
    assert.equal(scheduler.running, 1);
    held();
  });

  it('a full queue and a queue timeout say when to retry: the requests ahead times the average slot time', async () => {
    const scheduler = new ModelScheduler({ slots: 1, maxQueued: 1, queueTimeoutMs: 60 });
    // Three quick requests: the average slot time falls well under a second.
    for (let round = 0; round < 3; round += 1) {
      const release = await scheduler.acquire(never);
      await delay(0);
      release();
    }
    const quick = scheduler.drainEstimateSeconds();
    assert.equal(quick, 1, 'short slot times round up to one second');
    const held = await scheduler.acquire(never);
    const waiting = track(scheduler.acquire(never));
    await settle();
    const full = await scheduler.acquire(never).catch((error: unknown) => error);
    assert.ok(full instanceof IrisError && full.status === 429);
    assert.equal(full.retryAfterSeconds, scheduler.drainEstimateSeconds());
    await delay(150);
    const timedOut = waiting.error();
    assert.ok(timedOut instanceof IrisError && timedOut.status === 503);
    assert.ok(timedOut.retryAfterSeconds !== undefined && timedOut.retryAfterSeconds >= 1);
    held();
  });
});
