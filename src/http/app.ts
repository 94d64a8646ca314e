/**
 * Builds the Fastify app: body parsing, auth on the API routes, the routes, and the one error handler.
 * The app owns no resources of its own; main.ts creates the parts it is given and disposes of them.
 */
import { randomUUID } from 'node:crypto';
import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import type { IrisConfig } from '../config/config.js';
import type { ImagePipeline } from '../images/image-pipeline.js';
import type { Logger } from '../logger.js';
import type { ModelRegistry } from '../models/model-registry.js';
import { createAuthCheck } from './auth.js';
import { installErrorHandler } from './error-handler.js';
import { registerChatCompletions } from './routes/chat-completions.js';
import { registerHealth } from './routes/health.js';
import { registerModels } from './routes/models.js';
import { registerTokenize } from './routes/tokenize.js';
import { isPublicWebPath, registerWeb } from './routes/web.js';

/** What the app is built from. */
export interface AppDeps {
  config: IrisConfig;
  registry: ModelRegistry;
  images: ImagePipeline;
  logger: Logger;
  /** Models that must be loaded for /ready to say ready. */
  preload: readonly string[];
  /** Server version, for `system_fingerprint`. */
  version: string;
}

/** Paths that need no API key. */
const PUBLIC_PATHS = new Set(['/health', '/ready']);

/** Creates the HTTP app (not listening yet). */
export function createApp(deps: AppDeps): FastifyInstance {
  const app = Fastify({
    loggerInstance: deps.logger as FastifyBaseLogger,
    bodyLimit: deps.config.limits.maxBodyBytes,
    genReqId: () => `req_${randomUUID().replace(/-/g, '')}`,
    requestIdHeader: false,
    return503OnClosing: true,
    forceCloseConnections: 'idle',
  });

  // curl -d sends application/x-www-form-urlencoded by default; read any body as JSON, as the hosted API does.
  app.addContentTypeParser('*', { parseAs: 'string' }, (_request, body, done) => {
    app.getDefaultJsonParser('error', 'error')(_request, body as string, done);
  });

  const checkAuth = createAuthCheck(deps.config.apiKeys);
  app.addHook('onRequest', async (request, reply) => {
    void reply.header('x-request-id', request.id);
    const path = request.url.split('?')[0] ?? '';
    if (!PUBLIC_PATHS.has(path) && !isPublicWebPath(path)) checkAuth(request);
  });

  installErrorHandler(app);
  registerHealth(app, { registry: deps.registry, preload: deps.preload });
  registerModels(app, deps);
  registerChatCompletions(app, {
    ...deps,
    fingerprint: `iris-${deps.version}`,
    maxChoicesPerRequest: deps.config.limits.maxChoicesPerRequest,
  });
  registerTokenize(app, deps);
  registerWeb(app, deps);
  return app;
}
