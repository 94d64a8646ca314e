/**
 * GET /health: the process is up. GET /ready: every model can take requests now (503 otherwise, with
 * which ones are not ready), for load balancers and orchestrators.
 */
import type { FastifyInstance } from 'fastify';
import type { ModelRegistry } from '../../models/model-registry.js';

/** Registers the health routes (unauthenticated). */
export function registerHealth(app: FastifyInstance, deps: { registry: ModelRegistry }): void {
  app.get('/health', async () => ({ status: 'ok' }));
  app.get('/ready', async (_request, reply) => {
    const models = deps.registry.list().map((entry) => ({ id: entry.id, ready: entry.engine.isReady() }));
    const ready = models.every((model) => model.ready);
    return reply.status(ready ? 200 : 503).send({ status: ready ? 'ready' : 'starting', models });
  });
}
