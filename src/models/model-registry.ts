/**
 * The models this server answers for: model id -> engine, scheduler and image policy. Routes look models
 * up here and never construct engines themselves.
 */
import type { Engine } from '../engines/engine.js';
import { modelNotFound } from '../errors.js';
import type { ImagePolicy } from '../images/image-policy.js';
import type { Logger } from '../logger.js';
import type { ModelScheduler } from '../scheduler/model-scheduler.js';

/** One served model. */
export interface ModelEntry {
  /** The id clients send as `model`. */
  id: string;
  engine: Engine;
  scheduler: ModelScheduler;
  /** How images are sized and counted for this model (derived from its mmproj). */
  imagePolicy: ImagePolicy;
  /** Unix seconds when the model was registered (the models list's `created`). */
  created: number;
  /** `owned_by` in the models list. */
  ownedBy: string;
}

/** All served models. */
export class ModelRegistry {
  #entries = new Map<string, ModelEntry>();
  #logger: Logger;

  constructor(entries: readonly ModelEntry[], deps: { logger: Logger }) {
    this.#logger = deps.logger;
    for (const entry of entries) this.#entries.set(entry.id, entry);
  }

  /** The model with this id; throws a 404 `model_not_found` IrisError when there is none. */
  get(id: string): ModelEntry {
    const entry = this.#entries.get(id);
    if (!entry) throw modelNotFound(id);
    return entry;
  }

  /** Every model, in configuration order. */
  list(): ModelEntry[] {
    return [...this.#entries.values()];
  }

  /** Starts every model's engine; failures are logged, and retried on the model's next request. */
  async preload(): Promise<void> {
    await Promise.all(
      this.list().map((entry) =>
        entry.engine.ready().catch((error: unknown) => this.#logger.error({ model: entry.id, err: error }, 'model failed to start')),
      ),
    );
  }

  /** Stops every engine and refuses new work. */
  async dispose(): Promise<void> {
    for (const entry of this.#entries.values()) entry.scheduler.dispose();
    await Promise.all(this.list().map((entry) => entry.engine.dispose()));
  }
}
