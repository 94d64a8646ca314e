import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { totalmem, tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it, test } from 'node:test';
import { ConfigError } from '../errors.js';
import { loadConfig } from './load-config.js';

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
    assert.throws(() => loadConfig({ config: bad }, {}), /models\.0: a model needs exactly one of model/);
    await writeFile(bad, 'hots: 1.2.3.4');
    assert.throws(() => loadConfig({ config: bad }, {}), /hots/);
    assert.throws(() => loadConfig({ config: join(dir, 'missing.yaml') }, {}), /Cannot read config file/);
  });
});

let directory: string;
before(async () => {
  directory = await mkdtemp(join(tmpdir(), 'iris-config-'));
});
after(async () => {
  await rm(directory, { recursive: true, force: true });
});

const env = { HOME: '/home/test' };

describe('media hosts and image settings', () => {
  it('takes allowed and denied media hosts from IRIS_ALLOW_MEDIA_HOSTS / IRIS_DENY_MEDIA_HOSTS, flags winning', () => {
    const fromEnv = loadConfig({}, { ...env, IRIS_ALLOW_MEDIA_HOSTS: '127.0.0.2, images.internal:8080,10.0.0.0/8', IRIS_DENY_MEDIA_HOSTS: '10.9.0.0/16' });
    assert.deepEqual(fromEnv.allowMediaHosts, ['127.0.0.2', 'images.internal:8080', '10.0.0.0/8']);
    assert.deepEqual(fromEnv.denyMediaHosts, ['10.9.0.0/16']);
    const fromFlags = loadConfig({ allowMediaHost: ['127.0.0.5'] }, { ...env, IRIS_ALLOW_MEDIA_HOSTS: '127.0.0.2' });
    assert.deepEqual(fromFlags.allowMediaHosts, ['127.0.0.5']);
  });

  it('has the documented image defaults and reads the images section of the config file', async () => {
    const defaults = loadConfig({}, env);
    assert.deepEqual(defaults.images, {
      background: '#ffffff',
      maxRedirects: 3,
      decodedCacheBytes: 256 * 1024 * 1024,
      fetchCacheBytes: 64 * 1024 * 1024,
      fetchCacheTtlMs: 60_000,
    });
    assert.equal(defaults.limits.maxImageBytes, 20_000_000);
    assert.equal(defaults.limits.maxRequestImageBytes, 50_000_000);
    assert.equal(defaults.limits.maxImagesPerRequest, 50);
    assert.equal(defaults.limits.maxImagePixels, 50_000_000);
    assert.equal(defaults.limits.imageFetchTimeoutMs, 10_000);
    const file = join(directory, 'iris.yaml');
    await writeFile(file, 'images:\n  background: "#000000"\n  max_redirects: 1\n  fetch_cache_ttl_ms: 0\nlimits:\n  max_image_pixels: 1000000\n');
    const configured = loadConfig({ config: file }, env);
    assert.equal(configured.images.background, '#000000');
    assert.equal(configured.images.maxRedirects, 1);
    assert.equal(configured.images.fetchCacheTtlMs, 0);
    assert.equal(configured.limits.maxImagePixels, 1_000_000);
    await writeFile(file, 'images:\n  background: white\n');
    assert.throws(() => loadConfig({ config: file }, env), (error: unknown) => error instanceof ConfigError && /images\.background/.test(error.message));
  });

  test('keys from --api-key-file / IRIS_API_KEYS_FILE join the others; comments and blank lines are skipped', async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'iris-config-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    const keys = join(dir, 'keys.txt');
    await writeFile(keys, '# production keys\nkey-one\n\n  key-two  \n');
    assert.deepEqual(loadConfig({ apiKeyFile: keys, apiKey: ['flag-key'] }, {}).apiKeys, ['flag-key', 'key-one', 'key-two']);
    assert.deepEqual(loadConfig({}, { IRIS_API_KEYS_FILE: keys, IRIS_API_KEYS: 'env-key' }).apiKeys, ['env-key', 'key-one', 'key-two']);
    assert.throws(() => loadConfig({ apiKeyFile: join(dir, 'missing.txt') }, {}), /--api-key-file \/ IRIS_API_KEYS_FILE/);
    await writeFile(keys, '# nothing here\n');
    assert.throws(() => loadConfig({ apiKeyFile: keys }, {}), /holds no keys/);
  });

  test('the --model model stays loaded unless a keep-alive is set', () => {
    assert.equal(loadConfig({ model: 'm.gguf' }, {}).models[0]?.keepAlive, -1);
    assert.equal(loadConfig({ model: 'm.gguf', keepAlive: '5m' }, {}).models[0]?.keepAlive, undefined);
    assert.equal(loadConfig({ model: 'm.gguf' }, { IRIS_KEEP_ALIVE: '30s' }).models[0]?.keepAlive, undefined);
  });

  test('HTTP and request limits have safe defaults and can be set in the file', async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'iris-config-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    const defaults = loadConfig({}, {}).limits;
    assert.equal(defaults.headersTimeoutMs, 10_000);
    assert.equal(defaults.bodyTimeoutMs, 60_000);
    assert.equal(defaults.keepAliveTimeoutMs, 72_000);
    assert.equal(defaults.maxConnections, 1024);
    assert.equal(defaults.maxMessages, 2048);
    const file = join(dir, 'limits.yaml');
    await writeFile(file, 'prompt_cache: 256MiB\nlimits:\n  max_messages: 10\n  body_timeout_ms: 3000\n');
    const config = loadConfig({ config: file }, {});
    assert.equal(config.limits.maxMessages, 10);
    assert.equal(config.limits.bodyTimeoutMs, 3000);
    assert.equal(config.promptCache, 256 * 1024 * 1024);
    assert.equal(loadConfig({ promptCache: '0' }, {}).promptCache, 0);
  });
});

describe('database settings', () => {
  test('stored responses: 30 days and 16 MiB by default, in days or any duration and size; negative refused by name', () => {
    const defaults = loadConfig({}, {}).responses;
    assert.deepEqual(defaults, { retention: 30 * 86_400_000, maxBytes: 16 * 1024 * 1024 });
    assert.equal(loadConfig({ responsesRetention: '7d' }, {}).responses.retention, 7 * 86_400_000);
    assert.equal(loadConfig({}, { IRIS_RESPONSES_RETENTION: '12h' }).responses.retention, 12 * 3_600_000);
    assert.equal(loadConfig({ responsesRetention: '0' }, {}).responses.retention, 0);
    assert.equal(loadConfig({}, { IRIS_RESPONSES_MAX_BYTES: '1MiB' }).responses.maxBytes, 1024 * 1024);
    assert.throws(() => loadConfig({ responsesRetention: '-1' }, {}), /must not be negative.*--responses-retention/s);
    assert.throws(() => loadConfig({ responsesMaxBytes: '0' }, {}), /--responses-max-bytes/);
  });

  test('the database: data dir by default, DATABASE_URL or database_url for PostgreSQL; sha256: keys checked', async () => {
    const env = { HOME: '/home/someone' };
    assert.equal(loadConfig({}, env).dataDir, '/home/someone/.local/share/iris');
    assert.equal(loadConfig({}, { ...env, XDG_DATA_HOME: '/data' }).dataDir, '/data/iris');
    assert.equal(loadConfig({}, env).databaseUrl, undefined);
    assert.equal(loadConfig({}, { ...env, DATABASE_URL: 'postgres://db/iris' }).databaseUrl, 'postgres://db/iris');
    const folder = await mkdtemp(join(tmpdir(), 'iris-config-db-'));
    const file = join(folder, 'db.yaml');
    await writeFile(file, 'database_url: postgresql://db/fleet\ndata_dir: /srv/iris\n');
    const configured = loadConfig({ config: file }, env);
    assert.equal(configured.databaseUrl, 'postgresql://db/fleet');
    assert.equal(configured.dataDir, '/srv/iris');
    assert.throws(() => loadConfig({ databaseUrl: 'mysql://db' }, env), (error: unknown) => error instanceof ConfigError && /--database-url/.test(error.message));
    await rm(folder, { recursive: true, force: true });
    const digest = 'a'.repeat(64);
    assert.deepEqual(loadConfig({ apiKey: [`sha256:${digest}`] }, env).apiKeys, [`sha256:${digest}`]);
    assert.throws(() => loadConfig({ apiKey: ['sha256:abc'] }, env), (error: unknown) => error instanceof ConfigError && /64 hex/.test(error.message));
  });
});
