/**
 * The model served when none is configured: SmolVLM-256M-Instruct (Q8_0 and its mmproj) from the
 * ggml-org GGUF repo on the Hugging Face hub, downloaded once into the cache. When the hub cannot be
 * reached, the error says how to start offline.
 */
import type { IrisConfig, ModelConfig } from '../config/config.js';
import { IrisError } from '../errors.js';
import type { Logger } from '../logger.js';
import { downloadHubFile } from './hub-download.js';

/** Hub repo and files of the default model. */
export const DEFAULT_MODEL = Object.freeze({
  id: 'HuggingFaceTB/SmolVLM-256M-Instruct',
  repo: 'ggml-org/SmolVLM-256M-Instruct-GGUF',
  model: 'SmolVLM-256M-Instruct-Q8_0.gguf',
  mmproj: 'mmproj-SmolVLM-256M-Instruct-Q8_0.gguf',
  context: 8192,
});

/** Makes sure the default model's files are in the cache (downloading them if needed) and returns its config. */
export async function resolveDefaultModel(config: IrisConfig, logger: Logger): Promise<ModelConfig> {
  logger.info({ repo: DEFAULT_MODEL.repo }, 'no model configured: serving the default model');
  try {
    const [model, mmproj] = await Promise.all(
      [DEFAULT_MODEL.model, DEFAULT_MODEL.mmproj].map((file) =>
        downloadHubFile({ repo: DEFAULT_MODEL.repo, file, config, logger }),
      ),
    );
    return { id: DEFAULT_MODEL.id, model: model as string, mmproj: mmproj as string, context: DEFAULT_MODEL.context, slots: 2, threads: 0 };
  } catch (error) {
    if (error instanceof IrisError && error.code === 'hub_unreachable') {
      throw new IrisError(
        `${error.message}\nTo start offline, serve a local GGUF with --model PATH (and --mmproj PATH for images),\n` +
          'or make a synthetic test model first: iris synth --out ./synth && iris serve --model ./synth/model.gguf --mmproj ./synth/mmproj.gguf',
        { status: 503, type: 'service_unavailable_error', code: 'hub_unreachable', cause: error },
      );
    }
    throw error;
  }
}
