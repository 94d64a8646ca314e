/**
 * Reads the error out of what an OpenAI-compatible server answers (OpenAI, Iris, llama-server, vLLM, SGLang):
 * one parser for both engines, for HTTP error bodies and for `{"error":...}` events inside a stream.
 */

/** The error object OpenAI-compatible servers answer with. */
export interface UpstreamErrorBody {
  message?: string;
  type?: string;
  param?: string | null;
  code?: string | number | null;
}

/**
 * Reads an error response text: OpenAI's `{"error":{...}}`, vLLM's older top-level
 * `{"object":"error","message",...}`, FastAPI's `{"detail": ...}`, or plain text.
 */
export function parseUpstreamError(text: string): UpstreamErrorBody {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return text.trim() === '' ? {} : { message: text.trim().slice(0, 500) };
  }
  return readUpstreamError(parsed);
}

/** Reads an already-parsed error body or the value of a stream event's `error` field. */
export function readUpstreamError(parsed: unknown): UpstreamErrorBody {
  if (parsed === null || typeof parsed !== 'object') return parsed === undefined ? {} : { message: String(parsed).slice(0, 500) };
  const record = parsed as Record<string, unknown>;
  const inner = record['error'];
  if (typeof inner === 'string') return { message: inner.slice(0, 500) };
  const source = inner !== null && typeof inner === 'object' ? (inner as Record<string, unknown>) : record;
  const detail = source['detail'];
  const message =
    typeof source['message'] === 'string'
      ? source['message']
      : typeof detail === 'string'
        ? detail
        : detail === undefined
          ? undefined
          : JSON.stringify(detail);
  const body: UpstreamErrorBody = {};
  if (message !== undefined) body.message = message.slice(0, 1000);
  if (typeof source['type'] === 'string') body.type = source['type'];
  if (typeof source['param'] === 'string') body.param = source['param'];
  if (typeof source['code'] === 'string' || typeof source['code'] === 'number') body.code = source['code'];
  return body;
}
