import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import type { GgufValue } from '../gguf/gguf-format.js';
import { readGgufMetadata } from '../gguf/gguf-reader.js';
import {
  constantFill,
  createPrng,
  deriveSeed,
  float16BitsToNumber,
  float32ArrayToFloat16Bits,
  float32ToFloat16Bits,
  uniformFill,
  writeGguf,
  type GgufTensorSource,
} from './gguf-writer.js';
import { ggufValue } from '../gguf/gguf-values.js';

let directory: string;
before(async () => {
  directory = await mkdtemp(join(tmpdir(), 'iris-gguf-writer-'));
});
after(async () => {
  await rm(directory, { recursive: true, force: true });
});

const sha256 = async (path: string): Promise<string> => createHash('sha256').update(await readFile(path)).digest('hex');

/** Every value type, with values that survive float32 storage exactly. */
const EVERY_TYPE: [string, GgufValue][] = [
  ['test.uint8', ggufValue.u8(255)],
  ['test.int8', ggufValue.i8(-128)],
  ['test.uint16', ggufValue.u16(65_535)],
  ['test.int16', ggufValue.i16(-32_768)],
  ['test.uint32', ggufValue.u32(4_294_967_295)],
  ['test.int32', ggufValue.i32(-2_147_483_648)],
  ['test.float32', ggufValue.f32(0.15625)],
  ['test.float64', ggufValue.f64(Math.PI)],
  ['test.bool.true', ggufValue.bool(true)],
  ['test.bool.false', ggufValue.bool(false)],
  ['test.string', ggufValue.str('héllo, wörld 🖼️')],
  ['test.string.empty', ggufValue.str('')],
  ['test.uint64', ggufValue.u64(2n ** 64n - 1n)],
  ['test.int64', ggufValue.i64(-(2n ** 63n))],
  ['test.array.strings', ggufValue.array('string', ['Ġthe', '', '<|im_end|>', 'ünïcode'])],
  ['test.array.int32', ggufValue.array('int32', [1, -2, 3])],
  ['test.array.float32', ggufValue.array('float32', [0.5, -0.25, 1024])],
  ['test.array.bool', ggufValue.array('bool', [true, false])],
  ['test.array.uint64', ggufValue.array('uint64', [0n, 2n ** 60n])],
  ['test.array.empty', ggufValue.array('uint8', [])],
  [
    'test.array.nested',
    ggufValue.array('array', [ggufValue.array('string', ['a', 'b']), ggufValue.array('int16', [-1, 7])]),
  ],
];

describe('float32ToFloat16Bits', () => {
  it('rounds to nearest even like hardware, including subnormals, overflow and NaN', () => {
    const cases: [number, number][] = [
      [0, 0x0000],
      [-0, 0x8000],
      [1, 0x3c00],
      [-2, 0xc000],
      [0.1, 0x2e66],
      [1 / 3, 0x3555],
      [65_504, 0x7bff],
      [65_519, 0x7bff], // just under the rounding point
      [65_520, 0x7c00], // rounds up to infinity
      [Infinity, 0x7c00],
      [-Infinity, 0xfc00],
      [2 ** -14, 0x0400], // smallest normal
      [2 ** -24, 0x0001], // smallest subnormal
      [2 ** -25, 0x0000], // exact tie between 0 and the smallest subnormal: even is 0
      [1.5 * 2 ** -25, 0x0001],
      [1 + 2 ** -11, 0x3c00], // tie: stays even
      [1 + 3 * 2 ** -11, 0x3c02], // tie: rounds up to even
    ];
    for (const [value, bits] of cases) {
      assert.equal(float32ToFloat16Bits(value), bits, `${value} -> 0x${bits.toString(16)}`);
    }
    assert.equal(float32ToFloat16Bits(Number.NaN) & 0x7c00, 0x7c00);
    assert.notEqual(float32ToFloat16Bits(Number.NaN) & 0x3ff, 0);
  });

  it('round-trips every finite half exactly and agrees with the bulk conversion', () => {
    const all = new Float32Array(0x10000);
    for (let bits = 0; bits < 0x10000; bits++) all[bits] = float16BitsToNumber(bits);
    const converted = new Uint16Array(0x10000);
    float32ArrayToFloat16Bits(all, converted);
    for (let bits = 0; bits < 0x10000; bits++) {
      const isNaN = (bits & 0x7c00) === 0x7c00 && (bits & 0x3ff) !== 0;
      if (isNaN) continue;
      assert.equal(converted[bits], bits, `0x${bits.toString(16)}`);
      assert.equal(float32ToFloat16Bits(all[bits] ?? 0), bits);
    }
  });

  it('keeps random values within half an ulp', () => {
    const next = createPrng(42);
    for (let i = 0; i < 10_000; i++) {
      const value = (next() / 2 ** 32 - 0.5) * 1000;
      const back = float16BitsToNumber(float32ToFloat16Bits(value));
      const exponent = Math.floor(Math.log2(Math.abs(value)));
      const ulp = 2 ** (Math.max(exponent, -14) - 10);
      assert.ok(Math.abs(back - value) <= ulp / 2, `${value} came back as ${back}`);
    }
  });
});

describe('PRNG and fills', () => {
  it('is deterministic per seed and differs between seeds', () => {
    const a = createPrng(7);
    const b = createPrng(7);
    const c = createPrng(8);
    const first = Array.from({ length: 5 }, () => a());
    assert.deepEqual(first, Array.from({ length: 5 }, () => b()));
    assert.notDeepEqual(first, Array.from({ length: 5 }, () => c()));
    assert.ok(first.every((value) => Number.isInteger(value) && value >= 0 && value < 2 ** 32));
    assert.notEqual(deriveSeed(1, 'blk.0.attn_q.weight'), deriveSeed(1, 'blk.0.attn_k.weight'));
    assert.notEqual(deriveSeed(1, 'x'), deriveSeed(2, 'x'));
  });

  it('uniformFill stays in range, restarts at element 0 and follows the PRNG sequence', () => {
    const fill = uniformFill(99, 0.5);
    const first = new Float32Array(1000);
    fill(first, 0);
    assert.ok(first.every((value) => value >= -0.5 && value < 0.5));
    const next = createPrng(99);
    first.forEach((value, index) => assert.equal(value, Math.fround((next() / 2 ** 31 - 1) * 0.5), `element ${index}`));
    const again = new Float32Array(1000);
    fill(again, 0);
    assert.deepEqual(again, first);
    assert.throws(() => fill(new Float32Array(10), 5), RangeError);
  });
});

describe('writeGguf', () => {
  const tensors = (): GgufTensorSource[] => [
    { name: 'ones', dims: [3], type: 'F32', fill: constantFill(1) },
    { name: 'ramp.f32', dims: [5, 2], type: 'F32', fill: (target, first) => target.forEach((_, i) => (target[i] = (first + i) / 4)) },
    { name: 'ramp.f16', dims: [7, 3, 2], type: 'F16', fill: (target, first) => target.forEach((_, i) => (target[i] = first + i - 20)) },
    { name: 'random', dims: [4096, 3], type: 'F16', fill: uniformFill(5, 0.1) },
  ];

  it('round-trips metadata of every value type and the tensor table through the reader', async () => {
    const path = join(directory, 'round-trip.gguf');
    const written = await writeGguf(path, { metadata: EVERY_TYPE, tensors: tensors() });
    const read = await readGgufMetadata(path);

    assert.equal(read.version, 3);
    assert.equal(read.alignment, 32);
    assert.equal(read.dataOffset, written.dataOffset);
    assert.equal(read.dataOffset % 32, 0);
    assert.equal(read.fileSize, written.bytes);
    assert.deepEqual(Object.keys(read.metadata), [...EVERY_TYPE.map(([key]) => key), 'general.alignment']);
    for (const [key, value] of EVERY_TYPE) assert.deepEqual(read.metadata[key], value, key);
    assert.deepEqual(read.metadata['general.alignment'], ggufValue.u32(32));

    assert.deepEqual(
      read.tensors.map(({ name, dims, typeName, byteSize }) => ({ name, dims, typeName, byteSize })),
      [
        { name: 'ones', dims: [3], typeName: 'F32', byteSize: 12 },
        { name: 'ramp.f32', dims: [5, 2], typeName: 'F32', byteSize: 40 },
        { name: 'ramp.f16', dims: [7, 3, 2], typeName: 'F16', byteSize: 84 },
        { name: 'random', dims: [4096, 3], typeName: 'F16', byteSize: 24_576 },
      ],
    );
    for (const tensor of read.tensors) assert.equal(tensor.offset % 32, 0, `${tensor.name} is aligned`);
  });

  it('writes the tensor values where the tensor table says they are', async () => {
    const path = join(directory, 'values.gguf');
    await writeGguf(path, { metadata: [], tensors: tensors() });
    const read = await readGgufMetadata(path);
    const bytes = await readFile(path);
    const tensorBytes = (name: string): Buffer => {
      const info = read.tensors.find((tensor) => tensor.name === name);
      assert.ok(info);
      return bytes.subarray(read.dataOffset + info.offset, read.dataOffset + info.offset + info.byteSize);
    };
    const f32 = (buffer: Buffer): number[] => Array.from({ length: buffer.length / 4 }, (_, i) => buffer.readFloatLE(i * 4));
    const f16 = (buffer: Buffer): number[] => Array.from({ length: buffer.length / 2 }, (_, i) => float16BitsToNumber(buffer.readUInt16LE(i * 2)));
    assert.deepEqual(f32(tensorBytes('ones')), [1, 1, 1]);
    assert.deepEqual(f32(tensorBytes('ramp.f32')), [0, 0.25, 0.5, 0.75, 1, 1.25, 1.5, 1.75, 2, 2.25]);
    assert.deepEqual(f16(tensorBytes('ramp.f16')), Array.from({ length: 42 }, (_, i) => i - 20));
    // padding after the last tensor keeps the file size a multiple of the alignment
    assert.equal(bytes.length % 32, 0);
  });

  it('is byte-identical for the same input, whatever the chunk size', async () => {
    const a = join(directory, 'a.gguf');
    const b = join(directory, 'b.gguf');
    await writeGguf(a, { metadata: EVERY_TYPE, tensors: tensors() });
    await writeGguf(b, { metadata: EVERY_TYPE, tensors: tensors(), chunkElements: 1000 });
    assert.equal(await sha256(a), await sha256(b));

    const c = join(directory, 'c.gguf');
    const changed = tensors().map((tensor) => (tensor.name === 'random' ? { ...tensor, fill: uniformFill(6, 0.1) } : tensor));
    await writeGguf(c, { metadata: EVERY_TYPE, tensors: changed });
    assert.notEqual(await sha256(a), await sha256(c));
  });

  it('handles headers far larger than its initial buffer (a real vocabulary)', async () => {
    const path = join(directory, 'vocab.gguf');
    const tokens = Array.from({ length: 50_000 }, (_, i) => `token-${i}-${'x'.repeat(i % 17)}`);
    await writeGguf(path, { metadata: [['tokenizer.ggml.tokens', ggufValue.array('string', tokens)]], tensors: tensors() });
    const read = await readGgufMetadata(path);
    assert.deepEqual(read.metadata['tokenizer.ggml.tokens'], ggufValue.array('string', tokens));
    assert.equal(read.tensors.length, 4);
  });

  it('honours a custom alignment', async () => {
    const path = join(directory, 'aligned-64.gguf');
    await writeGguf(path, { metadata: [], tensors: tensors(), alignment: 64 });
    const read = await readGgufMetadata(path);
    assert.equal(read.alignment, 64);
    assert.equal(read.dataOffset % 64, 0);
    for (const tensor of read.tensors) assert.equal(tensor.offset % 64, 0);
  });

  it('rejects invalid input and leaves no file behind', async () => {
    const path = join(directory, 'invalid', 'never.gguf');
    await mkdir(join(directory, 'invalid'));
    const one: GgufTensorSource = { name: 't', dims: [2], type: 'F32', fill: constantFill(0) };
    const attempts: [string, () => Promise<unknown>][] = [
      ['duplicate key', () => writeGguf(path, { metadata: [['k', ggufValue.u8(1)], ['k', ggufValue.u8(2)]], tensors: [] })],
      ['uint8 out of range', () => writeGguf(path, { metadata: [['k', ggufValue.u8(256)]], tensors: [] })],
      ['int32 not an integer', () => writeGguf(path, { metadata: [['k', ggufValue.i32(1.5)]], tensors: [] })],
      ['uint64 negative', () => writeGguf(path, { metadata: [['k', ggufValue.u64(-1n)]], tensors: [] })],
      ['array item of the wrong type', () => writeGguf(path, { metadata: [['k', ggufValue.array('string', ['a', 1])]], tensors: [] })],
      ['duplicate tensor', () => writeGguf(path, { metadata: [], tensors: [one, one] })],
      ['tensor name too long', () => writeGguf(path, { metadata: [], tensors: [{ ...one, name: 'n'.repeat(64) }] })],
      ['zero dimension', () => writeGguf(path, { metadata: [], tensors: [{ ...one, dims: [0] }] })],
      ['five dimensions', () => writeGguf(path, { metadata: [], tensors: [{ ...one, dims: [1, 1, 1, 1, 1] }] })],
      ['alignment not a power of two', () => writeGguf(path, { metadata: [], tensors: [one], alignment: 48 })],
      ['conflicting general.alignment', () => writeGguf(path, { metadata: [['general.alignment', ggufValue.u32(64)]], tensors: [one] })],
      [
        'a fill that throws midway',
        () =>
          writeGguf(path, {
            metadata: [],
            tensors: [{ ...one, fill: () => { throw new Error('generator broke'); } }],
          }),
      ],
    ];
    for (const [label, attempt] of attempts) {
      await assert.rejects(attempt, Error, label);
    }
    assert.deepEqual(await readdir(join(directory, 'invalid')), []);
  });
});
