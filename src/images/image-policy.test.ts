import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import type { GgufValue } from '../gguf/gguf-format.js';
import { ggufValue } from '../gguf/gguf-values.js';
import { synthesizeModel } from '../synth/recipes.js';
import {
  GENERIC_IMAGE_POLICY,
  fitImageTokens,
  imagePolicyFromMetadata,
  imagePolicyFromMmproj,
  imageTokenCount,
  targetImageSize,
  type ImagePolicy,
} from './image-policy.js';

function policy(entries: Record<string, GgufValue>): ImagePolicy {
  return imagePolicyFromMetadata(entries);
}

const clip = (projector: string, imageSize: number, patchSize: number, extra: Record<string, GgufValue> = {}) =>
  policy({
    'clip.projector_type': ggufValue.str(projector),
    'clip.vision.image_size': ggufValue.u32(imageSize),
    'clip.vision.patch_size': ggufValue.u32(patchSize),
    ...extra,
  });

let directory: string;
before(async () => {
  directory = await mkdtemp(join(tmpdir(), 'iris-image-policy-'));
});
after(async () => {
  await rm(directory, { recursive: true, force: true });
});

describe('image policy from mmproj metadata', () => {
  it('reads the synthetic recipes from their GGUF files', async () => {
    const tiny = await synthesizeModel({ out: join(directory, 'tiny'), size: 'tiny' });
    const tiling = await synthesizeModel({ out: join(directory, 'tiling'), size: 'tiny-tiling' });
    assert.deepEqual(await imagePolicyFromMmproj(tiny.mmprojPath), { family: 'fixed', projector: 'mlp', baseSize: 32, tokensPerImage: 16 });
    assert.deepEqual(await imagePolicyFromMmproj(tiling.mmprojPath), {
      family: 'idefics3',
      projector: 'idefics3',
      baseSize: 32,
      tileTokens: 4,
      longestEdge: null,
      maxTilesPerSide: 4,
    });
  });

  it('predicts idefics3 tokens as libmtmd lays them out (counts confirmed against llama-server in images-detail)', () => {
    // Written out by hand, not computed by the code under test: with T tokens per tile, an image is an
    // overview ("\n\n" <fake_token_around_image> <global-img> [T] <fake_token_around_image> = T + 4) plus, per
    // tile of the grid, <fake_token_around_image> <row_r_col_c> [T] (T + 2), plus a "\n" between tile rows.
    const tiling = clip('idefics3', 32, 8, { 'clip.vision.projector.scale_factor': ggufValue.u32(2) }); // T = 4
    const tilingCases: [number, number, number][] = [
      [32, 32, 8 + 1 * 6], // 1x1 grid
      [96, 64, 8 + 6 * 6 + 1], // 3x2
      [128, 128, 8 + 16 * 6 + 3], // 4x4
      [40, 200, 8 + 6 * 6 + 5], // 1x6 (sides rounded to the nearest tile: 40/32 -> 1, 200/32 -> 6)
      [17, 3, 8 + 1 * 6], // at least one tile per side
      [250, 250, 8 + 64 * 6 + 7], // 8x8 (7.8 rounds up)
    ];
    for (const [width, height, tokens] of tilingCases) {
      assert.equal(imageTokenCount(tiling, width, height), tokens, `${width}x${height}`);
    }
    // SmolVLM with preproc_image_size 2048: T = (512/16/4)^2 = 64; the longest edge is scaled to 2048 and the
    // grid follows the aspect ratio alone.
    const smolvlm = clip('idefics3', 512, 16, { 'clip.vision.projector.scale_factor': ggufValue.u32(4), 'clip.vision.preproc_image_size': ggufValue.u32(2048) });
    const smolvlmCases: [number, number, number][] = [
      [512, 512, 68 + 16 * 66 + 3], // 2048x2048: 4x4
      [64, 64, 68 + 16 * 66 + 3], // the size does not matter, only the aspect ratio
      [300, 200, 68 + 12 * 66 + 2], // 2048x1366: 4x3
      [4000, 3000, 68 + 12 * 66 + 2], // 2048x1536: 4x3
      [1000, 4000, 68 + 4 * 66 + 3], // 512x2048: 1x4
    ];
    for (const [width, height, tokens] of smolvlmCases) {
      assert.equal(imageTokenCount(smolvlm, width, height), tokens, `${width}x${height}`);
    }
  });

  it('knows the fixed-resolution families: LLaVA-1.5 576 and Gemma 3 256 (+2 markers) at any size', () => {
    const llava = clip('mlp', 336, 14);
    const gemma = clip('gemma3', 896, 14);
    for (const [width, height] of [[100, 100], [336, 336], [4000, 3000]] as const) {
      assert.equal(imageTokenCount(llava, width, height), 576);
      assert.equal(imageTokenCount(gemma, width, height), 258);
    }
    assert.equal(imageTokenCount(clip('ldp', 336, 14), 10, 10), 144);
  });

  it('follows Qwen2-VL dynamic resolution: aligned to 28 px, 8 to 4096 merged tokens, plus 2 markers', () => {
    const qwen = clip('qwen2vl_merger', 560, 14);
    assert.equal(qwen.family, 'dynamic');
    assert.equal(imageTokenCount(qwen, 1008, 1008), 36 * 36 + 2);
    assert.equal(imageTokenCount(qwen, 1000, 1000), 36 * 36 + 2, 'rounded to the nearest multiple of 28');
    assert.equal(imageTokenCount(qwen, 10, 10), 3 * 3 + 2, 'enlarged to the minimum area');
    assert.ok((imageTokenCount(qwen, 8000, 6000) ?? 0) <= 4096 + 2, 'capped at the maximum area');
    const low = targetImageSize(qwen, 4000, 3000, 'low');
    const high = targetImageSize(qwen, 4000, 3000, 'high');
    assert.deepEqual(low, { width: 560, height: 420 });
    assert.ok(high.width * high.height <= 4096 * 28 * 28);
    assert.ok((imageTokenCount(qwen, low.width, low.height) ?? 0) < (imageTokenCount(qwen, high.width, high.height) ?? 0));
  });

  it('follows LLaVA-NeXT anyres: overview plus the tiles of the best pinpoint', () => {
    const next = clip('mlp', 336, 14, {
      'clip.vision.image_grid_pinpoints': ggufValue.array('int32', [336, 672, 672, 336, 672, 672, 1008, 336, 336, 1008]),
    });
    assert.equal(next.family, 'anyres');
    assert.equal(imageTokenCount(next, 300, 300), 576, 'a small image is the overview only');
    assert.equal(imageTokenCount(next, 1000, 1000), 5 * 576);
    assert.equal(imageTokenCount(next, 1000, 330), 4 * 576, '1008x336: three tiles and the overview');
    const high = targetImageSize(next, 4000, 3000, 'high');
    assert.ok(Math.max(high.width, high.height) <= 1008);
    assert.ok(high.width * high.height <= 672 * 672);
    const low = targetImageSize(next, 4000, 3000, 'low');
    assert.ok((imageTokenCount(next, low.width, low.height) ?? 0) < (imageTokenCount(next, high.width, high.height) ?? 0));
  });

  it('falls back to a generic policy for projectors it does not model or metadata it cannot use', () => {
    const pixtral = clip('pixtral', 1024, 16);
    assert.equal(pixtral.family, 'generic');
    assert.equal(imageTokenCount(pixtral, 100, 100), undefined);
    assert.deepEqual(targetImageSize(pixtral, 4000, 3000, 'auto'), { width: 2048, height: 1536 });
    assert.equal(policy({}).family, 'generic');
    assert.equal(policy({ 'clip.vision.image_size': ggufValue.u32(30), 'clip.vision.patch_size': ggufValue.u32(7) }).family, 'generic');
    assert.equal(GENERIC_IMAGE_POLICY.maxEdge, 2048);
  });
});

describe('targetImageSize and detail', () => {
  const tiling = clip('idefics3', 32, 8, { 'clip.vision.projector.scale_factor': ggufValue.u32(2) });
  const fixed = clip('mlp', 32, 8);

  it('low fits the base tile, high and auto are capped at the model maximum (4x4 tiles here)', () => {
    assert.deepEqual(targetImageSize(tiling, 4000, 3000, 'low'), { width: 32, height: 24 });
    assert.deepEqual(targetImageSize(tiling, 4000, 3000, 'high'), { width: 128, height: 96 });
    assert.deepEqual(targetImageSize(tiling, 4000, 3000, 'auto'), { width: 128, height: 96 });
    assert.deepEqual(targetImageSize(tiling, 3000, 4000, 'auto'), { width: 96, height: 128 });
    const low = targetImageSize(tiling, 4000, 3000, 'low');
    const high = targetImageSize(tiling, 4000, 3000, 'high');
    assert.ok((imageTokenCount(tiling, low.width, low.height) ?? 0) < (imageTokenCount(tiling, high.width, high.height) ?? 0));
  });

  it('auto never enlarges; high enlarges an image below the base resolution to it', () => {
    assert.deepEqual(targetImageSize(tiling, 20, 10, 'auto'), { width: 20, height: 10 });
    assert.deepEqual(targetImageSize(tiling, 20, 10, 'low'), { width: 20, height: 10 });
    assert.deepEqual(targetImageSize(tiling, 20, 10, 'high'), { width: 32, height: 16 });
    assert.deepEqual(targetImageSize(tiling, 60, 50, 'high'), { width: 60, height: 50 }, 'above base: kept as it is');
  });

  it('fixed-resolution models cost the same at every detail', () => {
    for (const detail of ['low', 'high', 'auto'] as const) {
      const size = targetImageSize(fixed, 4000, 3000, detail);
      assert.deepEqual(size, { width: 32, height: 24 });
      assert.equal(imageTokenCount(fixed, size.width, size.height), 16);
    }
  });

  it('never returns an empty side, even for extreme aspect ratios', () => {
    assert.deepEqual(targetImageSize(tiling, 10_000, 1, 'low'), { width: 32, height: 1 });
    assert.deepEqual(targetImageSize(tiling, 1, 10_000, 'auto'), { width: 1, height: 128 });
  });
});

describe('fitImageTokens', () => {
  const tiling = clip('idefics3', 32, 8);
  const planned = (width: number, height: number, detail: 'low' | 'high' | 'auto') => {
    const size = targetImageSize(tiling, width, height, detail);
    return { sourceWidth: width, sourceHeight: height, ...size, tokens: imageTokenCount(tiling, size.width, size.height)! };
  };

  it('lowers the costliest image first until the total fits, never below the low size', () => {
    const images = [planned(128, 96, 'high'), planned(64, 64, 'high')];
    const before = images.reduce((sum, image) => sum + image.tokens, 0);
    const low = [planned(128, 96, 'low'), planned(64, 64, 'low')].reduce((sum, image) => sum + image.tokens, 0);
    const cap = Math.floor((before + low) / 2);
    const fitted = fitImageTokens(tiling, images, cap);
    assert.ok(fitted.fits);
    const total = fitted.images.reduce((sum, image) => sum + image.tokens, 0);
    assert.ok(total <= cap && total >= low, `${low} <= ${total} <= ${cap}`);
    for (const image of fitted.images) {
      assert.equal(image.tokens, imageTokenCount(tiling, image.width, image.height));
      assert.ok(Math.abs(image.width / image.height - image.sourceWidth / image.sourceHeight) < 0.1, 'aspect ratio kept');
    }
  });

  it('a cap below what the low size costs cannot be met, and says the minimum', () => {
    const images = [planned(128, 96, 'high')];
    const low = planned(128, 96, 'low').tokens;
    assert.deepEqual(fitImageTokens(tiling, images, low - 1), { fits: false, minimumTokens: low });
    const exact = fitImageTokens(tiling, images, low);
    assert.ok(exact.fits && exact.images[0]!.tokens === low);
  });
});
