/**
 * Decodes `data:` image URIs. Only base64 payloads are accepted (an image in percent-encoding is not
 * something any client sends on purpose), the base64 is checked strictly before decoding, and the decoded
 * size is checked against the per-image limit before any allocation of it.
 */
import { invalidRequest, payloadTooLarge } from '../errors.js';

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;
const BASE64URL = /^[A-Za-z0-9_-]*={0,2}$/;

/** Whether `url` is a data URI (by its scheme, case-insensitively). */
export function isDataUri(url: string): boolean {
  return /^data:/i.test(url);
}

/** The bytes of a base64 data URI; throws a 400 naming `param` when it is malformed, 413 when too large. */
export function decodeDataUri(url: string, param: string, maxBytes: number): Uint8Array {
  const comma = url.indexOf(',');
  if (comma === -1) throw invalidRequest(`Invalid data URI at '${param}': no ',' before the data.`, param, 'invalid_image_url');
  const meta = url.slice(5, comma).toLowerCase();
  if (!meta.split(';').includes('base64')) {
    throw invalidRequest(`Invalid data URI at '${param}': only base64 data URIs are accepted (data:image/...;base64,...).`, param, 'invalid_image_url');
  }
  const data = url.slice(comma + 1);
  // The common case, checked without a pass over the text: Node's decoder skips characters outside the
  // alphabet and stops at '=', so the data is clean base64 exactly when it decodes to the length its
  // character count promises (a skipped character always costs a byte, see decodedLength).
  if (data.length > 0 && Math.floor((data.length * 3) / 4) <= maxBytes + 2) {
    const bytes = Buffer.from(data, 'base64');
    if (bytes.length === decodedLength(data)) return nonEmpty(bytes, param);
  }
  // Clients wrap long base64 at 76 columns; whitespace is not data.
  const payload = data.replace(/[\s]/g, '');
  if (payload.length === 0) throw invalidRequest(`Invalid data URI at '${param}': the data is empty.`, param, 'invalid_image');
  const estimated = Math.floor((payload.length * 3) / 4);
  if (estimated > maxBytes + 2) {
    throw payloadTooLarge(`The image at '${param}' is larger than the ${maxBytes}-byte limit.`, param, 'image_too_large');
  }
  if (payload.length % 4 === 1 || !(BASE64.test(payload) || BASE64URL.test(payload))) {
    throw invalidRequest(`Invalid base64 in the data URI at '${param}'.`, param, 'invalid_image');
  }
  return nonEmpty(Buffer.from(payload, BASE64.test(payload) ? 'base64' : 'base64url'), param);
}

/**
 * The bytes `data` holds if it is clean base64 (either alphabet, padded or not), or -1 when its length
 * alone shows it is not: n characters before the padding carry floor(6n / 8) bytes, and n = 1 (mod 4) is
 * never valid. Losing one character to the decoder lowers floor(6n / 8) whenever n is not 1 (mod 4), so a
 * decode of the promised length had no character skipped.
 */
function decodedLength(data: string): number {
  let end = data.length;
  while (end > 0 && data.charCodeAt(end - 1) === 61 /* = */ && data.length - end < 2) end -= 1;
  return end % 4 === 1 ? -1 : Math.floor((end * 3) / 4);
}

function nonEmpty(bytes: Buffer, param: string): Buffer {
  if (bytes.length === 0) throw invalidRequest(`Invalid data URI at '${param}': the data is empty.`, param, 'invalid_image');
  return bytes;
}
