/**
 * Finds text that is valid JSON but not valid Unicode: a lone UTF-16 surrogate (`"t\ud800t"`). JSON allows
 * the escape, JavaScript keeps it, but no engine can tokenize it (llama-server fails the request with a
 * message that quotes the prompt). Every string of a request body, keys included, is checked once, before
 * any route sees it, and the first bad one is reported by its path.
 */
import { illFormedText, type IrisError } from '../errors.js';
import { formatParamPath } from './chat-request.js';

/** A lone surrogate: with the `u` flag a well-formed pair is one code point and does not match. */
const LONE_SURROGATE = /\p{Cs}/u;

interface Step {
  value: unknown;
  key: PropertyKey | undefined;
  parent: Step | undefined;
}

/** A 400 naming the first field (or key) that holds a lone surrogate, or null when all text is well formed. */
export function findIllFormedText(body: unknown): IrisError | null {
  // Iterative, so a deeply nested body cannot overflow the stack.
  const stack: Step[] = [{ value: body, key: undefined, parent: undefined }];
  for (let step = stack.pop(); step !== undefined; step = stack.pop()) {
    const { value } = step;
    if (typeof value === 'string') {
      if (LONE_SURROGATE.test(value)) return illFormedText(pathOf(step) ?? '(body)');
    } else if (Array.isArray(value)) {
      for (let index = value.length - 1; index >= 0; index -= 1) stack.push({ value: value[index], key: index, parent: step });
    } else if (value !== null && typeof value === 'object') {
      for (const [key, inner] of Object.entries(value)) {
        if (LONE_SURROGATE.test(key)) return illFormedText(pathOf(step) ?? '(body)');
        stack.push({ value: inner, key, parent: step });
      }
    }
  }
  return null;
}

function pathOf(step: Step): string | null {
  const keys: PropertyKey[] = [];
  for (let at: Step | undefined = step; at?.key !== undefined; at = at.parent) keys.unshift(at.key);
  return formatParamPath(keys);
}
