/**
 * `iris serve`: load config, make sure a llama-server binary and the model files exist, start one
 * supervised engine per model, and serve the HTTP API until SIGTERM/SIGINT. The first signal drains (see
 * http/drain.ts: /ready 503, new requests 503, requests in flight finish within --shutdown-grace), then
 * disposes in reverse order and exits 0; a second signal exits at once.
 */
import { parseArgs } from 'node:util';
import { serveFlagOptions, serveHelpText } from '../config/command-line.js';
import { loadConfig } from '../config/load-config.js';
import { flagKey } from '../config/settings.js';
import type { IrisConfig, ModelConfig } from '../config/config.js';
import { isLoopbackHost } from '../http/auth.js';
import { createApp } from '../http/app.js';
import { Drain } from '../http/drain.js';
import { startMetricsServer } from '../http/metrics-server.js';
import { RemoteImageFetcher } from '../images/fetch-remote-image.js';
import { ImagePipeline } from '../images/image-pipeline.js';
import { MediaHostRuleError, MediaHostRules } from '../images/media-host-rules.js';
import { createLogger, type Logger } from '../logger.js';
import { IrisMetrics } from '../metrics/iris-metrics.js';
import { resolveDefaultModel } from '../models/default-model.js';
import { ModelRegistry } from '../models/model-registry.js';
import { ModelSources, type LlamaServerBinary } from '../models/model-sources.js';
import { locateLlamaServer } from './build.js';
import { CliUsageError, ConfigError } from '../errors.js';
import { KeyDirectory } from '../store/api-keys.js';
import { RateLimiter } from '../store/rate-limiter.js';
import { openStore } from '../store/store.js';
import { UsageRecorder } from '../store/usage-records.js';
import { IRIS_VERSION } from './cli-support.js';
import { checkBeforeStart, listenError } from './startup-checks.js';

/** Help text of `iris serve`, from the settings table. */
export const SERVE_USAGE = serveHelpText();

/** Runs `iris serve` until a signal stops it. */
export async function serveCommand(argv: string[], env: NodeJS.ProcessEnv): Promise<void> {
  const { values } = parseArgs({ args: argv, options: serveFlagOptions(), strict: true, allowPositionals: false });
  if (values['help']) {
    process.stdout.write(SERVE_USAGE);
    return;
  }
  const flags = Object.fromEntries(Object.entries(values).map(([flag, value]) => [flagKey(flag), value]));
  const config = loadConfig(flags, env);
  const logger = createLogger(config.logLevel);
  const configFile = typeof values['config'] === 'string' ? values['config'] : env['IRIS_CONFIG'] || undefined;
  await checkBeforeStart(config, { firstFromFlags: values['model'] !== undefined, configFile }, logger);
  await runServer(config, { logger, env });
}

/** Builds every part from a config, listens, and stops cleanly on SIGTERM/SIGINT. */
export async function runServer(config: IrisConfig, deps: { logger: Logger; env: NodeJS.ProcessEnv }): Promise<void> {
  const { logger } = deps;
  const rules = mediaHostRules(config);
  const store = await openStore({ databaseUrl: config.databaseUrl, dataDir: config.dataDir }, Date.now, {
    responses: { retentionMs: config.responses.retention, maxBytes: config.responses.maxBytes },
  });
  const directory = new KeyDirectory(store.keys, {
    refreshMs: 2000,
    onError: (error) => logger.warn({ err: error }, 'could not reload API keys from the database'),
  });
  await directory.refresh();
  if (config.apiKeys.length === 0 && directory.size === 0 && !isLoopbackHost(config.host) && !config.allowUnauthenticated) {
    await store.close();
    throw new CliUsageError(
      `Refusing to serve on ${config.host} without an API key. Pass --api-key KEY (or IRIS_API_KEYS), create one ` +
        'with iris keys create, listen on 127.0.0.1, or pass --allow-unauthenticated to serve openly.',
    );
  }
  const limiter = new RateLimiter(store.db);
  const recorder = new UsageRecorder(store.usage, {
    onError: (error) => logger.error({ err: error }, 'could not write usage records (kept, retrying)'),
  });
  logger.info({ database: store.description }, 'database ready');
  const models: readonly ModelConfig[] =
    config.models.length > 0 ? config.models : [await resolveDefaultModel(config, logger)];
  let binary: Promise<LlamaServerBinary> | undefined;
  const llamaServer = (): Promise<LlamaServerBinary> => (binary ??= locateLlamaServer(config, deps));

  const metrics = new IrisMetrics();
  const sources = new ModelSources(models, { config, logger, env: deps.env, llamaServer, userAgent: `Iris/${IRIS_VERSION}`, metrics });
  // Build (once per machine) before listening, so a first start shows its progress and fails early.
  if (sources.needsLlamaServer()) await llamaServer();
  const registry = new ModelRegistry(sources.definitions(), {
    logger,
    memoryBudgetBytes: config.memoryBudget,
    queue: { maxQueued: config.limits.maxQueuedPerModel, queueTimeoutMs: config.limits.queueTimeoutMs },
    prepare: sources.prepare,
    discover: sources.discover,
    unknownModelHint: sources.unknownModelHint(),
    forget: sources.forget,
  });
  metrics.readModelsFrom(() =>
    registry.list().map((status) => ({
      model: status.definition.id,
      loaded: status.state === 'loaded',
      memoryBytes: status.memoryBytes,
      running: status.running,
      waiting: status.waiting,
    })),
  );
  const preload = config.models.length > 0 ? config.preload : models.map((model) => model.id);
  const fetcher = new RemoteImageFetcher({
    rules,
    timeoutMs: config.limits.imageFetchTimeoutMs,
    maxRedirects: config.images.maxRedirects,
    userAgent: `Iris/${IRIS_VERSION}`,
  });
  const images = new ImagePipeline(
    {
      limits: config.limits,
      background: config.images.background,
      decodedCacheBytes: config.images.decodedCacheBytes,
      fetchCacheBytes: config.images.fetchCacheBytes,
      fetchCacheTtlMs: config.images.fetchCacheTtlMs,
    },
    { fetcher, metrics },
  );
  const drain = new Drain();
  const accounts = { directory, limiter, recorder, usage: store.usage };
  // Expired responses are deleted now and hourly (reads already treat them as gone).
  store.responses.startPruning({ onError: (error) => logger.warn({ err: error }, 'could not delete expired responses from the database') });
  const app = createApp({ config, registry, images, responses: store.responses, logger, preload, version: IRIS_VERSION, metrics, drain, accounts });
  let metricsServer: Awaited<ReturnType<typeof startMetricsServer>> | undefined;

  let stopping = false;
  const stop = async (signal: NodeJS.Signals): Promise<void> => {
    if (stopping) {
      // The children die with us (exit hook and pdeathsig).
      logger.warn({ signal }, 'second signal: stopping now');
      logger.flush();
      process.exit(signal === 'SIGINT' ? 130 : 143);
    }
    stopping = true;
    logger.info({ signal, inFlight: drain.inFlight, graceMs: config.shutdownGrace }, 'shutting down: draining requests in flight');
    await drain.begin(Math.max(0, config.shutdownGrace), app.server);
    logger.info({ unfinished: drain.inFlight }, 'drained; stopping');
    await app.close().catch((error: unknown) => logger.error({ err: error }, 'error while closing the HTTP server'));
    await metricsServer?.app.close();
    await registry.dispose();
    images.dispose();
    await fetcher.dispose();
    // Every request has ended by now: its usage row is queued, and this writes it.
    await recorder.dispose();
    limiter.dispose();
    directory.dispose();
    await store.close().catch((error: unknown) => logger.error({ err: error }, 'error while closing the database'));
    logger.flush();
    process.exit(0);
  };
  process.on('SIGTERM', () => void stop('SIGTERM'));
  process.on('SIGINT', () => void stop('SIGINT'));

  const address = await app.listen({ host: config.host, port: config.port }).catch((error: unknown) => {
    throw listenError(error, config.host, config.port);
  });
  if (config.metricsPort !== undefined) {
    metricsServer = await startMetricsServer(config.host, config.metricsPort, { metrics, registry }).catch((error: unknown) => {
      throw new CliUsageError(`Cannot serve metrics on ${config.host}:${config.metricsPort} (--metrics-port / IRIS_METRICS_PORT): ${(error as Error).message}`);
    });
    logger.info({ address: metricsServer.address }, `metrics (no API key) on ${metricsServer.address}/metrics`);
  }
  logger.info({ address, models: models.map((model) => model.id) }, `Iris ${IRIS_VERSION} listening on ${address}`);
  void registry.preload(preload);
}

/** The SSRF rules from --allow-media-host / --deny-media-host; a bad entry is a configuration error naming the flag. */
function mediaHostRules(config: IrisConfig): MediaHostRules {
  try {
    return new MediaHostRules({ allow: config.allowMediaHosts, deny: config.denyMediaHosts });
  } catch (error) {
    if (!(error instanceof MediaHostRuleError)) throw error;
    throw new ConfigError(
      `Invalid media host entry (--allow-media-host / IRIS_ALLOW_MEDIA_HOSTS, --deny-media-host / IRIS_DENY_MEDIA_HOSTS): ${error.message}.`,
      { cause: error },
    );
  }
}
