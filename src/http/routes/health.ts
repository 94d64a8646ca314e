/**
 * GET /health: the process is up. GET /ready: the preloaded models can serve requests now or after a load
 * (503 with the ones that cannot, otherwise), for load balancers and orchestrators: ready once each has
 * loaded, and still ready when one was unloaded on keep_alive; not ready while a first load is running, a
 * runner restarts, or the latest load failed. Models loaded on demand do not hold readiness back. Once a
 * shutdown has begun, /ready answers 503 `draining`.
 */
import type { FastifyInstance } from 'fastify';
import type { ModelRegistry } from '../../models/model-registry.js';

/** Registers the health routes (unauthenticated). */
export function registerHealth(
  app: FastifyInstance,
  deps: { registry: ModelRegistry; preload: readonly string[]; draining: () => boolean },
): void {
  app.get('/health', async () => ({ status: 'ok' }));
  app.get('/ready', async (_request, reply) => {
    const models = deps.preload.map((id) => ({ id, ready: deps.registry.isServable(id) }));
    if (deps.draining()) return reply.status(503).send({ status: 'draining', models });
    const ready = models.every((model) => model.ready);
    return reply.status(ready ? 200 : 503).send({ status: ready ? 'ready' : 'starting', models });
  });
}
