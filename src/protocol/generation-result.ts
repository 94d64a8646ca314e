/**
 * What every generation ends with, in the terms the wire format reports: token counts and why it stopped.
 * Engines produce these and protocol renders them, so they live here, below both (engines import
 * protocol, never the other way round).
 */
/** Token counts of one completion. */
export interface EngineUsage {
  /** Prompt tokens, image tokens included, as the engine counted them. */
  promptTokens: number;
  completionTokens: number;
  /** Prompt tokens served from the engine's prompt cache. */
  cachedTokens?: number;
}

/** Why generation ended. */
export type FinishReason = 'stop' | 'length' | 'tool_calls';

/** A function call the assistant made: generated, or carried in the conversation history. */
export interface EngineToolCall {
  /** The call's id (`call_...`), echoed by the `tool` message that answers it. */
  id: string;
  name: string;
  /** The arguments as a JSON text, as the model wrote them. */
  arguments: string;
}

/** One alternative token at a position, with its log-probability. */
export interface TopLogprob {
  token: string;
  logprob: number;
  /** UTF-8 bytes of the token (a token may be part of a character). */
  bytes: number[] | null;
}

/** A generated token with its log-probability and the most likely alternatives. */
export interface TokenLogprob extends TopLogprob {
  topLogprobs: TopLogprob[];
}

/** One finished choice. */
export interface EngineChoice {
  /** Generated text. Gibberish from random models can hold U+FFFD where bytes were not valid UTF-8. */
  text: string;
  toolCalls: EngineToolCall[];
  /** Per generated token, when `topLogprobs` was asked for. */
  logprobs?: TokenLogprob[];
  finishReason: FinishReason;
  /**
   * Which of the request's stop sequences ended the choice (`finishReason` is then `stop`), when the engine
   * reports it; absent when generation ended otherwise or the engine cannot say.
   */
  stopSequence?: string;
}
