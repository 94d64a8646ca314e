import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { defaultSlots, defaultThreads, readMachineCpus } from './machine-defaults.js';

describe('defaultThreads', () => {
  it('uses the CPUs the process may use, capped by the cgroup quota and the physical cores', () => {
    assert.equal(defaultThreads({ allowed: 8 }), 8);
    assert.equal(defaultThreads({ allowed: 64, quota: 2.5 }), 3);
    assert.equal(defaultThreads({ allowed: 16, physicalCores: 8 }), 8);
    assert.equal(defaultThreads({ allowed: 4, quota: 0.2, physicalCores: 32 }), 1);
  });

  it('reads this machine', () => {
    const threads = defaultThreads(readMachineCpus());
    assert.ok(Number.isInteger(threads) && threads >= 1);
  });
});

describe('defaultSlots', () => {
  it('gives four slots per thread, at most 16, and no more than 1024-token shares of the context', () => {
    assert.equal(defaultSlots(8192, 2), 8);
    assert.equal(defaultSlots(8192, 1), 4);
    assert.equal(defaultSlots(4096, 2), 4);
    assert.equal(defaultSlots(131_072, 32), 16);
    assert.equal(defaultSlots(512, 8), 1);
  });
});
