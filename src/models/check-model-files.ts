/**
 * Startup check of a local model's files, run before anything is started: the text model GGUF and its
 * projector exist, are GGUF files of the right kind (a text model, a `clip` projector), and fit together
 * (the projector's output width is the text model's embedding width, which libmtmd would otherwise refuse
 * only when llama-server starts). A mistake here is an operator's, so it is reported as one line that names
 * the path and the flag or config key it came from.
 */
import { stat } from 'node:fs/promises';
import { ConfigError } from '../errors.js';
import type { GgufMetadata } from '../gguf/gguf-format.js';
import { GgufFormatError, readGgufMetadata } from '../gguf/gguf-reader.js';
import { ggufNumber, ggufString } from '../gguf/gguf-values.js';

/** Where a model's paths were given, for messages: `--model` / `--mmproj`, or `models[1].model in iris.yaml`. */
export interface ModelFileOrigin {
  model: string;
  mmproj: string;
}

/** A local model to check. */
export interface LocalModelFiles {
  model: string;
  mmproj?: string | undefined;
}

/** What the check found out, for the caller's warnings. */
export interface CheckedModelFiles {
  /** The model has no projector: it answers text only. */
  textOnly: boolean;
}

/**
 * Where each projector type keeps its output width, as llama.cpp's `clip_n_mmproj_embd` reads it at the pinned
 * commit: the tensor and which of its dims. Projector types not listed here are not checked (llama-server
 * still refuses a mismatch when it starts).
 */
const PROJECTOR_OUTPUT: Readonly<Record<string, { tensor: string; dim: 0 | 1 }>> = {
  mlp: { tensor: 'mm.2.weight', dim: 1 },
  pixtral: { tensor: 'mm.2.weight', dim: 1 },
  lfm2: { tensor: 'mm.2.weight', dim: 1 },
  kimivl: { tensor: 'mm.2.weight', dim: 1 },
  ldp: { tensor: 'mm.model.block_1.block_2.1.bias', dim: 0 },
  ldpv2: { tensor: 'mm.model.peg.0.bias', dim: 0 },
  idefics3: { tensor: 'mm.model.fc.weight', dim: 1 },
  qwen2vl_merger: { tensor: 'mm.1.bias', dim: 0 },
  'qwen2.5vl_merger': { tensor: 'mm.1.bias', dim: 0 },
  gemma3: { tensor: 'mm.input_projection.weight', dim: 0 },
  internvl: { tensor: 'mm.3.weight', dim: 1 },
};

/**
 * Checks one local model's files.
 * @throws {ConfigError} naming the path and `origin`'s flag or key when a file is missing, is not GGUF, is
 *   the wrong kind of GGUF, or the projector does not fit the model.
 */
export async function checkModelFiles(files: LocalModelFiles, origin: ModelFileOrigin): Promise<CheckedModelFiles> {
  const model = await readModelGguf(files.model, origin.model);
  const modelArchitecture = ggufString(model.metadata['general.architecture']);
  if (modelArchitecture === 'clip') {
    throw new ConfigError(
      `${files.model} (${origin.model}) is a multimodal projector, not a text model: pass it as ${origin.mmproj} and the model's own GGUF as ${origin.model}.`,
    );
  }
  if (files.mmproj === undefined) return { textOnly: true };

  const projector = await readModelGguf(files.mmproj, origin.mmproj);
  const projectorArchitecture = ggufString(projector.metadata['general.architecture']);
  if (projectorArchitecture !== 'clip') {
    throw new ConfigError(
      `${files.mmproj} (${origin.mmproj}) is not a multimodal projector (its architecture is '${projectorArchitecture ?? 'unknown'}'): ` +
        'pass the mmproj GGUF published with the model.',
    );
  }
  const modelWidth = ggufNumber(model.metadata[`${modelArchitecture ?? ''}.embedding_length`]);
  const projectorWidth = projectorOutputWidth(projector);
  if (modelWidth !== undefined && projectorWidth !== undefined && modelWidth !== projectorWidth) {
    throw new ConfigError(
      `${files.mmproj} (${origin.mmproj}) does not match ${files.model} (${origin.model}): the projector makes ` +
        `${projectorWidth}-wide embeddings, the model takes ${modelWidth}. Use the mmproj GGUF published with this model.`,
    );
  }
  return { textOnly: false };
}

/** The projector's output width, when its type is one we know how to read. */
function projectorOutputWidth(projector: GgufMetadata): number | undefined {
  const type =
    ggufString(projector.metadata['clip.vision.projector_type']) ?? ggufString(projector.metadata['clip.projector_type']) ?? 'mlp';
  const where = PROJECTOR_OUTPUT[type];
  if (where === undefined) return undefined;
  return projector.tensors.find((tensor) => tensor.name === where.tensor)?.dims[where.dim];
}

async function readModelGguf(path: string, origin: string): Promise<GgufMetadata> {
  const info = await stat(path).catch(() => undefined);
  if (info === undefined) throw new ConfigError(`${path} (${origin}) does not exist.`);
  if (!info.isFile()) throw new ConfigError(`${path} (${origin}) is not a file.`);
  try {
    return await readGgufMetadata(path);
  } catch (error) {
    if (!(error instanceof GgufFormatError)) throw error;
    const why = error.reason === 'not_gguf' ? 'is not a GGUF file' : `cannot be read as GGUF (${error.message})`;
    throw new ConfigError(`${path} (${origin}) ${why}.`, { cause: error });
  }
}
