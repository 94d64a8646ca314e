import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import { IrisError } from '../errors.js';
import { constantFill, createPrng, writeGguf } from '../synth/gguf-writer.js';
import { ggufValue } from './gguf-values.js';
import { GgufFormatError, readGgufMetadata, type GgufFormatErrorReason } from './gguf-reader.js';

let directory: string;
let counter = 0;
before(async () => {
  directory = await mkdtemp(join(tmpdir(), 'iris-gguf-reader-'));
});
after(async () => {
  await rm(directory, { recursive: true, force: true });
});

async function fileWith(bytes: Uint8Array): Promise<string> {
  const path = join(directory, `case-${counter++}.gguf`);
  await writeFile(path, bytes);
  return path;
}

/** Hand-assembles GGUF bytes, so hostile files can say things no writer would. */
class RawGguf {
  private readonly parts: Buffer[] = [];

  u8(value: number): this {
    this.parts.push(Buffer.from([value]));
    return this;
  }

  u32(value: number): this {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(value);
    this.parts.push(b);
    return this;
  }

  u64(value: bigint | number): this {
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(BigInt(value));
    this.parts.push(b);
    return this;
  }

  str(value: string): this {
    const bytes = Buffer.from(value, 'utf8');
    return this.u64(bytes.length).raw(bytes);
  }

  raw(bytes: Uint8Array): this {
    this.parts.push(Buffer.from(bytes));
    return this;
  }

  header(tensors: number | bigint, kvs: number | bigint, version = 3): this {
    return this.raw(Buffer.from('GGUF', 'latin1')).u32(version).u64(tensors).u64(kvs);
  }

  /** A string KV. */
  kvString(key: string, value: string): this {
    return this.str(key).u32(8).str(value);
  }

  /** A tensor-table entry. */
  tensor(name: string, dims: (number | bigint)[], type: number, offset: number | bigint): this {
    this.str(name).u32(dims.length);
    for (const dim of dims) this.u64(dim);
    return this.u32(type).u64(offset);
  }

  /** Pads to `alignment` and appends `dataBytes` zero bytes of tensor data. */
  data(dataBytes: number, alignment = 32): this {
    const length = this.build().length;
    return this.raw(Buffer.alloc((alignment - (length % alignment)) % alignment + dataBytes));
  }

  build(): Buffer {
    return Buffer.concat(this.parts);
  }
}

function isFormatError(reason: GgufFormatErrorReason): (error: unknown) => boolean {
  return (error) => {
    assert.ok(error instanceof GgufFormatError, `expected a GgufFormatError, got ${String(error)}`);
    assert.equal(error.reason, reason, error.message);
    return true;
  };
}

describe('readGgufMetadata', () => {
  it('reads a hand-assembled file: header, metadata, tensor table, data offset', async () => {
    const bytes = new RawGguf()
      .header(2, 3)
      .kvString('general.architecture', 'llama')
      .str('llama.block_count')
      .u32(4)
      .u32(2)
      .str('tokenizer.ggml.tokens')
      .u32(9)
      .u32(8)
      .u64(2)
      .str('a')
      .str('Ġb')
      .tensor('token_embd.weight', [4, 2], 1, 0) // F16, 16 bytes
      .tensor('output_norm.weight', [4], 0, 32) // F32, 16 bytes, next aligned offset
      .data(48)
      .build();
    const path = await fileWith(bytes);
    const read = await readGgufMetadata(path);
    assert.equal(read.version, 3);
    assert.deepEqual({ ...read.metadata }, {
      'general.architecture': { type: 'string', value: 'llama' },
      'llama.block_count': { type: 'uint32', value: 2 },
      'tokenizer.ggml.tokens': { type: 'array', itemType: 'string', value: ['a', 'Ġb'] },
    });
    assert.deepEqual(read.tensors, [
      { name: 'token_embd.weight', dims: [4, 2], type: 1, typeName: 'F16', offset: 0, byteSize: 16 },
      { name: 'output_norm.weight', dims: [4], type: 0, typeName: 'F32', offset: 32, byteSize: 16 },
    ]);
    assert.equal(read.dataOffset % 32, 0);
    assert.equal(read.dataOffset + 48, bytes.length);
    assert.equal(read.alignment, 32);
    assert.equal(read.fileSize, bytes.length);
  });

  it('reads quantized tensor sizes from the pinned type table', async () => {
    const bytes = new RawGguf()
      .header(2, 0)
      .tensor('q4', [64, 2], 2, 0) // Q4_0: 32 values in 18 bytes -> 72 bytes
      .tensor('q6k', [256], 14, 96) // Q6_K: 256 values in 210 bytes
      .data(96 + 210)
      .build();
    const read = await readGgufMetadata(await fileWith(bytes));
    assert.deepEqual(
      read.tensors.map(({ typeName, byteSize }) => ({ typeName, byteSize })),
      [
        { typeName: 'Q4_0', byteSize: 72 },
        { typeName: 'Q6_K', byteSize: 210 },
      ],
    );
  });

  it('never reads tensor data: a multi-GB (sparse) file parses at once', async () => {
    const elements = 2 ** 30; // 4 GiB of F32
    const head = new RawGguf().header(1, 1).kvString('general.architecture', 'llama').tensor('big', [elements], 0, 0).data(0).build();
    const path = await fileWith(head);
    await truncate(path, head.length + elements * 4);
    const started = performance.now();
    const read = await readGgufMetadata(path);
    assert.equal(read.tensors[0]?.byteSize, elements * 4);
    assert.ok(performance.now() - started < 2000, 'header-only read is fast');
  });

  it('rejects files that are not GGUF', async () => {
    await assert.rejects(readGgufMetadata(await fileWith(Buffer.alloc(0))), isFormatError('not_gguf'));
    await assert.rejects(readGgufMetadata(await fileWith(Buffer.from('GGU'))), isFormatError('not_gguf'));
    await assert.rejects(readGgufMetadata(await fileWith(Buffer.from('PK\x03\x04 definitely a zip file'))), isFormatError('not_gguf'));
  });

  it('rejects unsupported versions', async () => {
    for (const version of [0, 1, 4, 0xffffffff]) {
      const bytes = new RawGguf().header(0, 0, version).build();
      await assert.rejects(readGgufMetadata(await fileWith(bytes)), isFormatError('unsupported_version'));
    }
  });

  it('reports missing files and directories as unreadable, as an IrisError', async () => {
    await assert.rejects(readGgufMetadata(join(directory, 'does-not-exist.gguf')), (error) => {
      isFormatError('unreadable')(error);
      assert.ok(error instanceof IrisError);
      assert.equal(error.code, 'model_unavailable');
      assert.ok(!error.message.includes(directory), 'the message names the file, not its directory');
      return true;
    });
    await assert.rejects(readGgufMetadata(directory), isFormatError('unreadable'));
  });

  it('fails with a typed error at every truncation point', async () => {
    const path = join(directory, 'whole.gguf');
    await writeGguf(path, {
      metadata: [
        ['general.architecture', ggufValue.str('llama')],
        ['tokenizer.ggml.tokens', ggufValue.array('string', ['a', 'bc', 'def'])],
        ['tokenizer.ggml.scores', ggufValue.array('float32', [0, -1, -2])],
        ['nested', ggufValue.array('array', [ggufValue.array('uint16', [1, 2])])],
        ['big', ggufValue.u64(12345678901234n)],
      ],
      tensors: [
        { name: 'a', dims: [8], type: 'F32', fill: constantFill(1) },
        { name: 'b', dims: [4, 4], type: 'F16', fill: constantFill(2) },
      ],
    });
    const whole = await readFile(path);
    await readGgufMetadata(path); // the untruncated file is fine
    for (let length = 0; length < whole.length; length++) {
      const cut = await fileWith(whole.subarray(0, length));
      await assert.rejects(readGgufMetadata(cut), (error) => {
        assert.ok(error instanceof GgufFormatError, `cut at ${length}: ${String(error)}`);
        assert.ok(error.reason === 'truncated' || (length < 4 && error.reason === 'not_gguf'), `cut at ${length}: ${error.reason}`);
        return true;
      });
      await rm(cut);
    }
  });

  it('checks huge counts and lengths against the file size before allocating', async () => {
    const cases: [string, Buffer][] = [
      ['kv count', new RawGguf().header(0, 2n ** 62n).build()],
      ['tensor count', new RawGguf().header(2n ** 60n, 0).build()],
      ['key length', new RawGguf().header(0, 1).u64(2n ** 64n - 1n).build()],
      ['string value length', new RawGguf().header(0, 1).str('k').u32(8).u64(2n ** 63n).build()],
      ['array length', new RawGguf().header(0, 1).str('k').u32(9).u32(0).u64(2n ** 63n).build()],
      ['array of strings length', new RawGguf().header(0, 1).str('k').u32(9).u32(8).u64(10_000).u64(1).raw(Buffer.from('x')).build()],
      ['tensor name length', new RawGguf().header(1, 0).u64(2n ** 40n).build()],
      ['tensor data past the end', new RawGguf().header(1, 0).tensor('t', [1024], 0, 0).data(100).build()],
    ];
    for (const [label, bytes] of cases) {
      await assert.rejects(readGgufMetadata(await fileWith(bytes)), isFormatError('truncated'), label);
    }
  });

  it('rejects inconsistent or invalid content', async () => {
    const cases: [string, Buffer][] = [
      ['unknown value type', new RawGguf().header(0, 1).str('k').u32(13).u32(0).build()],
      ['unknown array item type', new RawGguf().header(0, 1).str('k').u32(9).u32(99).u64(0).build()],
      ['bool byte 2', new RawGguf().header(0, 1).str('k').u32(7).u8(2).build()],
      ['bool byte 2 inside an array', new RawGguf().header(0, 1).str('k').u32(9).u32(7).u64(2).u8(1).u8(2).build()],
      ['duplicate key', new RawGguf().header(0, 2).kvString('k', 'a').kvString('k', 'b').build()],
      ['alignment not a power of two', new RawGguf().header(0, 1).str('general.alignment').u32(4).u32(48).build()],
      ['alignment of the wrong type', new RawGguf().header(0, 1).str('general.alignment').u32(5).u32(32).build()],
      ['five dimensions', new RawGguf().header(1, 0).tensor('t', [1, 1, 1, 1, 1], 0, 0).data(32).build()],
      ['element count overflow', new RawGguf().header(1, 0).tensor('t', [2n ** 40n, 2n ** 40n], 0, 0).data(32).build()],
      ['retired tensor type 4', new RawGguf().header(1, 0).tensor('t', [32], 4, 0).data(64).build()],
      ['row not a whole block', new RawGguf().header(1, 0).tensor('t', [10], 2, 0).data(64).build()],
      ['misaligned data offset', new RawGguf().header(1, 0).tensor('t', [4], 0, 8).data(64).build()],
      ['overlapping tensors', new RawGguf().header(2, 0).tensor('a', [16], 0, 0).tensor('b', [16], 0, 32).data(128).build()],
      ['duplicate tensor name', new RawGguf().header(2, 0).tensor('a', [4], 0, 0).tensor('a', [4], 0, 32).data(64).build()],
      ['tensor name too long', new RawGguf().header(1, 0).tensor('n'.repeat(64), [4], 0, 0).data(32).build()],
    ];
    for (const [label, bytes] of cases) {
      await assert.rejects(readGgufMetadata(await fileWith(bytes)), isFormatError('invalid_value'), label);
    }
  });

  it('enforces the configurable limits', async () => {
    const longString = new RawGguf().header(0, 1).kvString('k', 'x'.repeat(100)).build();
    await assert.rejects(readGgufMetadata(await fileWith(longString), { maxStringBytes: 99 }), isFormatError('limit_exceeded'));
    assert.equal((await readGgufMetadata(await fileWith(longString), { maxStringBytes: 100 })).metadata['k']?.value, 'x'.repeat(100));

    const longArray = new RawGguf().header(0, 1).str('k').u32(9).u32(0).u64(3).u8(1).u8(2).u8(3).build();
    await assert.rejects(readGgufMetadata(await fileWith(longArray), { maxArrayLength: 2 }), isFormatError('limit_exceeded'));

    const nested = new RawGguf().header(0, 1).str('k').u32(9).u32(9).u64(1).u32(9).u64(1).u32(0).u64(0).build();
    await assert.rejects(readGgufMetadata(await fileWith(nested), { maxArrayDepth: 2 }), isFormatError('limit_exceeded'));
    const read = await readGgufMetadata(await fileWith(nested), { maxArrayDepth: 3 });
    assert.deepEqual(read.metadata['k'], {
      type: 'array',
      itemType: 'array',
      value: [{ type: 'array', itemType: 'array', value: [{ type: 'array', itemType: 'uint8', value: [] }] }],
    });
  });

  it('treats hostile keys such as __proto__ as plain keys', async () => {
    const bytes = new RawGguf().header(0, 2).kvString('__proto__', 'polluted?').kvString('constructor', 'x').build();
    const read = await readGgufMetadata(await fileWith(bytes));
    assert.deepEqual(read.metadata['__proto__'], { type: 'string', value: 'polluted?' });
    assert.equal(Object.getPrototypeOf(read.metadata), null);
    assert.equal(({} as Record<string, unknown>)['polluted?'], undefined);
  });

  it('survives random corruption with either a result or a GgufFormatError', async () => {
    const path = join(directory, 'fuzz-source.gguf');
    await writeGguf(path, {
      metadata: [
        ['general.architecture', ggufValue.str('llama')],
        ['tokenizer.ggml.tokens', ggufValue.array('string', Array.from({ length: 40 }, (_, i) => `t${i}`))],
        ['tokenizer.ggml.token_type', ggufValue.array('int32', Array.from({ length: 40 }, () => 1))],
        ['llama.rope.freq_base', ggufValue.f32(10_000)],
      ],
      tensors: [
        { name: 'a', dims: [8, 2], type: 'F16', fill: constantFill(1) },
        { name: 'b', dims: [3], type: 'F32', fill: constantFill(0) },
      ],
    });
    const source = await readFile(path);
    const headerLength = (await readGgufMetadata(path)).dataOffset;
    const next = createPrng(2024);
    const mutated = join(directory, 'fuzz.gguf');
    for (let round = 0; round < 400; round++) {
      const bytes = Buffer.from(source);
      const flips = 1 + (next() % 4);
      for (let i = 0; i < flips; i++) bytes[next() % headerLength] = next() & 0xff;
      await writeFile(mutated, bytes);
      try {
        await readGgufMetadata(mutated);
      } catch (error) {
        assert.ok(error instanceof GgufFormatError, `round ${round}: ${String(error)}`);
      }
    }
  });
});
