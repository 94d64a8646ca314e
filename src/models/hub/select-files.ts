/**
 * Chooses which GGUF files of a repo make a model: the text model for a quantization (all parts of a split
 * file) and its projector. Follows llama.cpp's own `-hf` rules (`common/download.cpp` at the pinned commit:
 * `find_best_model`, `find_best_sibling`), so `iris pull repo:Q8_0` picks what `llama-server -hf repo:Q8_0`
 * would, with the catalog's exact file names tried first.
 */
import { echo } from '../../echo.js';
import { modelNotFound } from '../../errors.js';

/** The little the selection needs to know about a file. */
export interface RepoFileName {
  path: string;
}

/** What {@link selectModelFiles} picked. */
export interface SelectedFiles<F extends RepoFileName> {
  /** The text model: one file, or every part of a split GGUF (first part first). */
  model: F[];
  /** The projector, when the repo has one. */
  mmproj: F | undefined;
  /** Quantization of the chosen model file, upper-case (`Q4_K_M`), or the one asked for. */
  quant: string;
}

/** Options of {@link selectModelFiles}. */
export interface SelectOptions {
  /** Quantization asked for (`Q4_K_M`); matched case-insensitively. */
  quant?: string | undefined;
  /** Quantizations to try, in order, when none is asked for. @default ['Q4_K_M', 'Q8_0'] (llama.cpp's) */
  defaultQuants?: readonly string[] | undefined;
  /** Catalog file stem: `<stem>-<QUANT>.gguf` is tried before the generic rule. */
  fileStem?: string | undefined;
  /** Catalog projector file, tried before the closest `mmproj` GGUF. */
  mmproj?: string | undefined;
  /** Repo name for error messages. */
  repo: string;
}

const SPLIT = /-(\d{5})-of-(\d{5})\.gguf$/i;
const SIDECAR_MARKERS = ['mmproj', 'imatrix', 'mtp-', 'eagle3-', 'dflash-', 'dspark-'];
const QUANT_IN_NAME = /(?:^|[-_.])(I?Q\d(?:_[A-Z0-9]+)*|BF16|F16|F32)(?=[-.])/i;

/**
 * Picks the model (and projector) files for a quantization from a repo's file list.
 *
 * @throws {IrisError} `model_not_found` (404) when the repo holds no GGUF model or none of the asked
 *   quantization; the message lists what there is.
 */
export function selectModelFiles<F extends RepoFileName>(files: readonly F[], options: SelectOptions): SelectedFiles<F> {
  const models = files.filter((file) => isModelGguf(file.path));
  if (models.length === 0) {
    throw modelNotFound(
      options.repo,
      `${echo(options.repo)} has no GGUF model files. Iris runs GGUF models: name a catalog id (see 'iris models --catalog') ` +
        'or a repo with GGUF conversions (often named <model>-GGUF).',
    );
  }
  const tags = options.quant !== undefined ? [options.quant] : [...(options.defaultQuants ?? ['Q4_K_M', 'Q8_0'])];
  let primary: F | undefined;
  for (const tag of tags) {
    primary = exactName(models, options.fileStem, tag) ?? byTag(models, tag);
    if (primary) break;
  }
  // llama.cpp falls back to the first model file only when no quantization was asked for
  if (!primary && options.quant === undefined) primary = models.find((file) => splitIndex(file.path) <= 1);
  if (!primary) {
    const available = [...new Set(models.map((file) => quantOf(file.path)).filter((quant) => quant !== undefined))];
    throw modelNotFound(
      options.repo,
      `${echo(options.repo)} has no ${echo(options.quant ?? '')} GGUF. ` +
        (available.length > 0 ? `Available: ${available.join(', ')}.` : `Files: ${models.map((file) => file.path).join(', ')}.`),
    );
  }
  const mmproj = selectProjector(files, primary.path, options.mmproj);
  return {
    model: splitParts(models, primary),
    mmproj,
    quant: quantOf(primary.path) ?? options.quant ?? tags[0] ?? 'unknown',
  };
}

/**
 * The projector for a model file: `preferred` when the list has it, else the closest `mmproj` GGUF
 * (llama.cpp's rule), else none.
 */
export function selectProjector<F extends RepoFileName>(files: readonly F[], modelPath: string, preferred?: string | undefined): F | undefined {
  const wanted = preferred?.toLowerCase();
  return (wanted === undefined ? undefined : files.find((file) => file.path.toLowerCase() === wanted)) ?? bestSibling(files, modelPath, 'mmproj');
}

/** Whether a path is a GGUF text model (not a projector, imatrix or draft-model sidecar). */
export function isModelGguf(path: string): boolean {
  if (!path.toLowerCase().endsWith('.gguf')) return false;
  const name = (path.split('/').pop() ?? path).toLowerCase();
  return !SIDECAR_MARKERS.some((marker) => name.includes(marker));
}

/** Whether a path is a projector GGUF. */
export function isMmprojGguf(path: string): boolean {
  const name = (path.split('/').pop() ?? path).toLowerCase();
  return name.endsWith('.gguf') && name.includes('mmproj');
}

/** The quantization a file name carries (`SmolVLM-256M-Instruct-Q8_0.gguf` -> `Q8_0`), upper-case. */
export function quantOf(path: string): string | undefined {
  const name = path.split('/').pop() ?? path;
  return QUANT_IN_NAME.exec(name)?.[1]?.toUpperCase();
}

/** The 1-based part number of a split GGUF (`-00002-of-00003.gguf` -> 2), or 0 for a whole file. */
export function splitIndex(path: string): number {
  const match = SPLIT.exec(path);
  return match ? Number(match[1]) : 0;
}

function exactName<F extends RepoFileName>(models: readonly F[], stem: string | undefined, tag: string): F | undefined {
  if (stem === undefined) return undefined;
  const wanted = `${stem}-${tag}.gguf`.toLowerCase();
  return models.find((file) => file.path.toLowerCase() === wanted);
}

/** llama.cpp: the first model file whose name contains `<tag>.` or `<tag>-`, case-insensitively. */
function byTag<F extends RepoFileName>(models: readonly F[], tag: string): F | undefined {
  const pattern = new RegExp(`(?:^|[-_./])${escapeRegExp(tag)}[.-]`, 'i');
  return models.find((file) => pattern.test(file.path) && splitIndex(file.path) <= 1);
}

function splitParts<F extends RepoFileName>(models: readonly F[], primary: F): F[] {
  const match = SPLIT.exec(primary.path);
  if (!match) return [primary];
  const prefix = primary.path.slice(0, match.index);
  const count = match[2];
  return models
    .filter((file) => {
      const other = SPLIT.exec(file.path);
      return other !== null && other[2] === count && file.path.slice(0, other.index) === prefix;
    })
    .sort((a, b) => splitIndex(a.path) - splitIndex(b.path));
}

/**
 * llama.cpp's `find_best_sibling`: among GGUFs whose name contains `keyword` and that sit in the model's
 * directory or above it, prefer the deepest directory, then the quantization closest in bits to the model's.
 */
function bestSibling<F extends RepoFileName>(files: readonly F[], modelPath: string, keyword: string): F | undefined {
  const modelDirs = modelPath.split('/').slice(0, -1);
  const modelBits = quantBits(modelPath);
  let best: { file: F; depth: number; diff: number } | undefined;
  for (const file of files) {
    const name = file.path.toLowerCase();
    if (!name.endsWith('.gguf') || !name.includes(keyword)) continue;
    const dirs = file.path.split('/').slice(0, -1);
    if (dirs.length > modelDirs.length || dirs.some((dir, index) => dir !== modelDirs[index])) continue;
    const depth = dirs.length;
    const diff = Math.abs(quantBits(file.path) - modelBits);
    if (!best || depth > best.depth || (depth === best.depth && diff < best.diff)) best = { file, depth, diff };
  }
  return best?.file;
}

/** The first number in a file's quantization (Q4_K_M -> 4, F16 -> 16), 0 when there is none. */
function quantBits(path: string): number {
  const quant = quantOf(path);
  const digits = quant === undefined ? undefined : /\d+/.exec(quant);
  return digits ? Number(digits[0]) : 0;
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
