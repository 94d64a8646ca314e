/**
 * `iris serve`: load config, make sure a llama-server binary and the model files exist, start one
 * supervised engine per model, and serve the HTTP API until SIGTERM/SIGINT, then dispose in reverse order.
 */
import { parseArgs } from 'node:util';
import { loadConfig } from '../config/load-config.js';
import type { IrisConfig, ModelConfig } from '../config/config.js';
import { ensureLlamaServer } from '../engines/llama-runner/build-llama-server.js';
import { isLoopbackHost } from '../http/auth.js';
import { createApp } from '../http/app.js';
import { RemoteImageFetcher } from '../images/fetch-remote-image.js';
import { ImagePipeline } from '../images/image-pipeline.js';
import { MediaHostRuleError, MediaHostRules } from '../images/media-host-rules.js';
import { createLogger, type Logger } from '../logger.js';
import { resolveDefaultModel } from '../models/default-model.js';
import { ModelRegistry } from '../models/model-registry.js';
import { ModelSources } from '../models/model-sources.js';
import { CliUsageError, ConfigError } from '../errors.js';
import { IRIS_VERSION } from './cli-support.js';

/** Help text of `iris serve`. */
export const SERVE_USAGE = `Usage: iris serve [options]

Serve vision-language models behind an OpenAI-compatible API.

Options:
  --model PATH|REPO        text model GGUF, or a catalog id / hub repo[:QUANT] to pull (without it: the default
                           model, SmolVLM-256M-Instruct, from the hub)
  --mmproj PATH            multimodal projector GGUF for --model
  --model-id ID            id clients send as "model" (default: the file name without .gguf)
  --ctx-size N             context size for --model (default 4096)
  --slots N                parallel requests for --model (default 2)
  --threads N              CPU threads for --model (default: llama.cpp's choice)
  --pull-on-demand MODE    which unconfigured models a request may pull: never|catalog|any
                           (env IRIS_PULL_ON_DEMAND, default catalog)
  --preload ID             load this configured model at start, not on first request; repeatable
                           (--model is always preloaded)
  --keep-alive DURATION    unload a model idle this long: 30s, 10m, 1h, -1 = never (env IRIS_KEEP_ALIVE, default 10m)
  --memory-budget SIZE     memory all loaded models may use: 8GiB, 512MB, 70% (env IRIS_MEMORY_BUDGET, default 70%);
                           the least recently used idle model is unloaded to make room
  --host HOST              interface to listen on (env IRIS_HOST, default 127.0.0.1)
  --port PORT              port to listen on (env IRIS_PORT, default 8080)
  --api-key KEY            accepted API key; repeatable (env IRIS_API_KEYS, comma-separated)
  --allow-unauthenticated  serve without API keys on a non-loopback host
  --allow-media-host VALUE host, host:port or CIDR remote images may come from despite SSRF rules; repeatable
                           (env IRIS_ALLOW_MEDIA_HOSTS, comma-separated)
  --deny-media-host VALUE  host, host:port or CIDR remote images may never come from; repeatable
                           (env IRIS_DENY_MEDIA_HOSTS, comma-separated)
  --config FILE            YAML config file (env IRIS_CONFIG)
  --llama-server PATH      use this llama-server binary instead of building one (env IRIS_LLAMA_SERVER)
  --cache-dir DIR          cache for the llama-server build and models (env IRIS_CACHE_DIR, default ~/.cache/iris)
  --log-level LEVEL        fatal|error|warn|info|debug|trace|silent (env IRIS_LOG_LEVEL, default info)
`;

/** Runs `iris serve` until a signal stops it. */
export async function serveCommand(argv: string[], env: NodeJS.ProcessEnv): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      config: { type: 'string' },
      model: { type: 'string' },
      mmproj: { type: 'string' },
      'model-id': { type: 'string' },
      host: { type: 'string' },
      port: { type: 'string' },
      'api-key': { type: 'string', multiple: true },
      'allow-unauthenticated': { type: 'boolean' },
      'allow-media-host': { type: 'string', multiple: true },
      'deny-media-host': { type: 'string', multiple: true },
      'ctx-size': { type: 'string' },
      slots: { type: 'string' },
      threads: { type: 'string' },
      'llama-server': { type: 'string' },
      preload: { type: 'string', multiple: true },
      'pull-on-demand': { type: 'string' },
      'keep-alive': { type: 'string' },
      'memory-budget': { type: 'string' },
      'cache-dir': { type: 'string' },
      'log-level': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
    allowPositionals: false,
  });
  if (values.help) {
    process.stdout.write(SERVE_USAGE);
    return;
  }
  const config = loadConfig(
    {
      config: values.config,
      model: values.model,
      mmproj: values.mmproj,
      modelId: values['model-id'],
      host: values.host,
      port: values.port,
      apiKey: values['api-key'],
      allowUnauthenticated: values['allow-unauthenticated'],
      allowMediaHost: values['allow-media-host'],
      denyMediaHost: values['deny-media-host'],
      ctxSize: values['ctx-size'],
      slots: values.slots,
      threads: values.threads,
      llamaServer: values['llama-server'],
      preload: values.preload,
      pullOnDemand: values['pull-on-demand'],
      keepAlive: values['keep-alive'],
      memoryBudget: values['memory-budget'],
      cacheDir: values['cache-dir'],
      logLevel: values['log-level'],
    },
    env,
  );
  const logger = createLogger(config.logLevel);
  if (config.apiKeys.length === 0 && !isLoopbackHost(config.host) && !config.allowUnauthenticated) {
    throw new CliUsageError(
      `Refusing to serve on ${config.host} without an API key. Pass --api-key KEY (or IRIS_API_KEYS), ` +
        'listen on 127.0.0.1, or pass --allow-unauthenticated to serve openly.',
    );
  }
  await runServer(config, { logger, env });
}

/** Builds every part from a config, listens, and stops cleanly on SIGTERM/SIGINT. */
export async function runServer(config: IrisConfig, deps: { logger: Logger; env: NodeJS.ProcessEnv }): Promise<void> {
  const { logger } = deps;
  const rules = mediaHostRules(config);
  const models: readonly ModelConfig[] =
    config.models.length > 0 ? config.models : [await resolveDefaultModel(config, logger)];
  let binary: Promise<string> | undefined;
  const llamaServer = (): Promise<string> =>
    (binary ??= config.llama.serverPath !== undefined
      ? Promise.resolve(config.llama.serverPath)
      : ensureLlamaServer({ cacheDir: config.cacheDir, logger }));

  const sources = new ModelSources(models, { config, logger, env: deps.env, llamaServer, userAgent: `Iris/${IRIS_VERSION}` });
  // Build (once per machine) before listening, so a first start shows its progress and fails early.
  if (sources.needsLlamaServer()) await llamaServer();
  const registry = new ModelRegistry(sources.definitions(), {
    logger,
    memoryBudgetBytes: config.memoryBudget,
    queue: { maxQueued: config.limits.maxQueuedPerModel, queueTimeoutMs: config.limits.queueTimeoutMs },
    prepare: sources.prepare,
    discover: sources.discover,
  });
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
    { fetcher },
  );
  const app = createApp({ config, registry, images, logger, preload, version: IRIS_VERSION });

  let stopping = false;
  const stop = async (signal: string): Promise<void> => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'shutting down');
    await app.close().catch((error: unknown) => logger.error({ err: error }, 'error while closing the HTTP server'));
    await registry.dispose();
    images.dispose();
    await fetcher.dispose();
    logger.flush();
    process.exit(0);
  };
  process.once('SIGTERM', () => void stop('SIGTERM'));
  process.once('SIGINT', () => void stop('SIGINT'));

  const address = await app.listen({ host: config.host, port: config.port });
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
