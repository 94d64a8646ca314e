/**
 * The single place errors become HTTP responses, in the OpenAI shape
 * `{"error":{"message","type","param","code"}}`. IrisErrors are rendered as they are; Fastify's own
 * errors (bad JSON, body too large, wrong content type) are mapped to clear 4xx; anything else is a logged
 * 500 that carries the request id and never a stack trace. Every 5xx message names the request id; every
 * 429 and 503 carries `Retry-After`.
 */
import type { FastifyError, FastifyInstance } from 'fastify';
import { IrisError, invalidRequest, payloadTooLarge, toIrisError, unknownEndpoint } from '../errors.js';

/** Maps an error thrown anywhere in a request to the IrisError the client sees. */
export function toClientError(error: unknown): IrisError {
  if (error instanceof IrisError) return error;
  const fastifyError = error as Partial<FastifyError>;
  switch (fastifyError.code) {
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return invalidRequest(
        `The request body is not valid JSON: ${fastifyError.message ?? ''}`.trim(),
        null,
        'invalid_json',
      );
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return payloadTooLarge('The request body is larger than this server accepts.');
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
    case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
      return invalidRequest(fastifyError.message ?? 'Invalid request body.', null, 'invalid_request');
    default:
      break;
  }
  if (error instanceof SyntaxError) {
    return invalidRequest(`The request body is not valid JSON: ${error.message}`, null, 'invalid_json');
  }
  const status = fastifyError.statusCode;
  if (typeof status === 'number' && status >= 400 && status < 500) {
    return invalidRequest(fastifyError.message ?? 'Invalid request.', null, 'invalid_request');
  }
  return toIrisError(error);
}

/** A 5xx's message with the request id in it, so a user's report can be matched with the logs. */
export function withRequestId(error: IrisError, requestId: string): IrisError {
  if (error.status < 500 || error.message.includes(requestId)) return error;
  return error.with({ message: `${error.message} (request id ${requestId})` });
}

/** Installs the error and not-found handlers; `retryAfterSeconds` is the wait for a 429/503 that names none. */
export function installErrorHandler(app: FastifyInstance, options: { retryAfterSeconds: () => number }): void {
  app.setErrorHandler((error, request, reply) => {
    const clientError = withRequestId(toClientError(error), request.id);
    if (clientError.status >= 500) request.log.error({ err: clientError.cause ?? error }, clientError.message);
    else request.log.info({ code: clientError.code, param: clientError.param }, clientError.message);
    if (clientError.status === 429 || clientError.status === 503) {
      void reply.header('retry-after', String(clientError.retryAfterSeconds ?? options.retryAfterSeconds()));
    }
    // 499 (client closed) has nobody to read it; still answer something valid if the socket is open.
    void reply.status(clientError.status).type('application/json').send(clientError.toBody());
  });
  app.setNotFoundHandler((request, reply) => {
    const error = unknownEndpoint(request.method, request.url.split('?')[0] ?? request.url);
    void reply.status(404).send(error.toBody());
  });
}
