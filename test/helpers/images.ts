/**
 * Real test images made with sharp: gradients with some structure (so encoders have something to chew
 * on), in any format, with or without alpha.
 */
import sharp from 'sharp';

/** Formats the helpers can write. */
export type TestImageFormat = 'png' | 'jpeg' | 'webp' | 'gif' | 'avif' | 'tiff';

/** Options of {@link makeImage}. */
export interface MakeImageOptions {
  width?: number;
  height?: number;
  format?: TestImageFormat;
  alpha?: boolean;
  /** Seed for the pattern, so two images differ. */
  seed?: number;
}

/** An encoded image of the given size and format. */
export async function makeImage(options: MakeImageOptions = {}): Promise<Buffer> {
  const { width = 64, height = 48, format = 'png', alpha = false, seed = 1 } = options;
  const channels = alpha ? 4 : 3;
  const raw = Buffer.alloc(width * height * channels);
  for (let y = 0; y < height; y += 1) {
    for (let x = 0; x < width; x += 1) {
      const offset = (y * width + x) * channels;
      raw[offset] = (x * 255) / Math.max(1, width - 1);
      raw[offset + 1] = (y * 255) / Math.max(1, height - 1);
      raw[offset + 2] = ((x + y) * seed * 37) % 256;
      if (alpha) raw[offset + 3] = x < width / 2 ? 0 : 255;
    }
  }
  return sharp(raw, { raw: { width, height, channels } }).toFormat(format).toBuffer();
}

/** A data URI with the given (possibly lying) media type. */
export function dataUri(bytes: Uint8Array, mediaType = 'image/png'): string {
  return `data:${mediaType};base64,${Buffer.from(bytes).toString('base64')}`;
}

/** An uncompressed 24-bit BMP (sharp cannot write BMP; bmp-ts can). */
export async function makeBmp(width = 40, height = 30): Promise<Buffer> {
  const { encode } = await import('bmp-ts');
  const data = Buffer.alloc(width * height * 4);
  for (let index = 0; index < width * height; index += 1) {
    // bmp-ts takes ABGR
    data[index * 4 + 1] = 200;
    data[index * 4 + 2] = (index * 7) % 256;
    data[index * 4 + 3] = 30;
  }
  return encode({ width, height, data, bitPP: 24 }).data;
}

/**
 * A JPEG whose stored pixels are `width` x `height` (left half red, right half blue) with EXIF orientation
 * `orientation`: 6 means "rotate 90° clockwise to display", so it displays as `height` x `width`.
 */
export async function makeRotatedJpeg(width = 80, height = 40, orientation = 6): Promise<Buffer> {
  const raw = Buffer.alloc(width * height * 3);
  for (let y = 0; y < height; y += 1) {
    for (let x = 0; x < width; x += 1) {
      const offset = (y * width + x) * 3;
      if (x < width / 2) raw[offset] = 255;
      else raw[offset + 2] = 255;
    }
  }
  return sharp(raw, { raw: { width, height, channels: 3 } }).jpeg({ quality: 95 }).withMetadata({ orientation }).toBuffer();
}

/** An animated GIF (or WebP) whose first frame is red and second blue. */
export async function makeAnimated(format: 'gif' | 'webp' = 'gif', size = 24): Promise<Buffer> {
  const frame = (background: string) => sharp({ create: { width: size, height: size, channels: 3, background } }).png().toBuffer();
  const frames = [await frame('#ff0000'), await frame('#0000ff')];
  return sharp(frames, { join: { animated: true } }).toFormat(format, format === 'gif' ? { loop: 0 } : {}).toBuffer();
}

/** A tiny valid-looking PNG whose header declares `width` x `height` pixels: a decompression bomb. */
export async function makePixelBomb(width = 30_000, height = 30_000): Promise<Buffer> {
  const png = Buffer.from(await sharp({ create: { width: 1, height: 1, channels: 3, background: '#808080' } }).png().toBuffer());
  png.writeUInt32BE(width, 16);
  png.writeUInt32BE(height, 20);
  return png;
}

/** A camera-sized JPEG (12 MP by default) with real structure, for rescaling tests. */
export async function makeLargeJpeg(width = 4000, height = 3000): Promise<Buffer> {
  const raw = Buffer.alloc(width * height * 3);
  for (let y = 0; y < height; y += 1) {
    for (let x = 0; x < width; x += 1) {
      const offset = (y * width + x) * 3;
      raw[offset] = x & 255;
      raw[offset + 1] = y & 255;
      raw[offset + 2] = ((x >> 4) ^ (y >> 4)) & 255;
    }
  }
  return sharp(raw, { raw: { width, height, channels: 3 } }).jpeg({ quality: 85 }).toBuffer();
}
