/**
 * Token ids of text pieces in a synthetic model's byte-level vocabulary, for `logit_bias` in tests that
 * need a random model to start a tool call.
 */
import assert from 'node:assert/strict';
import { readGgufMetadata } from '../../src/gguf/gguf-reader.js';

/** The id of each piece (each must be one token). */
export async function tokenIds(modelPath: string, pieces: readonly string[]): Promise<number[]> {
  const { metadata } = await readGgufMetadata(modelPath);
  const tokens = metadata['tokenizer.ggml.tokens'];
  assert.ok(tokens?.type === 'array');
  // Byte-level BPE spells space and newline as 'Ġ' and 'Ċ'; printable ASCII stands for itself.
  return pieces.map((piece) => {
    const id = tokens.value.indexOf(piece.replaceAll(' ', 'Ġ').replaceAll('\n', 'Ċ'));
    assert.ok(id >= 0, `no token for ${JSON.stringify(piece)}`);
    return id;
  });
}
