/**
 * The single place errors become HTTP responses, in the OpenAI shape
 * `{"error":{"message","type","param","code"}}`. IrisErrors are rendered as they are; Fastify's own
 * errors (bad JSON, body too large, wrong content type) are mapped to clear 4xx; anything else is a logged
 * 500 that carries the request id and never a stack trace.
 */
import type { FastifyError, FastifyInstance } from 'fastify';
import { IrisError, invalidRequest, payloadTooLarge, toIrisError, unknownEndpoint } from '../errors.js';

/** Maps an error thrown anywhere in a request to the IrisError the client sees. */
export function toClientError(error: unknown, requestId: string): IrisError {
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
  const internal = toIrisError(error);
  return internal.with({ message: `${internal.message} (request id ${requestId})`, cause: error });
}

/** Installs the error and not-found handlers. */
export function installErrorHandler(app: FastifyInstance): void {
  app.setErrorHandler((error, request, reply) => {
    const clientError = toClientError(error, request.id);
    if (clientError.status >= 500) request.log.error({ err: clientError.cause ?? error }, clientError.message);
    else request.log.info({ code: clientError.code, param: clientError.param }, clientError.message);
    // 499 (client closed) has nobody to read it; still answer something valid if the socket is open.
    void reply.status(clientError.status).type('application/json').send(clientError.toBody());
  });
  app.setNotFoundHandler((request, reply) => {
    const error = unknownEndpoint(request.method, request.url.split('?')[0] ?? request.url);
    void reply.status(404).send(error.toBody());
  });
}
