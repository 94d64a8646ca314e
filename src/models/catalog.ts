/**
 * The catalog of vision-language models Iris knows to work with its embedded engine (llama.cpp's libmtmd at
 * the pinned commit `de3ff81`): for each, the GGUF repo on the Hugging Face hub, the file name pattern and
 * default quantization, the projector (mmproj) file, the context Iris serves it with, and how it treats
 * images. Users name a model by its catalog id (the original model repo, e.g. `HuggingFaceTB/SmolVLM-256M-Instruct`),
 * by an alias (`smolvlm-256m`, `llava-hf/llava-1.5-7b-hf`) or by the GGUF repo itself; anything else that looks
 * like `owner/repo` is pulled as a plain hub repo. Ids of models the embedded engine cannot run (Llama 3.2
 * Vision) get an error that points to a remote engine instead.
 *
 * File names and repos come from ggml-org's multimodal GGUF collection and llama.cpp's own `docs/multimodal.md`
 * and `tools/mtmd/tests.sh` at the pinned commit; projector names are `clip.projector_type` values from its
 * `tools/mtmd/clip-impl.h`. Files are still chosen from the repo's live file list at pull time, so a renamed
 * file degrades to llama.cpp's own selection rule rather than to a 404.
 */
import { deepFreeze } from '../config/deep-freeze.js';
import { echo } from '../echo.js';
import { invalidRequest, modelNotFound } from '../errors.js';

/** One model in the catalog. */
export interface CatalogEntry {
  /** Canonical id: the original model repo on the hub (what `/v1/models` lists for it). */
  id: string;
  /** Other names users type for it: short names, other upstream repos. Matched case-insensitively. */
  aliases: readonly string[];
  /** Human name for listings. */
  name: string;
  /** Hub repo holding the GGUF files. Also accepted as an alias. */
  repo: string;
  /** File names are `<fileStem>-<QUANT>.gguf`; the repo's file list decides when this does not match. */
  fileStem: string;
  /** Quantization pulled when none is asked for (`id:Q8_0` asks). */
  defaultQuant: string;
  /** Preferred projector file; when absent or gone from the repo, the closest `mmproj` GGUF is taken. */
  mmproj?: string;
  /** Context (tokens, shared by all slots) Iris serves the model with. */
  context: number;
  /** libmtmd projector type (`clip.projector_type`), as the pinned llama.cpp names it. */
  projector: string;
  /** How the model sees images: resizing, tiling and what an image costs in prompt tokens. */
  imageNotes: string;
  /** Approximate download in bytes at the default quantization: text model, then projector. */
  approxBytes: { model: number; mmproj: number };
  /** `llama-server --chat-template` name the model needs because its GGUF carries no usable template. */
  chatTemplate?: string;
}

/** A model id Iris recognises but cannot run with its embedded engine. */
export interface UnsupportedModel {
  /** The ids (original repos) users type; matched case-insensitively. */
  ids: readonly string[];
  /** Why the embedded engine cannot run it. */
  reason: string;
}

const MB = 1_000_000;

/** Every model in the catalog. The first is the default model of `iris serve`. */
export const CATALOG: readonly CatalogEntry[] = deepFreeze([
  {
    id: 'HuggingFaceTB/SmolVLM-256M-Instruct',
    aliases: ['smolvlm-256m', 'smolvlm', 'smolvlm-256m-instruct'],
    name: 'SmolVLM 256M Instruct',
    repo: 'ggml-org/SmolVLM-256M-Instruct-GGUF',
    fileStem: 'SmolVLM-256M-Instruct',
    defaultQuant: 'Q8_0',
    mmproj: 'mmproj-SmolVLM-256M-Instruct-Q8_0.gguf',
    context: 8192,
    projector: 'idefics3',
    imageNotes:
      'Resized to a 2048 px longest edge and cut into 512 px tiles plus an overview; 64 tokens per tile, ' +
      'about 1.1k prompt tokens for a large image. Small images cost one tile.',
    approxBytes: { model: 175 * MB, mmproj: 104 * MB },
  },
  {
    id: 'HuggingFaceTB/SmolVLM-500M-Instruct',
    aliases: ['smolvlm-500m', 'smolvlm-500m-instruct'],
    name: 'SmolVLM 500M Instruct',
    repo: 'ggml-org/SmolVLM-500M-Instruct-GGUF',
    fileStem: 'SmolVLM-500M-Instruct',
    defaultQuant: 'Q8_0',
    mmproj: 'mmproj-SmolVLM-500M-Instruct-Q8_0.gguf',
    context: 8192,
    projector: 'idefics3',
    imageNotes: 'Same image handling as SmolVLM-256M: 512 px tiles of 64 tokens plus an overview, up to about 1.1k tokens.',
    approxBytes: { model: 437 * MB, mmproj: 104 * MB },
  },
  {
    id: 'HuggingFaceTB/SmolVLM-Instruct',
    aliases: ['smolvlm-2.2b', 'smolvlm-2b', 'smolvlm-instruct'],
    name: 'SmolVLM 2.2B Instruct',
    repo: 'ggml-org/SmolVLM-Instruct-GGUF',
    fileStem: 'SmolVLM-Instruct',
    defaultQuant: 'Q4_K_M',
    mmproj: 'mmproj-SmolVLM-Instruct-Q8_0.gguf',
    context: 8192,
    projector: 'idefics3',
    imageNotes: 'Resized to a 1536 px longest edge, 384 px tiles of 81 tokens plus an overview: up to about 1.4k tokens.',
    approxBytes: { model: 1112 * MB, mmproj: 593 * MB },
  },
  {
    id: 'HuggingFaceTB/SmolVLM2-2.2B-Instruct',
    aliases: ['smolvlm2-2.2b', 'smolvlm2', 'smolvlm2-2.2b-instruct'],
    name: 'SmolVLM2 2.2B Instruct',
    repo: 'ggml-org/SmolVLM2-2.2B-Instruct-GGUF',
    fileStem: 'SmolVLM2-2.2B-Instruct',
    defaultQuant: 'Q4_K_M',
    mmproj: 'mmproj-SmolVLM2-2.2B-Instruct-Q8_0.gguf',
    context: 8192,
    projector: 'idefics3',
    imageNotes: '384 px tiles of 81 tokens plus an overview, like SmolVLM 2.2B. Video input is not served by Iris.',
    approxBytes: { model: 1113 * MB, mmproj: 593 * MB },
  },
  {
    id: 'Qwen/Qwen2.5-VL-3B-Instruct',
    aliases: ['qwen2.5-vl-3b', 'qwen2.5vl-3b'],
    name: 'Qwen2.5-VL 3B Instruct',
    repo: 'ggml-org/Qwen2.5-VL-3B-Instruct-GGUF',
    fileStem: 'Qwen2.5-VL-3B-Instruct',
    defaultQuant: 'Q4_K_M',
    mmproj: 'mmproj-Qwen2.5-VL-3B-Instruct-Q8_0.gguf',
    context: 8192,
    projector: 'qwen2.5vl_merger',
    imageNotes:
      'Native resolution: one token per 28x28 px (14 px patches merged 2x2), so a 1024x1024 image costs about ' +
      '1.3k tokens; large images are scaled down to llama.cpp\'s pixel budget. Good at documents and text in images.',
    approxBytes: { model: 1930 * MB, mmproj: 845 * MB },
  },
  {
    id: 'Qwen/Qwen2.5-VL-7B-Instruct',
    aliases: ['qwen2.5-vl-7b', 'qwen2.5vl-7b', 'qwen2.5-vl'],
    name: 'Qwen2.5-VL 7B Instruct',
    repo: 'ggml-org/Qwen2.5-VL-7B-Instruct-GGUF',
    fileStem: 'Qwen2.5-VL-7B-Instruct',
    defaultQuant: 'Q4_K_M',
    mmproj: 'mmproj-Qwen2.5-VL-7B-Instruct-Q8_0.gguf',
    context: 8192,
    projector: 'qwen2.5vl_merger',
    imageNotes: 'Same image handling as Qwen2.5-VL 3B: one token per 28x28 px at native resolution.',
    approxBytes: { model: 4680 * MB, mmproj: 853 * MB },
  },
  {
    id: 'Qwen/Qwen2-VL-2B-Instruct',
    aliases: ['qwen2-vl-2b'],
    name: 'Qwen2-VL 2B Instruct',
    repo: 'ggml-org/Qwen2-VL-2B-Instruct-GGUF',
    fileStem: 'Qwen2-VL-2B-Instruct',
    defaultQuant: 'Q4_K_M',
    context: 8192,
    projector: 'qwen2vl_merger',
    imageNotes: 'Native resolution, one token per 28x28 px, like Qwen2.5-VL.',
    approxBytes: { model: 990 * MB, mmproj: 710 * MB },
  },
  {
    id: 'google/gemma-3-4b-it',
    aliases: ['gemma-3-4b', 'gemma3-4b', 'gemma-3-4b-it'],
    name: 'Gemma 3 4B IT',
    repo: 'ggml-org/gemma-3-4b-it-GGUF',
    fileStem: 'gemma-3-4b-it',
    defaultQuant: 'Q4_K_M',
    mmproj: 'mmproj-model-f16.gguf',
    context: 8192,
    projector: 'gemma3',
    imageNotes:
      'Every image is resized to 896x896 (aspect ratio not kept; no pan-and-scan in llama.cpp) and costs 256 tokens. ' +
      'Gated upstream, but the ggml-org GGUFs are not.',
    approxBytes: { model: 2490 * MB, mmproj: 851 * MB },
  },
  {
    id: 'google/gemma-3-12b-it',
    aliases: ['gemma-3-12b', 'gemma3-12b', 'gemma-3-12b-it'],
    name: 'Gemma 3 12B IT',
    repo: 'ggml-org/gemma-3-12b-it-GGUF',
    fileStem: 'gemma-3-12b-it',
    defaultQuant: 'Q4_K_M',
    context: 8192,
    projector: 'gemma3',
    imageNotes: 'Same image handling as Gemma 3 4B: 896x896, 256 tokens per image.',
    approxBytes: { model: 7300 * MB, mmproj: 854 * MB },
  },
  {
    id: 'llava-hf/llava-1.5-7b-hf',
    aliases: ['llava-1.5-7b', 'llava', 'liuhaotian/llava-v1.5-7b', 'llava-v1.5-7b'],
    name: 'LLaVA 1.5 7B',
    repo: 'second-state/Llava-v1.5-7B-GGUF',
    fileStem: 'llava-v1.5-7b',
    defaultQuant: 'Q4_K_M',
    mmproj: 'llava-v1.5-7b-mmproj-model-f16.gguf',
    context: 4096,
    projector: 'mlp',
    imageNotes:
      'CLIP ViT-L/14 at 336x336: every image is resized to 336x336 and costs 576 tokens. Trained with a 4096-token ' +
      'context. Needs the vicuna chat template (llama.cpp\'s own tests pass --chat-template vicuna).',
    approxBytes: { model: 4080 * MB, mmproj: 624 * MB },
    chatTemplate: 'vicuna',
  },
  {
    id: 'mistral-community/pixtral-12b',
    aliases: ['pixtral-12b', 'pixtral', 'mistralai/Pixtral-12B-2409'],
    name: 'Pixtral 12B',
    repo: 'ggml-org/pixtral-12b-GGUF',
    fileStem: 'pixtral-12b',
    defaultQuant: 'Q4_K_M',
    mmproj: 'mmproj-pixtral-12b-f16.gguf',
    context: 8192,
    projector: 'pixtral',
    imageNotes:
      'Native resolution up to 1024x1024 in 16 px patches plus a row-break token per row: up to about 4.1k tokens ' +
      'for a large image, so keep the context large or images small.',
    approxBytes: { model: 7480 * MB, mmproj: 870 * MB },
  },
  {
    id: 'OpenGVLab/InternVL3-1B-Instruct',
    aliases: ['internvl3-1b'],
    name: 'InternVL3 1B Instruct',
    repo: 'ggml-org/InternVL3-1B-Instruct-GGUF',
    fileStem: 'InternVL3-1B-Instruct',
    defaultQuant: 'Q8_0',
    context: 8192,
    projector: 'internvl',
    imageNotes: '448 px tiles of 256 tokens plus a thumbnail; large images cost several tiles.',
    approxBytes: { model: 675 * MB, mmproj: 330 * MB },
  },
  {
    id: 'LiquidAI/LFM2-VL-450M',
    aliases: ['lfm2-vl-450m'],
    name: 'LFM2-VL 450M',
    repo: 'ggml-org/LFM2-VL-450M-GGUF',
    fileStem: 'LFM2-VL-450M',
    defaultQuant: 'Q8_0',
    context: 8192,
    projector: 'lfm2',
    imageNotes: 'Native resolution up to 512x512 (larger images are tiled); a small fast model.',
    approxBytes: { model: 380 * MB, mmproj: 100 * MB },
  },
] satisfies CatalogEntry[]);

/** Models Iris recognises but its embedded engine cannot run. */
export const UNSUPPORTED_MODELS: readonly UnsupportedModel[] = deepFreeze([
  {
    ids: [
      'meta-llama/Llama-3.2-11B-Vision-Instruct',
      'meta-llama/Llama-3.2-11B-Vision',
      'meta-llama/Llama-3.2-90B-Vision-Instruct',
      'meta-llama/Llama-3.2-90B-Vision',
    ],
    reason:
      'Llama 3.2 Vision feeds images through cross-attention layers (the mllama architecture), which llama.cpp\'s ' +
      'libmtmd does not implement at the pinned commit',
  },
] satisfies UnsupportedModel[]);

/**
 * Where users are sent for models the embedded engine cannot run. One place, so the wording follows the
 * remote-engine configuration as it evolves.
 */
export const REMOTE_ENGINE_HINT =
  'Serve it from an OpenAI-compatible server that supports it (vLLM, SGLang, a hosted API) and configure that server ' +
  "in Iris as a remote engine: a model entry with `upstream: { endpoints: [{ url, api_key }] }` (see the README's Remote engines).";

/** The model `iris serve` pulls when no model is configured. */
export const DEFAULT_CATALOG_ENTRY: CatalogEntry = CATALOG[0] as CatalogEntry;

/** What a model reference names: a catalog entry, or a plain hub repo. Both may carry a quantization. */
export type ModelReference =
  | { kind: 'catalog'; entry: CatalogEntry; quant: string | undefined }
  | { kind: 'repo'; repo: string; quant: string | undefined };

// owner/name as the hub allows them: letters, digits, '-', '_', '.', no leading '.' or '-', no '..'.
const REPO_ID = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,95}\/[A-Za-z0-9][A-Za-z0-9_.-]{0,95}$/;
const QUANT = /^[A-Za-z0-9_]{1,32}$/;

/** Whether `value` is a well-formed hub repo id (`owner/name`), safe to use as a path below the cache. */
export function isRepoId(value: string): boolean {
  return REPO_ID.test(value) && !value.includes('..');
}

/**
 * Splits `name[:quant]`. The quant, when present, is upper-cased (`q4_k_m` -> `Q4_K_M`).
 *
 * @throws {IrisError} `invalid_value` when the quant part is empty or not a quantization name.
 */
export function splitQuant(reference: string): { name: string; quant: string | undefined } {
  const colon = reference.lastIndexOf(':');
  if (colon === -1) return { name: reference.trim(), quant: undefined };
  const name = reference.slice(0, colon).trim();
  const quant = reference.slice(colon + 1).trim();
  if (!QUANT.test(quant)) {
    throw invalidRequest(`'${echo(reference)}' does not end in a quantization such as ':Q4_K_M' or ':Q8_0'.`, 'model', 'invalid_value');
  }
  return { name, quant: quant.toUpperCase() };
}

/** The catalog entry whose id, alias or GGUF repo is `id` (case-insensitive, no `:quant`), if any. */
export function findCatalogEntry(id: string): CatalogEntry | undefined {
  const wanted = id.trim().toLowerCase();
  return CATALOG.find(
    (entry) =>
      entry.id.toLowerCase() === wanted ||
      entry.repo.toLowerCase() === wanted ||
      entry.aliases.some((alias) => alias.toLowerCase() === wanted),
  );
}

/** The catalog entry that pulls from this GGUF repo, if any. */
export function catalogEntryForRepo(repo: string): CatalogEntry | undefined {
  const wanted = repo.toLowerCase();
  return CATALOG.find((entry) => entry.repo.toLowerCase() === wanted);
}

/**
 * Resolves what a user typed (`smolvlm-256m`, `llava-hf/llava-1.5-7b-hf:Q8_0`, `bartowski/Some-GGUF:Q4_K_M`)
 * into a catalog entry or a plain hub repo. Looks at nothing but the catalog: the hub decides later
 * whether a plain repo exists.
 *
 * @throws {IrisError} `model_not_supported` (400) for models the embedded engine cannot run, naming the
 *   remote-engine way; `model_not_found` (404) for a name that is neither in the catalog nor `owner/repo`.
 */
export function resolveCatalogId(reference: string): ModelReference {
  const { name, quant } = splitQuant(reference);
  const entry = findCatalogEntry(name);
  if (entry) return { kind: 'catalog', entry, quant };

  const wanted = name.toLowerCase();
  const unsupported = UNSUPPORTED_MODELS.find((model) => model.ids.some((id) => id.toLowerCase() === wanted));
  if (unsupported) {
    throw invalidRequest(
      `'${echo(name)}' cannot run in Iris's embedded engine: ${unsupported.reason}. ${REMOTE_ENGINE_HINT}`,
      'model',
      'model_not_supported',
    );
  }
  if (isRepoId(name)) return { kind: 'repo', repo: name, quant };
  throw modelNotFound(
    name,
    `'${echo(name)}' is not a model Iris knows. Use a catalog id (${CATALOG.map((known) => known.aliases[0]).join(', ')}) ` +
      'or a Hugging Face repo with GGUF files, as owner/repo[:QUANT].',
  );
}
