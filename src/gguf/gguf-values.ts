/**
 * Building and reading typed GGUF metadata values: `ggufValue.u32(64)` to write one, and `ggufString` /
 * `ggufNumber` to read one back without caring which integer width the file used.
 */
import type { GgufArrayItem, GgufArrayValue, GgufValue, GgufValueType } from './gguf-format.js';

/** Constructors for typed metadata values, e.g. `ggufValue.u32(64)`. */
export const ggufValue = {
  u8: (value: number): GgufValue => ({ type: 'uint8', value }),
  i8: (value: number): GgufValue => ({ type: 'int8', value }),
  u16: (value: number): GgufValue => ({ type: 'uint16', value }),
  i16: (value: number): GgufValue => ({ type: 'int16', value }),
  u32: (value: number): GgufValue => ({ type: 'uint32', value }),
  i32: (value: number): GgufValue => ({ type: 'int32', value }),
  u64: (value: bigint | number): GgufValue => ({ type: 'uint64', value: BigInt(value) }),
  i64: (value: bigint | number): GgufValue => ({ type: 'int64', value: BigInt(value) }),
  f32: (value: number): GgufValue => ({ type: 'float32', value }),
  f64: (value: number): GgufValue => ({ type: 'float64', value }),
  bool: (value: boolean): GgufValue => ({ type: 'bool', value }),
  str: (value: string): GgufValue => ({ type: 'string', value }),
  array: (itemType: GgufValueType, value: readonly GgufArrayItem[]): GgufArrayValue => ({ type: 'array', itemType, value: [...value] }),
} as const;

/** The value as a string, or `undefined` when it is absent or not a string. */
export function ggufString(value: GgufValue | undefined): string | undefined {
  return value?.type === 'string' ? value.value : undefined;
}

/** The value as a number (64-bit integers converted), or `undefined` when it is absent or not a scalar number. */
export function ggufNumber(value: GgufValue | undefined): number | undefined {
  if (value === undefined) return undefined;
  if (typeof value.value === 'number') return value.value;
  if (typeof value.value === 'bigint') return Number(value.value);
  return undefined;
}
