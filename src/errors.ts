/**
 * The one error tree of Iris.
 *
 * - {@link IrisError}: every failure a client can see. It carries the HTTP status, the OpenAI error `type`,
 *   a stable machine-readable `code`, and the request field it is about (`param`); the HTTP layer renders
 *   it in one place as `{"error":{"message","type","param","code"}}`. Each kind is built by a named
 *   constructor below (`modelNotFound(id)`, `invalidRequest(message, param)`, `tooManyRequests(message)`,
 *   ...); no other module picks a status, type or code by hand.
 * - {@link OperatorError}: a mistake by whoever runs Iris (command line, environment, config file). The CLI
 *   prints its message as one line and exits with status 2. {@link ConfigError} and {@link CliUsageError}
 *   are its kinds here; `images/media-host-rules.ts` adds `MediaHostRuleError`.
 *
 * To add a client-visible error: add its code to {@link IrisErrorCode} (never rename one) and a named
 * constructor here that fixes status, type and code, with JSDoc saying when it is used; call it where the
 * error happens. Code that calls out (fetch, sharp, child processes) wraps what it catches in one of these,
 * keeping the original error as `cause`.
 */

import { echo } from './echo.js';

/** OpenAI error `type` values used by Iris. */
export type OpenAIErrorType =
  | 'invalid_request_error'
  | 'authentication_error'
  | 'not_found_error'
  | 'rate_limit_error'
  | 'requests'
  | 'tokens'
  | 'server_error'
  | 'service_unavailable_error';

/** Every stable error code Iris emits. Clients may switch on these; never rename one. */
export type IrisErrorCode =
  | 'invalid_json'
  | 'invalid_request'
  | 'invalid_value'
  | 'missing_required_parameter'
  | 'unsupported_parameter'
  | 'unknown_parameter'
  | 'payload_too_large'
  | 'invalid_api_key'
  | 'insufficient_permissions'
  | 'model_not_found'
  | 'model_not_supported'
  | 'not_found'
  | 'invalid_image'
  | 'invalid_image_url'
  | 'image_fetch_failed'
  | 'image_too_large'
  | 'too_many_images'
  | 'array_above_max_length'
  | 'string_above_max_length'
  | 'context_length_exceeded'
  | 'server_overloaded'
  | 'rate_limit_exceeded'
  | 'model_unavailable'
  | 'engine_error'
  | 'engine_crashed'
  | 'engine_timeout'
  | 'request_cancelled'
  | 'shutting_down'
  | 'request_timeout'
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
  /** For 429 and 503: seconds after which a retry may succeed, sent as `Retry-After`. */
  retryAfterSeconds?: number | undefined;
}

/** Base of every error Iris reports to a client. */
export class IrisError extends Error {
  readonly status: number;
  readonly type: OpenAIErrorType;
  readonly code: IrisErrorCode;
  readonly param: string | null;
  /** Seconds after which a retry may succeed (429/503), sent as `Retry-After`; undefined when unknown. */
  readonly retryAfterSeconds: number | undefined;

  constructor(message: string, options: IrisErrorOptions) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'IrisError';
    this.status = options.status;
    this.type = options.type;
    this.code = options.code;
    this.param = options.param ?? null;
    this.retryAfterSeconds = options.retryAfterSeconds === undefined ? undefined : Math.max(1, Math.ceil(options.retryAfterSeconds));
  }

  /**
   * The same kind of error (status, type, code) with another message, param or cause: one image fetched
   * for two parts is reported at each part's field; an internal error gains the request id.
   */
  with(changes: { message?: string; param?: string | null; cause?: unknown }): IrisError {
    const cause = 'cause' in changes ? changes.cause : this.cause;
    return new IrisError(changes.message ?? this.message, {
      status: this.status,
      type: this.type,
      code: this.code,
      param: changes.param === undefined ? this.param : changes.param,
      ...(cause === undefined ? {} : { cause }),
      retryAfterSeconds: this.retryAfterSeconds,
    });
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

/**
 * A 400 `unknown_parameter`: the request has a field its API does not define (a typo such as `max_token`, or
 * another server's extension), which Iris refuses rather than ignore. `param` is the field. The message is
 * OpenAI's (`Unrecognized request argument supplied: <name>`), or Anthropic's (`<name>: Extra inputs are not
 * permitted`) for the Messages API. The name is echoed in both (a JSON key can be any string).
 */
export function unknownParameter(name: string, wording: 'openai' | 'anthropic' = 'openai'): IrisError {
  const field = echo(name);
  const message = wording === 'anthropic' ? `${field}: Extra inputs are not permitted` : `Unrecognized request argument supplied: ${field}`;
  return invalidRequest(message, field, 'unknown_parameter');
}

/**
 * A 404 `model_not_found` about `param: model`: a model id nobody serves, or (with `message`) a model the
 * hub or the cache does not have, saying why.
 */
export function modelNotFound(model: string, message = `The model '${echo(model)}' does not exist or you do not have access to it.`): IrisError {
  return new IrisError(message, { status: 404, type: 'invalid_request_error', code: 'model_not_found', param: 'model' });
}

/**
 * A 404 `model_not_found` for a model id this server does not serve: the message names the ids it serves
 * and `hint` (what else a request may name, e.g. catalog ids pulled on demand), so a client sees what to send.
 */
export function modelNotServed(model: string, served: readonly string[], hint = ''): IrisError {
  const serving = served.length > 0 ? ` This server serves: ${served.join(', ')}.` : '';
  return modelNotFound(model, `The model '${echo(model)}' does not exist or you do not have access to it.${serving}${hint ? ` ${hint}` : ''}`);
}

/** A 409 `model_unavailable`: the model's files are busy (a download is writing them). */
export function modelBusy(message: string): IrisError {
  return new IrisError(message, { status: 409, type: 'invalid_request_error', code: 'model_unavailable', param: 'model' });
}

/** A 404 `not_found` for a path no route serves. */
export function unknownEndpoint(method: string, path: string): IrisError {
  return new IrisError(`Unknown endpoint: ${method} ${path}`, { status: 404, type: 'invalid_request_error', code: 'not_found' });
}

/** A 404 `not_found` for a stored object (a response) that does not exist or belongs to another API key. */
export function objectNotFound(message: string, param: string | null = null): IrisError {
  return new IrisError(message, { status: 404, type: 'invalid_request_error', code: 'not_found', param });
}

/** A 401 `authentication_error` for a missing or wrong API key. */
export function invalidApiKey(message = 'Incorrect or missing API key. Send it as "Authorization: Bearer <key>".'): IrisError {
  return new IrisError(message, { status: 401, type: 'authentication_error', code: 'invalid_api_key' });
}

/**
 * A 429 `rate_limit_error` (`server_overloaded` unless told): too many requests wait already; retry after
 * `retryAfterSeconds` (sent as `Retry-After`).
 */
export function tooManyRequests(message: string, code: IrisErrorCode = 'server_overloaded', retryAfterSeconds?: number): IrisError {
  return new IrisError(message, { status: 429, type: 'rate_limit_error', code, retryAfterSeconds });
}

/** A 403: the key is valid but may not do this. */
export function permissionDenied(message: string, param: string | null = null): IrisError {
  return new IrisError(message, { status: 403, type: 'invalid_request_error', code: 'insufficient_permissions', param });
}

/**
 * A 429 for a key past one of its limits. The type is what OpenAI sends: `tokens` for a token limit,
 * `requests` for the others.
 */
export function rateLimitExceeded(message: string, limit: 'requests' | 'tokens' | 'concurrency'): IrisError {
  return new IrisError(message, { status: 429, type: limit === 'tokens' ? 'tokens' : 'requests', code: 'rate_limit_exceeded' });
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
export function engineUnavailable(
  message: string,
  code: IrisErrorCode = 'model_unavailable',
  cause?: unknown,
  retryAfterSeconds?: number,
): IrisError {
  return new IrisError(message, {
    status: 503,
    type: 'service_unavailable_error',
    code,
    ...(cause === undefined ? {} : { cause }),
    retryAfterSeconds,
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

/** Status, type and code of a model that cannot be served, for error classes that carry more fields (GgufFormatError). */
export const MODEL_UNAVAILABLE = Object.freeze({
  status: 503,
  type: 'service_unavailable_error',
  code: 'model_unavailable',
} as const satisfies Omit<IrisErrorOptions, 'param' | 'cause'>);

/** A 503 `hub_unreachable`: the Hugging Face hub (or HF_ENDPOINT's mirror) cannot be reached at all. */
export function hubUnreachableError(message: string, cause?: unknown): IrisError {
  return new IrisError(message, {
    status: 503,
    type: 'service_unavailable_error',
    code: 'hub_unreachable',
    ...(cause === undefined ? {} : { cause }),
  });
}

/** A 502 `download_failed`: the hub refused or broke off a download. */
export function downloadFailed(message: string, cause?: unknown): IrisError {
  return new IrisError(message, { status: 502, type: 'server_error', code: 'download_failed', ...(cause === undefined ? {} : { cause }) });
}

/** A 502 `checksum_mismatch`: a downloaded file is not the one the hub lists. */
export function checksumMismatch(message: string): IrisError {
  return new IrisError(message, { status: 502, type: 'server_error', code: 'checksum_mismatch' });
}

/** A 500 `build_failed`: llama-server could not be built from the pinned source. */
export function buildFailed(message: string, cause?: unknown): IrisError {
  return new IrisError(`Building llama-server failed: ${message}`, {
    status: 500,
    type: 'server_error',
    code: 'build_failed',
    ...(cause === undefined ? {} : { cause }),
  });
}

/** A 503 + Retry-After: the server cannot take this request now (too much in flight); retrying soon may work. */
export function serverBusy(message: string): IrisError {
  return new IrisError(message, { status: 503, type: 'service_unavailable_error', code: 'server_overloaded' });
}

/** A 408: the client did not send its request (headers or body) in time. */
export function requestTimedOut(message = 'The request was not received in time.'): IrisError {
  return new IrisError(message, { status: 408, type: 'invalid_request_error', code: 'request_timeout' });
}

/** A 431: the request headers are larger than the server accepts (Node's HTTP parser refused them). */
export function headersTooLarge(): IrisError {
  return new IrisError('The request headers are larger than this server accepts.', { status: 431, type: 'invalid_request_error', code: 'invalid_request' });
}

/** A 400 for text that is not valid UTF-16 (a lone surrogate, e.g. `"\ud800"`), naming the field. */
export function illFormedText(param: string): IrisError {
  return invalidRequest(
    `Invalid value for '${echo(param)}': the text holds a lone UTF-16 surrogate (an unpaired \\uD800-\\uDFFF escape), which is not valid Unicode.`,
    param,
    'invalid_value',
  );
}

/** A 504: the engine did not answer (or went silent) within its deadline. */
export function engineTimedOut(message: string, cause?: unknown): IrisError {
  return new IrisError(message, {
    status: 504,
    type: 'server_error',
    code: 'engine_timeout',
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

/**
 * A mistake by whoever runs Iris (a flag, an environment variable, the config file, the machine's set-up),
 * found at startup or by a CLI command. The CLI prints the message as one line, without a stack trace, and
 * exits with status 2. Never sent to an API client.
 */
export class OperatorError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** Invalid configuration; the message names the flag, the env var or the config file key. */
export class ConfigError extends OperatorError {}

/** A mistake in the command line (unknown command, missing argument, unsafe combination of options). */
export class CliUsageError extends OperatorError {}
