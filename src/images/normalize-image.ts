/**
 * Decodes one image with sharp (libvips) and normalizes it for an engine: EXIF orientation applied, alpha
 * composited onto a background, first frame of an animation, 8-bit sRGB, scaled down to fit the policy's
 * box, re-encoded as PNG (the one format every engine reads: llama-server cannot decode WebP or AVIF).
 */
import sharp from 'sharp';
import type { EngineImage } from '../engines/engine.js';
import { invalidRequest, payloadTooLarge } from '../errors.js';
import { REFUSED_FORMATS, sniffFormat, type SniffedFormat } from './sniff-format.js';

/** How one image is shaped for a model. */
export interface ImageShape {
  /** Longest edge in pixels the engine gets; larger images are scaled down, smaller ones are never enlarged. */
  maxEdge: number;
}

/** Decoding limits and defaults. */
export interface NormalizeOptions {
  /** Largest image, in pixels, that is decoded at all. */
  maxPixels: number;
  /** Colour transparent pixels become. @default '#ffffff' */
  background?: string;
}

/** Sniffs, decodes and normalizes `bytes`; throws a 400 naming `param` for anything that is not a usable image. */
export async function normalizeImage(
  bytes: Uint8Array,
  shape: ImageShape,
  options: NormalizeOptions,
  param: string,
): Promise<EngineImage & { sourceFormat: SniffedFormat }> {
  const format = sniffFormat(bytes);
  if (format === undefined) {
    throw invalidRequest(`The data at '${param}' is not an image in a supported format (JPEG, PNG, WebP, GIF, AVIF, TIFF).`, param, 'invalid_image');
  }
  if (REFUSED_FORMATS.has(format)) {
    throw invalidRequest(`The image at '${param}' is ${format.toUpperCase()}, a vector/document format Iris does not render; send a raster image.`, param, 'invalid_image');
  }
  try {
    const pipeline = sharp(bytes, { limitInputPixels: options.maxPixels, failOn: 'error', pages: 1, page: 0 })
      .autoOrient()
      .flatten({ background: options.background ?? '#ffffff' })
      .resize({ width: shape.maxEdge, height: shape.maxEdge, fit: 'inside', withoutEnlargement: true })
      .toColourspace('srgb')
      .png({ compressionLevel: 1, adaptiveFiltering: false });
    const { data, info } = await pipeline.toBuffer({ resolveWithObject: true });
    return { data, mimeType: 'image/png', width: info.width, height: info.height, sourceFormat: format };
  } catch (error) {
    const reason = error instanceof Error ? error.message.split('\n')[0] ?? '' : String(error);
    if (/pixel limit/i.test(reason)) {
      throw payloadTooLarge(
        `The image at '${param}' has more than ${options.maxPixels} pixels; send a smaller image.`,
        param,
        'image_too_large',
      );
    }
    throw invalidRequest(`The image at '${param}' could not be decoded (${format}): ${reason}`, param, 'invalid_image', error);
  }
}
