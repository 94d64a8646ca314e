/**
 * Gathers a stream of {@link StreamPart}s into one completion. Both engines run every request as a stream
 * upstream (so a client's disconnect cancels at once) and answer `complete()` with this.
 */
import type { EngineCompletion, EngineUsage, FinishReason, StreamPart } from './engine.js';

/** The whole completion of `stream`; rejects with the stream's error part, if it has one. */
export async function collectCompletion(stream: AsyncIterable<StreamPart>): Promise<EngineCompletion> {
  let text = '';
  let finishReason: FinishReason = 'stop';
  let usage: EngineUsage = { promptTokens: 0, completionTokens: 0 };
  for await (const part of stream) {
    if (part.type === 'text-delta') text += part.text;
    else if (part.type === 'finish') finishReason = part.finishReason;
    else if (part.type === 'usage') usage = part.usage;
    else throw part.error;
  }
  return { text, finishReason, usage };
}
