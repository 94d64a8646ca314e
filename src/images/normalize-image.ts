/**
 * Decodes one image with sharp (libvips) and normalizes it for a model: the real format sniffed from the
 * bytes, a pixel limit checked from the header before any decoding (decompression bombs are refused in
 * milliseconds, without allocating their pixels), EXIF orientation applied, the first frame of an
 * animation, alpha composited onto a background, CMYK / greyscale / 16-bit converted to 8-bit sRGB, and
 * the size chosen by the model's {@link ImagePolicy} for the requested `detail`, then re-encoded as PNG
 * (the one format every engine reads: llama-server cannot decode WebP or AVIF).
 *
 * The resize directly follows the load, so libvips uses shrink-on-load where the format allows (JPEG's DCT
 * scaling, WebP): a 12 MP JPEG is never decoded at full size when the model only needs a small one.
 *
 * Only raster loaders are enabled in libvips (see {@link restrictImageLoaders}): SVG, PDF and other vector or
 * active formats are refused by the sniffer and could not be decoded even if a file slipped past it.
 */
import sharp, { type Sharp } from 'sharp';
import type { EngineImage } from '../engines/engine.js';
import { IrisError, invalidRequest, payloadTooLarge } from '../errors.js';
import type { ImageDetail } from '../protocol/chat-request.js';
import { decodeBmp } from './decode-bmp.js';
import { imageTokenCount, targetImageSize, type ImagePolicy } from './image-policy.js';
import { REFUSED_FORMATS, sniffFormat, type SniffedFormat } from './sniff-format.js';

/** Decoding limits and defaults. */
export interface NormalizeOptions {
  /** Largest image, in pixels (width x height), that is decoded at all. */
  maxPixels: number;
  /** Colour transparent pixels are composited onto. @default '#ffffff' */
  background?: string;
}

/** An image ready for the engine, with what Iris knows about it. */
export interface NormalizedImage extends EngineImage {
  /** The format the bytes really were. */
  sourceFormat: SniffedFormat;
  /** Width and height of the source, after EXIF orientation. */
  sourceWidth: number;
  sourceHeight: number;
  /** Prompt tokens the model turns this image into; undefined when the projector is not modelled. */
  tokens: number | undefined;
}

const RASTER_LOADERS = ['VipsForeignLoadJpeg', 'VipsForeignLoadPng', 'VipsForeignLoadWebp', 'VipsForeignLoadNsgif', 'VipsForeignLoadHeif', 'VipsForeignLoadTiff'];
let loadersRestricted = false;

/**
 * Blocks every libvips loader except the raster ones Iris accepts (JPEG, PNG, WebP, GIF, HEIF/AVIF, TIFF), for
 * the whole process: SVG (librsvg), PDF, Magick and the like can never run on request bytes. Idempotent;
 * called before the first decode.
 */
export function restrictImageLoaders(): void {
  if (loadersRestricted) return;
  sharp.block({ operation: ['VipsForeignLoad'] });
  sharp.unblock({ operation: RASTER_LOADERS });
  loadersRestricted = true;
}

/**
 * Sniffs, decodes and normalizes `bytes`; throws a 400 (or 413 over the pixel limit) naming `param`.
 * `size`, when given, replaces the size the policy picks for `detail` (a smaller one chosen to fit a token cap).
 */
export async function normalizeImage(
  bytes: Uint8Array,
  policy: ImagePolicy,
  detail: ImageDetail,
  options: NormalizeOptions,
  param: string,
  size?: { width: number; height: number },
): Promise<NormalizedImage> {
  restrictImageLoaders();
  const format = sniffFormat(bytes);
  if (format === undefined) {
    throw invalidRequest(
      `The data at '${param}' is not an image in a supported format (JPEG, PNG, WebP, GIF, AVIF, HEIC, TIFF, BMP).`,
      param,
      'invalid_image',
    );
  }
  if (REFUSED_FORMATS.has(format)) {
    throw invalidRequest(`The image at '${param}' is ${format.toUpperCase()}, a vector/document format Iris does not render; send a raster image.`, param, 'invalid_image');
  }
  const background = options.background ?? '#ffffff';
  try {
    const open = sourceOf(bytes, format, options.maxPixels, param);
    const metadata = await open().metadata();
    const width = metadata.width;
    const height = metadata.pageHeight ?? metadata.height;
    if (!(width > 0 && height > 0)) throw new Error('the image has no size');
    if (width * height > options.maxPixels) throw tooManyPixels(param, options.maxPixels);
    const rotated = (metadata.orientation ?? 1) >= 5;
    const sourceWidth = rotated ? height : width;
    const sourceHeight = rotated ? width : height;
    const target = size ?? targetImageSize(policy, sourceWidth, sourceHeight, detail);
    let pipeline = open().autoOrient();
    if (target.width !== sourceWidth || target.height !== sourceHeight) {
      pipeline = pipeline.resize({ width: target.width, height: target.height, fit: 'fill', kernel: 'lanczos3' });
    }
    const { data, info } = await pipeline
      .flatten({ background })
      .toColourspace('srgb')
      .png({ compressionLevel: 1, adaptiveFiltering: false })
      .toBuffer({ resolveWithObject: true });
    return {
      data,
      mimeType: 'image/png',
      width: info.width,
      height: info.height,
      sourceFormat: format,
      sourceWidth,
      sourceHeight,
      tokens: imageTokenCount(policy, info.width, info.height),
    };
  } catch (error) {
    if (error instanceof IrisError) throw error;
    const reason = error instanceof Error ? (error.message.split('\n')[0] ?? '') : String(error);
    if (/pixel limit/i.test(reason)) throw tooManyPixels(param, options.maxPixels);
    if (format === 'heic' && /compression format|not been built|unsupported/i.test(reason)) {
      throw invalidRequest(`The image at '${param}' is HEIC, which this server's libvips cannot decode; send JPEG, PNG, WebP or AVIF.`, param, 'invalid_image', error);
    }
    throw invalidRequest(`The image at '${param}' could not be decoded (${format}): ${reason}`, param, 'invalid_image', error);
  }
}

/** A factory of sharp instances reading the image (one per pass: metadata, then the pipeline). */
function sourceOf(bytes: Uint8Array, format: SniffedFormat, maxPixels: number, param: string): () => Sharp {
  if (format === 'bmp') {
    const bmp = decodeBmp(bytes, maxPixels, param);
    return () => {
      const image = sharp(bmp.data, { raw: { width: bmp.width, height: bmp.height, channels: 4 } });
      return bmp.hasAlpha ? image : image.removeAlpha();
    };
  }
  // failOn 'error': tolerate the harmless warnings real cameras produce, refuse corrupt and truncated data.
  return () => sharp(bytes, { limitInputPixels: maxPixels, failOn: 'error', pages: 1, page: 0, sequentialRead: true });
}

function tooManyPixels(param: string, maxPixels: number): IrisError {
  return payloadTooLarge(`The image at '${param}' has more than ${maxPixels} pixels; send a smaller image.`, param, 'image_too_large');
}
