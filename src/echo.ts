/**
 * Client-supplied values quoted back in an error message or a log line go through {@link echo}: escaped (so
 * control characters, quotes and lone surrogates cannot forge log lines or break the message) and cut to a
 * few hundred characters (a 50 MB `model` string must not become a 50 MB log line or error body).
 */

/** Characters of a client value kept when it is echoed. @default 200 */
export const ECHO_MAX_CHARS = 200;

/**
 * The value as a JSON string literal without the outer quotes, at most `max` characters of the original,
 * with a note of how long it really was when cut.
 */
export function echo(value: string, max = ECHO_MAX_CHARS): string {
  const cut = value.length > max;
  const kept = cut ? value.slice(0, max) : value;
  const escaped = JSON.stringify(kept).slice(1, -1);
  return cut ? `${escaped}... (${value.length} characters)` : escaped;
}
