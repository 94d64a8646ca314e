/**
 * Model-aware image policy: how big an image is worth handing a model, and how many prompt tokens it becomes.
 *
 * A policy is derived from the model's multimodal projector (mmproj GGUF metadata: `clip.projector_type`,
 * `clip.vision.image_size`, `patch_size`, `projector.scale_factor`, `spatial_merge_size`,
 * `preproc_image_size`, `image_grid_pinpoints`) and mirrors what libmtmd in the pinned llama.cpp does with an
 * image of a given size. Four families are modelled exactly:
 *
 * - `fixed` (LLaVA-1.5 `mlp`, `ldp`, Gemma 3): every image is resized to one `image_size` square; the token
 *   count never changes (LLaVA-1.5: 576, Gemma 3: 256 + 2 markers). `low` and `high` cost the same.
 * - `idefics3` (SmolVLM, Idefics3): an overview plus `image_size` tiles. With `preproc_image_size` libmtmd
 *   scales every image to that longest edge, so the tile grid follows the aspect ratio only; without it the
 *   grid follows the resolution (each side rounded to whole tiles), capped here at 4x4 tiles.
 * - `dynamic` (Qwen2-VL, Qwen2.5-VL, Qwen3-VL): the image is used at (nearly) its own resolution, aligned to
 *   `patch_size x merge`, between 8 and 4096 merged tokens.
 * - `anyres` (LLaVA-NeXT: `mlp` with grid pinpoints): an overview plus the tiles of the best pinpoint.
 *
 * Other projectors get a `generic` policy: images are capped at 2048 px and their token count is not
 * predicted (usage then carries no `image_tokens`).
 *
 * `detail` picks the size: `low` fits the model's base single-tile square (`image_size`, fewest tokens);
 * `high` uses up to the model's maximum and enlarges an image smaller than the base square to it; `auto`
 * is `high` without enlarging. Iris only ever shrinks below what the model would use, never hands over more.
 */
import type { ImageDetail } from '../protocol/chat-request.js';
import type { GgufValue } from '../gguf/gguf-format.js';
import { readGgufMetadata } from '../gguf/gguf-reader.js';
import { ggufNumber, ggufString } from '../gguf/gguf-values.js';

/** Fields every policy has. */
interface PolicyBase {
  /** `clip.projector_type` of the mmproj. */
  projector: string;
  /** The model's base single-tile resolution, in px (`clip.vision.image_size`): `low` fits this square. */
  baseSize: number;
}

/** Every image becomes one `baseSize` square and a fixed number of tokens. */
export interface FixedImagePolicy extends PolicyBase {
  family: 'fixed';
  /** Prompt tokens of any one image: embeddings plus begin/end markers. */
  tokensPerImage: number;
}

/** Idefics3 / SmolVLM: a `baseSize` overview plus a grid of `baseSize` tiles. */
export interface Idefics3ImagePolicy extends PolicyBase {
  family: 'idefics3';
  /** Embeddings per tile (and for the overview). */
  tileTokens: number;
  /** `preproc_image_size`: libmtmd scales every image to this longest edge; null when absent. */
  longestEdge: number | null;
  /** Without `longestEdge`: the most tiles per side Iris hands over. */
  maxTilesPerSide: number;
}

/** Qwen-VL style dynamic resolution: the image's own size, aligned, between a minimum and maximum area. */
export interface DynamicImagePolicy extends PolicyBase {
  family: 'dynamic';
  /** Sides are multiples of this (`patch_size x merge`). */
  align: number;
  /** Pixels per merged token along one side (`patch_size x 2` in libmtmd's Qwen count). */
  tokenSide: number;
  minPixels: number;
  maxPixels: number;
  /** Tokens around the embeddings (`<|vision_start|>`, `<|vision_end|>`). */
  markerTokens: number;
}

/** LLaVA-NeXT "anyres": an overview plus the tiles of the best-fitting grid pinpoint. */
export interface AnyresImagePolicy extends PolicyBase {
  family: 'anyres';
  /** Embeddings per tile (and for the overview). */
  tileTokens: number;
  /** Candidate resolutions `[width, height]` from `clip.vision.image_grid_pinpoints`. */
  pinpoints: [number, number][];
}

/** A projector Iris does not model: images are capped and their tokens not predicted. */
export interface GenericImagePolicy extends PolicyBase {
  family: 'generic';
  /** Longest edge handed over. */
  maxEdge: number;
}

/** How one model's images are shaped and counted. */
export type ImagePolicy = FixedImagePolicy | Idefics3ImagePolicy | DynamicImagePolicy | AnyresImagePolicy | GenericImagePolicy;

/** The policy for a model without a projector, or whose projector could not be read. */
export const GENERIC_IMAGE_POLICY: GenericImagePolicy = Object.freeze({ family: 'generic', projector: 'unknown', baseSize: 512, maxEdge: 2048 });

/** Most tiles per side for an idefics3 projector without `preproc_image_size` (what real SmolVLM uses). */
export const IDEFICS3_MAX_TILES_PER_SIDE = 4;

/** Reads an mmproj GGUF's metadata and derives its policy. Throws a GgufFormatError for an unreadable file. */
export async function imagePolicyFromMmproj(path: string): Promise<ImagePolicy> {
  const { metadata } = await readGgufMetadata(path);
  return imagePolicyFromMetadata(metadata);
}

/** Derives the policy from mmproj metadata (see the module comment for the families). */
export function imagePolicyFromMetadata(metadata: Readonly<Record<string, GgufValue>>): ImagePolicy {
  const text = (key: string): string | undefined => ggufString(metadata[key]);
  const integer = (key: string): number | undefined => {
    const number = ggufNumber(metadata[key]);
    return number !== undefined && Number.isInteger(number) && number > 0 && number < 1_000_000 ? number : undefined;
  };
  const projector = text('clip.vision.projector_type') ?? text('clip.projector_type') ?? 'mlp';
  const imageSize = integer('clip.vision.image_size');
  const patchSize = integer('clip.vision.patch_size');
  if (imageSize === undefined || patchSize === undefined || imageSize % patchSize !== 0) {
    return { ...GENERIC_IMAGE_POLICY, projector };
  }
  const patchesPerSide = imageSize / patchSize;
  const pinpoints = pinpointsFrom(metadata['clip.vision.image_grid_pinpoints']);
  switch (projector) {
    case 'mlp':
    case 'mlp_norm':
      if (pinpoints.length > 0) return { family: 'anyres', projector, baseSize: imageSize, tileTokens: patchesPerSide ** 2, pinpoints };
      return { family: 'fixed', projector, baseSize: imageSize, tokensPerImage: patchesPerSide ** 2 };
    case 'ldp':
    case 'ldpv2':
      if (pinpoints.length > 0) break;
      return { family: 'fixed', projector, baseSize: imageSize, tokensPerImage: Math.floor(patchesPerSide ** 2 / 4) };
    case 'gemma3': {
      const merge = integer('clip.vision.projector.scale_factor') ?? 4;
      return { family: 'fixed', projector, baseSize: imageSize, tokensPerImage: Math.floor(patchesPerSide ** 2 / merge ** 2) + 2 };
    }
    case 'idefics3': {
      const merge = integer('clip.vision.projector.scale_factor') ?? 1;
      return {
        family: 'idefics3',
        projector,
        baseSize: imageSize,
        tileTokens: Math.floor(patchesPerSide ** 2 / merge ** 2),
        longestEdge: integer('clip.vision.preproc_image_size') ?? null,
        maxTilesPerSide: IDEFICS3_MAX_TILES_PER_SIDE,
      };
    }
    case 'qwen2vl_merger':
    case 'qwen2.5vl_merger':
    case 'qwen3vl_merger': {
      const merge = integer('clip.vision.spatial_merge_size') ?? 2;
      const mergedArea = patchSize * patchSize * merge * merge;
      return {
        family: 'dynamic',
        projector,
        baseSize: Math.max(imageSize, patchSize * merge * 2),
        align: patchSize * merge,
        tokenSide: patchSize * 2,
        minPixels: 8 * mergedArea,
        maxPixels: 4096 * mergedArea,
        markerTokens: 2,
      };
    }
    default:
      break;
  }
  return { family: 'generic', projector, baseSize: imageSize, maxEdge: Math.max(imageSize, GENERIC_IMAGE_POLICY.maxEdge) };
}

/**
 * The size Iris hands the engine for a `width` x `height` image (already EXIF-oriented) at `detail`.
 * Aspect ratio is kept; the result is never larger than what the model can use.
 */
export function targetImageSize(policy: ImagePolicy, width: number, height: number, detail: ImageDetail): { width: number; height: number } {
  const base = policy.baseSize;
  let scale: number;
  if (detail === 'low') {
    scale = Math.min(1, base / width, base / height);
  } else {
    scale = Math.min(1, maxScale(policy, width, height));
    if (detail === 'high' && width <= base && height <= base) scale = Math.min(base / width, base / height);
  }
  if (scale === 1) return { width, height };
  return { width: Math.max(1, Math.floor(width * scale + 1e-9)), height: Math.max(1, Math.floor(height * scale + 1e-9)) };
}

/** The largest scale at which the image still holds no more pixels than the model uses. */
function maxScale(policy: ImagePolicy, width: number, height: number): number {
  switch (policy.family) {
    case 'fixed':
      return Math.min(policy.baseSize / width, policy.baseSize / height);
    case 'idefics3': {
      const edge = policy.longestEdge ?? policy.baseSize * policy.maxTilesPerSide;
      return Math.min(edge / width, edge / height);
    }
    case 'dynamic':
      return Math.sqrt(policy.maxPixels / (width * height));
    case 'anyres': {
      const longest = Math.max(...policy.pinpoints.map(([w, h]) => Math.max(w, h)));
      const area = Math.max(...policy.pinpoints.map(([w, h]) => w * h));
      return Math.min(longest / Math.max(width, height), Math.sqrt(area / (width * height)));
    }
    case 'generic':
      return Math.min(policy.maxEdge / width, policy.maxEdge / height);
  }
}

/**
 * Prompt tokens libmtmd turns a `width` x `height` image into: the embeddings plus the layout tokens around
 * them (assumed to be single tokens of the model's vocabulary, as they are in the real model families).
 * Undefined for a `generic` policy.
 */
export function imageTokenCount(policy: ImagePolicy, width: number, height: number): number | undefined {
  switch (policy.family) {
    case 'fixed':
      return policy.tokensPerImage;
    case 'idefics3': {
      const [columns, rows] = idefics3TileGrid(policy.baseSize, policy.longestEdge, width, height);
      // overview: "\n\n" <fake_token_around_image> <global-img> [embeddings] <fake_token_around_image>
      // each tile: <fake_token_around_image> <row_r_col_c> [embeddings]; rows separated by "\n"
      return 3 + policy.tileTokens + 1 + columns * rows * (2 + policy.tileTokens) + (rows - 1);
    }
    case 'dynamic': {
      const size = dynamicSize(policy, width, height);
      return Math.floor(size.width / policy.tokenSide) * Math.floor(size.height / policy.tokenSide) + policy.markerTokens;
    }
    case 'anyres': {
      const tile = policy.baseSize;
      if (width <= tile && height <= tile) return policy.tileTokens;
      const [refinedWidth, refinedHeight] = bestPinpoint(policy.pinpoints, width, height);
      const tiles = Math.ceil(refinedWidth / tile) * Math.ceil(refinedHeight / tile);
      return (1 + tiles) * policy.tileTokens;
    }
    case 'generic':
      return undefined;
  }
}

/**
 * The tile grid (columns, rows) libmtmd's idefics3 preprocessor cuts a `width`x`height` image into, for
 * `tile`-pixel tiles and, when the projector sets one, the longest edge it first resizes to.
 */
export function idefics3TileGrid(tile: number, longest: number | null, width: number, height: number): [number, number] {
  if (longest !== null) {
    const aspect = width / height;
    let resizedWidth: number;
    let resizedHeight: number;
    if (width >= height) {
      resizedWidth = longest;
      resizedHeight = Math.trunc(longest / aspect);
      resizedHeight += resizedHeight % 2;
    } else {
      resizedHeight = longest;
      resizedWidth = Math.trunc(longest * aspect);
      resizedWidth += resizedWidth % 2;
    }
    return [Math.ceil(resizedWidth / tile), Math.ceil(resizedHeight / tile)];
  }
  // each side rounded to the nearest whole tile, at least one
  const side = (pixels: number): number => Math.max(1, Math.round(Math.fround(pixels / tile)));
  return [side(width), side(height)];
}

/** libmtmd's aligned, area-bounded size for dynamic-resolution models ("smart resize", float32 as in C++). */
function dynamicSize(policy: DynamicImagePolicy, width: number, height: number): { width: number; height: number } {
  const align = policy.align;
  const f = Math.fround;
  const round = (x: number): number => Math.round(f(x / align)) * align;
  const ceil = (x: number): number => Math.ceil(f(x / align)) * align;
  const floor = (x: number): number => Math.floor(f(x / align)) * align;
  let alignedWidth = Math.max(align, round(width));
  let alignedHeight = Math.max(align, round(height));
  if (alignedWidth * alignedHeight > policy.maxPixels) {
    const beta = f(Math.sqrt(f((height * width) / policy.maxPixels)));
    alignedHeight = Math.max(align, floor(f(height / beta)));
    alignedWidth = Math.max(align, floor(f(width / beta)));
  } else if (alignedWidth * alignedHeight < policy.minPixels) {
    const beta = f(Math.sqrt(f(policy.minPixels / (height * width))));
    alignedHeight = ceil(f(height * beta));
    alignedWidth = ceil(f(width * beta));
  }
  return { width: alignedWidth, height: alignedHeight };
}

/** The pinpoint libmtmd picks: the most effective resolution, then the least waste. */
function bestPinpoint(pinpoints: readonly [number, number][], width: number, height: number): [number, number] {
  const f = Math.fround;
  let best: [number, number] = pinpoints[0] ?? [width, height];
  let bestEffective = 0;
  let leastWaste = Number.MAX_SAFE_INTEGER;
  for (const candidate of pinpoints) {
    const scale = Math.min(f(candidate[0] / width), f(candidate[1] / height));
    const scaledWidth = Math.trunc(f(width * scale));
    const scaledHeight = Math.trunc(f(height * scale));
    const effective = Math.min(scaledWidth * scaledHeight, width * height);
    const waste = candidate[0] * candidate[1] - effective;
    if (effective > bestEffective || (effective === bestEffective && waste < leastWaste)) {
      bestEffective = effective;
      leastWaste = waste;
      best = candidate;
    }
  }
  return best;
}

function pinpointsFrom(value: GgufValue | undefined): [number, number][] {
  if (value?.type !== 'array') return [];
  const numbers = value.value.map((item) => (typeof item === 'bigint' ? Number(item) : item));
  if (numbers.length % 2 !== 0 || !numbers.every((item) => typeof item === 'number' && Number.isInteger(item) && item > 0)) return [];
  const pairs: [number, number][] = [];
  for (let index = 0; index < numbers.length; index += 2) pairs.push([numbers[index] as number, numbers[index + 1] as number]);
  return pairs;
}

/** A short human description of the policy, for logs and the README's table. */
export function describeImagePolicy(policy: ImagePolicy): string {
  switch (policy.family) {
    case 'fixed':
      return `${policy.projector}: fixed ${policy.baseSize}px, ${policy.tokensPerImage} tokens per image at any detail`;
    case 'idefics3':
      return policy.longestEdge === null
        ? `${policy.projector}: ${policy.baseSize}px tiles, up to ${policy.maxTilesPerSide}x${policy.maxTilesPerSide} tiles + overview`
        : `${policy.projector}: scaled to ${policy.longestEdge}px longest edge, ${policy.baseSize}px tiles (grid by aspect ratio)`;
    case 'dynamic':
      return `${policy.projector}: dynamic resolution, ${policy.minPixels}-${policy.maxPixels} px, aligned to ${policy.align}`;
    case 'anyres':
      return `${policy.projector}: anyres, ${policy.baseSize}px tiles over ${policy.pinpoints.length} pinpoints`;
    case 'generic':
      return `${policy.projector}: not modelled; images capped at ${policy.maxEdge}px, tokens not predicted`;
  }
}

/** One image as {@link fitImageTokens} sees it: its source size and the size and tokens planned for it. */
export interface PlannedImageSize {
  sourceWidth: number;
  sourceHeight: number;
  width: number;
  height: number;
  tokens: number;
}

/**
 * Lowers the resolution of images until their tokens add up to at most `maxTokens`: the image costing the
 * most steps down first, each step the next smaller size (same aspect ratio) that costs fewer tokens, never
 * below what `detail: low` sends. Returns the new plan, or the fewest tokens reachable when even that is
 * more than `maxTokens`.
 */
export function fitImageTokens(
  policy: ImagePolicy,
  images: readonly PlannedImageSize[],
  maxTokens: number,
): { fits: true; images: PlannedImageSize[] } | { fits: false; minimumTokens: number } {
  const plan = images.map((image) => ({ ...image }));
  let total = plan.reduce((sum, image) => sum + image.tokens, 0);
  const stuck = new Set<number>();
  while (total > maxTokens) {
    let pick = -1;
    for (let index = 0; index < plan.length; index += 1) {
      if (stuck.has(index)) continue;
      if (pick === -1 || plan[index]!.tokens > plan[pick]!.tokens) pick = index;
    }
    if (pick === -1) {
      const minimumTokens = images.reduce((sum, image) => sum + lowestTokens(policy, image), 0);
      return { fits: false, minimumTokens };
    }
    const smaller = smallerImageSize(policy, plan[pick]!);
    if (smaller === undefined) {
      stuck.add(pick);
      continue;
    }
    total -= plan[pick]!.tokens - smaller.tokens;
    plan[pick] = smaller;
  }
  return { fits: true, images: plan };
}

/** The next smaller size of `image` that costs fewer tokens, not below the `low` size; undefined if none. */
function smallerImageSize(policy: ImagePolicy, image: PlannedImageSize): PlannedImageSize | undefined {
  const { sourceWidth, sourceHeight } = image;
  const floor = targetImageSize(policy, sourceWidth, sourceHeight, 'low');
  let scale = image.width / sourceWidth;
  for (let step = 0; step < 200; step += 1) {
    scale *= 0.95;
    let width = Math.max(1, Math.floor(sourceWidth * scale));
    let height = Math.max(1, Math.floor(sourceHeight * scale));
    const atFloor = width <= floor.width || height <= floor.height;
    if (atFloor) ({ width, height } = floor);
    const tokens = imageTokenCount(policy, width, height);
    if (tokens !== undefined && tokens < image.tokens) return { sourceWidth, sourceHeight, width, height, tokens };
    if (atFloor) return undefined;
  }
  return undefined;
}

function lowestTokens(policy: ImagePolicy, image: PlannedImageSize): number {
  const floor = targetImageSize(policy, image.sourceWidth, image.sourceHeight, 'low');
  return Math.min(image.tokens, imageTokenCount(policy, floor.width, floor.height) ?? image.tokens);
}
