/**
 * What a dialect's stream translator keeps from the parts that carry no content of their own: the usage,
 * the finish reason and the stop sequence that ended the answer, which every dialect writes only in its
 * closing events.
 */
import type { EngineUsage, FinishReason, StreamPart } from '../engines/engine.js';

/** The usage and finish reason of a stream, as its parts arrive. */
export class StreamOutcome {
  /** The engine's counts (zero until its usage part arrived). */
  usage: EngineUsage = { promptTokens: 0, completionTokens: 0 };
  finishReason: FinishReason = 'stop';
  /** The stop sequence that ended the answer, when the engine said which. */
  stopSequence: string | undefined;

  /** Takes a `usage` or `finish` part and says so; other parts are left to the caller. */
  record(part: StreamPart): part is Extract<StreamPart, { type: 'usage' | 'finish' }> {
    if (part.type === 'usage') {
      this.usage = part.usage;
    } else if (part.type === 'finish') {
      this.finishReason = part.finishReason;
      this.stopSequence = part.stopSequence;
    } else {
      return false;
    }
    return true;
  }
}
