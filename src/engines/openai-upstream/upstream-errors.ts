/**
 * What an upstream's failure means for a request: whether to try the next endpoint, and which
 * {@link IrisError} the client sees. Messages sent to clients never carry an endpoint's address or key;
 * those go to the logs (through `cause`) only.
 */
import { IrisError, engineFailed, invalidRequest, payloadTooLarge, tooManyRequests, type IrisErrorCode } from '../../errors.js';
import type { UpstreamErrorBody } from '../openai-error-body.js';

/**
 * How one attempt against one endpoint ended, when it did not start a stream:
 * - `endpoint-failed`: the endpoint is down or broken (connection error, timeout, 5xx, 404); it is put in
 *   cooldown and the next endpoint is tried.
 * - `server-error`: the endpoint answered 5xx. That may be the request's own doing (an input that crashes the
 *   model's template), so it is tried once more elsewhere, then `error` goes to the client; the endpoint is
 *   cooled down only when it answers 5xx to several requests in a row.
 * - `busy`: the endpoint answered 429; the next endpoint is tried, this one stays healthy.
 * - `final`: the answer is about the request itself (4xx) or about Iris's key (401/403); nothing is retried.
 */
export type AttemptFailure =
  | { kind: 'endpoint-failed'; reason: string; cause?: unknown }
  | { kind: 'server-error'; reason: string; error: IrisError }
  | { kind: 'busy'; reason: string; retryAfterSeconds?: number | undefined }
  | { kind: 'final'; error: IrisError };

/** Codes an upstream Iris (or OpenAI) may give a 4xx that keep their meaning when passed on. */
const PASSED_ON_CODES: ReadonlySet<IrisErrorCode> = new Set<IrisErrorCode>([
  'invalid_value',
  'invalid_request',
  'missing_required_parameter',
  'unsupported_parameter',
  'context_length_exceeded',
  'too_many_images',
  'invalid_image',
  'model_not_supported',
]);

/**
 * Classifies an upstream HTTP error answer (status >= 400) to `POST /chat/completions`.
 * @param status the upstream's HTTP status
 * @param error the parsed error body ({@link parseUpstreamError})
 * @param modelId our model id, for messages
 */
export function classifyUpstreamAnswer(status: number, error: UpstreamErrorBody, modelId: string, retryAfterHeader?: string): AttemptFailure {
  const message = error.message?.trim() || `HTTP ${status}`;
  if (status === 401 || status === 403) {
    return {
      kind: 'final',
      error: engineFailed(
        `The upstream server of model '${modelId}' rejected Iris's API key (HTTP ${status}); the operator must fix the key configured for it.`,
      ),
    };
  }
  if (status === 429) return { kind: 'busy', reason: `answered 429 (busy): ${message}`, retryAfterSeconds: retryAfterSeconds(retryAfterHeader) };
  if (status === 404) return { kind: 'endpoint-failed', reason: `answered 404 (wrong URL, or the model is not served there): ${message}` };
  if (status === 413) return { kind: 'final', error: payloadTooLarge(message) };
  if (status >= 400 && status < 500) {
    return { kind: 'final', error: invalidRequest(message, error.param ?? null, requestErrorCode(error)) };
  }
  const reason = `answered HTTP ${status}: ${message}`;
  return { kind: 'server-error', reason, error: engineFailed(`The upstream server of model '${modelId}' ${reason}`) };
}

/** Seconds from a `Retry-After` header (delta-seconds or an HTTP date); undefined when absent or unreadable. */
export function retryAfterSeconds(header: string | undefined): number | undefined {
  if (header === undefined || header.trim() === '') return undefined;
  const seconds = Number(header);
  if (Number.isFinite(seconds) && seconds >= 0) return seconds;
  const date = Date.parse(header);
  return Number.isNaN(date) ? undefined : Math.max(0, (date - Date.now()) / 1000);
}

/**
 * The error for an `{"error":{...}}` event inside an upstream stream: the upstream's answer to this request,
 * not a sign that the endpoint is down. A numeric `code` below 500 (vLLM, llama-server) makes it a 400.
 */
export function streamErrorToIrisError(error: UpstreamErrorBody, modelId: string): IrisError {
  const message = error.message?.trim() || 'the upstream reported an error';
  const status = typeof error.code === 'number' ? error.code : undefined;
  if (status !== undefined && status >= 400 && status < 500) {
    return invalidRequest(message, error.param ?? null, requestErrorCode(error));
  }
  return engineFailed(`The upstream server of model '${modelId}' failed while generating: ${message}`);
}

/** A 429 `server_overloaded`: every endpoint tried was busy; `retryAfterSeconds` as the upstream said. */
export function upstreamBusy(modelId: string, reason: string, retryAfterSeconds?: number): IrisError {
  return tooManyRequests(`Model '${modelId}' is busy upstream; retry later (last: ${reason}).`, 'server_overloaded', retryAfterSeconds);
}


/**
 * Why a connection-level failure happened, in words that name no address (undici's own messages do, so
 * they stay in `cause` for the logs).
 */
export function networkReason(error: unknown): string {
  const code = errorCode(error) ?? errorCode((error as { cause?: unknown } | null)?.cause);
  switch (code) {
    case 'ECONNREFUSED':
      return 'connection refused';
    case 'ECONNRESET':
    case 'UND_ERR_SOCKET':
      return 'connection reset';
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return 'host name not found';
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
      return 'host unreachable';
    case 'ETIMEDOUT':
    case 'UND_ERR_CONNECT_TIMEOUT':
      return 'connect timed out';
    case 'UND_ERR_HEADERS_TIMEOUT':
      return 'no response headers in time';
    case 'UND_ERR_BODY_TIMEOUT':
      return 'the response stalled';
    case undefined:
      return 'connection failed';
    default:
      return `connection failed (${code})`;
  }
}

function errorCode(error: unknown): string | undefined {
  if (error === null || typeof error !== 'object') return undefined;
  const code = (error as { code?: unknown }).code;
  return typeof code === 'string' ? code : undefined;
}

function requestErrorCode(error: UpstreamErrorBody): IrisErrorCode {
  if (typeof error.code === 'string' && PASSED_ON_CODES.has(error.code as IrisErrorCode)) return error.code as IrisErrorCode;
  if (error.type === 'exceed_context_size_error' || /maximum context length|exceeds? the (available )?context/i.test(error.message ?? '')) {
    return 'context_length_exceeded';
  }
  return 'invalid_request';
}
