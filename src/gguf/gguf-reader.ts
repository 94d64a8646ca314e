/**
 * GGUF metadata reader: the header, the key/value metadata and the tensor table of a GGUF file, never the
 * tensor data. Model files are often several GB and come from the internet, so the reader reads through a
 * file handle in bounded chunks, checks every length it is given against what is left of the file (and
 * against fixed caps) before it allocates anything, and reports every defect as a {@link GgufFormatError}.
 *
 * Written by hand, not taken from npm, for bounded allocation on hostile files: a model file is untrusted
 * input, and the GGUF packages on npm either load the whole file, trust the lengths they read (so a forged
 * count allocates gigabytes) or lag behind the tensor types of our pinned llama.cpp. The format's tables live
 * in `gguf-format.ts`.
 */
import { open, type FileHandle } from 'node:fs/promises';
import { basename } from 'node:path';

import { IrisError, MODEL_UNAVAILABLE } from '../errors.js';
import {
  GGUF_MAGIC,
  GGUF_DEFAULT_ALIGNMENT,
  GGUF_SUPPORTED_VERSIONS,
  type GgufValueType,
  type GgufArrayItem,
  type GgufArrayValue,
  type GgufValue,
  ggmlTypeById,
  ggufValueTypeById,
  type GgufTensorInfo,
  type GgufMetadata,
} from './gguf-format.js';

/** Limits that keep a hostile file from making the reader allocate absurd amounts of memory. */
export interface GgufReadLimits {
  /**
   * Longest string accepted, in bytes (keys, values, tensor names).
   * @default 16 MiB
   */
  maxStringBytes?: number;
  /**
   * Most items accepted in one array (a 262k-token vocabulary is well below this).
   * @default 16_777_216
   */
  maxArrayLength?: number;
  /**
   * Deepest nesting of arrays inside arrays.
   * @default 4
   */
  maxArrayDepth?: number;
}

/** What exactly is wrong with a file, for callers that branch on it. */
export type GgufFormatErrorReason =
  | 'not_gguf'
  | 'unsupported_version'
  | 'truncated'
  | 'invalid_value'
  | 'limit_exceeded'
  | 'unreadable';

/**
 * A GGUF file that cannot be read: missing, not GGUF, truncated, inconsistent or over a limit. To a client it
 * is a model that cannot be served (503 `model_unavailable`); the message names the file by base name only.
 */
export class GgufFormatError extends IrisError {
  /** Machine-readable kind of defect. */
  readonly reason: GgufFormatErrorReason;
  /** Full path of the file, for logs. */
  readonly path: string;
  /** File offset where the defect was found, when known. */
  readonly offset: number | null;

  constructor(
    message: string,
    details: { reason: GgufFormatErrorReason; path: string; offset?: number | null; cause?: unknown },
  ) {
    super(`GGUF file '${basename(details.path)}': ${message}`, {
      ...MODEL_UNAVAILABLE,
      ...(details.cause === undefined ? {} : { cause: details.cause }),
    });
    this.name = 'GgufFormatError';
    this.reason = details.reason;
    this.path = details.path;
    this.offset = details.offset ?? null;
  }
}

const DEFAULT_LIMITS: Required<GgufReadLimits> = {
  maxStringBytes: 16 * 1024 * 1024,
  maxArrayLength: 16 * 1024 * 1024,
  maxArrayDepth: 4,
};

// ggml refuses names this long (GGML_MAX_NAME includes the terminating NUL) and tensors with more dims.
const MAX_TENSOR_NAME_BYTES = 63;
const MAX_TENSOR_DIMS = 4;
const CHUNK_BYTES = 64 * 1024;
const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);

// Smallest possible encodings, used to bound counts by the bytes left before anything is allocated.
const MIN_KV_BYTES = 8 + 4 + 1; // empty key, type tag, a one-byte value
const MIN_TENSOR_INFO_BYTES = 8 + 4 + 4 + 8; // empty name, n_dims = 0, type, offset

type ScalarType = Exclude<GgufValueType, 'string' | 'array'>;

function fixedSize(type: GgufValueType): number | undefined {
  switch (type) {
    case 'uint8':
    case 'int8':
    case 'bool':
      return 1;
    case 'uint16':
    case 'int16':
      return 2;
    case 'uint32':
    case 'int32':
    case 'float32':
      return 4;
    case 'uint64':
    case 'int64':
    case 'float64':
      return 8;
    case 'string':
    case 'array':
      return undefined;
  }
}

function minEncodedSize(type: GgufValueType): number {
  // a string is at least its 8-byte length; an array at least its type tag and 8-byte count
  return fixedSize(type) ?? (type === 'string' ? 8 : 12);
}

/**
 * Sequential reader over a file handle that keeps at most one chunk (or one oversized item, already
 * checked against the limits) in memory.
 */
class ChunkedFileReader {
  private buffer: Buffer = Buffer.alloc(CHUNK_BYTES);
  private bufferStart = 0; // file offset of buffer[0]
  private bufferEnd = 0; // file offset one past the last valid byte
  /** File offset of the next unread byte. */
  position = 0;
  private readonly decoder = new TextDecoder('utf-8');

  constructor(
    private readonly handle: FileHandle,
    readonly fileSize: number,
    private readonly path: string,
  ) {}

  get remaining(): number {
    return this.fileSize - this.position;
  }

  fail(reason: GgufFormatErrorReason, message: string, offset = this.position): GgufFormatError {
    return new GgufFormatError(message, { reason, path: this.path, offset });
  }

  /** Makes `n` bytes from `position` available in the buffer, or throws `truncated`. */
  private async ensure(n: number, what: string): Promise<number> {
    if (this.position + n > this.fileSize) {
      throw this.fail('truncated', `file ends inside ${what} (needs ${n} bytes, ${this.remaining} left)`);
    }
    if (this.position >= this.bufferStart && this.position + n <= this.bufferEnd) {
      return this.position - this.bufferStart;
    }
    const want = Math.min(Math.max(n, CHUNK_BYTES), this.fileSize - this.position);
    if (this.buffer.length < want) this.buffer = Buffer.alloc(want);
    let filled = 0;
    while (filled < want) {
      let bytesRead: number;
      try {
        ({ bytesRead } = await this.handle.read(this.buffer, filled, want - filled, this.position + filled));
      } catch (error) {
        throw new GgufFormatError(`cannot read the file`, { reason: 'unreadable', path: this.path, offset: this.position, cause: error });
      }
      // the file shrank under us
      if (bytesRead === 0) throw this.fail('truncated', `file ends inside ${what}`);
      filled += bytesRead;
    }
    this.bufferStart = this.position;
    this.bufferEnd = this.position + want;
    return 0;
  }

  async u8(what: string): Promise<number> {
    const at = await this.ensure(1, what);
    this.position += 1;
    return this.buffer.readUInt8(at);
  }

  async u32(what: string): Promise<number> {
    const at = await this.ensure(4, what);
    this.position += 4;
    return this.buffer.readUInt32LE(at);
  }

  async u64(what: string): Promise<bigint> {
    const at = await this.ensure(8, what);
    this.position += 8;
    return this.buffer.readBigUInt64LE(at);
  }

  async scalar(type: ScalarType, what: string): Promise<number | bigint | boolean> {
    const at = await this.ensure(fixedSize(type) ?? 0, what);
    const value = this.decodeScalar(type, at);
    if (value === undefined) throw this.fail('invalid_value', `${what} is a bool with byte value ${this.buffer[at]}`);
    this.position += fixedSize(type) ?? 0;
    return value;
  }

  /**
   * The next scalar if it is already buffered and valid, else `undefined` with nothing consumed (the
   * caller then takes the awaiting path, which also reports errors). Keeps a 150k-item vocabulary from
   * costing a promise per item.
   */
  scalarIfBuffered(type: ScalarType): number | bigint | boolean | undefined {
    const size = fixedSize(type) ?? 0;
    if (this.position < this.bufferStart || this.position + size > this.bufferEnd) return undefined;
    const value = this.decodeScalar(type, this.position - this.bufferStart);
    if (value !== undefined) this.position += size;
    return value;
  }

  /** Same as {@link scalarIfBuffered}, for strings. */
  stringIfBuffered(maxBytes: number): string | undefined {
    if (this.position < this.bufferStart || this.position + 8 > this.bufferEnd) return undefined;
    const at = this.position - this.bufferStart;
    const length = this.buffer.readBigUInt64LE(at);
    if (length > BigInt(maxBytes)) return undefined;
    const n = Number(length);
    if (this.position + 8 + n > this.bufferEnd) return undefined;
    this.position += 8 + n;
    return this.decoder.decode(this.buffer.subarray(at + 8, at + 8 + n));
  }

  /** Decodes a scalar at buffer index `at`; `undefined` for a bool byte other than 0 or 1. */
  private decodeScalar(type: ScalarType, at: number): number | bigint | boolean | undefined {
    const b = this.buffer;
    switch (type) {
      case 'uint8':
        return b.readUInt8(at);
      case 'int8':
        return b.readInt8(at);
      case 'uint16':
        return b.readUInt16LE(at);
      case 'int16':
        return b.readInt16LE(at);
      case 'uint32':
        return b.readUInt32LE(at);
      case 'int32':
        return b.readInt32LE(at);
      case 'float32':
        return b.readFloatLE(at);
      case 'float64':
        return b.readDoubleLE(at);
      case 'uint64':
        return b.readBigUInt64LE(at);
      case 'int64':
        return b.readBigInt64LE(at);
      case 'bool': {
        const byte = b.readUInt8(at);
        return byte > 1 ? undefined : byte === 1;
      }
    }
  }

  async string(what: string, maxBytes: number): Promise<string> {
    const start = this.position;
    const length = await this.u64(`the length of ${what}`);
    if (length > BigInt(this.remaining)) {
      throw this.fail('truncated', `${what} claims ${length} bytes but only ${this.remaining} are left`, start);
    }
    if (length > BigInt(maxBytes)) {
      throw this.fail('limit_exceeded', `${what} is ${length} bytes long, over the limit of ${maxBytes}`, start);
    }
    const n = Number(length);
    const at = await this.ensure(n, what);
    this.position += n;
    return this.decoder.decode(this.buffer.subarray(at, at + n));
  }
}

/**
 * Reads the header, metadata and tensor table of a GGUF file, without touching the tensor data.
 *
 * @throws {GgufFormatError} when the file is missing, unreadable, not GGUF, of an unsupported version,
 *   truncated, internally inconsistent (duplicate keys or tensor names, misaligned or overlapping tensor
 *   data, unknown types) or over one of the {@link GgufReadLimits}.
 */
export async function readGgufMetadata(path: string, limits: GgufReadLimits = {}): Promise<GgufMetadata> {
  const effective: Required<GgufReadLimits> = { ...DEFAULT_LIMITS, ...limits };
  let handle: FileHandle;
  try {
    handle = await open(path, 'r');
  } catch (error) {
    throw new GgufFormatError('cannot open the file', { reason: 'unreadable', path, cause: error });
  }
  try {
    let fileSize: number;
    try {
      const stats = await handle.stat();
      if (!stats.isFile()) throw new Error('not a regular file');
      fileSize = stats.size;
    } catch (error) {
      throw new GgufFormatError('cannot read the file', { reason: 'unreadable', path, cause: error });
    }
    return await readFrom(new ChunkedFileReader(handle, fileSize, path), effective);
  } finally {
    await handle.close();
  }
}

async function readFrom(reader: ChunkedFileReader, limits: Required<GgufReadLimits>): Promise<GgufMetadata> {
  if (reader.fileSize < 4) throw reader.fail('not_gguf', 'file is too short to be GGUF', 0);
  const magic = await reader.u32('the magic number');
  if (magic !== Buffer.from(GGUF_MAGIC, 'latin1').readUInt32LE(0)) {
    throw reader.fail('not_gguf', 'file does not start with the GGUF magic', 0);
  }
  const version = await reader.u32('the version');
  if (!GGUF_SUPPORTED_VERSIONS.includes(version)) {
    throw reader.fail('unsupported_version', `GGUF version ${version} is not supported`, 4);
  }

  const tensorCount = await reader.u64('the tensor count');
  const kvCount = await reader.u64('the metadata count');
  // every entry takes some bytes, so a count the rest of the file cannot hold is a lie
  if (kvCount * BigInt(MIN_KV_BYTES) > BigInt(reader.remaining)) {
    throw reader.fail('truncated', `the file is too short for ${kvCount} metadata entries`, 16);
  }
  if (tensorCount * BigInt(MIN_TENSOR_INFO_BYTES) > BigInt(reader.remaining)) {
    throw reader.fail('truncated', `the file is too short for ${tensorCount} tensors`, 8);
  }

  const metadata = Object.create(null) as Record<string, GgufValue>;
  for (let index = 0; index < Number(kvCount); index++) {
    const keyOffset = reader.position;
    const key = await reader.string(`metadata key #${index}`, limits.maxStringBytes);
    if (Object.hasOwn(metadata, key)) throw reader.fail('invalid_value', `duplicate metadata key '${key}'`, keyOffset);
    const type = await readValueType(reader, `metadata '${key}'`);
    metadata[key] = await readValue(reader, type, `metadata '${key}'`, limits, 0);
  }

  let alignment = GGUF_DEFAULT_ALIGNMENT;
  const alignmentValue = metadata['general.alignment'];
  if (alignmentValue !== undefined) {
    if (alignmentValue.type !== 'uint32') {
      throw reader.fail('invalid_value', `general.alignment must be uint32, not ${alignmentValue.type}`, 0);
    }
    alignment = alignmentValue.value;
    if (alignment === 0 || (alignment & (alignment - 1)) !== 0) {
      throw reader.fail('invalid_value', `general.alignment ${alignment} is not a power of two`, 0);
    }
  }

  const tensors: GgufTensorInfo[] = [];
  const names = new Set<string>();
  for (let index = 0; index < Number(tensorCount); index++) {
    const infoOffset = reader.position;
    const name = await reader.string(`the name of tensor #${index}`, limits.maxStringBytes);
    if (Buffer.byteLength(name) > MAX_TENSOR_NAME_BYTES) {
      throw reader.fail('invalid_value', `tensor name '${name.slice(0, 80)}' is longer than ${MAX_TENSOR_NAME_BYTES} bytes`, infoOffset);
    }
    if (names.has(name)) throw reader.fail('invalid_value', `duplicate tensor name '${name}'`, infoOffset);
    names.add(name);

    const nDims = await reader.u32(`the rank of tensor '${name}'`);
    if (nDims > MAX_TENSOR_DIMS) throw reader.fail('invalid_value', `tensor '${name}' has ${nDims} dimensions`, infoOffset);
    const dims: number[] = [];
    let elements = 1n;
    for (let d = 0; d < nDims; d++) {
      const dim = await reader.u64(`the shape of tensor '${name}'`);
      elements *= dim;
      if (dim > MAX_SAFE || elements > MAX_SAFE) {
        throw reader.fail('invalid_value', `tensor '${name}' has an impossible shape`, infoOffset);
      }
      dims.push(Number(dim));
    }

    const typeId = await reader.u32(`the type of tensor '${name}'`);
    const typeInfo = ggmlTypeById(typeId);
    if (typeInfo === undefined) throw reader.fail('invalid_value', `tensor '${name}' has unknown ggml type ${typeId}`, infoOffset);
    const rowLength = dims[0] ?? 1;
    if (rowLength % typeInfo.blockElements !== 0) {
      throw reader.fail(
        'invalid_value',
        `tensor '${name}' has rows of ${rowLength} values, not a multiple of the ${typeInfo.name} block (${typeInfo.blockElements})`,
        infoOffset,
      );
    }
    const byteSize = (elements / BigInt(typeInfo.blockElements)) * BigInt(typeInfo.blockBytes);

    const offset = await reader.u64(`the data offset of tensor '${name}'`);
    if (offset % BigInt(alignment) !== 0n) {
      throw reader.fail('invalid_value', `tensor '${name}' data offset ${offset} is not aligned to ${alignment}`, infoOffset);
    }
    // checked against the file size below; here only against what a number can hold
    if (offset + byteSize > MAX_SAFE) throw reader.fail('invalid_value', `tensor '${name}' lies beyond any possible file`, infoOffset);

    tensors.push({ name, dims, type: typeId, typeName: typeInfo.name, offset: Number(offset), byteSize: Number(byteSize) });
  }

  const dataOffset = tensors.length === 0 ? reader.position : alignUp(reader.position, alignment);
  checkTensorLayout(reader, tensors, dataOffset, alignment);

  return { version, metadata, tensors, dataOffset, alignment, fileSize: reader.fileSize };
}

function alignUp(value: number, alignment: number): number {
  return Math.ceil(value / alignment) * alignment;
}

/** Tensor data must fit in the file and must not overlap; llama.cpp additionally expects them packed in order. */
function checkTensorLayout(reader: ChunkedFileReader, tensors: readonly GgufTensorInfo[], dataOffset: number, alignment: number): void {
  const byOffset = [...tensors].sort((a, b) => a.offset - b.offset);
  let end = 0;
  for (const tensor of byOffset) {
    if (tensor.offset < end) throw reader.fail('invalid_value', `tensor '${tensor.name}' overlaps the previous tensor's data`, dataOffset);
    end = tensor.offset + tensor.byteSize;
    if (dataOffset + end > reader.fileSize) {
      throw reader.fail(
        'truncated',
        `tensor '${tensor.name}' data ends at byte ${dataOffset + end}, past the end of the file (${reader.fileSize} bytes)`,
        dataOffset + tensor.offset,
      );
    }
    end = alignUp(end, alignment);
  }
}

async function readValueType(reader: ChunkedFileReader, what: string): Promise<GgufValueType> {
  const at = reader.position;
  const id = await reader.u32(`the type of ${what}`);
  const type = ggufValueTypeById(id);
  if (type === undefined) throw reader.fail('invalid_value', `${what} has unknown value type ${id}`, at);
  return type;
}

async function readValue(
  reader: ChunkedFileReader,
  type: GgufValueType,
  what: string,
  limits: Required<GgufReadLimits>,
  depth: number,
): Promise<GgufValue> {
  switch (type) {
    case 'string':
      return { type, value: await reader.string(what, limits.maxStringBytes) };
    case 'array':
      return readArray(reader, what, limits, depth + 1);
    case 'bool':
      return { type, value: (await reader.scalar(type, what)) as boolean };
    case 'uint64':
    case 'int64':
      return { type, value: (await reader.scalar(type, what)) as bigint };
    default:
      return { type, value: (await reader.scalar(type, what)) as number };
  }
}

async function readArray(
  reader: ChunkedFileReader,
  what: string,
  limits: Required<GgufReadLimits>,
  depth: number,
): Promise<GgufArrayValue> {
  const start = reader.position;
  if (depth > limits.maxArrayDepth) {
    throw reader.fail('limit_exceeded', `${what} nests arrays deeper than ${limits.maxArrayDepth}`, start);
  }
  const itemType = await readValueType(reader, `the items of ${what}`);
  const count = await reader.u64(`the length of ${what}`);
  if (count * BigInt(minEncodedSize(itemType)) > BigInt(reader.remaining)) {
    throw reader.fail('truncated', `${what} claims ${count} items but only ${reader.remaining} bytes are left`, start);
  }
  if (count > BigInt(limits.maxArrayLength)) {
    throw reader.fail('limit_exceeded', `${what} has ${count} items, over the limit of ${limits.maxArrayLength}`, start);
  }
  const n = Number(count);
  const items: GgufArrayItem[] = [];
  for (let i = 0; i < n; i++) {
    const buffered =
      itemType === 'string' ? reader.stringIfBuffered(limits.maxStringBytes) : itemType === 'array' ? undefined : reader.scalarIfBuffered(itemType);
    if (buffered !== undefined) {
      items.push(buffered);
      continue;
    }
    const item = await readValue(reader, itemType, `${what}[${i}]`, limits, depth);
    items.push(item.type === 'array' ? item : item.value);
  }
  return { type: 'array', itemType, value: items };
}
