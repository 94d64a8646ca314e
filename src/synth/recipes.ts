/**
 * Synthetic vision-language models: random weights in real GGUF architectures that the pinned llama.cpp
 * loads and runs in `llama-server --mmproj`. Their output is gibberish (often invalid UTF-8), but they
 * exercise the whole path: tokenizer, chat template, image preprocessing, vision encoder, projector, and
 * the prompt-token accounting a client sees. Tests use the tiny ones; benchmarks use `smolvlm`, which has
 * the shapes (and so the cost) of SmolVLM-256M-Instruct.
 *
 * Each recipe is a text model (`model.gguf`, llama architecture, byte-level BPE vocabulary, ChatML
 * template) plus a projector (`mmproj.gguf`, a ViT with a LLaVA `mlp` or an `idefics3` projector).
 * Vocabularies are fixed per recipe; only the weights depend on the seed.
 */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';

import {
  constantFill,
  createPrng,
  deriveSeed,
  uniformFill,
  writeGguf,
  type GgufTensorSource,
  type GgufTensorType,
} from './gguf-writer.js';
import { idefics3TileGrid } from '../images/image-policy.js';
import type { GgufValue } from '../gguf/gguf-format.js';
import { ggufValue } from '../gguf/gguf-values.js';

/**
 * Which synthetic model to build.
 * - `tiny`: < 1 MB in all, LLaVA-style `mlp` projector, every image becomes 16 image tokens.
 * - `tiny-tiling`: same text model, `idefics3` projector that tiles the image, so bigger images cost more
 *   tokens (see {@link expectedImageTokens}); < 2 MB.
 * - `smolvlm`: the shapes of SmolVLM-256M-Instruct (F16, about 450 MB), for benchmarks.
 */
export type SynthSize = 'tiny' | 'tiny-tiling' | 'smolvlm';

/** Options of {@link synthesizeModel}. */
export interface SynthOptions {
  /** Output directory; created if missing. `model.gguf` and `mmproj.gguf` in it are overwritten. */
  out: string;
  /**
   * Recipe to build.
   * @default 'tiny'
   */
  size?: SynthSize;
  /**
   * Seed of the random weights (an integer, used modulo 2^32); the same recipe and seed give
   * byte-identical files.
   * @default 0
   */
  seed?: number;
  /**
   * Jinja chat template written into the model (`tokenizer.chat_template`), e.g. a real model's, to
   * exercise its prompt and tool-call formats.
   * @default a minimal ChatML template
   */
  chatTemplate?: string;
  /**
   * Pieces of text added to the vocabulary as single tokens (spelled by merges), e.g. a chat template's
   * tool-call markers, so that a test can bias the model towards them by token id.
   * @default none
   */
  extraTokens?: readonly string[];
}

/** The files {@link synthesizeModel} wrote. */
export interface SynthResult {
  /** Path of the text model, for `llama-server -m`. */
  modelPath: string;
  /** Path of the projector, for `llama-server --mmproj`. */
  mmprojPath: string;
  /**
   * How much `usage.prompt_tokens` grows when one base-resolution image (the encoder's `image_size`
   * square) is added to a chat message: the image embeddings plus any layout tokens around them.
   */
  imageTokensPerImage: number;
}

type ProjectorKind = 'mlp' | 'idefics3';

interface TextSpec {
  name: string;
  contextLength: number;
  embedding: number;
  layers: number;
  heads: number;
  kvHeads: number;
  feedForward: number;
  ropeTheta: number;
  rmsEpsilon: number;
  vocabSize: number;
  /** Largest tile grid side whose `<row_r_col_c>` tokens are in the vocabulary. */
  maxGridSide: number;
}

interface VisionSpec {
  projector: ProjectorKind;
  imageSize: number;
  patchSize: number;
  embedding: number;
  layers: number;
  heads: number;
  feedForward: number;
  layerNormEpsilon: number;
  /** idefics3: pixel-shuffle factor per side; each tile gives `(imageSize / patchSize / scaleFactor)^2` tokens. */
  scaleFactor: number;
  /** idefics3: when set, every image is first resized so its longest edge is this (what real SmolVLM does). */
  preprocessLongestEdge: number | null;
}

interface Recipe {
  text: TextSpec;
  vision: VisionSpec;
  /** Storage type of the big matrices; norms, biases and position embeddings are always F32. */
  weightType: GgufTensorType;
}

const TINY_TEXT: TextSpec = {
  name: 'iris-synth-tiny',
  contextLength: 4096,
  embedding: 64,
  layers: 2,
  heads: 4,
  kvHeads: 2,
  feedForward: 128,
  ropeTheta: 10_000,
  rmsEpsilon: 1e-5,
  vocabSize: 512,
  maxGridSide: 8,
};

const RECIPES: Readonly<Record<SynthSize, Recipe>> = {
  // 32 px image, 8 px patches: 16 patches, and the mlp projector keeps one token per patch.
  tiny: {
    text: TINY_TEXT,
    vision: {
      projector: 'mlp',
      imageSize: 32,
      patchSize: 8,
      embedding: 32,
      layers: 2,
      heads: 4,
      feedForward: 64,
      layerNormEpsilon: 1e-6,
      scaleFactor: 1,
      preprocessLongestEdge: null,
    },
    weightType: 'F16',
  },
  // 32 px tiles of 16 patches, pixel-shuffled 2x2 into 4 tokens. With no longest-edge resize, llama.cpp
  // rounds each side to a multiple of 32 px (at least one tile) and adds a 32 px overview image, so:
  //   32x32 (base)  -> 1x1 grid: overview 3+4+1 layout/embedding tokens + 1 tile (2+4)          = 14 tokens
  //   96x64         -> 3x2 grid: overview 8 + 6 tiles x 6 + 1 row break                         = 45 tokens
  //   128x128       -> 4x4 grid: overview 8 + 16 tiles x 6 + 3 row breaks                       = 107 tokens
  // Grids wider or taller than 8 tiles still work but their row/col markers fall back to plain text.
  'tiny-tiling': {
    text: TINY_TEXT,
    vision: {
      projector: 'idefics3',
      imageSize: 32,
      patchSize: 8,
      embedding: 32,
      layers: 2,
      heads: 4,
      feedForward: 64,
      layerNormEpsilon: 1e-6,
      scaleFactor: 2,
      preprocessLongestEdge: null,
    },
    weightType: 'F16',
  },
  // SmolVLM-256M-Instruct: SmolLM2-135M text model and a SigLIP base-patch16-512 encoder. Like the real
  // model, every image is resized to a 2048 px longest edge and cut into 512 px tiles of 64 tokens, so a
  // square image of any size costs 1 overview + 16 tiles: 68 + 16 x 66 + 3 row breaks = 1127 tokens.
  smolvlm: {
    text: {
      name: 'iris-synth-smolvlm',
      contextLength: 8192,
      embedding: 576,
      layers: 30,
      heads: 9,
      kvHeads: 3,
      feedForward: 1536,
      ropeTheta: 100_000,
      rmsEpsilon: 1e-5,
      vocabSize: 49_152,
      maxGridSide: 6,
    },
    vision: {
      projector: 'idefics3',
      imageSize: 512,
      patchSize: 16,
      embedding: 768,
      layers: 12,
      heads: 12,
      feedForward: 3072,
      layerNormEpsilon: 1e-6,
      scaleFactor: 4,
      preprocessLongestEdge: 2048,
    },
    weightType: 'F16',
  },
};

/**
 * Writes `model.gguf` and `mmproj.gguf` for the chosen recipe into `options.out`.
 *
 * @returns the two paths and the prompt-token cost of one base-resolution image.
 */
export async function synthesizeModel(options: SynthOptions): Promise<SynthResult> {
  const size = options.size ?? 'tiny';
  const seed = options.seed ?? 0;
  if (!Number.isInteger(seed)) throw new RangeError(`seed must be an integer, got ${seed}`);
  const recipe = RECIPES[size];
  await mkdir(options.out, { recursive: true });

  const modelPath = join(options.out, 'model.gguf');
  const mmprojPath = join(options.out, 'mmproj.gguf');
  const vocabulary = buildVocabulary(recipe.text.vocabSize, recipe.text.maxGridSide, options.extraTokens ?? []);

  await writeGguf(modelPath, {
    metadata: textMetadata(recipe.text, vocabulary, options.chatTemplate ?? CHATML_TEMPLATE),
    tensors: textTensors(recipe, vocabulary.tokens.length, deriveSeed(seed, 'text')),
  });
  await writeGguf(mmprojPath, {
    metadata: visionMetadata(recipe),
    tensors: visionTensors(recipe, deriveSeed(seed, 'vision')),
  });

  const base = recipe.vision.imageSize;
  return { modelPath, mmprojPath, imageTokensPerImage: expectedImageTokens(size, base, base) };
}

/**
 * How much `usage.prompt_tokens` grows for one image of `width` x `height` pixels, following the pinned
 * llama.cpp's preprocessing: the image embeddings plus the layout tokens libmtmd puts around them.
 *
 * @throws {RangeError} for a `tiny-tiling` image whose tile grid is wider or taller than 8 tiles: its
 *   `<row_r_col_c>` markers are no longer single tokens, so the count depends on the BPE merges.
 */
export function expectedImageTokens(size: SynthSize, width: number, height: number): number {
  if (!(Number.isInteger(width) && Number.isInteger(height) && width > 0 && height > 0)) {
    throw new RangeError(`image size must be positive integers, got ${width}x${height}`);
  }
  const { vision, text } = RECIPES[size];
  if (vision.projector === 'mlp') return (vision.imageSize / vision.patchSize) ** 2;

  const tileTokens = (vision.imageSize / vision.patchSize / vision.scaleFactor) ** 2;
  const [columns, rows] = idefics3TileGrid(vision.imageSize, vision.preprocessLongestEdge, width, height);
  if (columns > text.maxGridSide || rows > text.maxGridSide) {
    throw new RangeError(`a ${width}x${height} image makes a ${columns}x${rows} tile grid; only up to ${text.maxGridSide} per side is predictable`);
  }
  // overview: "\n\n" <fake_token_around_image> <global-img> [embeddings] <fake_token_around_image>
  const overview = 3 + tileTokens + 1;
  // each tile: <fake_token_around_image> <row_r_col_c> [embeddings]; rows are separated by "\n"
  return overview + columns * rows * (2 + tileTokens) + (rows - 1);
}


// ---------------------------------------------------------------------------------------------------------
// Vocabulary

/** llama.cpp token types (`tokenizer.ggml.token_type`). */
const TOKEN_TYPE_NORMAL = 1;
const TOKEN_TYPE_CONTROL = 3;

interface Vocabulary {
  tokens: string[];
  tokenTypes: number[];
  merges: string[];
  bosId: number;
  eosId: number;
  padId: number;
}

const CHATML_TEMPLATE =
  "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}" +
  "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

// Seed words for the first merges, so ordinary English prompts tokenize into plausible pieces.
const COMMON_WORDS = (
  'the of and to in is that it for on with as was this are be at by from or an have not you what image ' +
  'picture describe shows there which can one all they we his her their has more about would will when so ' +
  'if no some other into out up use than time like only also how its may these two first then any new see ' +
  'color red blue green white black left right top bottom small large photo hello world say word'
).split(' ');

// The vocabulary is part of the recipe, not of the seed: token counts must not change between seeds.
const VOCABULARY_SEED = 0x1f1e5;

/**
 * The GPT-2 byte-to-character table used by byte-level BPE vocabularies: printable Latin-1 bytes stand
 * for themselves, the other 68 bytes are shifted to U+0100 and up (space becomes `Ġ`, newline `Ċ`).
 */
function byteLevelAlphabet(): string[] {
  const printable = (byte: number): boolean => (byte >= 33 && byte <= 126) || (byte >= 161 && byte <= 172) || (byte >= 174 && byte <= 255);
  const table: string[] = [];
  let shifted = 0;
  for (let byte = 0; byte < 256; byte++) {
    table.push(String.fromCharCode(printable(byte) ? byte : 256 + shifted++));
  }
  return table;
}

/**
 * A byte-level BPE vocabulary of exactly `size` tokens: special tokens, all 256 byte tokens, merges that
 * spell common English words, then synthetic merges. Every merge joins two existing tokens into a new one,
 * in rank order, so llama.cpp's tokenizer can always fall back to bytes.
 */
function buildVocabulary(size: number, maxGridSide: number, extraTokens: readonly string[]): Vocabulary {
  const specials = ['<|endoftext|>', '<|im_start|>', '<|im_end|>', '<fake_token_around_image>', '<image>', '<global-img>', '<end_of_utterance>'];
  for (let row = 1; row <= maxGridSide; row++) {
    for (let column = 1; column <= maxGridSide; column++) specials.push(`<row_${row}_col_${column}>`);
  }
  const tokens = [...specials];
  const tokenTypes = specials.map(() => TOKEN_TYPE_CONTROL);
  const known = new Set(tokens);
  const merges: string[] = [];
  const alphabet = byteLevelAlphabet();
  for (const character of alphabet) {
    tokens.push(character);
    tokenTypes.push(TOKEN_TYPE_NORMAL);
    known.add(character);
  }
  if (tokens.length > size) throw new RangeError(`vocabulary size ${size} is too small for ${tokens.length} base tokens`);

  const addMerge = (left: string, right: string): void => {
    const merged = left + right;
    if (known.has(merged) || tokens.length >= size) return;
    merges.push(`${left} ${right}`);
    tokens.push(merged);
    tokenTypes.push(TOKEN_TYPE_NORMAL);
    known.add(merged);
  };
  const spell = (word: string): void => {
    const characters = [...word];
    let piece = characters[0] ?? '';
    for (const character of characters.slice(1)) {
      addMerge(piece, character);
      piece += character;
    }
  };

  const space = alphabet[0x20] ?? 'Ġ';
  const newline = alphabet[0x0a] ?? 'Ċ';
  // libmtmd's idefics3 layout looks up "\n\n" as one token
  addMerge(newline, newline);
  addMerge(space, space);
  for (const piece of extraTokens) spell([...Buffer.from(piece, 'utf8')].map((byte) => alphabet[byte] ?? '').join(''));
  for (const word of COMMON_WORDS) {
    spell(space + word);
    spell(word);
  }

  // Fill the rest with synthetic pieces: an existing word-like token plus one letter.
  const letters = [...'etaoinshrdlcumwfgypbvkjxqz'];
  const stems = tokens.filter((token) => /^[Ġa-z]+$/u.test(token));
  const random = createPrng(VOCABULARY_SEED);
  while (tokens.length < size) {
    const stem = stems[random() % stems.length] ?? space;
    const letter = letters[random() % letters.length] ?? 'e';
    const merged = stem + letter;
    if (known.has(merged) || merged.length > 12) continue;
    addMerge(stem, letter);
    stems.push(merged);
  }

  return {
    tokens,
    tokenTypes,
    merges,
    bosId: tokens.indexOf('<|im_start|>'),
    eosId: tokens.indexOf('<|im_end|>'),
    padId: tokens.indexOf('<|endoftext|>'),
  };
}

// ---------------------------------------------------------------------------------------------------------
// Text model (llama architecture)

function textMetadata(text: TextSpec, vocabulary: Vocabulary, chatTemplate: string): (readonly [string, GgufValue])[] {
  const arch = 'llama';
  return [
    ['general.architecture', ggufValue.str(arch)],
    ['general.name', ggufValue.str(text.name)],
    ['general.description', ggufValue.str('Synthetic random-weight model generated by Iris; its output is meaningless.')],
    ['general.file_type', ggufValue.u32(1)], // mostly F16
    [`${arch}.vocab_size`, ggufValue.u32(vocabulary.tokens.length)],
    [`${arch}.context_length`, ggufValue.u32(text.contextLength)],
    [`${arch}.embedding_length`, ggufValue.u32(text.embedding)],
    [`${arch}.block_count`, ggufValue.u32(text.layers)],
    [`${arch}.feed_forward_length`, ggufValue.u32(text.feedForward)],
    [`${arch}.attention.head_count`, ggufValue.u32(text.heads)],
    [`${arch}.attention.head_count_kv`, ggufValue.u32(text.kvHeads)],
    [`${arch}.rope.dimension_count`, ggufValue.u32(text.embedding / text.heads)],
    [`${arch}.rope.freq_base`, ggufValue.f32(text.ropeTheta)],
    [`${arch}.attention.layer_norm_rms_epsilon`, ggufValue.f32(text.rmsEpsilon)],
    ['tokenizer.ggml.model', ggufValue.str('gpt2')],
    // SmolLM2's pre-tokenizer, which llama.cpp knows by this name
    ['tokenizer.ggml.pre', ggufValue.str('smollm')],
    ['tokenizer.ggml.tokens', ggufValue.array('string', vocabulary.tokens)],
    ['tokenizer.ggml.token_type', ggufValue.array('int32', vocabulary.tokenTypes)],
    ['tokenizer.ggml.merges', ggufValue.array('string', vocabulary.merges)],
    ['tokenizer.ggml.bos_token_id', ggufValue.u32(vocabulary.bosId)],
    ['tokenizer.ggml.eos_token_id', ggufValue.u32(vocabulary.eosId)],
    ['tokenizer.ggml.padding_token_id', ggufValue.u32(vocabulary.padId)],
    ['tokenizer.ggml.add_bos_token', ggufValue.bool(false)],
    ['tokenizer.chat_template', ggufValue.str(chatTemplate)],
  ];
}

/** Builds tensor sources whose random values are keyed by tensor name, so they do not depend on order. */
class TensorList {
  readonly tensors: GgufTensorSource[] = [];

  constructor(private readonly seed: number) {}

  random(name: string, dims: number[], type: GgufTensorType, fanIn: number): void {
    // about 1/sqrt(fan_in) keeps activations near unit scale through many layers, without F16 overflow
    const scale = Math.min(0.1, 1 / Math.sqrt(fanIn));
    this.tensors.push({ name, dims, type, fill: uniformFill(deriveSeed(this.seed, name), scale) });
  }

  constant(name: string, dims: number[], value: number): void {
    this.tensors.push({ name, dims, type: 'F32', fill: constantFill(value) });
  }
}

function textTensors(recipe: Recipe, vocabSize: number, seed: number): GgufTensorSource[] {
  const { text, weightType } = recipe;
  const n = text.embedding;
  const headDim = n / text.heads;
  const kv = headDim * text.kvHeads;
  const list = new TensorList(seed);
  // no output.weight: llama.cpp then ties the output head to the embeddings, which halves that cost
  list.random('token_embd.weight', [n, vocabSize], weightType, n);
  list.constant('output_norm.weight', [n], 1);
  for (let layer = 0; layer < text.layers; layer++) {
    const prefix = `blk.${layer}`;
    list.constant(`${prefix}.attn_norm.weight`, [n], 1);
    list.random(`${prefix}.attn_q.weight`, [n, n], weightType, n);
    list.random(`${prefix}.attn_k.weight`, [n, kv], weightType, n);
    list.random(`${prefix}.attn_v.weight`, [n, kv], weightType, n);
    list.random(`${prefix}.attn_output.weight`, [n, n], weightType, n);
    list.constant(`${prefix}.ffn_norm.weight`, [n], 1);
    list.random(`${prefix}.ffn_gate.weight`, [n, text.feedForward], weightType, n);
    list.random(`${prefix}.ffn_up.weight`, [n, text.feedForward], weightType, n);
    list.random(`${prefix}.ffn_down.weight`, [text.feedForward, n], weightType, text.feedForward);
  }
  return list.tensors;
}

// ---------------------------------------------------------------------------------------------------------
// Projector (clip architecture)

function visionMetadata(recipe: Recipe): (readonly [string, GgufValue])[] {
  const { vision, text } = recipe;
  const entries: (readonly [string, GgufValue])[] = [
    ['general.architecture', ggufValue.str('clip')],
    ['general.name', ggufValue.str(`${text.name}-mmproj`)],
    ['general.description', ggufValue.str('Synthetic random-weight projector generated by Iris; its output is meaningless.')],
    ['general.file_type', ggufValue.u32(1)],
    ['clip.has_vision_encoder', ggufValue.bool(true)],
    ['clip.projector_type', ggufValue.str(vision.projector)],
    ['clip.vision.image_size', ggufValue.u32(vision.imageSize)],
    ['clip.vision.patch_size', ggufValue.u32(vision.patchSize)],
    ['clip.vision.embedding_length', ggufValue.u32(vision.embedding)],
    ['clip.vision.feed_forward_length', ggufValue.u32(vision.feedForward)],
    ['clip.vision.block_count', ggufValue.u32(vision.layers)],
    ['clip.vision.attention.head_count', ggufValue.u32(vision.heads)],
    ['clip.vision.attention.layer_norm_epsilon', ggufValue.f32(vision.layerNormEpsilon)],
    // required by the loader even where the projector's weights already fix it
    ['clip.vision.projection_dim', ggufValue.u32(text.embedding)],
    ['clip.vision.image_mean', ggufValue.array('float32', [0.5, 0.5, 0.5])],
    ['clip.vision.image_std', ggufValue.array('float32', [0.5, 0.5, 0.5])],
  ];
  if (vision.projector === 'idefics3') {
    entries.push(['clip.use_gelu', ggufValue.bool(true)]);
    entries.push(['clip.vision.projector.scale_factor', ggufValue.u32(vision.scaleFactor)]);
    if (vision.preprocessLongestEdge !== null) {
      entries.push(['clip.vision.preproc_image_size', ggufValue.u32(vision.preprocessLongestEdge)]);
    }
  }
  return entries;
}

function visionTensors(recipe: Recipe, seed: number): GgufTensorSource[] {
  const { vision, text, weightType } = recipe;
  const n = vision.embedding;
  const patches = (vision.imageSize / vision.patchSize) ** 2;
  const list = new TensorList(seed);
  const patchFanIn = vision.patchSize * vision.patchSize * 3;
  list.random('v.patch_embd.weight', [vision.patchSize, vision.patchSize, 3, n], weightType, patchFanIn);
  list.constant('v.patch_embd.bias', [n], 0);
  list.random('v.position_embd.weight', [n, patches], 'F32', n);
  if (vision.projector === 'mlp') {
    list.constant('v.pre_ln.weight', [n], 1);
    list.constant('v.pre_ln.bias', [n], 0);
  }
  for (let layer = 0; layer < vision.layers; layer++) {
    const prefix = `v.blk.${layer}`;
    for (const projection of ['attn_q', 'attn_k', 'attn_v', 'attn_out']) {
      list.random(`${prefix}.${projection}.weight`, [n, n], weightType, n);
      list.constant(`${prefix}.${projection}.bias`, [n], 0);
    }
    for (const norm of ['ln1', 'ln2']) {
      list.constant(`${prefix}.${norm}.weight`, [n], 1);
      list.constant(`${prefix}.${norm}.bias`, [n], 0);
    }
    // ffn_down's first dimension must be the feed-forward size, or libmtmd swaps up and down
    list.random(`${prefix}.ffn_up.weight`, [n, vision.feedForward], weightType, n);
    list.constant(`${prefix}.ffn_up.bias`, [vision.feedForward], 0);
    list.random(`${prefix}.ffn_down.weight`, [vision.feedForward, n], weightType, vision.feedForward);
    list.constant(`${prefix}.ffn_down.bias`, [n], 0);
  }
  if (vision.projector === 'mlp') {
    // LLaVA projector: linear, GELU, linear; mm.2's output size must be the text model's embedding size
    list.random('mm.0.weight', [n, text.embedding], weightType, n);
    list.constant('mm.0.bias', [text.embedding], 0);
    list.random('mm.2.weight', [text.embedding, text.embedding], weightType, text.embedding);
    list.constant('mm.2.bias', [text.embedding], 0);
  } else {
    list.constant('v.post_ln.weight', [n], 1);
    list.constant('v.post_ln.bias', [n], 0);
    // idefics3: pixel shuffle stacks scale^2 neighbouring patches, then one linear layer
    const shuffled = n * vision.scaleFactor * vision.scaleFactor;
    list.random('mm.model.fc.weight', [shuffled, text.embedding], weightType, shuffled);
  }
  return list.tensors;
}
