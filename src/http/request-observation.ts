/**
 * What Iris records about each request: its id (a caller's `x-request-id` when it is printable and at most
 * 128 characters, else a new one), the model and token counts the routes fill in, time to first token, and,
 * when the response is over, one access-log line and the request's metrics. The line carries the key's name
 * but never the key, no image bytes and no prompt text.
 */
import { randomUUID } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { StreamPart } from '../engines/engine.js';
import { UNKNOWN_MODEL, statusClass, type EndpointName, type IrisMetrics } from '../metrics/iris-metrics.js';
import { callerOf } from './auth.js';
import type { Drain } from './drain.js';

/** What the routes learn about a request, read when its response is over. */
export interface RequestObservation {
  /** `performance.now()` at arrival. */
  readonly startedAt: number;
  /** The registered model id, once known (never a raw client string). */
  model?: string;
  promptTokens?: number;
  completionTokens?: number;
  /** Prompt tokens of the images, when the projector is modelled. */
  imageTokens?: number;
  /** Where each image came from. */
  imageSources?: ('data' | 'url')[];
  /** Seconds the request waited for a slot. */
  queueWaitSeconds?: number;
  /** `performance.now()` at the first and the last generated text. */
  firstTokenAt?: number;
  lastTokenAt?: number;
  /** The error code a stream ended with after its headers went out. */
  streamError?: string;
}

declare module 'fastify' {
  interface FastifyRequest {
    /** What is known about this request so far (see request-observation.ts). */
    observation: RequestObservation;
  }
}

/** Most characters of a caller's request id that is used as it is. */
const MAX_REQUEST_ID_LENGTH = 128;

/** The request id: the caller's `x-request-id` if it is printable ASCII of at most 128 characters, else a new one. */
export function requestIdOf(raw: FastifyRequest['raw']): string {
  const header = raw.headers['x-request-id'];
  const value = typeof header === 'string' ? header.trim() : undefined;
  if (value !== undefined && value.length > 0 && value.length <= MAX_REQUEST_ID_LENGTH && /^[\x20-\x7e]+$/.test(value)) return value;
  return `req_${randomUUID().replace(/-/g, '')}`;
}

/** The fixed endpoint name of a route (bounded label values; never the raw path). */
export function endpointOf(routeUrl: string | undefined): EndpointName {
  if (routeUrl === undefined) return 'other';
  if (routeUrl.endsWith('/chat/completions')) return 'chat_completions';
  // The dialects generate through the same pipeline; their token counts are tokenize's kind.
  if (routeUrl.endsWith('/tokenize') || routeUrl.endsWith('/messages/count_tokens')) return 'tokenize';
  if (routeUrl.endsWith('/messages')) return 'messages';
  if (/\/responses(\/:id)?$/.test(routeUrl)) return 'responses';
  if (/\/models(\/\*)?$/.test(routeUrl)) return 'models';
  if (routeUrl === '/metrics') return 'metrics';
  if (routeUrl === '/health' || routeUrl === '/ready') return 'health';
  return 'other';
}

/**
 * Installs the hook that starts each request's observation, counts it in flight for the drain, and, when
 * its response is over, writes its access-log line and metrics.
 */
export function observeRequests(app: FastifyInstance, deps: { metrics: IrisMetrics; drain: Drain }): void {
  app.decorateRequest('observation', null as unknown as RequestObservation);
  app.addHook('onRequest', async (request, reply) => {
    request.observation = { startedAt: performance.now() };
    const endpoint = endpointOf(request.routeOptions.url);
    const done = endpoint === 'health' || endpoint === 'metrics' ? undefined : deps.drain.track();
    reply.raw.once('close', () => {
      done?.();
      finish(request, reply, endpoint, deps.metrics);
    });
  });
}

/** Endpoints that generate (the chat pipeline's), whose requests feed the generation metrics. */
const GENERATING: ReadonlySet<EndpointName> = new Set(['chat_completions', 'responses', 'messages']);

function finish(request: FastifyRequest, reply: FastifyReply, endpoint: EndpointName, metrics: IrisMetrics): void {
  const observation = request.observation;
  const now = performance.now();
  const seconds = (now - observation.startedAt) / 1000;
  // A response that never finished: the client went away first.
  const status = reply.raw.writableFinished ? reply.raw.statusCode : 499;
  const model = observation.model ?? UNKNOWN_MODEL;
  metrics.requests.inc({ model, endpoint, status: statusClass(status) });
  metrics.requestDuration.observe({ model, endpoint }, seconds);
  const ttft = observation.firstTokenAt === undefined ? undefined : (observation.firstTokenAt - observation.startedAt) / 1000;
  if (GENERATING.has(endpoint) && observation.model !== undefined) {
    const labels = { model };
    if (observation.queueWaitSeconds !== undefined) metrics.queueWait.observe(labels, observation.queueWaitSeconds);
    if (ttft !== undefined) metrics.timeToFirstToken.observe(labels, ttft);
    const completion = observation.completionTokens ?? 0;
    if (completion > 1 && observation.firstTokenAt !== undefined && observation.lastTokenAt !== undefined) {
      metrics.timePerOutputToken.observe(labels, (observation.lastTokenAt - observation.firstTokenAt) / 1000 / (completion - 1));
    }
    if (observation.promptTokens !== undefined) metrics.promptTokens.inc(labels, observation.promptTokens);
    if (observation.completionTokens !== undefined) metrics.completionTokens.inc(labels, observation.completionTokens);
    if (observation.imageTokens !== undefined) metrics.imageTokens.inc(labels, observation.imageTokens);
    for (const source of observation.imageSources ?? []) metrics.images.inc({ model, source });
  }
  const keyName = callerOf(request).keyName;
  const line = {
    method: request.method,
    endpoint,
    // The key's name (`config` for a configured key), never the key itself.
    ...(keyName === null ? {} : { key: keyName }),
    ...(observation.model === undefined ? {} : { model: observation.model }),
    status,
    ...(observation.streamError === undefined ? {} : { streamError: observation.streamError }),
    ...(observation.promptTokens === undefined ? {} : { promptTokens: observation.promptTokens }),
    ...(observation.imageTokens === undefined ? {} : { imageTokens: observation.imageTokens }),
    ...(observation.completionTokens === undefined ? {} : { completionTokens: observation.completionTokens }),
    ...(observation.imageSources === undefined ? {} : { images: observation.imageSources.length }),
    ...(ttft === undefined ? {} : { ttftMs: Math.round(ttft * 1000) }),
    durationMs: Math.round(seconds * 1000),
  };
  // Probes and scrapes come every few seconds: their lines are there at debug level.
  if (endpoint === 'health' || endpoint === 'metrics') request.log.debug(line, 'request completed');
  else request.log.info(line, 'request completed');
}

/**
 * Notes what one stream part says: when generation starts and stops, and the usage. The first token is the
 * first generated part of any kind: an answer whose only token ends it (an end-of-generation token, or bytes
 * the engine holds back as incomplete UTF-8) still has a time to first token.
 */
export function observePart(part: StreamPart, observation: RequestObservation): void {
  if (part.type === 'text-delta' || part.type === 'tool-call-delta' || part.type === 'logprobs') {
    const now = performance.now();
    observation.firstTokenAt ??= now;
    observation.lastTokenAt = now;
  } else if (part.type === 'finish') {
    observation.firstTokenAt ??= performance.now();
  } else if (part.type === 'usage') {
    observation.promptTokens = part.usage.promptTokens;
    observation.completionTokens = part.usage.completionTokens;
  }
}
