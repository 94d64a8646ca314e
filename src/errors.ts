/**
 * The one error tree of Iris. Every failure that reaches a client is an {@link IrisError}: it carries the
 * HTTP status, the OpenAI error `type`, a stable machine-readable `code`, and the request field it is about
 * (`param`). The HTTP layer renders it in one place as `{"error":{"message","type","param","code"}}`.
 *
 * Code that calls out (fetch, sharp, child processes) wraps what it catches in one of these, keeping the
 * original error as `cause`.
 */

/** OpenAI error `type` values used by Iris. */
export type OpenAIErrorType =
  | 'invalid_request_error'
  | 'authentication_error'
  | 'not_found_error'
  | 'rate_limit_error'
  | 'server_error'
  | 'service_unavailable_error';

/** Every stable error code Iris emits. Clients may switch on these; never rename one. */
export type IrisErrorCode =
  | 'invalid_json'
  | 'invalid_request'
  | 'invalid_value'
  | 'missing_required_parameter'
  | 'unsupported_parameter'
  | 'payload_too_large'
  | 'invalid_api_key'
  | 'model_not_found'
  | 'model_not_supported'
  | 'not_found'
  | 'invalid_image'
  | 'invalid_image_url'
  | 'image_fetch_failed'
  | 'image_too_large'
  | 'too_many_images'
  | 'context_length_exceeded'
  | 'server_overloaded'
  | 'model_unavailable'
  | 'engine_error'
  | 'engine_crashed'
  | 'request_cancelled'
  | 'shutting_down'
  | 'hub_unreachable'
  | 'download_failed'
  | 'checksum_mismatch'
  | 'build_failed'
  | 'internal_error';

/** Fields of an {@link IrisError}. */
export interface IrisErrorOptions {
  /** HTTP status the client sees. */
  status: number;
  /** OpenAI error type. */
  type: OpenAIErrorType;
  /** Stable code. */
  code: IrisErrorCode;
  /** The request field the error is about, e.g. `messages[0].content[1].image_url.url`. */
  param?: string | null;
  /** The underlying error, kept for logs; never sent to the client. */
  cause?: unknown;
}

/** Base of every error Iris reports to a client. */
export class IrisError extends Error {
  readonly status: number;
  readonly type: OpenAIErrorType;
  readonly code: IrisErrorCode;
  readonly param: string | null;

  constructor(message: string, options: IrisErrorOptions) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'IrisError';
    this.status = options.status;
    this.type = options.type;
    this.code = options.code;
    this.param = options.param ?? null;
  }

  /** The OpenAI wire body for this error. */
  toBody(): OpenAIErrorBody {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }
}

/** The OpenAI error body: `{"error":{"message","type","param","code"}}`. */
export interface OpenAIErrorBody {
  error: { message: string; type: string; param: string | null; code: string | null };
}

/** A 400 about a field of the request. */
export function invalidRequest(
  message: string,
  param: string | null = null,
  code: IrisErrorCode = 'invalid_value',
  cause?: unknown,
): IrisError {
  return new IrisError(message, {
    status: 400,
    type: 'invalid_request_error',
    code,
    param,
    ...(cause === undefined ? {} : { cause }),
  });
}

/** A 404 for a model id nobody serves. */
export function modelNotFound(model: string): IrisError {
  return new IrisError(`The model '${model}' does not exist or you do not have access to it.`, {
    status: 404,
    type: 'invalid_request_error',
    code: 'model_not_found',
    param: 'model',
  });
}

/** A 401 for a missing or wrong API key. */
export function invalidApiKey(message = 'Incorrect or missing API key. Send it as "Authorization: Bearer <key>".'): IrisError {
  return new IrisError(message, { status: 401, type: 'invalid_request_error', code: 'invalid_api_key' });
}

/** A 499: the client went away (or cancelled) before the answer was ready. Nobody reads it; logs do. */
export function requestCancelled(cause?: unknown, message = 'The request was cancelled by the client.'): IrisError {
  return new IrisError(message, {
    status: 499,
    type: 'invalid_request_error',
    code: 'request_cancelled',
    ...(cause === undefined ? {} : { cause }),
  });
}

/** A 413 for a body or image over a configured limit. */
export function payloadTooLarge(message: string, param: string | null = null, code: IrisErrorCode = 'payload_too_large'): IrisError {
  return new IrisError(message, { status: 413, type: 'invalid_request_error', code, param });
}

/** A 503: the engine is not able to take the request right now (restarting, loading, shut down). */
export function engineUnavailable(message: string, code: IrisErrorCode = 'model_unavailable', cause?: unknown): IrisError {
  return new IrisError(message, {
    status: 503,
    type: 'service_unavailable_error',
    code,
    ...(cause === undefined ? {} : { cause }),
  });
}

/** A 502-class failure of the engine while it was working on a request. */
export function engineFailed(message: string, code: IrisErrorCode = 'engine_error', cause?: unknown): IrisError {
  return new IrisError(message, {
    status: 502,
    type: 'server_error',
    code,
    ...(cause === undefined ? {} : { cause }),
  });
}

/** Wraps anything that is not an IrisError as an opaque 500; the cause is logged, never sent. */
export function toIrisError(error: unknown): IrisError {
  if (error instanceof IrisError) return error;
  return new IrisError('The server had an error while processing your request.', {
    status: 500,
    type: 'server_error',
    code: 'internal_error',
    cause: error,
  });
}
