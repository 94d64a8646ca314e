import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import sharp from 'sharp';

import { makeAnimated, makeBmp, makeImage, makeLargeJpeg, makePixelBomb, makeRotatedJpeg } from '../../test/helpers/images.js';
import { IrisError } from '../errors.js';
import { ggufValue } from '../gguf/gguf-values.js';
import { imagePolicyFromMetadata } from './image-policy.js';
import { normalizeImage, restrictImageLoaders } from './normalize-image.js';

const PARAM = 'messages[0].content[1].image_url.url';
const TILING = imagePolicyFromMetadata({
  'clip.projector_type': ggufValue.str('idefics3'),
  'clip.vision.image_size': ggufValue.u32(32),
  'clip.vision.patch_size': ggufValue.u32(8),
  'clip.vision.projector.scale_factor': ggufValue.u32(2),
});
const OPTIONS = { maxPixels: 50_000_000 };

async function pixel(png: Uint8Array, x: number, y: number): Promise<number[]> {
  const { data, info } = await sharp(png).raw().toBuffer({ resolveWithObject: true });
  const offset = (y * info.width + x) * info.channels;
  return [...data.subarray(offset, offset + info.channels)];
}

async function refused(bytes: Uint8Array, status: number, code: string, pattern?: RegExp): Promise<void> {
  await assert.rejects(normalizeImage(bytes, TILING, 'auto', OPTIONS, PARAM), (error: unknown) => {
    assert.ok(error instanceof IrisError, String(error));
    assert.equal(error.status, status, error.message);
    assert.equal(error.code, code);
    assert.equal(error.param, PARAM);
    assert.ok(error.message.includes(PARAM));
    if (pattern) assert.match(error.message, pattern);
    return true;
  });
}

describe('normalizeImage', () => {
  it('decodes every raster format to an 8-bit sRGB PNG, sniffing the real format', async () => {
    const cases: [string, Buffer][] = [
      ['jpeg', await makeImage({ format: 'jpeg' })],
      ['png', await makeImage({ format: 'png' })],
      ['webp', await makeImage({ format: 'webp' })],
      ['gif', await makeImage({ format: 'gif' })],
      ['avif', await makeImage({ format: 'avif' })],
      ['tiff', await makeImage({ format: 'tiff' })],
      ['bmp', await makeBmp(64, 48)],
    ];
    for (const [format, bytes] of cases) {
      const image = await normalizeImage(bytes, TILING, 'auto', OPTIONS, PARAM);
      assert.equal(image.sourceFormat, format);
      assert.equal(image.mimeType, 'image/png');
      const metadata = await sharp(image.data).metadata();
      assert.equal(metadata.format, 'png', format);
      assert.equal(metadata.channels, 3, format);
      assert.equal(metadata.depth, 'uchar', format);
      assert.deepEqual([image.width, image.height], [64, 48], format);
      assert.equal(image.tokens, 33, format); // 2x2 tiles of 32 px
    }
  });

  it('reports HEIC it cannot decode as a 400, never a crash', async () => {
    const heic = Buffer.concat([Buffer.from([0, 0, 0, 24]), Buffer.from('ftypheic'), Buffer.alloc(200)]);
    await refused(heic, 400, 'invalid_image', /heic/i);
  });

  it('applies EXIF orientation', async () => {
    // stored 80x40 (red left, blue right), orientation 6: displayed 40x80, red on top
    const image = await normalizeImage(await makeRotatedJpeg(80, 40, 6), TILING, 'auto', OPTIONS, PARAM);
    assert.deepEqual([image.width, image.height], [40, 80]);
    assert.deepEqual([image.sourceWidth, image.sourceHeight], [40, 80]);
    const top = await pixel(image.data, 20, 5);
    const bottom = await pixel(image.data, 20, 75);
    assert.ok(top[0]! > 200 && top[2]! < 60, `top is red: ${top}`);
    assert.ok(bottom[2]! > 200 && bottom[0]! < 60, `bottom is blue: ${bottom}`);
  });

  it('composites alpha onto the background (white by default, configurable)', async () => {
    const png = await makeImage({ width: 40, height: 20, alpha: true }); // left half transparent
    const white = await normalizeImage(png, TILING, 'auto', OPTIONS, PARAM);
    assert.deepEqual(await pixel(white.data, 2, 10), [255, 255, 255]);
    const black = await normalizeImage(png, TILING, 'auto', { ...OPTIONS, background: '#000000' }, PARAM);
    assert.deepEqual(await pixel(black.data, 2, 10), [0, 0, 0]);
  });

  it('keeps the first frame of animated GIF and WebP', async () => {
    for (const format of ['gif', 'webp'] as const) {
      const image = await normalizeImage(await makeAnimated(format, 24), TILING, 'auto', OPTIONS, PARAM);
      assert.deepEqual([image.width, image.height], [24, 24], format);
      const [red, , blue] = await pixel(image.data, 12, 12);
      assert.ok(red! > 200 && blue! < 60, `${format}: first frame is red`);
    }
  });

  it('converts CMYK, greyscale and 16-bit images to 8-bit sRGB', async () => {
    const cmyk = await sharp({ create: { width: 30, height: 20, channels: 3, background: '#2040c0' } }).toColourspace('cmyk').jpeg().toBuffer();
    const grey = await sharp({ create: { width: 30, height: 20, channels: 3, background: '#808080' } }).greyscale().png().toBuffer();
    const deep = await sharp({ create: { width: 30, height: 20, channels: 3, background: '#10c020' } }).toColourspace('rgb16').png().toBuffer();
    assert.equal((await sharp(deep).metadata()).depth, 'ushort');
    for (const bytes of [cmyk, grey, deep]) {
      const image = await normalizeImage(bytes, TILING, 'auto', OPTIONS, PARAM);
      const metadata = await sharp(image.data).metadata();
      assert.equal(metadata.space, 'srgb');
      assert.equal(metadata.channels, 3);
      assert.equal(metadata.depth, 'uchar');
    }
  });

  it('downscales a 12 MP JPEG by detail, without decoding it at full size', async () => {
    const jpeg = await makeLargeJpeg();
    const started = performance.now();
    const low = await normalizeImage(jpeg, TILING, 'low', OPTIONS, PARAM);
    const lowMs = performance.now() - started;
    const high = await normalizeImage(jpeg, TILING, 'high', OPTIONS, PARAM);
    assert.deepEqual([low.width, low.height, low.tokens], [32, 24, 14]);
    assert.deepEqual([high.width, high.height, high.tokens], [128, 96, 82]);
    assert.deepEqual([high.sourceWidth, high.sourceHeight], [4000, 3000]);
    // libvips shrink-on-load: reading the 12 MP file at 1/8 scale is far cheaper than a full decode.
    assert.ok(lowMs < 2000, `low took ${lowMs} ms`);
  });

  it('refuses a pixel bomb from its header in milliseconds', async () => {
    const bomb = await makePixelBomb(30_000, 30_000);
    assert.ok(bomb.length < 100);
    const started = performance.now();
    await refused(bomb, 413, 'image_too_large', /more than 50000000 pixels/);
    const elapsed = performance.now() - started;
    // A full decode of 900 megapixels takes many seconds and gigabytes; the header alone, milliseconds (bounded
    // loosely so a loaded CI machine does not flake it).
    assert.ok(elapsed < 1000, `refused in ${elapsed.toFixed(1)} ms`);
  });

  it('refuses truncated, non-image, SVG, PDF and malformed BMP data with a 400', async () => {
    const jpeg = await makeImage({ format: 'jpeg', width: 128, height: 128 });
    await refused(jpeg.subarray(0, jpeg.length >> 1), 400, 'invalid_image');
    await refused(Buffer.from('hello, I am not an image'), 400, 'invalid_image', /not an image/);
    await refused(Buffer.from('<svg xmlns="http://www.w3.org/2000/svg"/>'), 400, 'invalid_image', /SVG/);
    await refused(Buffer.from('%PDF-1.7\n...'), 400, 'invalid_image', /PDF/);
    const bmp = await makeBmp(40, 30);
    await refused(bmp.subarray(0, 80), 400, 'invalid_image', /truncated/);
    const rle = Buffer.from(bmp);
    rle.writeUInt32LE(1, 30);
    await refused(rle, 400, 'invalid_image', /RLE/);
    const hugeBmp = Buffer.from(bmp);
    hugeBmp.writeInt32LE(30_000, 18);
    hugeBmp.writeInt32LE(30_000, 22);
    await refused(hugeBmp, 413, 'image_too_large');
  });

  it('cannot run the SVG loader even on bytes that skip the sniffer', async () => {
    restrictImageLoaders();
    const svg = Buffer.from('<svg xmlns="http://www.w3.org/2000/svg" width="8" height="8"><rect width="8" height="8"/></svg>');
    await assert.rejects(sharp(svg).png().toBuffer());
  });
});
