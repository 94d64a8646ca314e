/**
 * A streaming GGUF v3 writer for synthetic models. The header (metadata and tensor table) is built in
 * memory, since even a 49k-token vocabulary is only a few MB; tensor data is produced chunk by chunk by each
 * tensor's `fill` callback and written straight to disk, so a model of any size needs about one chunk of
 * memory. The file appears atomically: it is written under a temporary name and renamed when complete.
 *
 * Written by hand because we need exact control over value types and byte layout (llama.cpp rejects a
 * `uint32` stored as `int32`), deterministic output, and streaming; no maintained npm package offers all
 * three. The format's tables come from `src/gguf/gguf-format.ts`.
 */
import { randomBytes } from 'node:crypto';
import { open, rename, rm, type FileHandle } from 'node:fs/promises';
import { endianness } from 'node:os';

import {
  GGUF_MAGIC,
  GGUF_VALUE_TYPE_IDS,
  ggmlTypeByName,
  type GgufArrayItem,
  type GgufValue,
  type GgufValueType,
} from '../gguf/gguf-format.js';
import { ggufValue } from '../gguf/gguf-values.js';

/** Tensor storage types the writer can produce. */
export type GgufTensorType = 'F32' | 'F16';

/** One tensor to write. */
export interface GgufTensorSource {
  /** Tensor name, at most 63 bytes (a ggml limit), unique within the file. */
  name: string;
  /** Shape in ggml order: `dims[0]` is the contiguous (row) dimension. One to four positive integers. */
  dims: readonly number[];
  /** Storage type; `F16` values are converted from float32 with round-to-nearest-even. */
  type: GgufTensorType;
  /**
   * Produces the tensor's values: fills `target` with elements `[firstElement, firstElement + target.length)`.
   * Called with consecutive ranges starting at 0, once per chunk.
   */
  fill: (target: Float32Array, firstElement: number) => void;
}

/** Metadata entries in the order they are written (a `Map` or an array of pairs). */
export type GgufMetadataEntries = Iterable<readonly [string, GgufValue]>;

/** Options of {@link writeGguf}. */
export interface WriteGgufOptions {
  /** Metadata, written in iteration order. `general.alignment` is added when absent. */
  metadata: GgufMetadataEntries;
  /** Tensors, written in array order. */
  tensors: readonly GgufTensorSource[];
  /**
   * Alignment of the data section and of each tensor's data; a power of two.
   * @default 32
   */
  alignment?: number;
  /**
   * Values generated and written per chunk; bounds the writer's memory use.
   * @default 262_144
   */
  chunkElements?: number;
}

/** What {@link writeGguf} wrote. */
export interface WriteGgufResult {
  /** Total file size in bytes. */
  bytes: number;
  /** Absolute offset of the tensor data section. */
  dataOffset: number;
}

/**
 * Writes a GGUF v3 file to `path`, streaming tensor data in chunks. Output depends only on the inputs, so
 * the same metadata, tensors and fills give a byte-identical file.
 *
 * @throws {TypeError | RangeError} on invalid input (bad names, shapes, value ranges, duplicate keys); the
 *   file system's errors as they come. Either way no file is left at `path`.
 */
export async function writeGguf(path: string, options: WriteGgufOptions): Promise<WriteGgufResult> {
  // typed-array views are written as-is; GGUF is little-endian
  if (endianness() !== 'LE') throw new Error('writeGguf needs a little-endian host');
  const alignment = options.alignment ?? 32;
  if (!Number.isInteger(alignment) || alignment <= 0 || (alignment & (alignment - 1)) !== 0) {
    throw new RangeError(`alignment must be a power of two, got ${alignment}`);
  }
  const chunkElements = options.chunkElements ?? 262_144;
  if (!Number.isInteger(chunkElements) || chunkElements <= 0) throw new RangeError('chunkElements must be a positive integer');

  const metadata = withAlignment(options.metadata, alignment);
  const layout = layoutTensors(options.tensors, alignment);

  const header = new ByteBuilder();
  header.raw(Buffer.from(GGUF_MAGIC, 'latin1'));
  header.u32(3);
  header.u64(BigInt(options.tensors.length));
  header.u64(BigInt(metadata.length));
  for (const [key, value] of metadata) {
    header.string(key);
    header.u32(GGUF_VALUE_TYPE_IDS[value.type]);
    writeValue(header, value, key);
  }
  for (const [index, tensor] of options.tensors.entries()) {
    header.string(tensor.name);
    header.u32(tensor.dims.length);
    for (const dim of tensor.dims) header.u64(BigInt(dim));
    header.u32(ggmlTypeByName(tensor.type).id);
    header.u64(BigInt(layout.offsets[index] ?? 0));
  }
  const dataOffset = alignUp(header.length, alignment);
  header.raw(Buffer.alloc(dataOffset - header.length));

  const temporaryPath = `${path}.${randomBytes(6).toString('hex')}.partial`;
  const handle = await open(temporaryPath, 'w');
  let closed = false;
  try {
    await writeAll(handle, header.toBuffer());
    let written = dataOffset;
    const values = new Float32Array(chunkElements);
    const halves = new Uint16Array(chunkElements);
    for (const tensor of options.tensors) {
      const count = elementCount(tensor.dims);
      for (let first = 0; first < count; first += chunkElements) {
        const n = Math.min(chunkElements, count - first);
        const chunk = values.subarray(0, n);
        tensor.fill(chunk, first);
        let bytes: Uint8Array;
        if (tensor.type === 'F16') {
          float32ArrayToFloat16Bits(chunk, halves);
          bytes = new Uint8Array(halves.buffer, 0, n * 2);
        } else {
          bytes = new Uint8Array(values.buffer, 0, n * 4);
        }
        await writeAll(handle, bytes);
        written += bytes.length;
      }
      const padding = alignUp(written, alignment) - written;
      if (padding > 0) {
        await writeAll(handle, Buffer.alloc(padding));
        written += padding;
      }
    }
    await handle.close();
    closed = true;
    await rename(temporaryPath, path);
    return { bytes: written, dataOffset };
  } catch (error) {
    if (!closed) await handle.close().catch(() => undefined);
    await rm(temporaryPath, { force: true });
    throw error;
  }
}

async function writeAll(handle: FileHandle, bytes: Uint8Array): Promise<void> {
  let done = 0;
  while (done < bytes.length) {
    const { bytesWritten } = await handle.write(bytes, done, bytes.length - done);
    done += bytesWritten;
  }
}

function withAlignment(entries: GgufMetadataEntries, alignment: number): (readonly [string, GgufValue])[] {
  const list = [...entries];
  const seen = new Set<string>();
  for (const [key] of list) {
    if (seen.has(key)) throw new TypeError(`duplicate metadata key '${key}'`);
    seen.add(key);
  }
  const existing = list.find(([key]) => key === 'general.alignment');
  if (existing === undefined) return [...list, ['general.alignment', ggufValue.u32(alignment)]];
  const [, value] = existing;
  if (value.type !== 'uint32' || value.value !== alignment) {
    throw new TypeError(`general.alignment must be the uint32 ${alignment} given as the alignment option`);
  }
  return list;
}

function elementCount(dims: readonly number[]): number {
  return dims.reduce((product, dim) => product * dim, 1);
}

function layoutTensors(tensors: readonly GgufTensorSource[], alignment: number): { offsets: number[] } {
  const names = new Set<string>();
  const offsets: number[] = [];
  let offset = 0;
  for (const tensor of tensors) {
    if (tensor.name.length === 0 || Buffer.byteLength(tensor.name) > 63) {
      throw new TypeError(`tensor name '${tensor.name}' must be 1 to 63 bytes`);
    }
    if (names.has(tensor.name)) throw new TypeError(`duplicate tensor name '${tensor.name}'`);
    names.add(tensor.name);
    if (tensor.dims.length < 1 || tensor.dims.length > 4 || !tensor.dims.every((dim) => Number.isSafeInteger(dim) && dim > 0)) {
      throw new TypeError(`tensor '${tensor.name}' needs 1 to 4 positive integer dims, got [${tensor.dims.join(', ')}]`);
    }
    offsets.push(offset);
    const bytes = elementCount(tensor.dims) * ggmlTypeByName(tensor.type).blockBytes;
    offset = alignUp(offset + bytes, alignment);
  }
  return { offsets };
}

function alignUp(value: number, alignment: number): number {
  return Math.ceil(value / alignment) * alignment;
}

const INTEGER_RANGES: Partial<Record<GgufValueType, readonly [number, number]>> = {
  uint8: [0, 0xff],
  int8: [-0x80, 0x7f],
  uint16: [0, 0xffff],
  int16: [-0x8000, 0x7fff],
  uint32: [0, 0xffffffff],
  int32: [-0x80000000, 0x7fffffff],
};

function writeValue(out: ByteBuilder, value: GgufValue, what: string): void {
  if (value.type === 'array') {
    out.u32(GGUF_VALUE_TYPE_IDS[value.itemType]);
    out.u64(BigInt(value.value.length));
    value.value.forEach((item, index) => writeItem(out, value.itemType, item, `${what}[${index}]`));
    return;
  }
  writeItem(out, value.type, value.value, what);
}

function writeItem(out: ByteBuilder, type: GgufValueType, item: GgufArrayItem, what: string): void {
  const mismatch = (): TypeError => new TypeError(`${what}: ${typeof item} is not a valid ${type}`);
  switch (type) {
    case 'string':
      if (typeof item !== 'string') throw mismatch();
      out.string(item);
      return;
    case 'bool':
      if (typeof item !== 'boolean') throw mismatch();
      out.u8(item ? 1 : 0);
      return;
    case 'uint64':
    case 'int64': {
      if (typeof item !== 'bigint') throw mismatch();
      const fits = type === 'uint64' ? BigInt.asUintN(64, item) === item : BigInt.asIntN(64, item) === item;
      if (!fits) throw new RangeError(`${what}: ${item} does not fit ${type}`);
      if (type === 'uint64') out.u64(item);
      else out.i64(item);
      return;
    }
    case 'float32':
    case 'float64':
      if (typeof item !== 'number') throw mismatch();
      if (type === 'float32') out.f32(item);
      else out.f64(item);
      return;
    case 'array':
      // an array inside an array carries no extra type tag, only its own item type and length
      if (typeof item !== 'object') throw mismatch();
      writeValue(out, item, what);
      return;
    default: {
      const range = INTEGER_RANGES[type];
      if (typeof item !== 'number' || range === undefined) throw mismatch();
      if (!Number.isInteger(item) || item < range[0] || item > range[1]) throw new RangeError(`${what}: ${item} does not fit ${type}`);
      out.integer(type, item);
    }
  }
}

/** A growable little-endian byte buffer for the header. */
class ByteBuilder {
  private buffer = Buffer.alloc(64 * 1024);
  length = 0;

  /** Makes room for `n` bytes and returns where they start; call it before touching `this.buffer`, which it may replace. */
  private reserve(n: number): number {
    if (this.length + n > this.buffer.length) {
      const grown = Buffer.alloc(Math.max(this.buffer.length * 2, this.length + n));
      this.buffer.copy(grown, 0, 0, this.length);
      this.buffer = grown;
    }
    const at = this.length;
    this.length += n;
    return at;
  }

  raw(bytes: Uint8Array): void {
    const at = this.reserve(bytes.length);
    this.buffer.set(bytes, at);
  }

  u8(value: number): void {
    const at = this.reserve(1);
    this.buffer.writeUInt8(value, at);
  }

  u32(value: number): void {
    const at = this.reserve(4);
    this.buffer.writeUInt32LE(value, at);
  }

  u64(value: bigint): void {
    const at = this.reserve(8);
    this.buffer.writeBigUInt64LE(value, at);
  }

  i64(value: bigint): void {
    const at = this.reserve(8);
    this.buffer.writeBigInt64LE(value, at);
  }

  f32(value: number): void {
    const at = this.reserve(4);
    this.buffer.writeFloatLE(value, at);
  }

  f64(value: number): void {
    const at = this.reserve(8);
    this.buffer.writeDoubleLE(value, at);
  }

  integer(type: GgufValueType, value: number): void {
    switch (type) {
      case 'uint8':
        this.u8(value);
        return;
      case 'int8': {
        const at = this.reserve(1);
        this.buffer.writeInt8(value, at);
        return;
      }
      case 'uint16': {
        const at = this.reserve(2);
        this.buffer.writeUInt16LE(value, at);
        return;
      }
      case 'int16': {
        const at = this.reserve(2);
        this.buffer.writeInt16LE(value, at);
        return;
      }
      case 'uint32':
        this.u32(value);
        return;
      case 'int32': {
        const at = this.reserve(4);
        this.buffer.writeInt32LE(value, at);
        return;
      }
      default:
        throw new TypeError(`${type} is not a small integer type`);
    }
  }

  string(value: string): void {
    const bytes = Buffer.from(value, 'utf8');
    this.u64(BigInt(bytes.length));
    this.raw(bytes);
  }

  toBuffer(): Buffer {
    return this.buffer.subarray(0, this.length);
  }
}

const conversionFloat = new Float32Array(1);
const conversionBits = new Uint32Array(conversionFloat.buffer);

/**
 * IEEE 754 binary16 bits of a number, rounded to nearest even like a hardware conversion: overflow gives
 * infinity, tiny values become subnormals or signed zero, NaN stays NaN.
 */
export function float32ToFloat16Bits(value: number): number {
  conversionFloat[0] = value;
  return halfFromSingleBits(conversionBits[0] ?? 0);
}

/** Converts a whole chunk at once (reading the float bits in place), which is several times faster per value. */
export function float32ArrayToFloat16Bits(source: Float32Array, target: Uint16Array): void {
  if (target.length < source.length) throw new RangeError('target is shorter than source');
  const bits = new Uint32Array(source.buffer, source.byteOffset, source.length);
  for (let i = 0; i < bits.length; i++) target[i] = halfFromSingleBits(bits[i] ?? 0);
}

function halfFromSingleBits(bits: number): number {
  const sign = (bits >>> 16) & 0x8000;
  const exponent = (bits >>> 23) & 0xff;
  const mantissa = bits & 0x7fffff;
  if (exponent === 0xff) return sign | 0x7c00 | (mantissa !== 0 ? 0x200 : 0);
  const halfExponent = exponent - 127 + 15;
  if (halfExponent >= 0x1f) return sign | 0x7c00;
  if (halfExponent <= 0) {
    // below 2^-25 even rounding cannot reach the smallest subnormal
    if (halfExponent < -10) return sign;
    const full = mantissa | 0x800000;
    const shift = 14 - halfExponent;
    let half = full >>> shift;
    const rest = full & ((1 << shift) - 1);
    const halfway = 1 << (shift - 1);
    if (rest > halfway || (rest === halfway && (half & 1) === 1)) half += 1;
    return sign | half;
  }
  let half = (halfExponent << 10) | (mantissa >>> 13);
  const rest = mantissa & 0x1fff;
  // a carry out of the mantissa correctly bumps the exponent, up to infinity
  if (rest > 0x1000 || (rest === 0x1000 && (half & 1) === 1)) half += 1;
  return sign | half;
}

/** The number a binary16 bit pattern stands for (the inverse of {@link float32ToFloat16Bits}). */
export function float16BitsToNumber(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exponent = (bits >>> 10) & 0x1f;
  const mantissa = bits & 0x3ff;
  if (exponent === 0) return sign * mantissa * 2 ** -24;
  if (exponent === 0x1f) return mantissa === 0 ? sign * Infinity : Number.NaN;
  return sign * (1 + mantissa / 1024) * 2 ** (exponent - 15);
}

/**
 * A seeded 32-bit PRNG (mulberry32): small, fast, and the same sequence on every platform. Returns
 * unsigned 32-bit integers. Not for anything secret.
 */
export function createPrng(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  };
}

/** Derives an independent 32-bit seed for `label` (e.g. a tensor name) from a base seed, via FNV-1a. */
export function deriveSeed(seed: number, label: string): number {
  let hash = (0x811c9dc5 ^ (seed >>> 0)) >>> 0;
  for (const byte of Buffer.from(label, 'utf8')) {
    hash ^= byte;
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  // FNV alone leaves nearby labels correlated in the low bits; one PRNG step spreads them
  return createPrng(hash)();
}

/**
 * A tensor fill with values uniform in `[-scale, scale)`, from a PRNG seeded by `seed`. Restarts the
 * sequence whenever asked for element 0, so writing the same tensor twice gives the same bytes.
 */
export function uniformFill(seed: number, scale: number): GgufTensorSource['fill'] {
  // mulberry32 inlined (same sequence as createPrng): this loop produces every random weight of a model
  let state = seed >>> 0;
  let expected = 0;
  const factor = scale / 2 ** 31;
  return (target, firstElement) => {
    if (firstElement === 0) state = seed >>> 0;
    else if (firstElement !== expected) throw new RangeError(`uniformFill needs consecutive chunks, got ${firstElement} after ${expected}`);
    for (let i = 0; i < target.length; i++) {
      state = (state + 0x6d2b79f5) | 0;
      let t = state;
      t = Math.imul(t ^ (t >>> 15), t | 1);
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
      target[i] = ((t ^ (t >>> 14)) >>> 0) * factor - scale;
    }
    expected = firstElement + target.length;
  };
}

/** A tensor fill where every element is `value` (1 for norm weights, 0 for biases). */
export function constantFill(value: number): GgufTensorSource['fill'] {
  return (target) => {
    target.fill(value);
  };
}
