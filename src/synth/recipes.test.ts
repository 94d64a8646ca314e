import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import sharp from 'sharp';

import type { GgufMetadata, GgufValue } from '../gguf/gguf-format.js';
import { readGgufMetadata } from '../gguf/gguf-reader.js';
import { expectedImageTokens, synthesizeModel, type SynthResult, type SynthSize } from './recipes.js';
import { llamaServerBinary } from '../../test/helpers/test-env.js';

// smolvlm writes ~460 MB and takes several seconds; run it on demand
const LARGE = process.env['IRIS_TEST_SYNTH_LARGE'] === '1';

let directory: string;
before(async () => {
  directory = await mkdtemp(join(tmpdir(), 'iris-synth-'));
});
after(async () => {
  await rm(directory, { recursive: true, force: true });
});

const built = new Map<string, Promise<SynthResult>>();
/** Synthesizes each (size, seed) once per run. */
function model(size: SynthSize, seed = 1): Promise<SynthResult> {
  const key = `${size}-${seed}`;
  let result = built.get(key);
  if (result === undefined) {
    result = synthesizeModel({ out: join(directory, key), size, seed });
    built.set(key, result);
  }
  return result;
}

const sha256 = async (path: string): Promise<string> => createHash('sha256').update(await readFile(path)).digest('hex');

function value(file: GgufMetadata, key: string): GgufValue['value'] {
  const entry = file.metadata[key];
  assert.ok(entry !== undefined, `missing ${key}`);
  return entry.value;
}

function strings(file: GgufMetadata, key: string): string[] {
  const entry = file.metadata[key];
  assert.ok(entry?.type === 'array' && entry.itemType === 'string', `${key} is an array of strings`);
  return entry.value as string[];
}

function tensorDims(file: GgufMetadata, name: string): number[] {
  const tensor = file.tensors.find((candidate) => candidate.name === name);
  assert.ok(tensor !== undefined, `missing tensor ${name}`);
  return tensor.dims;
}

/** The 256 characters byte-level BPE uses for raw bytes. */
function byteCharacters(): string[] {
  const printable = (b: number): boolean => (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174;
  let shifted = 0;
  return Array.from({ length: 256 }, (_, b) => String.fromCharCode(printable(b) ? b : 256 + shifted++));
}

/** What llama.cpp needs from the text model: a consistent llama graph and a valid byte-level BPE vocabulary. */
function checkTextModel(text: GgufMetadata): void {
  assert.equal(value(text, 'general.architecture'), 'llama');
  assert.equal(value(text, 'tokenizer.ggml.model'), 'gpt2');
  assert.equal(value(text, 'tokenizer.ggml.pre'), 'smollm');
  const tokens = strings(text, 'tokenizer.ggml.tokens');
  assert.equal(new Set(tokens).size, tokens.length, 'tokens are unique');
  assert.equal(value(text, 'llama.vocab_size'), tokens.length);
  const types = text.metadata['tokenizer.ggml.token_type'];
  assert.ok(types?.type === 'array' && types.itemType === 'int32');
  assert.equal(types.value.length, tokens.length);
  const known = new Set(tokens);
  for (const character of byteCharacters()) assert.ok(known.has(character), `byte token ${JSON.stringify(character)}`);
  const merges = strings(text, 'tokenizer.ggml.merges');
  assert.ok(merges.length > 100);
  for (const merge of merges) {
    const parts = merge.split(' ');
    assert.equal(parts.length, 2, merge);
    const [left = '', right = ''] = parts;
    assert.ok(known.has(left) && known.has(right) && known.has(left + right), `merge '${merge}' joins tokens into a token`);
  }

  const eos = value(text, 'tokenizer.ggml.eos_token_id') as number;
  assert.equal(tokens[eos], '<|im_end|>');
  for (const special of ['<|im_start|>', '<|im_end|>']) assert.equal(types.value[tokens.indexOf(special)], 3, `${special} is CONTROL`);
  const template = value(text, 'tokenizer.chat_template') as string;
  assert.match(template, /<\|im_start\|>/);
  assert.match(template, /<\|im_end\|>/);

  const embedding = value(text, 'llama.embedding_length') as number;
  const feedForward = value(text, 'llama.feed_forward_length') as number;
  const headDim = embedding / (value(text, 'llama.attention.head_count') as number);
  const kv = headDim * (value(text, 'llama.attention.head_count_kv') as number);
  assert.equal(value(text, 'llama.rope.dimension_count'), headDim);
  assert.deepEqual(tensorDims(text, 'token_embd.weight'), [embedding, tokens.length]);
  for (let layer = 0; layer < (value(text, 'llama.block_count') as number); layer++) {
    assert.deepEqual(tensorDims(text, `blk.${layer}.attn_q.weight`), [embedding, embedding]);
    assert.deepEqual(tensorDims(text, `blk.${layer}.attn_k.weight`), [embedding, kv]);
    assert.deepEqual(tensorDims(text, `blk.${layer}.attn_v.weight`), [embedding, kv]);
    assert.deepEqual(tensorDims(text, `blk.${layer}.attn_output.weight`), [embedding, embedding]);
    assert.deepEqual(tensorDims(text, `blk.${layer}.ffn_gate.weight`), [embedding, feedForward]);
    assert.deepEqual(tensorDims(text, `blk.${layer}.ffn_up.weight`), [embedding, feedForward]);
    assert.deepEqual(tensorDims(text, `blk.${layer}.ffn_down.weight`), [feedForward, embedding]);
    assert.deepEqual(tensorDims(text, `blk.${layer}.attn_norm.weight`), [embedding]);
    assert.deepEqual(tensorDims(text, `blk.${layer}.ffn_norm.weight`), [embedding]);
  }
}

/** What libmtmd needs from every ViT projector; returns the vision embedding size. */
function checkVisionEncoder(mmproj: GgufMetadata, textEmbedding: number): number {
  assert.equal(value(mmproj, 'general.architecture'), 'clip');
  assert.equal(value(mmproj, 'clip.has_vision_encoder'), true);
  assert.equal(value(mmproj, 'clip.vision.projection_dim'), textEmbedding);
  for (const key of ['clip.vision.image_mean', 'clip.vision.image_std']) {
    const entry = mmproj.metadata[key];
    assert.ok(entry?.type === 'array' && entry.itemType === 'float32' && entry.value.length === 3, `${key} has 3 float32 values`);
  }
  const embedding = value(mmproj, 'clip.vision.embedding_length') as number;
  const feedForward = value(mmproj, 'clip.vision.feed_forward_length') as number;
  const patch = value(mmproj, 'clip.vision.patch_size') as number;
  const image = value(mmproj, 'clip.vision.image_size') as number;
  assert.deepEqual(tensorDims(mmproj, 'v.patch_embd.weight'), [patch, patch, 3, embedding]);
  assert.deepEqual(tensorDims(mmproj, 'v.position_embd.weight'), [embedding, (image / patch) ** 2]);
  for (let layer = 0; layer < (value(mmproj, 'clip.vision.block_count') as number); layer++) {
    for (const part of ['attn_q', 'attn_k', 'attn_v', 'attn_out']) {
      assert.deepEqual(tensorDims(mmproj, `v.blk.${layer}.${part}.weight`), [embedding, embedding]);
    }
    for (const norm of ['ln1', 'ln2']) assert.deepEqual(tensorDims(mmproj, `v.blk.${layer}.${norm}.weight`), [embedding]);
    assert.deepEqual(tensorDims(mmproj, `v.blk.${layer}.ffn_up.weight`), [embedding, feedForward]);
    // libmtmd swaps up and down when ffn_down's first dimension is the embedding size
    assert.deepEqual(tensorDims(mmproj, `v.blk.${layer}.ffn_down.weight`), [feedForward, embedding]);
  }
  return embedding;
}

describe('synthesizeModel', () => {
  it('tiny: a llama text model and an mlp projector, under 1 MB together', async () => {
    const result = await model('tiny');
    const sizes = (await stat(result.modelPath)).size + (await stat(result.mmprojPath)).size;
    assert.ok(sizes < 1024 * 1024, `${sizes} bytes`);
    assert.equal(result.imageTokensPerImage, 16);

    const text = await readGgufMetadata(result.modelPath);
    checkTextModel(text);
    assert.ok((value(text, 'llama.context_length') as number) >= 2048);
    const textEmbedding = value(text, 'llama.embedding_length') as number;

    const mmproj = await readGgufMetadata(result.mmprojPath);
    const embedding = checkVisionEncoder(mmproj, textEmbedding);
    assert.equal(value(mmproj, 'clip.projector_type'), 'mlp');
    assert.deepEqual(tensorDims(mmproj, 'mm.0.weight'), [embedding, textEmbedding]);
    // the projector's output must be the text model's embedding size
    assert.equal(tensorDims(mmproj, 'mm.2.weight')[1], textEmbedding);
  });

  it('tiny-tiling: the same text model with an idefics3 projector, under 2 MB together', async () => {
    const result = await model('tiny-tiling');
    const sizes = (await stat(result.modelPath)).size + (await stat(result.mmprojPath)).size;
    assert.ok(sizes < 2 * 1024 * 1024, `${sizes} bytes`);
    assert.equal(result.imageTokensPerImage, 14);
    assert.equal(await sha256(result.modelPath), await sha256((await model('tiny')).modelPath));

    const text = await readGgufMetadata(result.modelPath);
    const textEmbedding = value(text, 'llama.embedding_length') as number;
    const mmproj = await readGgufMetadata(result.mmprojPath);
    const embedding = checkVisionEncoder(mmproj, textEmbedding);
    assert.equal(value(mmproj, 'clip.projector_type'), 'idefics3');
    const scale = value(mmproj, 'clip.vision.projector.scale_factor') as number;
    assert.deepEqual(tensorDims(mmproj, 'mm.model.fc.weight'), [embedding * scale * scale, textEmbedding]);
    // the layout tokens libmtmd looks up for idefics3 must be single tokens
    const tokens = strings(text, 'tokenizer.ggml.tokens');
    for (const token of ['ĊĊ', 'Ċ', '<fake_token_around_image>', '<global-img>', '<row_1_col_1>', '<row_8_col_8>']) {
      assert.ok(tokens.includes(token), token);
    }
  });

  it('is deterministic: same seed, same bytes; another seed changes weights, not the vocabulary', async () => {
    const first = await model('tiny', 7);
    const again = await synthesizeModel({ out: join(directory, 'tiny-7-again'), size: 'tiny', seed: 7 });
    assert.equal(await sha256(first.modelPath), await sha256(again.modelPath));
    assert.equal(await sha256(first.mmprojPath), await sha256(again.mmprojPath));

    const other = await model('tiny', 8);
    assert.notEqual(await sha256(first.modelPath), await sha256(other.modelPath));
    assert.notEqual(await sha256(first.mmprojPath), await sha256(other.mmprojPath));
    const firstText = await readGgufMetadata(first.modelPath);
    const otherText = await readGgufMetadata(other.modelPath);
    assert.deepEqual(strings(firstText, 'tokenizer.ggml.tokens'), strings(otherText, 'tokenizer.ggml.tokens'));
    assert.deepEqual(strings(firstText, 'tokenizer.ggml.merges'), strings(otherText, 'tokenizer.ggml.merges'));
  });

  it('defaults to tiny with seed 0', async () => {
    const result = await synthesizeModel({ out: join(directory, 'defaults', 'nested') });
    const explicit = await synthesizeModel({ out: join(directory, 'defaults-explicit'), size: 'tiny', seed: 0 });
    assert.equal(await sha256(result.modelPath), await sha256(explicit.modelPath));
    assert.equal(result.imageTokensPerImage, 16);
  });

  it('smolvlm: SmolVLM-256M shapes with a 49152-token vocabulary', { skip: !LARGE && 'set IRIS_TEST_SYNTH_LARGE=1 (writes ~460 MB)' }, async () => {
    const result = await model('smolvlm');
    const text = await readGgufMetadata(result.modelPath);
    checkTextModel(text);
    assert.equal(strings(text, 'tokenizer.ggml.tokens').length, 49_152);
    assert.equal(value(text, 'llama.embedding_length'), 576);
    assert.equal(value(text, 'llama.block_count'), 30);
    assert.equal(value(text, 'llama.attention.head_count'), 9);
    assert.equal(value(text, 'llama.attention.head_count_kv'), 3);
    assert.equal(value(text, 'llama.feed_forward_length'), 1536);
    assert.equal(value(text, 'llama.rope.freq_base'), 100_000);
    assert.equal(value(text, 'llama.context_length'), 8192);
    assert.ok(text.tensors.filter((tensor) => tensor.name.endsWith('.weight') && tensor.dims.length === 2).every((tensor) => tensor.typeName === 'F16'));

    const mmproj = await readGgufMetadata(result.mmprojPath);
    assert.equal(checkVisionEncoder(mmproj, 576), 768);
    assert.equal(value(mmproj, 'clip.projector_type'), 'idefics3');
    assert.equal(value(mmproj, 'clip.vision.block_count'), 12);
    assert.equal(value(mmproj, 'clip.vision.patch_size'), 16);
    assert.equal(result.imageTokensPerImage, 1127);
  });
});

describe('expectedImageTokens', () => {
  it('is fixed for the mlp projector', () => {
    assert.equal(expectedImageTokens('tiny', 32, 32), 16);
    assert.equal(expectedImageTokens('tiny', 1920, 1080), 16);
  });

  it('grows with the tile grid for tiny-tiling', () => {
    assert.equal(expectedImageTokens('tiny-tiling', 32, 32), 14);
    assert.equal(expectedImageTokens('tiny-tiling', 20, 20), 14); // at least one tile
    assert.equal(expectedImageTokens('tiny-tiling', 64, 64), 33);
    assert.equal(expectedImageTokens('tiny-tiling', 96, 64), 45);
    assert.equal(expectedImageTokens('tiny-tiling', 128, 128), 107);
    assert.equal(expectedImageTokens('tiny-tiling', 256, 256), 399);
    assert.throws(() => expectedImageTokens('tiny-tiling', 100, 300), RangeError); // 3x9 grid
    assert.throws(() => expectedImageTokens('tiny-tiling', 0, 10), RangeError);
  });

  it('follows the longest-edge resize for smolvlm', () => {
    assert.equal(expectedImageTokens('smolvlm', 512, 512), 1127);
    assert.equal(expectedImageTokens('smolvlm', 64, 64), 1127); // upscaled like the real model
    assert.equal(expectedImageTokens('smolvlm', 300, 200), 862); // 4x3 grid
  });
});

// ---------------------------------------------------------------------------------------------------------
// Through a real llama-server

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address !== null ? resolve(address.port) : reject(new Error('no port'))));
    });
  });
}

interface RunningServer {
  url: string;
  stop: () => Promise<void>;
}

async function startLlamaServer(binary: string, files: SynthResult): Promise<RunningServer> {
  const port = await freePort();
  const child: ChildProcess = spawn(
    binary,
    ['-m', files.modelPath, '--mmproj', files.mmprojPath, '--host', '127.0.0.1', '--port', String(port), '-c', '2048', '--no-webui'],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let output = '';
  child.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const stop = async (): Promise<void> => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(timer);
  };

  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) break;
    const healthy = await fetch(`${url}/health`).then(
      (response) => response.ok,
      () => false,
    );
    if (healthy) return { url, stop };
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  await stop();
  throw new Error(`llama-server did not become healthy:\n${output.slice(-4000)}`);
}

async function pngDataUri(width: number, height: number): Promise<string> {
  const pixels = Buffer.alloc(width * height * 3);
  for (let i = 0; i < pixels.length; i++) pixels[i] = (i * 37) % 256;
  const png = await sharp(pixels, { raw: { width, height, channels: 3 } }).png().toBuffer();
  return `data:image/png;base64,${png.toString('base64')}`;
}

async function promptTokens(server: RunningServer, image: { width: number; height: number } | null): Promise<number> {
  const content: unknown[] = [];
  if (image !== null) content.push({ type: 'image_url', image_url: { url: await pngDataUri(image.width, image.height) } });
  content.push({ type: 'text', text: 'Describe this picture.' });
  const response = await fetch(`${server.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ messages: [{ role: 'user', content }], max_tokens: 2, temperature: 0 }),
  });
  const body = (await response.json()) as { usage?: { prompt_tokens?: number } };
  assert.equal(response.status, 200, JSON.stringify(body));
  const tokens = body.usage?.prompt_tokens;
  assert.ok(typeof tokens === 'number', JSON.stringify(body));
  return tokens;
}

describe('in llama-server', () => {
  it('tiny: an image adds exactly imageTokensPerImage prompt tokens', async (t) => {
    const files = await model('tiny');
    const server = await startLlamaServer(await llamaServerBinary(), files);
    t.after(server.stop);
    const textOnly = await promptTokens(server, null);
    assert.equal((await promptTokens(server, { width: 32, height: 32 })) - textOnly, files.imageTokensPerImage);
    // the mlp projector resizes everything to its 32 px input
    assert.equal((await promptTokens(server, { width: 300, height: 200 })) - textOnly, files.imageTokensPerImage);
  });

  it('tiny-tiling: a bigger image costs more tokens, as expectedImageTokens predicts', async (t) => {
    const files = await model('tiny-tiling');
    const server = await startLlamaServer(await llamaServerBinary(), files);
    t.after(server.stop);
    const textOnly = await promptTokens(server, null);
    assert.equal((await promptTokens(server, { width: 32, height: 32 })) - textOnly, files.imageTokensPerImage);
    for (const [width, height] of [
      [96, 64],
      [128, 128],
    ] as const) {
      const added = (await promptTokens(server, { width, height })) - textOnly;
      assert.equal(added, expectedImageTokens('tiny-tiling', width, height), `${width}x${height}`);
      assert.ok(added > files.imageTokensPerImage);
    }
  });
});
