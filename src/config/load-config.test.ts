import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import { ConfigError, loadConfig } from './load-config.js';

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
});
