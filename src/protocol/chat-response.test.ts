import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { buildChunk, contentChunkSerializer, newCompletionIdentity } from './chat-response.js';

describe('contentChunkSerializer', () => {
  const contents = ['', 'plain', 'quote " backslash \\ newline \n tab \t', 'ünïcødé 画像 🖼️', '\u0000\u001f\u2028', '\ud800 lone', '</script>'];

  for (const withUsage of [false, true]) {
    it(`writes exactly what JSON.stringify(buildChunk(...)) writes (usage: ${withUsage})`, () => {
      const identity = newCompletionIdentity('smolvlm "quoted" \u0000 model', 'iris-0.1.0');
      const serialize = contentChunkSerializer(identity, withUsage);
      for (const content of contents) {
        assert.equal(serialize(content), JSON.stringify(buildChunk(identity, { content }, null, withUsage)));
        assert.deepEqual(JSON.parse(serialize(content)).choices[0].delta, { content });
        assert.equal(serialize(content, 2), JSON.stringify(buildChunk(identity, { content }, null, withUsage, 2)));
      }
    });
  }

  it('still serializes correctly when the model name holds its marker', () => {
    const identity = newCompletionIdentity('a\u0000iris-content\u0000b', 'iris-0.1.0');
    const serialize = contentChunkSerializer(identity, true);
    assert.equal(serialize('x'), JSON.stringify(buildChunk(identity, { content: 'x' }, null, true)));
  });
});
