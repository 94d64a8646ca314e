/**
 * The model served when none is configured: the catalog's first entry, SmolVLM-256M-Instruct (Q8_0 and its
 * projector from ggml-org's GGUF repo), pulled once into the cache. Without the hub, a cached copy is used;
 * with neither, the error says how to start offline (`--model PATH`, `iris synth`).
 */
import { MODEL_DEFAULTS, type IrisConfig, type ModelConfig } from '../config/config.js';
import type { Logger } from '../logger.js';
import { DEFAULT_CATALOG_ENTRY } from './catalog.js';
import { logProgress, pullModel, type ProgressListener } from './hub/index.js';

/** Pulls the default model if it is not cached yet and returns how to serve it. */
export async function resolveDefaultModel(
  config: IrisConfig,
  logger: Logger,
  progress: ProgressListener = logProgress(logger),
): Promise<ModelConfig> {
  logger.info({ model: DEFAULT_CATALOG_ENTRY.id, repo: DEFAULT_CATALOG_ENTRY.repo }, 'no model configured: serving the default model');
  const pulled = await pullModel({ id: DEFAULT_CATALOG_ENTRY.id, config, logger, progress });
  return {
    id: pulled.id,
    model: pulled.modelPath,
    ...(pulled.mmprojPath === undefined ? {} : { mmproj: pulled.mmprojPath }),
    context: pulled.context,
    ...MODEL_DEFAULTS,
  };
}
