import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { dataUri, makeImage } from '../../test/helpers/images.js';
import { IrisError } from '../errors.js';
import type { FetchImageOptions, FetchedImage } from './fetch-remote-image.js';
import { ImagePipeline, type ImageFetcher } from './image-pipeline.js';
import { GENERIC_IMAGE_POLICY } from './image-policy.js';

const LIMITS = { maxImageBytes: 1_000_000, maxRequestImageBytes: 2_000_000, maxImagesPerRequest: 5, maxImagePixels: 1_000_000 };

/** A fake of the network: serves fixed bytes per URL and counts fetches. */
class FakeFetcher implements ImageFetcher {
  calls: string[] = [];
  constructor(private readonly files: Record<string, Uint8Array>) {}
  async fetch(url: string, options: FetchImageOptions): Promise<FetchedImage> {
    this.calls.push(url);
    await new Promise((resolve) => setTimeout(resolve, 5));
    const bytes = this.files[url];
    if (!bytes) throw new IrisError(`Could not fetch the image at '${options.param}': the server answered HTTP 404.`, { status: 400, type: 'invalid_request_error', code: 'image_fetch_failed', param: options.param });
    if (options.budget) options.budget.used += bytes.length;
    return { bytes, finalUrl: url, contentType: 'image/png' };
  }
}

const input = (url: string, index: number, detail: 'low' | 'high' | 'auto' = 'auto') => ({ url, detail, param: `messages[0].content[${index}].image_url` });

describe('ImagePipeline', () => {
  it('fetches each distinct URL once per request and keeps order', async () => {
    const a = await makeImage({ width: 20, height: 10, seed: 1 });
    const b = await makeImage({ width: 30, height: 10, seed: 2 });
    const fetcher = new FakeFetcher({ 'https://x.test/a.png': a, 'https://x.test/b.png': b });
    const pipeline = new ImagePipeline({ limits: LIMITS }, { fetcher });
    const images = await pipeline.prepare(
      [input('https://x.test/a.png', 0), input('https://x.test/b.png', 1), input('https://x.test/a.png', 2), input(dataUri(b), 3)],
      GENERIC_IMAGE_POLICY,
    );
    assert.deepEqual(images.map((image) => image.width), [20, 30, 20, 30]);
    assert.deepEqual(fetcher.calls.sort(), ['https://x.test/a.png', 'https://x.test/b.png']);
  });

  it('reuses fetched bytes for a while, and decoded images by content hash, policy and detail', async () => {
    const a = await makeImage({ width: 20, height: 10, seed: 3 });
    const fetcher = new FakeFetcher({ 'https://x.test/a.png': a });
    const pipeline = new ImagePipeline({ limits: LIMITS }, { fetcher });
    const [first] = await pipeline.prepare([input('https://x.test/a.png', 0)], GENERIC_IMAGE_POLICY);
    const [second] = await pipeline.prepare([input('https://x.test/a.png', 0)], GENERIC_IMAGE_POLICY);
    const [viaData] = await pipeline.prepare([input(dataUri(a), 0)], GENERIC_IMAGE_POLICY);
    assert.equal(fetcher.calls.length, 1, 'the second request used the fetch cache');
    assert.equal(second?.data, first?.data, 'the decoded image came from the cache');
    assert.equal(viaData?.data, first?.data, 'the same bytes as a data URI hit the same cache entry');
    assert.deepEqual([first?.source, viaData?.source], ['url', 'data'], 'each part keeps its own source');
    const [high] = await pipeline.prepare([input(dataUri(a), 0, 'high')], GENERIC_IMAGE_POLICY);
    assert.notEqual(high?.data, first?.data, 'another detail is another entry');
    const uncached = new ImagePipeline({ limits: LIMITS, fetchCacheBytes: 0, decodedCacheBytes: 0 }, { fetcher });
    await uncached.prepare([input('https://x.test/a.png', 0)], GENERIC_IMAGE_POLICY);
    await uncached.prepare([input('https://x.test/a.png', 0)], GENERIC_IMAGE_POLICY);
    assert.equal(fetcher.calls.length, 3);
  });

  it('enforces the image count and the per-request byte budget, naming the part', async () => {
    const fetcher = new FakeFetcher({});
    const bigBytes = await makeImage({ width: 40, height: 40, format: 'tiff' });
    const pipeline = new ImagePipeline({ limits: { ...LIMITS, maxRequestImageBytes: Math.floor(bigBytes.length * 1.5) } }, { fetcher });
    const png = dataUri(await makeImage({ width: 30, height: 30 }));
    await assert.rejects(pipeline.prepare(Array.from({ length: 6 }, (_, index) => input(png, index)), GENERIC_IMAGE_POLICY), (error: unknown) => {
      assert.ok(error instanceof IrisError);
      assert.equal(error.code, 'too_many_images');
      return true;
    });
    const big = dataUri(bigBytes);
    await assert.rejects(pipeline.prepare([input(big, 0), input(big, 1)], GENERIC_IMAGE_POLICY), (error: unknown) => {
      assert.ok(error instanceof IrisError);
      assert.equal(error.status, 413);
      assert.equal(error.param, 'messages[0].content[1].image_url.url');
      return true;
    });
  });

  it('fetches a URL shared by several parts once, and names the first part that used it when it fails', async () => {
    const fetcher = new FakeFetcher({});
    const pipeline = new ImagePipeline({ limits: LIMITS }, { fetcher });
    const png = dataUri(await makeImage({ width: 8, height: 8 }));
    const missing = 'https://x.test/missing.png';
    await assert.rejects(pipeline.prepare([input(png, 0), input(missing, 2), input(missing, 4)], GENERIC_IMAGE_POLICY), (error: unknown) => {
      assert.ok(error instanceof IrisError);
      assert.equal(error.code, 'image_fetch_failed');
      assert.equal(error.param, 'messages[0].content[2].image_url.url');
      assert.match(error.message, /content\[2\]/);
      return true;
    });
    assert.deepEqual(fetcher.calls, [missing], 'one fetch for both parts');
  });
});
