/**
 * BMP support. sharp's prebuilt libvips has no BMP loader, so BMPs are decoded by bmp-ts (a small, widely
 * used pure-TypeScript decoder) into raw pixels that sharp then treats like any other image.
 *
 * bmp-ts trusts its input, so the header is checked here first, by hand, against what the file can hold:
 * sane dimensions under the pixel limit (before anything is allocated), a known header, bit depth and
 * palette size, and an uncompressed pixel array that really fits in the file. RLE-compressed BMPs are
 * refused: they are rare, and their pixel count has no relation to their size, which makes them a cheap
 * decompression bomb in a synchronous decoder.
 */
import { decode } from 'bmp-ts';
import { invalidRequest, payloadTooLarge } from '../errors.js';

/** A decoded BMP: RGBA pixels, top row first. */
export interface DecodedBmp {
  data: Buffer;
  width: number;
  height: number;
  /** Whether the alpha channel carries information (a BMP with an alpha mask); otherwise it is to be dropped. */
  hasAlpha: boolean;
}

const HEADER_SIZES = new Set([40, 52, 56, 108, 124]);
const BIT_DEPTHS = new Set([1, 4, 8, 16, 24, 32]);
const BI_RGB = 0;
const BI_BITFIELDS = 3;
const BI_ALPHABITFIELDS = 6;

/**
 * Decodes a BMP after checking its header. Throws a 400 naming `param` for a malformed or unsupported file
 * and a 413 for one over `maxPixels`, in both cases before allocating its pixels.
 */
export function decodeBmp(bytes: Uint8Array, maxPixels: number, param: string): DecodedBmp {
  const bad = (reason: string): Error =>
    invalidRequest(`The image at '${param}' could not be decoded (bmp): ${reason}.`, param, 'invalid_image');
  if (bytes.length < 54) throw bad('the file is shorter than a BMP header');
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const dataOffset = view.getUint32(10, true);
  const headerSize = view.getUint32(14, true);
  const width = view.getInt32(18, true);
  const rawHeight = view.getInt32(22, true);
  const bitDepth = view.getUint16(28, true);
  const compression = view.getUint32(30, true);
  const colors = view.getUint32(46, true);
  const height = Math.abs(rawHeight);
  if (!HEADER_SIZES.has(headerSize)) throw bad(`unsupported header size ${headerSize}`);
  if (width <= 0 || height <= 0 || rawHeight === -2147483648) throw bad(`invalid dimensions ${width}x${rawHeight}`);
  if (width * height > maxPixels) {
    throw payloadTooLarge(`The image at '${param}' has more than ${maxPixels} pixels; send a smaller image.`, param, 'image_too_large');
  }
  if (!BIT_DEPTHS.has(bitDepth)) throw bad(`unsupported bit depth ${bitDepth}`);
  if (compression !== BI_RGB && compression !== BI_BITFIELDS && compression !== BI_ALPHABITFIELDS) {
    throw bad('compressed (RLE, JPEG or PNG-in-BMP) BMPs are not supported; send PNG or JPEG');
  }
  if (colors > 256) throw bad(`a palette of ${colors} colours`);
  const rowBytes = Math.ceil((width * bitDepth) / 32) * 4;
  if (dataOffset < 14 + headerSize || dataOffset + rowBytes * height > bytes.length) {
    throw bad('the pixel data is truncated');
  }
  let decoded: ReturnType<typeof decode>;
  try {
    decoded = decode(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength), { toRGBA: true });
  } catch (error) {
    throw Object.assign(bad(error instanceof Error ? error.message : String(error)), { cause: error });
  }
  // 32- and 16-bit BMPs without an alpha mask use the spare bits as padding, not transparency.
  const alphaMask = (headerSize >= 56 || compression === BI_ALPHABITFIELDS) && bytes.length >= 70 ? view.getUint32(66, true) : 0;
  const hasAlpha = (bitDepth === 32 || bitDepth === 16) && alphaMask !== 0;
  return { data: decoded.data, width, height, hasAlpha };
}
