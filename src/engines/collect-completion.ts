/**
 * Gathers a stream of {@link StreamPart}s into one completion. Both engines run every request as a stream
 * upstream (so a client's disconnect cancels at once) and answer `complete()` with this.
 */
import type { EngineChoice, EngineCompletion, EngineUsage, StreamPart } from './engine.js';
import { newToolCallId } from './openai-stream-decoder.js';

/** The whole completion of `stream`, choices in index order; rejects with the stream's error part, if it has one. */
export async function collectCompletion(stream: AsyncIterable<StreamPart>): Promise<EngineCompletion> {
  const choices = new Map<number, EngineChoice>();
  const choiceAt = (index: number | undefined): EngineChoice => {
    let choice = choices.get(index ?? 0);
    if (!choice) {
      choice = { text: '', toolCalls: [], finishReason: 'stop' };
      choices.set(index ?? 0, choice);
    }
    return choice;
  };
  let usage: EngineUsage = { promptTokens: 0, completionTokens: 0 };
  for await (const part of stream) {
    switch (part.type) {
      case 'text-delta':
        choiceAt(part.choice).text += part.text;
        break;
      case 'tool-call-delta': {
        const calls = choiceAt(part.choice).toolCalls;
        calls[part.index] ??= { id: part.id ?? newToolCallId(), name: '', arguments: '' };
        const call = calls[part.index]!;
        if (part.name) call.name += part.name;
        call.arguments += part.argumentsDelta;
        break;
      }
      case 'logprobs': {
        const choice = choiceAt(part.choice);
        choice.logprobs = [...(choice.logprobs ?? []), ...part.content];
        break;
      }
      case 'finish': {
        const choice = choiceAt(part.choice);
        choice.finishReason = part.finishReason;
        if (part.stopSequence !== undefined) choice.stopSequence = part.stopSequence;
        break;
      }
      case 'usage':
        usage = part.usage;
        break;
      case 'error':
        throw part.error;
    }
  }
  if (choices.size === 0) choiceAt(0);
  const ordered = [...choices.entries()].sort(([a], [b]) => a - b).map(([, choice]) => ({ ...choice, toolCalls: choice.toolCalls.filter(Boolean) }));
  return { choices: ordered, usage };
}
