import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { silentLogger } from '../../logger.js';
import { EndpointPool, displayUrl, type ProbeResult } from './endpoint-pool.js';

const endpoints = [{ url: 'http://a:1/v1' }, { url: 'http://b:2/v1' }, { url: 'http://c:3/v1' }];

function pool(options: { now?: () => number; probe?: () => Promise<ProbeResult>; cooldownMs?: number } = {}) {
  return new EndpointPool(endpoints, {
    cooldownMs: options.cooldownMs ?? 10_000,
    maxCooldownMs: 60_000,
    probe: options.probe ?? (async () => ({ ok: false, reason: 'still down' })),
    logger: silentLogger(),
    ...(options.now ? { now: options.now } : {}),
  });
}

const numbers = (plan: { number: number }[]) => plan.map((endpoint) => endpoint.number);

test('requests rotate round-robin over every endpoint', () => {
  const endpointPool = pool();
  assert.deepEqual(numbers(endpointPool.plan()), [1, 2, 3]);
  assert.deepEqual(numbers(endpointPool.plan()), [2, 3, 1]);
  assert.deepEqual(numbers(endpointPool.plan()), [3, 1, 2]);
  assert.deepEqual(numbers(endpointPool.plan()), [1, 2, 3]);
  endpointPool.dispose();
});

test('a failed endpoint is left out until its cooldown ends; the cooldown doubles up to the maximum', () => {
  let now = 1_000_000;
  const endpointPool = pool({ now: () => now });
  const [first] = endpointPool.plan();
  endpointPool.recordFailure(first!, 'connection refused');
  assert.deepEqual(numbers(endpointPool.plan()), [2, 3]);
  assert.equal(endpointPool.status()[0]?.retryAt, now + 10_000);
  now += 10_000;
  assert.deepEqual(numbers(endpointPool.plan()), [3, 1, 2], 'tried again once the cooldown is over');
  const cooldowns: number[] = [];
  for (let failure = 2; failure <= 6; failure += 1) {
    endpointPool.recordFailure(first!, 'connection refused');
    cooldowns.push(endpointPool.status()[0]!.retryAt! - now);
  }
  assert.deepEqual(cooldowns, [20_000, 40_000, 60_000, 60_000, 60_000]);
  endpointPool.recordSuccess(first!);
  assert.equal(endpointPool.status()[0]?.health, 'healthy');
  assert.equal(endpointPool.status()[0]?.consecutiveFailures, 0);
  assert.deepEqual(numbers(endpointPool.plan()), [1, 2, 3]);
  endpointPool.dispose();
});

test('with every endpoint cooling down the plan is empty and the soonest retry is known', () => {
  let now = 0;
  const endpointPool = pool({ now: () => now });
  const plan = endpointPool.plan();
  plan.forEach((endpoint, index) => {
    now = index * 1000;
    endpointPool.recordFailure(endpoint, `reason ${endpoint.number}`);
  });
  assert.deepEqual(endpointPool.plan(), []);
  assert.deepEqual(endpointPool.soonestRetry(), { retryAt: 10_000, number: 1, reason: 'reason 1' });
  endpointPool.dispose();
});

test('a probe after the cooldown brings a recovered endpoint back', async () => {
  let healthyNow = false;
  let probes = 0;
  const endpointPool = pool({
    cooldownMs: 20,
    probe: async () => {
      probes += 1;
      return healthyNow ? { ok: true } : { ok: false, reason: 'still down' };
    },
  });
  const [first] = endpointPool.plan();
  endpointPool.recordFailure(first!, 'connection refused');
  await sleep(60);
  assert.ok(probes >= 1, 'probed after the cooldown');
  assert.equal(endpointPool.status()[0]?.health, 'unhealthy');
  assert.equal(endpointPool.status()[0]?.lastFailure, 'still down');
  healthyNow = true;
  const deadline = Date.now() + 2000;
  while (endpointPool.status()[0]?.health !== 'healthy' && Date.now() < deadline) await sleep(10);
  assert.equal(endpointPool.status()[0]?.health, 'healthy');
  assert.equal(endpointPool.anyHealthy, true);
  endpointPool.dispose();
});

test('probeAll records each endpoint, and a request outcome wins over a probe that raced it', async () => {
  const pending: ((result: ProbeResult) => void)[] = [];
  const endpointPool = pool({ probe: () => new Promise<ProbeResult>((resolve) => pending.push(resolve)) });
  const probing = endpointPool.probeAll();
  assert.equal(pending.length, 3);
  const [first] = endpointPool.plan();
  endpointPool.recordSuccess(first!);
  for (const resolve of pending) resolve({ ok: false, reason: 'probe failed' });
  const results = await probing;
  assert.deepEqual(results.map(({ result }) => result.ok), [false, false, false]);
  assert.deepEqual(endpointPool.status().map((status) => status.health), ['healthy', 'unhealthy', 'unhealthy']);
  endpointPool.dispose();
});

test('URLs in logs lose their credentials', () => {
  assert.equal(displayUrl('http://user:secret@gpu-1:8000/v1/'), 'http://gpu-1:8000/v1');
  assert.equal(displayUrl('not a url'), '<invalid url>');
});
