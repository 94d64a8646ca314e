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
export type FinishReason = 'stop' | 'length';
