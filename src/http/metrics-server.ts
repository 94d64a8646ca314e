/**
 * The `--metrics-port` listener: GET /metrics without authentication, for a Prometheus on a private
 * network, apart from the API port. Nothing else is served there.
 */
import Fastify, { type FastifyInstance } from 'fastify';
import { metricsText, type MetricsDeps } from './routes/metrics.js';

/** Starts the metrics listener on `host:port`; close the returned app to stop it. */
export async function startMetricsServer(host: string, port: number, deps: MetricsDeps): Promise<{ app: FastifyInstance; address: string }> {
  const app = Fastify({ logger: false, forceCloseConnections: true });
  app.get('/metrics', async (_request, reply) => reply.type(deps.metrics.contentType).send(await metricsText(deps)));
  app.setNotFoundHandler((_request, reply) => reply.status(404).type('text/plain').send('Only GET /metrics is served on this port.\n'));
  const address = await app.listen({ host, port });
  return { app, address };
}
