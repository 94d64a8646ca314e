/**
 * Fuzzing the image path. A few thousand mutated image files (bit flips, truncations, splices, forged
 * header dimensions, junk) go through the real normalizer in-process: each must become a valid PNG or a
 * 400/413 IrisError, never anything else. Then a few hundred mutated requests (broken JSON, wrong types,
 * mutated images as data URIs and by URL, hostile URLs, odd details) go to one real Iris: zero 5xx, every
 * error in the OpenAI shape, and the server alive and answering at the end. Mutations come from a seeded
 * PRNG, so a failure is reproducible (the seed and case are in the message).
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import sharp from 'sharp';
import { IrisError } from '../../src/errors.js';
import { imagePolicyFromMetadata } from '../../src/images/image-policy.js';
import { normalizeImage } from '../../src/images/normalize-image.js';
import { ggufValue } from '../../src/gguf/gguf-values.js';
import { createPrng } from '../../src/synth/gguf-writer.js';
import { startImageHost, type ImageHost } from '../helpers/image-host.js';
import { dataUri, makeAnimated, makeBmp, makeImage, makeRotatedJpeg } from '../helpers/images.js';
import { assertMatchesSchema } from '../helpers/openapi.js';
import { startIris, syntheticModel, type IrisProcess } from '../helpers/test-env.js';

const SEED = 0x1215;
const IMAGE_CASES = 3000;
const HTTP_CASES = 300;

type Random = () => number;

/** A uniformly random integer in [0, n). */
const below = (random: Random, n: number): number => (n <= 0 ? 0 : random() % n);

async function seedImages(): Promise<Buffer[]> {
  return [
    await makeImage({ format: 'png', width: 24, height: 16 }),
    await makeImage({ format: 'png', width: 20, height: 20, alpha: true }),
    await makeImage({ format: 'jpeg', width: 32, height: 24 }),
    await makeImage({ format: 'webp', width: 24, height: 24 }),
    await makeImage({ format: 'gif', width: 16, height: 16 }),
    await makeImage({ format: 'avif', width: 16, height: 16 }),
    await makeImage({ format: 'tiff', width: 16, height: 12 }),
    await makeBmp(18, 12),
    await makeRotatedJpeg(24, 12),
    await makeAnimated('gif', 12),
    Buffer.from('<svg xmlns="http://www.w3.org/2000/svg" width="4" height="4"/>'),
  ];
}

/** One mutation of `seed`. */
function mutate(seed: Buffer, random: Random): Buffer {
  const bytes = Buffer.from(seed);
  switch (below(random, 7)) {
    case 0: {
      // flip a few bytes
      const flips = 1 + below(random, 8);
      for (let index = 0; index < flips; index++) bytes[below(random, bytes.length)] = below(random, 256);
      return bytes;
    }
    case 1:
      // truncate
      return bytes.subarray(0, below(random, bytes.length));
    case 2: {
      // forge the dimension fields where PNG, BMP, GIF, JPEG keep them
      const value = [0, 1, 0xffff, 0x7fffffff, 0xffffffff, 30_000, below(random, 1 << 20)][below(random, 7)] ?? 0;
      const offset = [16, 20, 18, 22, 6, 8, 163, 165][below(random, 8)] ?? 16;
      if (offset + 4 <= bytes.length) bytes.writeUInt32BE(value >>> 0, offset);
      return bytes;
    }
    case 3: {
      // splice in junk
      const at = below(random, bytes.length);
      const junk = Buffer.from(Array.from({ length: 1 + below(random, 64) }, () => below(random, 256)));
      return Buffer.concat([bytes.subarray(0, at), junk, bytes.subarray(at)]);
    }
    case 4: {
      // repeat a slice (duplicated chunks, overlapping markers)
      const start = below(random, bytes.length);
      const end = Math.min(bytes.length, start + below(random, 256));
      return Buffer.concat([bytes.subarray(0, end), bytes.subarray(start, end), bytes.subarray(end)]);
    }
    case 5:
      // only the magic bytes survive
      return Buffer.concat([bytes.subarray(0, 12), Buffer.from(Array.from({ length: below(random, 200) }, () => below(random, 256)))]);
    default:
      // zero a run
      bytes.fill(0, below(random, bytes.length), below(random, bytes.length));
      return bytes;
  }
}

describe('fuzz: mutated image files through the normalizer', () => {
  test(`${IMAGE_CASES} mutations: a PNG or a 400/413, nothing else`, async () => {
    const seeds = await seedImages();
    const random = createPrng(SEED);
    const policy = imagePolicyFromMetadata({
      'clip.projector_type': ggufValue.str('idefics3'),
      'clip.vision.image_size': ggufValue.u32(32),
      'clip.vision.patch_size': ggufValue.u32(8),
      'clip.vision.projector.scale_factor': ggufValue.u32(2),
    });
    const outcomes = { decoded: 0, refused400: 0, refused413: 0 };
    const cases = Array.from({ length: IMAGE_CASES }, (_, index) => ({ index, bytes: mutate(seeds[index % seeds.length]!, random), detail: (['low', 'high', 'auto'] as const)[index % 3]! }));
    const started = performance.now();
    const worker = async (queue: typeof cases): Promise<void> => {
      for (let item = queue.shift(); item; item = queue.shift()) {
        try {
          // A 4 MP limit keeps forged-but-decodable headers quick; the limit itself is tested elsewhere.
          const image = await normalizeImage(item.bytes, policy, item.detail, { maxPixels: 4_000_000 }, 'messages[0].content[0].image_url.url');
          const metadata = await sharp(image.data).metadata();
          assert.equal(metadata.format, 'png', `case ${item.index} (seed ${SEED})`);
          assert.ok(image.width <= 128 && image.height <= 128, `case ${item.index}: ${image.width}x${image.height}`);
          outcomes.decoded += 1;
        } catch (error) {
          assert.ok(error instanceof IrisError, `case ${item.index} (seed ${SEED}) threw ${String(error)}`);
          assert.ok(error.status === 400 || error.status === 413, `case ${item.index}: ${error.status} ${error.message}`);
          if (error.status === 400) outcomes.refused400 += 1;
          else outcomes.refused413 += 1;
        }
      }
    };
    const queue = [...cases];
    await Promise.all([worker(queue), worker(queue), worker(queue), worker(queue)]);
    console.log(`image fuzz: ${JSON.stringify(outcomes)} in ${((performance.now() - started) / 1000).toFixed(1)} s`);
    assert.equal(outcomes.decoded + outcomes.refused400 + outcomes.refused413, IMAGE_CASES);
    assert.ok(outcomes.decoded > 0 && outcomes.refused400 > 0);
  });
});

describe('fuzz: mutated requests against a real server', () => {
  let iris: IrisProcess;
  let host: ImageHost;
  let seeds: Buffer[];

  before(async () => {
    seeds = await seedImages();
    host = await startImageHost('127.0.0.2');
    const model = await syntheticModel('tiny');
    iris = await startIris({
      args: ['--model', model.modelPath, '--mmproj', model.mmprojPath, '--model-id', 'tiny', '--ctx-size', '8192', '--slots', '2', '--allow-media-host', '127.0.0.2'],
    });
  });

  after(async () => {
    await iris?.stop();
    await host?.close();
  });

  test(`${HTTP_CASES} mutated requests: zero 5xx, every error in the OpenAI shape, the server alive`, async () => {
    const random = createPrng(SEED + 1);
    const pick = <T,>(items: readonly T[]): T => items[below(random, items.length)] as T;
    const hostile = [
      'http://127.0.0.3/x.png', 'http://[::1]/x', 'http://0x7f000001/', 'file:///etc/shadow', 'ftp://x/y', 'data:,',
      'data:image/png;base64,', 'data:image/png;base64,====', 'javascript:1', '', ' ', 'http://', 'http://[zz]/',
      `${host.origin}/missing.png`, `http://127.0.0.2:1/`, 'http://169.254.169.254/', `data:image/png;base64,${'A'.repeat(5000)}`,
    ];
    let served = 0;
    const imageUrl = (index: number): string => {
      // half of them intact, so requests also get through to the model
      const seed = pick(seeds.slice(0, -1));
      const bytes = below(random, 2) === 0 ? seed : mutate(seed, random);
      if (below(random, 2) === 0) return dataUri(bytes, pick(['image/png', 'image/jpeg', 'application/octet-stream', 'text/plain']));
      const path = `/fuzz-${index}-${served++}.bin`;
      host.file(path, bytes, pick(['image/png', 'text/html', 'application/json']));
      return `${host.origin}${path}`;
    };
    const bodyFor = (index: number): string => {
      const content: unknown[] = [{ type: 'text', text: 'Describe.' }];
      const images = 1 + below(random, 2);
      for (let image = 0; image < images; image++) {
        const url = below(random, 6) === 0 ? pick(hostile) : imageUrl(index);
        const detail = pick([undefined, undefined, 'low', 'high', 'auto', 'ultra', 7, null]);
        content.push({ type: 'image_url', image_url: detail === undefined ? { url } : { url, detail } });
      }
      const request: Record<string, unknown> = { model: 'tiny', max_tokens: 1, messages: [{ role: 'user', content }] };
      switch (below(random, 12)) {
        case 0:
          request['messages'] = pick([[], null, 'hi', [{ role: 'user' }], [{ role: 'user', content: [{ type: 'image_url' }] }], [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 42 } }] }]]);
          break;
        case 1:
          request[pick(['max_tokens', 'temperature', 'stream', 'n', 'stop', 'model'])] = pick([-1, 'x', {}, [], 1e308, true, null]);
          break;
        case 2: {
          const text = JSON.stringify(request);
          return text.slice(0, below(random, text.length));
        }
        case 3:
          request['stream'] = true;
          break;
        default:
          break;
      }
      return JSON.stringify(request);
    };

    const statuses = new Map<number, number>();
    const started = performance.now();
    for (let index = 0; index < HTTP_CASES; index += 2) {
      // two at a time: the model has two slots
      await Promise.all(
        [index, index + 1].map(async (caseIndex) => {
          const body = bodyFor(caseIndex);
          const response = await fetch(`${iris.baseUrl}${pick(['/v1/chat/completions', '/v1/openai/chat/completions', '/v1/tokenize'])}`, {
            method: 'POST',
            headers: { 'content-type': 'application/json' },
            body,
          });
          const text = await response.text();
          statuses.set(response.status, (statuses.get(response.status) ?? 0) + 1);
          assert.ok(response.status < 500, `case ${caseIndex} (seed ${SEED + 1}): ${response.status} ${text.slice(0, 300)}\nbody: ${body.slice(0, 300)}`);
          if (response.status >= 400) assertMatchesSchema('ErrorResponse', JSON.parse(text));
        }),
      );
    }
    console.log(`request fuzz: ${JSON.stringify(Object.fromEntries(statuses))} in ${((performance.now() - started) / 1000).toFixed(1)} s`);
    assert.equal(iris.child.exitCode, null, 'Iris is still running');
    assert.equal((await fetch(`${iris.baseUrl}/health`)).status, 200);
    const ok = await fetch(`${iris.baseUrl}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'tiny', max_tokens: 1, messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: dataUri(seeds[0]!) } }] }] }),
    });
    assert.equal(ok.status, 200);
    assert.ok(!iris.logs.some((line) => line.includes('"level":50') && line.includes('internal_error')), 'no internal errors were logged');
  });
});
