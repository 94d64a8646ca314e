/**
 * Bounds the request body bytes the server receives and holds at once. Each request reserves its
 * Content-Length (or, for a chunked body, the largest body it may send) before its body is read, and gives
 * it back when its response is over; a request that does not fit is refused with 503 + Retry-After without
 * reading its body, so many large uploads at once cannot run the process out of memory.
 */
import type { FastifyReply, FastifyRequest } from 'fastify';
import { serverBusy } from '../errors.js';

/** Seconds a client refused for lack of body budget is asked to wait. */
const RETRY_AFTER_SECONDS = 1;

/** Creates the hook that reserves body bytes for a request (an `onRequest` hook, after authentication). */
export function createBodyBudget(options: { maxBytesInFlight: number; maxBodyBytes: number }) {
  let inFlight = 0;
  return {
    /** Bytes reserved now. */
    get inFlight(): number {
      return inFlight;
    },
    /** Reserves the request's body bytes until its response closes; throws a 503 when they do not fit. */
    reserve(request: FastifyRequest, reply: FastifyReply): void {
      const bytes = bodyBytes(request, options.maxBodyBytes);
      if (bytes === 0) return;
      // A single body is always let through when nothing else is in flight, so a lone large upload works.
      if (inFlight > 0 && inFlight + bytes > options.maxBytesInFlight) {
        void reply.header('retry-after', String(RETRY_AFTER_SECONDS));
        throw serverBusy('The server is receiving too many request bodies at once. Retry shortly.');
      }
      inFlight += bytes;
      reply.raw.once('close', () => {
        inFlight -= bytes;
      });
    },
  };
}

/** The bytes a request's body may take: its Content-Length, or the body limit for a chunked body. */
function bodyBytes(request: FastifyRequest, maxBodyBytes: number): number {
  const length = request.headers['content-length'];
  if (length !== undefined) {
    const value = Number(length);
    // An invalid or oversized length is refused by the body parser (400/413) before anything is read.
    return Number.isSafeInteger(value) && value >= 0 ? Math.min(value, maxBodyBytes) : 0;
  }
  return request.headers['transfer-encoding'] === undefined ? 0 : maxBodyBytes;
}
