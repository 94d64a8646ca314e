/**
 * GET /metrics: the Prometheus exposition of Iris's metrics and of each running llama-server's own (read from
 * the child now, with a `model` label added). It needs one of the operator's keys (`--api-key`); with
 * `--metrics-port` the same text is also served without a key on that port (see metrics-server.ts).
 */
import type { FastifyInstance } from 'fastify';
import type { IrisMetrics } from '../../metrics/iris-metrics.js';
import type { ModelRegistry } from '../../models/model-registry.js';
import { createAuthCheck } from '../auth.js';

/** How long one child's metrics may take before the scrape goes on without them. */
const CHILD_SCRAPE_TIMEOUT_MS = 2000;

/** What the metrics need. */
export interface MetricsDeps {
  metrics: IrisMetrics;
  registry: ModelRegistry;
}

/** The whole exposition text: Iris's metrics and every loaded engine's own. */
export async function metricsText(deps: MetricsDeps): Promise<string> {
  const signal = AbortSignal.timeout(CHILD_SCRAPE_TIMEOUT_MS);
  const children = await Promise.all(
    deps.registry.loadedEngines().map(async ({ id, engine }) => ({ model: id, text: (await engine.scrapeMetrics?.(signal)) ?? '' })),
  );
  return deps.metrics.render(children.filter((child) => child.text !== ''));
}

/** Registers GET /metrics, readable with an operator key (`--api-key`), not with other keys. */
export function registerMetrics(app: FastifyInstance, deps: MetricsDeps & { adminKeys: readonly string[] }): void {
  const checkAdmin = createAuthCheck({ configKeys: deps.adminKeys });
  app.get('/metrics', async (request, reply) => {
    checkAdmin(request);
    return reply.type(deps.metrics.contentType).send(await metricsText(deps));
  });
}
