import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import type { StreamPart } from '../engines/engine.js';
import { observePart, type RequestObservation } from './request-observation.js';

function observe(parts: StreamPart[]): RequestObservation {
  const observation: RequestObservation = { startedAt: performance.now() };
  for (const part of parts) observePart(part, observation);
  return observation;
}

describe('observePart', () => {
  it('an answer whose only token ended it (no text at all) still has a time to first token', () => {
    const observation = observe([
      { type: 'finish', finishReason: 'stop' },
      { type: 'usage', usage: { promptTokens: 7, completionTokens: 1 } },
    ]);
    assert.equal(typeof observation.firstTokenAt, 'number');
    assert.equal(observation.lastTokenAt, undefined, 'no text: no time per output token');
    assert.equal(observation.completionTokens, 1);
  });

  it('the first generated part of any kind sets the first token; the last delta sets the last', () => {
    const toolCall = observe([{ type: 'tool-call-delta', index: 0, id: 'call_1', name: 'f', argumentsDelta: '{' }]);
    assert.equal(typeof toolCall.firstTokenAt, 'number');
    const text = observe([
      { type: 'text-delta', text: 'a' },
      { type: 'text-delta', text: 'b' },
      { type: 'finish', finishReason: 'length' },
    ]);
    assert.ok(text.firstTokenAt! <= text.lastTokenAt!);
  });
});
