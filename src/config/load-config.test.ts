import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { totalmem, tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ConfigError, loadConfig } from './load-config.js';

describe('loadConfig', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'iris-config-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  test('defaults', () => {
    const config = loadConfig({}, { HOME: '/home/someone' });
    assert.equal(config.host, '127.0.0.1');
    assert.equal(config.port, 8080);
    assert.deepEqual(config.apiKeys, []);
    assert.equal(config.cacheDir, '/home/someone/.cache/iris');
    assert.equal(config.keepAlive, 600_000);
    assert.equal(config.memoryBudget, Math.floor(totalmem() * 0.7));
    assert.equal(config.limits.maxImageBytes, 20_000_000);
    assert.ok(Object.isFrozen(config) && Object.isFrozen(config.limits));
  });

  test('flags override env, env overrides the file; the file may use snake_case and relative paths', async () => {
    const file = join(dir, 'iris.yaml');
    await writeFile(
      file,
      [
        'host: 0.0.0.0',
        'port: 9000',
        'api_keys: [from-file]',
        'keep_alive: 5m',
        'memory_budget: 2GiB',
        'models:',
        '  - id: a',
        '    model: models/a.gguf',
        '    mmproj: models/a-mmproj.gguf',
        '    keep_alive: -1',
        'limits:',
        '  max_images_per_request: 3',
      ].join('\n'),
    );
    const config = loadConfig({ config: file, port: '7000' }, { IRIS_PORT: '7500', IRIS_API_KEYS: 'k1, k2', HOME: dir });
    assert.equal(config.host, '0.0.0.0');
    assert.equal(config.port, 7000);
    assert.deepEqual(config.apiKeys, ['k1', 'k2']);
    assert.equal(config.keepAlive, 300_000);
    assert.equal(config.memoryBudget, 2 * 1024 ** 3);
    assert.equal(config.models[0]?.model, join(dir, 'models/a.gguf'));
    assert.equal(config.models[0]?.keepAlive, -1);
    assert.equal(config.limits.maxImagesPerRequest, 3);
  });

  test('--model becomes the first model, named after its file, and is preloaded', () => {
    const config = loadConfig({ model: '/m/SmolVLM-Q8_0.gguf', mmproj: '/m/mmproj.gguf', ctxSize: '8192' }, {});
    assert.equal(config.models[0]?.id, 'SmolVLM-Q8_0');
    assert.equal(config.models[0]?.context, 8192);
    assert.deepEqual(config.preload, ['SmolVLM-Q8_0']);
  });

  test('empty environment variables count as unset', () => {
    assert.equal(loadConfig({}, { IRIS_HOST: '', IRIS_PORT: '' }).host, '127.0.0.1');
  });

  test('mistakes name the flag, the variable or the key', async () => {
    assert.throws(() => loadConfig({ port: 'eighty' }, {}), /--port must be a whole number/);
    assert.throws(() => loadConfig({}, { IRIS_PORT: '99999' }), (error: unknown) => error instanceof ConfigError && /IRIS_PORT/.test(error.message));
    assert.throws(() => loadConfig({ keepAlive: 'soon' }, {}), /keepAlive: 'soon' is not a duration.*--keep-alive/s);
    assert.throws(() => loadConfig({ memoryBudget: '150%' }, {}), /--memory-budget/);
    assert.throws(() => loadConfig({ mmproj: 'x.gguf' }, {}), /--mmproj and --model-id need --model/);
    assert.throws(() => loadConfig({ model: 'a.gguf', preload: ['b'] }, {}), /preload names 'b'/);
    const bad = join(dir, 'bad.yaml');
    await writeFile(bad, 'models: [{ id: x }]');
    assert.throws(() => loadConfig({ config: bad }, {}), /models\.0\.model/);
    await writeFile(bad, 'hots: 1.2.3.4');
    assert.throws(() => loadConfig({ config: bad }, {}), /hots/);
    assert.throws(() => loadConfig({ config: join(dir, 'missing.yaml') }, {}), /Cannot read config file/);
  });
});
