/**
 * Reads JSON request bodies without putting large image data through the JSON parser.
 *
 * A large body is almost always base64 image data: a 12 MP JPEG is a 4.7 MB `data:` string. Decoding that
 * as UTF-8 and running JSON.parse over it costs some 40 ms of the one event loop per request (measured on
 * the development machine), during which no other client is served, and the text is then used as it is
 * (the image pipeline decodes the base64 itself). So such string literals are lifted out of the raw bytes
 * first and the rest of the body, a few hundred bytes, goes through the ordinary parser:
 *
 * - an unescaped `"` (one preceded by an even number of backslashes) is always a string delimiter in JSON,
 *   and a closing one is never followed by a letter, so `"data:` marks the start of a string literal;
 * - a literal with no backslash ends at the next `"`; if it is a value (not an object key) and printable
 *   ASCII (no byte >= 0x80, which would need decoding, and no control character, which JSON forbids raw),
 *   its bytes are exactly its text, taken as Latin-1 (a copy, no decoding);
 * - in its place the parser sees a short placeholder string, unforgeable (a random nonce per body), which
 *   is swapped back for the literal once the rest is parsed.
 *
 * Anything that does not fit (escapes, non-ASCII, small literals) is left where it is, for the parser. Every
 * body, lifted or not, gets the same parser and so the same errors and prototype-poisoning checks.
 */
import { isAscii } from 'node:buffer';
import { randomBytes } from 'node:crypto';

/** Bodies smaller than this are parsed as they are. */
const MIN_BODY_BYTES = 64 * 1024;
/** String literals shorter than this stay in the text. */
const MIN_LITERAL_BYTES = 16 * 1024;

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
// eslint-disable-next-line no-control-regex -- finding control characters is the point
const CONTROL = /[\x00-\x1f\x7f]/;

/** The body as JSON text for the parser, and how to put lifted literals back into what it parsed. */
export interface LiftedBody {
  text: string;
  /** Swaps the placeholders in the parsed value for their literals (in place; returns the value). */
  restore(value: unknown): unknown;
}

/** Lifts the large `data:` string literals out of a raw JSON body (see the module comment). */
export function liftDataUris(raw: Buffer): LiftedBody {
  if (raw.length < MIN_BODY_BYTES) return { text: raw.toString('utf8'), restore: (value) => value };
  const lifted = new Map<string, string>();
  const prefix = `\u0000iris-data-uri-${randomBytes(12).toString('hex')}-`;
  const pieces: string[] = [];
  let copied = 0;
  for (let at = raw.indexOf('"data:', 0, 'latin1'); at !== -1; ) {
    let slashes = 0;
    while (at - slashes - 1 >= 0 && raw[at - slashes - 1] === BACKSLASH) slashes += 1;
    const end = slashes % 2 === 0 ? raw.indexOf(QUOTE, at + 1) : -1;
    if (end === -1 && slashes % 2 === 0) break;
    const literal = end - at - 1 >= MIN_LITERAL_BYTES && !isKey(raw, end + 1) ? plainAscii(raw, at + 1, end) : undefined;
    if (literal !== undefined) {
      const placeholder = `${prefix}${lifted.size}`;
      lifted.set(placeholder, literal);
      pieces.push(raw.toString('utf8', copied, at + 1), JSON.stringify(placeholder).slice(1, -1));
      copied = end;
    }
    at = raw.indexOf('"data:', Math.max(at + 1, end + 1), 'latin1');
  }
  if (lifted.size === 0) return { text: raw.toString('utf8'), restore: (value) => value };
  pieces.push(raw.toString('utf8', copied));
  return { text: pieces.join(''), restore: (value) => restore(value, lifted) };
}

/** Whether the literal that ended just before `from` is an object key (a ':' follows, after any whitespace). */
function isKey(raw: Buffer, from: number): boolean {
  let at = from;
  while (at < raw.length && (raw[at] === 0x20 || raw[at] === 0x09 || raw[at] === 0x0a || raw[at] === 0x0d)) at += 1;
  return raw[at] === 0x3a;
}

/** The text of raw[start, end) if it is printable ASCII without backslashes (so its bytes are its text). */
function plainAscii(raw: Buffer, start: number, end: number): string | undefined {
  const bytes = raw.subarray(start, end);
  if (!isAscii(bytes) || bytes.includes(BACKSLASH)) return undefined;
  const text = bytes.toString('latin1');
  return CONTROL.test(text) ? undefined : text;
}

/** Replaces every string equal to a placeholder, walking iteratively (bodies may nest deeply). */
function restore(value: unknown, lifted: Map<string, string>): unknown {
  if (typeof value === 'string') return lifted.get(value) ?? value;
  const stack: unknown[] = [value];
  const visit = (container: Record<string, unknown> | unknown[], key: string | number): void => {
    const inner = (container as Record<string | number, unknown>)[key];
    if (typeof inner === 'string') {
      const literal = lifted.get(inner);
      if (literal !== undefined) (container as Record<string | number, unknown>)[key] = literal;
    } else if (inner !== null && typeof inner === 'object') {
      stack.push(inner);
    }
  };
  while (stack.length > 0) {
    const node = stack.pop();
    if (Array.isArray(node)) for (let index = 0; index < node.length; index += 1) visit(node, index);
    else if (node !== null && typeof node === 'object') for (const key of Object.keys(node)) visit(node as Record<string, unknown>, key);
  }
  return value;
}
