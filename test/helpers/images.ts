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
