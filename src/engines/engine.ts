/**
 * THE engine spec. Routes see only {@link Engine}; an engine is anything that turns a list of messages
 * (text and already-normalized images) into text: the embedded llama-server runner, a remote
 * OpenAI-compatible deployment, and so on. Engines declare what they can do in {@link EngineCapabilities}
 * instead of callers guessing.
 *
 * Inside Iris a stream is an async iterable of typed {@link StreamPart}s; SSE exists only at the HTTP edge.
 */
import type { IrisError } from '../errors.js';
import type { EngineChoice, EngineToolCall, EngineUsage, FinishReason, TokenLogprob } from '../protocol/generation-result.js';

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
  /** Takes `tools` and answers with `tool-call-delta` parts. */
  toolCalls: boolean;
  /** Constrains output to `responseFormat` (JSON, JSON Schema). */
  structuredOutputs: boolean;
  /** Reports token log-probabilities (`logprobs` parts) when asked. */
  logprobs: boolean;
  /**
   * Most choices one engine request can produce (`EngineRequest.n`). An engine that generates one answer per
   * request says 1, and callers fan a request for n choices out over n engine requests.
   */
  maxChoicesPerRequest: number;
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
  role: 'system' | 'user' | 'assistant' | 'tool';
  content: EngineContentPart[];
  /** Calls an assistant message made (its content may then be empty). */
  toolCalls?: EngineToolCall[];
  /** For a `tool` message: the id of the call it answers. */
  toolCallId?: string;
}

/** A function the model may call. */
export interface EngineTool {
  name: string;
  description?: string;
  /** JSON Schema of the arguments object. */
  parameters?: Record<string, unknown>;
  /** Asks for the arguments to follow `parameters` exactly. */
  strict?: boolean;
}

/** Whether and which tool the model must call: none, its choice, at least one, or this function. */
export type EngineToolChoice = 'none' | 'auto' | 'required' | { name: string };

/** The shape the output must take. */
export type EngineResponseFormat =
  | { type: 'text' }
  | { type: 'json_object' }
  | { type: 'json_schema'; name: string; schema: Record<string, unknown>; strict?: boolean; description?: string };

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
  /** Added to the logits of token ids (keys are token ids as decimal strings), -100..100. */
  logitBias?: Record<string, number>;
}

/** One request to an engine. */
export interface EngineRequest {
  messages: EngineMessage[];
  params: GenerationParams;
  /** Functions the model may call (needs `capabilities.toolCalls`). */
  tools?: EngineTool[];
  /** @default 'auto' when tools are given */
  toolChoice?: EngineToolChoice;
  /** Whether one answer may hold several calls. @default the model's chat template's ability */
  parallelToolCalls?: boolean;
  /** Output shape (needs `capabilities.structuredOutputs` unless `text`). */
  responseFormat?: EngineResponseFormat;
  /** Report this many alternatives (0-20) beside each generated token's log-probability. Absent: no logprobs. */
  topLogprobs?: number;
  /** Choices to generate, at most `capabilities.maxChoicesPerRequest`. @default 1 */
  n?: number;
  /** Aborted when the client goes away; the engine stops generating. */
  signal: AbortSignal;
  /** The request id (logged with every line about the request, forwarded to remote engines). */
  requestId?: string | undefined;
}

// Usage, finish reason and the parts of a finished choice are part of the wire format; engines report them
// in protocol's terms.
export type {
  EngineChoice,
  EngineToolCall,
  EngineUsage,
  FinishReason,
  TokenLogprob,
  TopLogprob,
} from '../protocol/generation-result.js';

/** A finished, non-streamed completion. */
export interface EngineCompletion {
  /** Choices in index order (one unless `n` > 1). */
  choices: EngineChoice[];
  /** Prompt counted once, completion tokens summed over choices. */
  usage: EngineUsage;
}

/**
 * One typed event of a streamed completion. Per choice: deltas (text, tool calls, logprobs) then one finish;
 * a single usage part for the whole request; or an error that ends the stream. `choice` is the choice's
 * index (absent means 0). A `tool-call-delta` carries the call's id and name the first time its `index`
 * appears, and argument text after, as OpenAI streams them. A `finish` names the stop sequence that ended the
 * choice when the engine knows it (see {@link EngineChoice.stopSequence}).
 */
export type StreamPart =
  | { type: 'text-delta'; choice?: number; text: string }
  | { type: 'tool-call-delta'; choice?: number; index: number; id?: string; name?: string; argumentsDelta: string }
  | { type: 'logprobs'; choice?: number; content: TokenLogprob[] }
  | { type: 'usage'; usage: EngineUsage }
  | { type: 'finish'; choice?: number; finishReason: FinishReason; stopSequence?: string }
  | { type: 'error'; error: IrisError };

/** A request to count the prompt tokens of messages without generating. */
export interface EngineTokenCountRequest extends Pick<EngineRequest, 'tools' | 'toolChoice' | 'parallelToolCalls' | 'responseFormat'> {
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
  /**
   * The engine's own Prometheus metrics text (llama-server's `/metrics`), read now; undefined while it is
   * not running. Absent on engines that have none. Never starts the engine.
   */
  scrapeMetrics?(signal: AbortSignal): Promise<string | undefined>;
  /** Whether the engine can take a request right now without starting or restarting. */
  isReady(): boolean;
  /** Resolves once the engine can take requests (starting it if needed). */
  ready(): Promise<void>;
  /** Stops the engine; pending and later requests reject with a typed error. */
  dispose(): Promise<void>;
}
