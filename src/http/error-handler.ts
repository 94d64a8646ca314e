/**
 * The single place errors become HTTP responses, in the OpenAI shape
 * `{"error":{"message","type","param","code"}}`. IrisErrors are rendered as they are; Fastify's own
 * errors (bad JSON, body too large, wrong content type) are mapped to clear 4xx; anything else is a logged
 * 500 that carries the request id and never a stack trace. Every 5xx message names the request id; every
 * 429 and 503 carries `Retry-After`.
 */
import type { Socket } from 'node:net';
import type { FastifyError, FastifyInstance } from 'fastify';
import { echo } from '../echo.js';
import { IrisError, headersTooLarge, invalidRequest, payloadTooLarge, requestTimedOut, toIrisError, unknownEndpoint } from '../errors.js';

/** Maps an error thrown anywhere in a request to the IrisError the client sees. */
export function toClientError(error: unknown): IrisError {
  if (error instanceof IrisError) return error;
  const fastifyError = error as Partial<FastifyError>;
  switch (fastifyError.code) {
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return invalidRequest(
        `The request body is not valid JSON: ${echo(fastifyError.message ?? '')}`.trim(),
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
    return invalidRequest(`The request body is not valid JSON: ${echo(error.message)}`, null, 'invalid_json');
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

/** What every error handler needs. */
export interface ErrorHandlerOptions {
  /** The wait a 429/503 that names none advises in `retry-after`, in seconds. */
  retryAfterSeconds: () => number;
}

/** How a dialect writes an error: its status and body. */
export type ErrorRenderer = (error: IrisError, requestId: string) => { status: number; body: unknown };

const renderOpenAI: ErrorRenderer = (error) => ({ status: error.status, body: error.toBody() });

/**
 * Sets the error handler of `app` (or of an encapsulated scope of it, for a dialect whose routes answer
 * errors in another shape): every error is mapped to an IrisError, logged, and written by `render`.
 */
export function setErrorRenderer(app: FastifyInstance, options: ErrorHandlerOptions, render: ErrorRenderer = renderOpenAI): void {
  app.setErrorHandler((error, request, reply) => {
    const clientError = withRequestId(toClientError(error), request.id);
    if (clientError.status >= 500) request.log.error({ err: clientError.cause ?? error }, clientError.message);
    else request.log.info({ code: clientError.code, param: clientError.param }, clientError.message);
    if (clientError.status === 429 || clientError.status === 503) {
      void reply.header('retry-after', String(clientError.retryAfterSeconds ?? options.retryAfterSeconds()));
    }
    const { status, body } = render(clientError, request.id);
    // 499 (client closed) has nobody to read it; still answer something valid if the socket is open.
    void reply.status(status).type('application/json').send(body);
  });
}

/** Installs the error and not-found handlers. */
export function installErrorHandler(app: FastifyInstance, options: ErrorHandlerOptions): void {
  setErrorRenderer(app, options);
  app.setNotFoundHandler((request, reply) => {
    const error = unknownEndpoint(echo(request.method), echo(request.url.split('?')[0] ?? request.url));
    void reply.status(404).send(error.toBody());
  });
}

const REASONS: Record<number, string> = { 400: 'Bad Request', 408: 'Request Timeout', 431: 'Request Header Fields Too Large' };

/**
 * Fastify's `clientErrorHandler`: errors Node's HTTP parser raises before a request reaches a route (headers
 * or body not received in time, malformed or oversized headers), answered in the API's error shape when a
 * response can still be written, and the connection closed.
 */
export function handleClientError(this: FastifyInstance, error: Error & { code?: string }, socket: Socket): void {
  if (error.code === 'ECONNRESET' || socket.destroyed) return;
  const response = (socket as Socket & { _httpMessage?: { headersSent?: boolean } })._httpMessage;
  if (socket.writable && !response?.headersSent) {
    const clientError =
      error.code === 'ERR_HTTP_REQUEST_TIMEOUT'
        ? requestTimedOut('The request (headers or body) was not received in time.')
        : error.code === 'HPE_HEADER_OVERFLOW'
          ? headersTooLarge()
          : invalidRequest('The request is not valid HTTP.', null, 'invalid_request');
    const body = JSON.stringify(clientError.toBody());
    socket.write(
      `HTTP/1.1 ${clientError.status} ${REASONS[clientError.status] ?? 'Error'}\r\nConnection: close\r\n` +
        `Content-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
    );
  }
  this.log.debug({ code: error.code }, 'client connection error');
  socket.destroy(error);
}
