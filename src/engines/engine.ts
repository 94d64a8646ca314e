/**
 * THE engine spec. Routes see only {@link Engine}; an engine is anything that turns a list of messages
 * (text and already-normalized images) into text: the embedded llama-server runner, a remote
 * OpenAI-compatible deployment, and so on. Engines declare what they can do in {@link EngineCapabilities}
 * instead of callers guessing.
 *
 * Inside Iris a stream is an async iterable of typed {@link StreamPart}s; SSE exists only at the HTTP edge.
 */
import type { IrisError } from '../errors.js';
import type { EngineUsage, FinishReason } from '../protocol/generation-result.js';

/**
 * What an engine can take. Each engine class declares it for its settings (a static `capabilitiesFor`), so
 * the registry knows it before the engine starts and the route checks a request against it before any
 * image work.
 */
export interface EngineCapabilities {
  /** Accepts image parts. */
  vision: boolean;
  /** Most images one request may carry (0 for a text-only engine). */
  maxImagesPerRequest: number;
}

/** An image ready for the engine: decoded, oriented, rescaled and re-encoded by Iris. */
export interface EngineImage {
  /** Encoded image bytes. */
  data: Uint8Array;
  /** Format of `data`. Iris hands engines PNG: llama-server cannot decode WebP or AVIF. */
  mimeType: 'image/png';
  width: number;
  height: number;
}

/** One part of a message's content. */
export type EngineContentPart = { type: 'text'; text: string } | { type: 'image'; image: EngineImage };

/** One message of the conversation. */
export interface EngineMessage {
  role: 'system' | 'user' | 'assistant';
  content: EngineContentPart[];
}

/** Sampling and length controls; absent means the engine's default. */
export interface GenerationParams {
  maxTokens?: number;
  temperature?: number;
  topP?: number;
  topK?: number;
  minP?: number;
  seed?: number;
  stop?: string[];
  presencePenalty?: number;
  frequencyPenalty?: number;
  repetitionPenalty?: number;
  /** Generate until maxTokens even past end-of-sequence (benchmarks, load tests). */
  ignoreEos?: boolean;
}

/** One request to an engine. */
export interface EngineRequest {
  messages: EngineMessage[];
  params: GenerationParams;
  /** Aborted when the client goes away; the engine stops generating. */
  signal: AbortSignal;
}

// Usage and finish reason are part of the wire format; engines report them in protocol's terms.
export type { EngineUsage, FinishReason } from '../protocol/generation-result.js';

/** A finished, non-streamed completion. */
export interface EngineCompletion {
  /** Generated text. Gibberish from random models can hold U+FFFD where bytes were not valid UTF-8. */
  text: string;
  finishReason: FinishReason;
  usage: EngineUsage;
}

/** One typed event of a streamed completion, in order: text-delta*, then usage and finish, or an error. */
export type StreamPart =
  | { type: 'text-delta'; text: string }
  | { type: 'usage'; usage: EngineUsage }
  | { type: 'finish'; finishReason: FinishReason }
  | { type: 'error'; error: IrisError };

/** A request to count the prompt tokens of messages without generating. */
export interface EngineTokenCountRequest {
  messages: EngineMessage[];
  signal: AbortSignal;
}

/** A model engine. */
export interface Engine {
  /** What the engine can take. */
  readonly capabilities: EngineCapabilities;
  /** Runs a request to the end. Rejects with an IrisError. */
  complete(request: EngineRequest): Promise<EngineCompletion>;
  /**
   * Streams a request. Failures before the first part reject the iteration with an IrisError; failures
   * after it arrive as an `error` part, and the iteration ends.
   */
  stream(request: EngineRequest): AsyncIterable<StreamPart>;
  /**
   * Counts the prompt tokens `messages` make (chat template and image tokens included) exactly as a
   * completion would, without generating. Absent on engines that cannot count. Rejects with an IrisError.
   */
  countPromptTokens?(request: EngineTokenCountRequest): Promise<number>;
  /** Whether the engine can take a request right now without starting or restarting. */
  isReady(): boolean;
  /** Resolves once the engine can take requests (starting it if needed). */
  ready(): Promise<void>;
  /** Stops the engine; pending and later requests reject with a typed error. */
  dispose(): Promise<void>;
}
