/**
 * Builds the Fastify app: body parsing, auth on the API routes, the routes, and the one error handler.
 * The app owns no resources of its own; main.ts creates the parts it is given and disposes of them.
 */
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance, type FastifyRequest } from 'fastify';
import type { IrisConfig } from '../config/config.js';
import type { ImagePipeline } from '../images/image-pipeline.js';
import type { Logger } from '../logger.js';
import type { IrisMetrics } from '../metrics/iris-metrics.js';
import type { ModelRegistry } from '../models/model-registry.js';
import type { KeyDirectory } from '../store/api-keys.js';
import type { RateLimiter } from '../store/rate-limiter.js';
import type { ResponseRecordStore } from '../store/response-records.js';
import type { UsageRecorder, UsageStore } from '../store/usage-records.js';
import { createAuthCheck } from './auth.js';
import type { Drain } from './drain.js';
import { createBodyBudget } from './body-budget.js';
import { guardConnections } from './connection-guard.js';
import { handleClientError, installErrorHandler } from './error-handler.js';
import { observeRequests, requestIdOf } from './request-observation.js';
import { liftDataUris } from './json-body.js';
import { findIllFormedText } from '../protocol/well-formed-text.js';
import { RequestAccounting } from './request-accounting.js';
import { registerAnthropicMessages } from './routes/anthropic-messages.js';
import { registerChatCompletions } from './routes/chat-completions.js';
import { registerHealth } from './routes/health.js';
import { registerMetrics } from './routes/metrics.js';
import { registerModels } from './routes/models.js';
import { registerResponses } from './routes/responses.js';
import { registerTokenize } from './routes/tokenize.js';
import { isPublicWebPath, registerWeb } from './routes/web.js';
import { registerUsage } from './routes/usage.js';

/** What the app is built from. */
export interface AppDeps {
  config: IrisConfig;
  registry: ModelRegistry;
  images: ImagePipeline;
  /** Stored Responses API responses (in the database). */
  responses: ResponseRecordStore;
  logger: Logger;
  /** Models that must be loaded for /ready to say ready. */
  preload: readonly string[];
  /** Server version, for `system_fingerprint`. */
  version: string;
  metrics: IrisMetrics;
  /** Shutdown state: refuses new requests and ends late ones once a drain has begun. */
  drain: Drain;
  /** The database's parts: keys, per-key limits, usage records. */
  accounts: AppAccounts;
}

/** Keys, limits and usage, from the store. */
export interface AppAccounts {
  directory: KeyDirectory;
  limiter: RateLimiter;
  recorder: UsageRecorder;
  usage: UsageStore;
}

/** Paths that need no API key. */
const PUBLIC_PATHS = new Set(['/health', '/ready']);
/** Paths that check keys themselves (only the operator's keys read metrics). */
const OWN_AUTH_PATHS = new Set(['/metrics']);

/** Creates the HTTP app (not listening yet). */
export function createApp(deps: AppDeps): FastifyInstance {
  const limits = deps.config.limits;
  const app = Fastify({
    loggerInstance: deps.logger as FastifyBaseLogger,
    bodyLimit: deps.config.limits.maxBodyBytes,
    genReqId: requestIdOf,
    requestIdHeader: false,
    // request-observation.ts writes one access line per request instead of Fastify's two.
    logController: new LogController({ disableRequestLogging: true }),
    // While closing, the drain hook answers 503 with Retry-After in the API's own error shape.
    return503OnClosing: false,
    forceCloseConnections: 'idle',
    keepAliveTimeout: limits.keepAliveTimeoutMs,
    requestTimeout: limits.bodyTimeoutMs,
    // Deadlines are checked this often; the default (30 s) would let slow clients stay far past them.
    http: { headersTimeout: limits.headersTimeoutMs, connectionsCheckingInterval: Math.min(1000, limits.headersTimeoutMs) },
    clientErrorHandler: handleClientError,
  });
  guardConnections(app.server, limits.maxConnections);

  // Every body is read as JSON (curl -d sends application/x-www-form-urlencoded by default; the hosted API
  // reads it as JSON too), with large image data URIs kept out of the parser (json-body.ts).
  const parseJson = app.getDefaultJsonParser('error', 'error');
  const jsonBody = (request: FastifyRequest, body: Buffer, done: (error: Error | null, value?: unknown) => void): void => {
    const lifted = liftDataUris(body);
    parseJson(request, lifted.text, (error, value) => (error ? done(error, undefined) : done(null, lifted.restore(value))));
  };
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'buffer' }, jsonBody);
  app.addContentTypeParser('*', { parseAs: 'buffer' }, jsonBody);
  // Valid JSON may still hold text that is not valid Unicode (lone surrogates): refused here, by field, for
  // every route, before any of them reads the body.
  app.addHook('preValidation', async (request) => {
    const illFormed = findIllFormedText(request.body);
    if (illFormed) throw illFormed;
  });

  const { accounts } = deps;
  const checkAuth = createAuthCheck({ configKeys: deps.config.apiKeys, directory: accounts.directory });
  const accounting = new RequestAccounting({ limiter: accounts.limiter, recorder: accounts.recorder, logger: deps.logger });
  observeRequests(app, deps);
  const bodyBudget = createBodyBudget({ maxBytesInFlight: limits.maxBodyBytesInFlight, maxBodyBytes: limits.maxBodyBytes });
  app.addHook('onRequest', async (request, reply) => {
    void reply.header('x-request-id', request.id);
    const path = request.url.split('?')[0] ?? '';
    const isPublic = PUBLIC_PATHS.has(path) || isPublicWebPath(path);
    if (deps.drain.draining && !isPublic && !OWN_AUTH_PATHS.has(path)) {
      void reply.header('connection', 'close');
      throw deps.drain.refusal();
    }
    if (!isPublic && !OWN_AUTH_PATHS.has(path)) {
      checkAuth(request);
      await accounting.attachHeaders(request, reply);
    }
    bodyBudget.reserve(request, reply);
  });
  // An answer given before the body was read (401, 413, 503) closes the connection: keeping it would mean
  // reading, or waiting for, a body nobody wants.
  app.addHook('onSend', async (request, reply) => {
    if (!request.raw.complete) void reply.header('connection', 'close');
  });

  const errors = { retryAfterSeconds: () => (deps.drain.draining ? deps.drain.retryAfterSeconds() : 1) };
  installErrorHandler(app, errors);
  registerHealth(app, { registry: deps.registry, preload: deps.preload, draining: () => deps.drain.draining });
  registerMetrics(app, { metrics: deps.metrics, registry: deps.registry, adminKeys: deps.config.apiKeys });
  registerModels(app, deps);
  registerChatCompletions(app, {
    ...deps,
    accounting,
    limits,
    fingerprint: `iris-${deps.version}`,
    maxChoicesPerRequest: deps.config.limits.maxChoicesPerRequest,
  });
  registerTokenize(app, { ...deps, accounting, limits });
  registerResponses(app, { ...deps, accounting, limits });
  registerAnthropicMessages(app, { ...deps, accounting, limits, errors });
  registerUsage(app, { usage: accounts.usage, flush: () => accounts.recorder.flush() });
  registerWeb(app, deps);
  return app;
}
