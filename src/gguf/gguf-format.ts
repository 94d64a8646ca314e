/**
 * The GGUF format's shared tables: magic, versions, metadata value types and their on-disk ids, ggml tensor
 * types and their block layout, and the shapes of what a file holds. The reader (`gguf-reader.ts`) and the
 * synthetic-model writer (`src/synth/gguf-writer.ts`) both take them from here, so the two never disagree.
 */

/** The four bytes every GGUF file starts with. */
export const GGUF_MAGIC = 'GGUF';

/** Alignment of the tensor data section when the file has no `general.alignment` key. */
export const GGUF_DEFAULT_ALIGNMENT = 32;

/** GGUF versions this reader understands (v1 used 32-bit counts and is long gone). */
export const GGUF_SUPPORTED_VERSIONS: readonly number[] = [2, 3];

/** Type tag of a metadata value, as named in the GGUF specification. */
export type GgufValueType =
  | 'uint8'
  | 'int8'
  | 'uint16'
  | 'int16'
  | 'uint32'
  | 'int32'
  | 'float32'
  | 'bool'
  | 'string'
  | 'array'
  | 'uint64'
  | 'int64'
  | 'float64';

/** On-disk id of each {@link GgufValueType}. */
export const GGUF_VALUE_TYPE_IDS: Readonly<Record<GgufValueType, number>> = Object.freeze({
  uint8: 0,
  int8: 1,
  uint16: 2,
  int16: 3,
  uint32: 4,
  int32: 5,
  float32: 6,
  bool: 7,
  string: 8,
  array: 9,
  uint64: 10,
  int64: 11,
  float64: 12,
});

const VALUE_TYPE_BY_ID: readonly GgufValueType[] = (Object.keys(GGUF_VALUE_TYPE_IDS) as GgufValueType[]).sort(
  (a, b) => GGUF_VALUE_TYPE_IDS[a] - GGUF_VALUE_TYPE_IDS[b],
);

/** Looks up a metadata value type by its on-disk id; `undefined` for ids the format does not define. */
export function ggufValueTypeById(id: number): GgufValueType | undefined {
  return VALUE_TYPE_BY_ID[id];
}

/** Value types held in a JS `number`. */
export type GgufNumberType = 'uint8' | 'int8' | 'uint16' | 'int16' | 'uint32' | 'int32' | 'float32' | 'float64';
/** Value types held in a JS `bigint`, because they do not fit a double. */
export type GgufBigIntType = 'uint64' | 'int64';

/** One element of a metadata array; arrays may nest. */
export type GgufArrayItem = number | bigint | boolean | string | GgufArrayValue;

/** A metadata array: every item has the type `itemType`. */
export interface GgufArrayValue {
  type: 'array';
  itemType: GgufValueType;
  value: GgufArrayItem[];
}

/** A typed metadata value. The type tag is kept because llama.cpp insists on exact types (`uint32` is not `int32`). */
export type GgufValue =
  | { type: GgufNumberType; value: number }
  | { type: GgufBigIntType; value: bigint }
  | { type: 'bool'; value: boolean }
  | { type: 'string'; value: string }
  | GgufArrayValue;

/** Name of a ggml tensor type. */
export type GgmlTypeName =
  | 'F32'
  | 'F16'
  | 'Q4_0'
  | 'Q4_1'
  | 'Q5_0'
  | 'Q5_1'
  | 'Q8_0'
  | 'Q8_1'
  | 'Q2_K'
  | 'Q3_K'
  | 'Q4_K'
  | 'Q5_K'
  | 'Q6_K'
  | 'Q8_K'
  | 'IQ2_XXS'
  | 'IQ2_XS'
  | 'IQ3_XXS'
  | 'IQ1_S'
  | 'IQ4_NL'
  | 'IQ3_S'
  | 'IQ2_S'
  | 'IQ4_XS'
  | 'I8'
  | 'I16'
  | 'I32'
  | 'I64'
  | 'F64'
  | 'IQ1_M'
  | 'BF16'
  | 'TQ1_0'
  | 'TQ2_0'
  | 'MXFP4'
  | 'NVFP4'
  | 'Q1_0'
  | 'Q2_0';

/** Storage layout of a ggml tensor type: `blockBytes` bytes hold `blockElements` values. */
export interface GgmlTypeInfo {
  name: GgmlTypeName;
  id: number;
  blockElements: number;
  blockBytes: number;
}

/**
 * The tensor types the pinned llama.cpp accepts in a GGUF file (ids 4, 5, 31-33 and 36-38 were retired).
 * K-quants and their relatives pack 256 values per block.
 */
export const GGML_TYPES: readonly GgmlTypeInfo[] = Object.freeze(
  (
    [
      ['F32', 0, 1, 4],
      ['F16', 1, 1, 2],
      ['Q4_0', 2, 32, 18],
      ['Q4_1', 3, 32, 20],
      ['Q5_0', 6, 32, 22],
      ['Q5_1', 7, 32, 24],
      ['Q8_0', 8, 32, 34],
      ['Q8_1', 9, 32, 36],
      ['Q2_K', 10, 256, 84],
      ['Q3_K', 11, 256, 110],
      ['Q4_K', 12, 256, 144],
      ['Q5_K', 13, 256, 176],
      ['Q6_K', 14, 256, 210],
      ['Q8_K', 15, 256, 292],
      ['IQ2_XXS', 16, 256, 66],
      ['IQ2_XS', 17, 256, 74],
      ['IQ3_XXS', 18, 256, 98],
      ['IQ1_S', 19, 256, 50],
      ['IQ4_NL', 20, 32, 18],
      ['IQ3_S', 21, 256, 110],
      ['IQ2_S', 22, 256, 82],
      ['IQ4_XS', 23, 256, 136],
      ['I8', 24, 1, 1],
      ['I16', 25, 1, 2],
      ['I32', 26, 1, 4],
      ['I64', 27, 1, 8],
      ['F64', 28, 1, 8],
      ['IQ1_M', 29, 256, 56],
      ['BF16', 30, 1, 2],
      ['TQ1_0', 34, 256, 54],
      ['TQ2_0', 35, 256, 66],
      ['MXFP4', 39, 32, 17],
      ['NVFP4', 40, 64, 36],
      ['Q1_0', 41, 128, 18],
      ['Q2_0', 42, 64, 18],
    ] as const
  ).map(([name, id, blockElements, blockBytes]) => Object.freeze({ name, id, blockElements, blockBytes })),
);

const GGML_TYPE_BY_ID = new Map<number, GgmlTypeInfo>(GGML_TYPES.map((info) => [info.id, info]));

/** Looks up a ggml tensor type by its on-disk id; `undefined` for ids llama.cpp does not accept. */
export function ggmlTypeById(id: number): GgmlTypeInfo | undefined {
  return GGML_TYPE_BY_ID.get(id);
}

/** Looks up a ggml tensor type by name. */
export function ggmlTypeByName(name: GgmlTypeName): GgmlTypeInfo {
  const info = GGML_TYPES.find((candidate) => candidate.name === name);
  if (info === undefined) throw new TypeError(`unknown ggml type ${name}`);
  return info;
}

/** One entry of the tensor table. */
export interface GgufTensorInfo {
  name: string;
  /** Shape in ggml order: `dims[0]` is the contiguous (row) dimension. */
  dims: number[];
  /** ggml type id, see {@link GGML_TYPES}. */
  type: number;
  /** ggml type name, e.g. `F16`. */
  typeName: GgmlTypeName;
  /** Byte offset of the tensor's data, relative to {@link GgufMetadata.dataOffset}. */
  offset: number;
  /** Size of the tensor's data in bytes (without alignment padding). */
  byteSize: number;
}

/** Everything in a GGUF file except the tensor data. */
export interface GgufMetadata {
  version: number;
  /**
   * Key/value metadata. A null-prototype object, so hostile keys such as `__proto__` are plain keys;
   * iteration follows file order except that JS puts integer-like keys first.
   */
  metadata: Record<string, GgufValue>;
  tensors: GgufTensorInfo[];
  /** Absolute file offset where the tensor data section starts. */
  dataOffset: number;
  /** Alignment of the data section (`general.alignment`, default 32). */
  alignment: number;
  /** Size of the file in bytes. */
  fileSize: number;
}
