/**
 * The models this server answers for, and their lifecycle. Each model id maps to a definition (files,
 * context, keep-alive, image policy) and, while loaded, to a running engine. Models load on first request
 * (or at start when preloaded); concurrent first requests share one load; a model unloads after its idle
 * keep-alive; and loaded models share a memory budget: to make room, the least recently used idle model is
 * unloaded, and a model that cannot fit is refused with a clear 503 instead of running the machine out of
 * memory.
 *
 * Routes take a {@link ModelLease} for the duration of a request: a leased model is never unloaded or
 * evicted under it.
 */
import prettyBytes from 'pretty-bytes';
import type { Engine, EngineCapabilities } from '../engines/engine.js';
import { IrisError, engineUnavailable, modelNotServed } from '../errors.js';
import type { ImagePolicy } from '../images/image-policy.js';
import type { Logger } from '../logger.js';
import { ModelScheduler } from '../scheduler/model-scheduler.js';

/** Everything needed to load and serve one model. */
export interface ModelDefinition {
  /** The id clients send as `model`. */
  id: string;
  /** Accepts images (has a multimodal projector). For models not pulled yet, what the catalog expects. */
  vision: boolean;
  /** Context size in tokens. */
  context: number;
  /** Parallel requests. */
  slots: number;
  /** Idle time before unloading, in ms; -1 = never. */
  keepAliveMs: number;
  /** Unix seconds of registration (the models list's `created`). */
  created: number;
  /** `owned_by` in the models list. */
  ownedBy: string;
}

/** Lifecycle of a model. */
export type ModelState = 'unloaded' | 'loading' | 'loaded' | 'unloading';

/** A model as the models list shows it. */
export interface ModelStatus {
  definition: ModelDefinition;
  state: ModelState;
  /** Estimated resident memory when loaded, once known. */
  memoryBytes: number | undefined;
  /** Requests holding the model now. */
  active: number;
  /** Requests holding one of its slots now. */
  running: number;
  /** Requests waiting for one of its slots now. */
  waiting: number;
}

/** A model held for one request; call `release` exactly once when the request is over. */
export interface ModelLease {
  definition: ModelDefinition;
  engine: Engine;
  scheduler: ModelScheduler;
  release(): void;
}

/** What a request to a model may carry, known before its engine starts. */
export interface ModelAdmission {
  /** What the model's engine takes (declared by the engine for these settings). */
  capabilities: EngineCapabilities;
  /** How images are sized and counted for this model (derived from its projector). */
  imagePolicy: ImagePolicy;
}

/**
 * A registered model, resolved once per request. Admission runs in the order a user expects: check the
 * request against {@link admission} (files at hand, nothing started), then {@link lease} (load, memory),
 * then a slot of the lease's scheduler.
 */
export interface ModelHandle {
  readonly definition: ModelDefinition;
  /** Gets the model's files ready (pulling them if needed) and says what it takes, without starting it. */
  admission(signal?: AbortSignal): Promise<ModelAdmission>;
  /** Holds the model for one request, loading it first if needed (concurrent callers share one load). */
  lease(signal?: AbortSignal): Promise<ModelLease>;
}

/** A model whose files are at hand (pulled if they had to be), ready to start. */
export interface PreparedModel extends ModelAdmission {
  /** Estimated resident memory once loaded, in bytes (0 for a remote engine). */
  memoryBytes: number;
  /** Creates (but does not start) its engine. */
  createEngine(): Engine;
}

/** What the registry is built from. */
export interface ModelRegistryDeps {
  logger: Logger;
  /**
   * Gets a model's files ready (pulling them from the hub if needed) and says how to start it. Called on the
   * first load; its result is kept until a load fails.
   */
  prepare(definition: ModelDefinition, signal: AbortSignal | undefined): Promise<PreparedModel>;
  /**
   * Finds a model that is not registered yet (a catalog id or hub repo to pull on demand); the definition it
   * returns is registered under its canonical id, with `id` as an alias. Undefined for unknown ids.
   */
  discover?(id: string): Promise<ModelDefinition | undefined>;
  /** Added to a 404's message after the served ids: what else a request may name (catalog ids pulled on demand). */
  unknownModelHint?: string;
  /**
   * Called when loading a model failed; returns true when the model was only registered on demand and must
   * be dropped (a failed pull leaves no entry behind).
   */
  forget?(id: string, error: unknown): boolean;
  /** Memory all loaded models may use together, in bytes. */
  memoryBudgetBytes: number;
  /** Queue limits of every model's scheduler. */
  queue: { maxQueued: number; queueTimeoutMs: number };
}

interface Entry {
  definition: ModelDefinition;
  scheduler: ModelScheduler;
  state: ModelState;
  engine: Engine | undefined;
  loading: Promise<Engine> | undefined;
  unloading: Promise<void> | undefined;
  prepared: Promise<PreparedModel> | undefined;
  memoryBytes: number | undefined;
  /** Memory counted against the budget: while loading or loaded. */
  reservedBytes: number;
  active: number;
  /** When it was last used, on the registry's use counter (orders eviction; ties are impossible). */
  lastUsed: number;
  idleTimer: NodeJS.Timeout | undefined;
  /** Whether a load ever succeeded, and whether the latest one failed: an unloaded model that loaded before is still servable. */
  loadedOnce: boolean;
  lastLoadFailed: boolean;
}

/** All served models and their engines. */
export class ModelRegistry {
  #entries = new Map<string, Entry>();
  #aliases = new Map<string, string>();
  #discovering = new Map<string, Promise<Entry>>();
  #deps: ModelRegistryDeps;
  #disposed = false;
  #uses = 0;

  constructor(definitions: readonly ModelDefinition[], deps: ModelRegistryDeps) {
    this.#deps = deps;
    for (const definition of definitions) this.add(definition);
  }

  /** Registers a model (unloaded). */
  add(definition: ModelDefinition): void {
    if (this.#entries.has(definition.id)) throw new Error(`model '${definition.id}' is registered twice`);
    this.#entries.set(definition.id, {
      definition,
      scheduler: new ModelScheduler({ slots: definition.slots, ...this.#deps.queue }),
      state: 'unloaded',
      engine: undefined,
      loading: undefined,
      unloading: undefined,
      prepared: undefined,
      memoryBytes: undefined,
      reservedBytes: 0,
      active: 0,
      lastUsed: 0,
      idleTimer: undefined,
      loadedOnce: false,
      lastLoadFailed: false,
    });
  }

  /** The definition of a registered model; throws a 404 `model_not_found` for an unknown id. */
  definition(id: string): ModelDefinition {
    return this.#entry(id).definition;
  }

  /**
   * Resolves a model id (or alias) once for a request, discovering (registering) it first when it is not
   * registered but can be pulled on demand. Concurrent lookups of the same new id share one discovery.
   * Throws 404 for ids nobody serves, and whatever discovery throws (e.g. 400 for a model the embedded
   * engine cannot run).
   */
  async resolve(id: string): Promise<ModelHandle> {
    return this.#handle(await this.#find(id));
  }

  async #find(id: string): Promise<Entry> {
    const known = this.#entries.get(this.#aliases.get(id) ?? id);
    if (known) return known;
    const discover = this.#deps.discover;
    if (!discover || this.#disposed) throw this.#notFound(id);
    let pending = this.#discovering.get(id);
    if (!pending) {
      pending = (async () => {
        const definition = await discover(id).catch((error: unknown) => {
          // Discovery's own 404 knows the catalog, not what this server serves: say both in one message.
          throw error instanceof IrisError && error.code === 'model_not_found' ? this.#notFound(id) : error;
        });
        if (!definition) throw this.#notFound(id);
        if (!this.#entries.has(definition.id)) this.add(definition);
        if (definition.id !== id) this.#aliases.set(id, definition.id);
        return this.#entry(definition.id);
      })().finally(() => this.#discovering.delete(id));
      this.#discovering.set(id, pending);
    }
    return pending;
  }

  #handle(entry: Entry): ModelHandle {
    return {
      // A getter: the definition learns the model's real vision support once its files are at hand.
      get definition() {
        return entry.definition;
      },
      admission: async (signal) => this.#prepare(entry, signal),
      lease: async (signal) => this.#lease(entry, signal),
    };
  }

  /** Every model with its state, in registration order. */
  list(): ModelStatus[] {
    return [...this.#entries.values()].map((entry) => ({
      definition: entry.definition,
      state: entry.state,
      memoryBytes: entry.memoryBytes,
      active: entry.active,
      running: entry.scheduler.running,
      waiting: entry.scheduler.waiting,
    }));
  }

  /** The engines of the loaded models, by model id (for scraping their own metrics). */
  loadedEngines(): { id: string; engine: Engine }[] {
    return [...this.#entries.values()]
      .filter((entry) => entry.state === 'loaded' && entry.engine !== undefined)
      .map((entry) => ({ id: entry.definition.id, engine: entry.engine! }));
  }

  /** Whether a model is loaded and its engine can take a request now. */
  isReady(id: string): boolean {
    const entry = this.#entry(id);
    return entry.state === 'loaded' && entry.engine !== undefined && entry.engine.isReady();
  }

  /**
   * Whether a model can serve requests now or after a load: loaded and healthy, or not loaded (unloaded on
   * keep_alive, or being loaded again) after an earlier load succeeded and with no failed load since.
   */
  isServable(id: string): boolean {
    const entry = this.#entry(id);
    if (entry.state === 'loaded') return this.isReady(id);
    return entry.loadedOnce && !entry.lastLoadFailed;
  }

  /**
   * Holds a model for one request, loading it first if needed (concurrent callers share one load).
   * Rejects with 503 when it cannot be loaded or does not fit the memory budget.
   */
  async #lease(entry: Entry, signal?: AbortSignal): Promise<ModelLease> {
    if (this.#disposed) throw engineUnavailable('The server is shutting down.', 'shutting_down');
    entry.active += 1;
    this.#clearIdleTimer(entry);
    let engine: Engine;
    try {
      engine = await this.#ensureLoaded(entry, signal);
      signal?.throwIfAborted();
    } catch (error) {
      entry.active -= 1;
      this.#scheduleIdleUnload(entry);
      throw error;
    }
    entry.lastUsed = ++this.#uses;
    let released = false;
    return {
      definition: entry.definition,
      engine,
      scheduler: entry.scheduler,
      release: () => {
        if (released) return;
        released = true;
        entry.active -= 1;
        entry.lastUsed = ++this.#uses;
        this.#scheduleIdleUnload(entry);
      },
    };
  }

  /** Loads the given models now (failures are logged; they are retried on the model's next request). */
  async preload(ids: readonly string[]): Promise<void> {
    await Promise.all(
      ids.map(async (id) => {
        try {
          (await this.#lease(this.#entry(id))).release();
        } catch (error) {
          this.#deps.logger.error({ model: id, err: error }, 'preloading the model failed');
        }
      }),
    );
  }

  /** Stops every engine and refuses new work. */
  async dispose(): Promise<void> {
    this.#disposed = true;
    const stopping: Promise<void>[] = [];
    for (const entry of this.#entries.values()) {
      this.#clearIdleTimer(entry);
      entry.scheduler.dispose();
      if (entry.engine) stopping.push(entry.engine.dispose());
      if (entry.loading) stopping.push(entry.loading.then((engine) => engine.dispose(), () => undefined));
      if (entry.unloading) stopping.push(entry.unloading);
    }
    await Promise.all(stopping);
  }

  #entry(id: string): Entry {
    const entry = this.#entries.get(this.#aliases.get(id) ?? id);
    if (!entry) throw this.#notFound(id);
    return entry;
  }

  #notFound(id: string): IrisError {
    return modelNotServed(id, [...this.#entries.keys()], this.#deps.unknownModelHint);
  }

  async #ensureLoaded(entry: Entry, signal: AbortSignal | undefined): Promise<Engine> {
    for (;;) {
      if (entry.state === 'loaded' && entry.engine) return entry.engine;
      if (entry.loading) return entry.loading;
      if (entry.unloading) {
        await entry.unloading;
        continue;
      }
      break;
    }
    entry.state = 'loading';
    entry.loading = this.#load(entry, signal).finally(() => {
      entry.loading = undefined;
    });
    return entry.loading;
  }

  async #load(entry: Entry, signal: AbortSignal | undefined): Promise<Engine> {
    const { logger } = this.#deps;
    const id = entry.definition.id;
    let victims: Entry[];
    let prepared: PreparedModel;
    try {
      prepared = await this.#prepare(entry, signal);
      // Synchronous from here to the reservation, so two loads cannot both take the same free memory.
      victims = this.#makeRoom(entry, prepared.memoryBytes);
    } catch (error) {
      entry.state = 'unloaded';
      entry.lastLoadFailed = true;
      throw error;
    }
    entry.reservedBytes = prepared.memoryBytes;
    for (const victim of victims) this.#unload(victim, `making room for '${id}'`);
    await Promise.all(victims.map((victim) => victim.unloading));

    const started = Date.now();
    logger.info({ model: id, memoryBytes: entry.memoryBytes }, 'loading model');
    const engine = prepared.createEngine();
    try {
      await engine.ready();
    } catch (error) {
      entry.lastLoadFailed = true;
      entry.reservedBytes = 0;
      entry.state = 'unloaded';
      await engine.dispose().catch(() => undefined);
      this.#forgetIfDiscovered(entry, error);
      throw error;
    }
    if (this.#disposed) {
      await engine.dispose();
      throw engineUnavailable('The server is shutting down.', 'shutting_down');
    }
    entry.engine = engine;
    entry.state = 'loaded';
    entry.loadedOnce = true;
    entry.lastLoadFailed = false;
    entry.lastUsed = ++this.#uses;
    logger.info({ model: id, ms: Date.now() - started }, 'model loaded');
    this.#scheduleIdleUnload(entry);
    return engine;
  }

  /**
   * The model's files at hand and what it takes, shared by every caller until it fails: a failed pull is
   * tried afresh by the next request. The first caller's signal only stops its own wait for a pull; the
   * pull itself goes on for the cache.
   */
  #prepare(entry: Entry, signal: AbortSignal | undefined): Promise<PreparedModel> {
    entry.prepared ??= this.#deps.prepare(entry.definition, signal).then(
      (prepared) => {
        entry.memoryBytes = prepared.memoryBytes;
        entry.definition = { ...entry.definition, vision: prepared.capabilities.vision };
        return prepared;
      },
      (error: unknown) => {
        entry.prepared = undefined;
        // A caller that went away says nothing about the model; a model registered on demand whose pull
        // failed is dropped again.
        if (error instanceof IrisError && error.code === 'request_cancelled') throw error;
        entry.lastLoadFailed = true;
        this.#forgetIfDiscovered(entry, error);
        throw error;
      },
    );
    return entry.prepared;
  }

  /** Drops a model registered on demand whose load failed (the sources decide), with its aliases. */
  #forgetIfDiscovered(entry: Entry, error: unknown): void {
    const id = entry.definition.id;
    if (this.#entries.get(id) !== entry || !this.#deps.forget?.(id, error)) return;
    this.#entries.delete(id);
    for (const [alias, target] of this.#aliases) if (target === id) this.#aliases.delete(alias);
    entry.scheduler.dispose();
  }

  /** Picks idle models to unload (least recently used first) so that `needed` bytes fit; throws 503 if they cannot. */
  #makeRoom(entry: Entry, needed: number): Entry[] {
    const budget = this.#deps.memoryBudgetBytes;
    const id = entry.definition.id;
    if (needed > budget) {
      throw engineUnavailable(
        `Model '${id}' needs about ${formatBytes(needed)} of memory, more than the whole memory budget of ` +
          `${formatBytes(budget)}. Raise --memory-budget or give the model a smaller context.`,
        'model_unavailable',
      );
    }
    const others = [...this.#entries.values()].filter((other) => other !== entry);
    let used = others.reduce((sum, other) => sum + other.reservedBytes, 0);
    const idle = others
      .filter((other) => other.state === 'loaded' && other.active === 0)
      .sort((a, b) => a.lastUsed - b.lastUsed);
    const victims: Entry[] = [];
    while (used + needed > budget) {
      const victim = idle.shift();
      if (!victim) {
        const busy = others.filter((other) => other.reservedBytes > 0);
        // Room opens when the first busy model goes idle: the quickest of their queues to drain.
        const retryAfterSeconds = Math.min(60, ...busy.map((other) => other.scheduler.drainEstimateSeconds()));
        throw engineUnavailable(
          `Not enough memory to load model '${id}' (about ${formatBytes(needed)}): the memory budget of ` +
            `${formatBytes(budget)} is held by models serving requests now (${busy.map((other) => other.definition.id).join(', ')}). Retry later.`,
          'server_overloaded',
          undefined,
          retryAfterSeconds,
        );
      }
      victims.push(victim);
      used -= victim.reservedBytes;
    }
    return victims;
  }

  #unload(entry: Entry, why: string): void {
    const engine = entry.engine;
    if (!engine || entry.state !== 'loaded') return;
    this.#clearIdleTimer(entry);
    this.#deps.logger.info({ model: entry.definition.id, why }, 'unloading model');
    entry.state = 'unloading';
    entry.engine = undefined;
    entry.unloading = engine
      .dispose()
      .catch((error: unknown) => this.#deps.logger.error({ model: entry.definition.id, err: error }, 'error while unloading'))
      .finally(() => {
        entry.reservedBytes = 0;
        entry.state = 'unloaded';
        entry.unloading = undefined;
      });
  }

  #scheduleIdleUnload(entry: Entry): void {
    this.#clearIdleTimer(entry);
    const keepAlive = entry.definition.keepAliveMs;
    if (this.#disposed || entry.active > 0 || entry.state !== 'loaded' || keepAlive < 0) return;
    if (keepAlive === 0) {
      this.#unload(entry, 'keep_alive is 0');
      return;
    }
    entry.idleTimer = setTimeout(() => {
      entry.idleTimer = undefined;
      if (entry.active === 0) this.#unload(entry, `idle for ${keepAlive} ms (keep_alive)`);
    }, keepAlive);
    entry.idleTimer.unref();
  }

  #clearIdleTimer(entry: Entry): void {
    if (entry.idleTimer) clearTimeout(entry.idleTimer);
    entry.idleTimer = undefined;
  }
}

/** `1.5 GiB`, `300 MiB`: memory sizes in the unit --memory-budget is usually written in. */
function formatBytes(bytes: number): string {
  return prettyBytes(bytes, { binary: true, maximumFractionDigits: 1 });
}
