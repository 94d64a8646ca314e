/**
 * Estimates how much memory a model takes once llama-server has loaded it, from its GGUF files alone:
 * the weights (file sizes: llama.cpp maps them whole), the KV cache for the configured context (from the
 * architecture's layer count, KV heads and head size, f16 keys and values), the prompt cache's limit
 * (llama-server keeps up to --cache-ram of earlier prompts' state in RAM), and a fixed allowance for
 * compute buffers and the process itself. The registry budgets with this number; it is deliberately a
 * little pessimistic.
 */
import { stat } from 'node:fs/promises';
import type { GgufValue } from '../gguf/gguf-format.js';
import { readGgufMetadata } from '../gguf/gguf-reader.js';
import { ggufNumber, ggufString } from '../gguf/gguf-values.js';

/** Compute buffers, the vision encoder's activations and llama-server itself. */
const FIXED_OVERHEAD_BYTES = 64 * 1024 * 1024;
/** f16 K and V. */
const KV_BYTES_PER_ELEMENT = 2;

/** What the estimate is made from. */
export interface MemoryEstimateInput {
  model: string;
  mmproj?: string | undefined;
  /** Context size in tokens (all slots together). */
  context: number;
  /** The engine's prompt cache limit (llama-server --cache-ram), in bytes. @default 0 */
  promptCacheBytes?: number | undefined;
}

/** The estimate, in parts. */
export interface MemoryEstimate {
  weightsBytes: number;
  kvCacheBytes: number;
  promptCacheBytes: number;
  overheadBytes: number;
  totalBytes: number;
}

/** Estimates the resident memory of a model served with the given context. */
export async function estimateModelMemory(input: MemoryEstimateInput): Promise<MemoryEstimate> {
  const [modelInfo, mmprojSize] = await Promise.all([
    readGgufMetadata(input.model),
    input.mmproj === undefined ? Promise.resolve(0) : stat(input.mmproj).then((info) => info.size),
  ]);
  const meta = modelInfo.metadata;
  const arch = ggufString(meta['general.architecture']) ?? 'llama';
  const layers = numberValue(meta[`${arch}.block_count`]) ?? 0;
  const embedding = numberValue(meta[`${arch}.embedding_length`]) ?? 0;
  const heads = numberValue(meta[`${arch}.attention.head_count`]) ?? 1;
  const kvHeads = numberValue(meta[`${arch}.attention.head_count_kv`]) ?? heads;
  const keyLength = numberValue(meta[`${arch}.attention.key_length`]) ?? (heads > 0 ? embedding / heads : 0);
  const valueLength = numberValue(meta[`${arch}.attention.value_length`]) ?? keyLength;
  const kvCacheBytes = Math.ceil(layers * input.context * kvHeads * (keyLength + valueLength) * KV_BYTES_PER_ELEMENT);
  const weightsBytes = modelInfo.fileSize + mmprojSize;
  const promptCacheBytes = input.promptCacheBytes ?? 0;
  return {
    weightsBytes,
    kvCacheBytes,
    promptCacheBytes,
    overheadBytes: FIXED_OVERHEAD_BYTES,
    totalBytes: weightsBytes + kvCacheBytes + promptCacheBytes + FIXED_OVERHEAD_BYTES,
  };
}

function numberValue(value: GgufValue | undefined): number | undefined {
  const scalar = ggufNumber(value);
  if (scalar !== undefined) return scalar;
  // Some architectures store per-layer head counts as arrays; the largest bounds the cache.
  if (value?.type === 'array') {
    const numbers = value.value.filter((item): item is number => typeof item === 'number');
    return numbers.length > 0 ? Math.max(...numbers) : undefined;
  }
  return undefined;
}
