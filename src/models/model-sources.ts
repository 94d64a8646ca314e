/**
 * Where each model comes from, and how it is made ready: a local GGUF (`model:`), a catalog id or hub repo
 * pulled into the cache on first load (`hub:`, also what on-demand pulls register), or remote servers
 * (`upstream:`). Turns configured models into registry definitions, implements the registry's `prepare`
 * (pull if needed, estimate memory, derive the image policy, build the engine) and `discover` (register a
 * catalog id or hub repo a request names, as far as `pull_on_demand` allows).
 */
import { MODEL_DEFAULTS, type IrisConfig, type ModelConfig } from '../config/config.js';
import type { Engine } from '../engines/engine.js';
import { LlamaServerEngine } from '../engines/llama-runner/llama-server-engine.js';
import { defaultSlots, defaultThreads } from '../engines/llama-runner/machine-defaults.js';
import { OpenAIUpstreamEngine } from '../engines/openai-upstream/openai-upstream-engine.js';
import { LRUCache } from 'lru-cache';
import { echo } from '../echo.js';
import { IrisError, engineUnavailable } from '../errors.js';
import { GENERIC_IMAGE_POLICY, describeImagePolicy, imagePolicyFromMmproj, type ImagePolicy } from '../images/image-policy.js';
import type { Logger } from '../logger.js';
import type { IrisMetrics } from '../metrics/iris-metrics.js';
import { CATALOG, resolveCatalogId } from './catalog.js';
import { checkModelExists, logProgress, pullModel } from './hub/index.js';
import { estimateModelMemory } from './memory-estimate.js';
import type { ModelDefinition, PreparedModel } from './model-registry.js';

/** A llama-server binary and the backend it was built with (`unknown` for the operator's own binary). */
export interface LlamaServerBinary {
  path: string;
  backend: 'cpu' | 'cuda' | 'vulkan' | 'unknown';
}

/** Context for models that say nothing about it. */
const DEFAULT_CONTEXT = 4096;
/** Concurrent requests to an upstream model that names no `slots`: remote servers batch many more than a CPU. */
const UPSTREAM_SLOTS = 64;
const MIB = 1024 * 1024;
/** How long a failed on-demand lookup of an id is remembered (and answered again without the hub). */
const FAILED_DISCOVERY_TTL_MS = 30_000;
/** The largest prompt cache a model gets when none is configured. */
const DEFAULT_PROMPT_CACHE_MAX_BYTES = 1024 * MIB;

/** What the sources need. */
export interface ModelSourcesDeps {
  config: IrisConfig;
  logger: Logger;
  env: NodeJS.ProcessEnv;
  /** The llama-server binary (built on first use). */
  llamaServer(): Promise<LlamaServerBinary>;
  /** `User-Agent` Iris sends to remote servers. */
  userAgent: string;
  /** Where engines report (restarts). */
  metrics?: IrisMetrics | undefined;
}

/** Configured and discovered models, and how to get each ready. */
export class ModelSources {
  #deps: ModelSourcesDeps;
  #configs = new Map<string, ModelConfig>();
  #created = Math.floor(Date.now() / 1000);
  /** llama-server threads of models that name none. */
  #threads = defaultThreads();
  /** Ids registered on demand (removed again when their pull fails). */
  #discovered = new Set<string>();
  /** Recent on-demand failures by requested id, so bogus ids do not reach the hub on every request. */
  #failures = new LRUCache<string, IrisError>({ max: 4096, ttl: FAILED_DISCOVERY_TTL_MS });

  constructor(models: readonly ModelConfig[], deps: ModelSourcesDeps) {
    this.#deps = deps;
    for (const model of models) this.#configs.set(model.id, model);
  }

  /** Whether any model runs in the embedded engine (and so needs a llama-server binary). */
  needsLlamaServer(): boolean {
    return [...this.#configs.values()].some((model) => model.upstream === undefined);
  }

  /** Registry definitions of the configured models. */
  definitions(): ModelDefinition[] {
    return [...this.#configs.values()].map((model) => this.#definition(model));
  }

  /** The registry's `prepare`: files at hand (pulled if needed), memory, image policy, engine factory. */
  prepare = async (definition: ModelDefinition, signal: AbortSignal | undefined): Promise<PreparedModel> => {
    const model = this.#configs.get(definition.id);
    if (!model) throw engineUnavailable(`Model '${definition.id}' has no configuration.`);
    const { config, logger } = this.#deps;
    const upstream = model.upstream;
    if (upstream !== undefined) {
      const settings = {
        id: model.id,
        endpoints: upstream.endpoints,
        model: upstream.model ?? model.id,
        vision: upstream.vision,
        maxImagesPerRequest: config.limits.maxImagesPerRequest,
        timeoutMs: upstream.timeoutMs,
        idleTimeoutMs: upstream.idleTimeoutMs,
      };
      // The remote server sizes images for its own model; Iris only normalizes them (orientation, format).
      return {
        memoryBytes: 0,
        imagePolicy: GENERIC_IMAGE_POLICY,
        capabilities: OpenAIUpstreamEngine.capabilitiesFor(settings),
        createEngine: (): Engine => new OpenAIUpstreamEngine(settings, { logger, userAgent: this.#deps.userAgent }),
      };
    }
    let files = { model: model.model ?? '', mmproj: model.mmproj, chatTemplate: model.chatTemplate, context: model.context ?? DEFAULT_CONTEXT };
    if (model.hub !== undefined) {
      const pulled = await pullModel({ id: model.hub, config, logger, progress: logProgress(logger), signal });
      files = {
        model: pulled.modelPath,
        mmproj: pulled.mmprojPath,
        chatTemplate: model.chatTemplate ?? pulled.chatTemplate,
        context: model.context ?? pulled.context,
      };
    }
    const promptCacheMiB = Math.floor(this.#promptCacheBytes(model) / MIB);
    const [estimate, imagePolicy, binary] = await Promise.all([
      estimateModelMemory({ ...files, promptCacheBytes: promptCacheMiB * MIB }),
      this.#imagePolicy(model.id, files.mmproj),
      this.#deps.llamaServer(),
    ]);
    const settings = {
      id: model.id,
      binary: binary.path,
      model: files.model,
      mmproj: files.mmproj,
      chatTemplate: files.chatTemplate,
      context: files.context,
      slots: definition.slots,
      threads: model.threads ?? this.#threads,
      // A GPU build exists to run on the GPU: all layers there unless the model says otherwise.
      gpuLayers: model.gpuLayers ?? (binary.backend === 'cuda' || binary.backend === 'vulkan' ? 'all' : undefined),
      extraArgs: model.llamaArgs,
      startTimeoutMs: config.llama.startTimeoutMs,
      promptCacheMiB,
      firstByteTimeoutMs: config.limits.engineFirstByteTimeoutMs,
      idleTimeoutMs: config.limits.engineIdleTimeoutMs,
      maxImagesPerRequest: config.limits.maxImagesPerRequest,
    };
    return {
      memoryBytes: estimate.totalBytes,
      imagePolicy,
      capabilities: LlamaServerEngine.capabilitiesFor(settings),
      createEngine: (): Engine =>
        new LlamaServerEngine(settings, { logger, env: this.#deps.env, onRestart: () => this.#deps.metrics?.engineRestarts.inc({ model: model.id }) }),
    };
  };

  /** What a request may name besides the served models, as `pull_on_demand` allows (for 404 messages). */
  unknownModelHint(): string {
    const mode = this.#deps.config.pullOnDemand;
    if (mode === 'never') return '';
    const catalog = `catalog models (${CATALOG.map((entry) => entry.aliases[0] ?? entry.id).join(', ')}; see 'iris models --catalog')`;
    return mode === 'any'
      ? `It also pulls ${catalog} and Hugging Face repos with GGUF files (owner/repo[:QUANT]) on first request.`
      : `It also pulls ${catalog} on first request.`;
  }

  /**
   * The registry's `discover`: a catalog id or hub repo a request names, when pull_on_demand allows it. The
   * id is registered only once the hub (or the cache) shows it exists; failures are remembered briefly.
   */
  discover = async (id: string, signal?: AbortSignal): Promise<ModelDefinition | undefined> => {
    const mode = this.#deps.config.pullOnDemand;
    if (mode === 'never') return undefined;
    const failed = this.#failures.get(id);
    if (failed) throw failed;
    try {
      // Throws 400 for models the embedded engine cannot run (pointing to remote engines), 404 for non-names.
      const reference = resolveCatalogId(id);
      if (reference.kind === 'repo' && mode !== 'any') return undefined;
      const canonical =
        reference.kind === 'catalog' ? `${reference.entry.id}${reference.quant ? `:${reference.quant}` : ''}` : id;
      const existing = this.#configs.get(canonical);
      if (existing) return this.#definition(existing);
      const failedPull = this.#failures.get(canonical);
      if (failedPull) throw failedPull;
      await checkModelExists({ id, config: this.#deps.config, signal });
      // Another request may have registered it while this one asked the hub.
      const registered = this.#configs.get(canonical);
      if (registered) return this.#definition(registered);
      const model: ModelConfig = {
        id: canonical,
        hub: id,
        ...MODEL_DEFAULTS,
        ...(reference.kind === 'catalog' ? { context: reference.entry.context } : {}),
      };
      this.#configs.set(canonical, model);
      this.#discovered.add(canonical);
      this.#deps.logger.info({ model: canonical, requested: echo(id) }, 'registering a model to pull on demand');
      return this.#definition(model);
    } catch (error) {
      // A cancelled lookup says nothing about the id; anything else does (for a while).
      if (error instanceof IrisError && error.code !== 'request_cancelled' && !signal?.aborted) this.#failures.set(id, error);
      throw error;
    }
  };

  /**
   * The registry's `forget`: a model registered on demand whose pull failed is dropped again (and the failure
   * remembered briefly), so ids that name nothing real never stay in the models list. Configured models stay.
   */
  forget = (id: string, error: unknown): boolean => {
    if (!this.#discovered.has(id)) return false;
    this.#discovered.delete(id);
    this.#configs.delete(id);
    if (error instanceof IrisError && error.code !== 'request_cancelled') this.#failures.set(id, error);
    return true;
  };

  /** The model's prompt cache: its own setting, the server's, or a 16th of the memory budget up to 1 GiB. */
  #promptCacheBytes(model: ModelConfig): number {
    const { config } = this.#deps;
    return model.promptCache ?? config.promptCache ?? Math.min(DEFAULT_PROMPT_CACHE_MAX_BYTES, Math.floor(config.memoryBudget / 16));
  }

  #definition(model: ModelConfig): ModelDefinition {
    const context = model.context ?? (model.hub !== undefined ? catalogContext(model.hub) : undefined) ?? DEFAULT_CONTEXT;
    return {
      id: model.id,
      // Before a hub model is pulled we cannot know; catalog models and most GGUF repos here are VLMs.
      vision: model.upstream !== undefined ? model.upstream.vision : model.hub !== undefined || model.mmproj !== undefined,
      context,
      slots: model.slots ?? (model.upstream !== undefined ? UPSTREAM_SLOTS : defaultSlots(context, this.#threads)),
      keepAliveMs: model.keepAlive ?? this.#deps.config.keepAlive,
      created: this.#created,
      ownedBy: model.upstream !== undefined ? 'remote' : 'iris',
    };
  }

  async #imagePolicy(id: string, mmproj: string | undefined): Promise<ImagePolicy> {
    if (mmproj === undefined) return GENERIC_IMAGE_POLICY;
    try {
      const policy = await imagePolicyFromMmproj(mmproj);
      this.#deps.logger.info({ model: id, imagePolicy: policy }, `image policy: ${describeImagePolicy(policy)}`);
      return policy;
    } catch (error) {
      this.#deps.logger.warn({ model: id, err: error }, 'could not read the projector metadata; using the generic image policy');
      return GENERIC_IMAGE_POLICY;
    }
  }
}

function catalogContext(hub: string): number | undefined {
  try {
    const reference = resolveCatalogId(hub);
    return reference.kind === 'catalog' ? reference.entry.context : undefined;
  } catch {
    return undefined;
  }
}
