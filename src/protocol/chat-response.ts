/**
 * The OpenAI chat-completion response and stream-chunk shapes, and builders that fill them exactly as
 * the hosted API does (`chatcmpl-` ids, `refusal: null`, `logprobs: null`, `usage: null` on chunks when
 * usage is requested).
 */
import { randomBytes } from 'node:crypto';
import type { EngineChoice, EngineUsage, FinishReason, TokenLogprob } from './generation-result.js';

/** `usage` of a response. */
export interface ChatUsage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  /** `image_tokens` (an Iris extension): prompt tokens of the request's images; absent when not predictable. */
  prompt_tokens_details: { cached_tokens: number; image_tokens?: number };
}

/** One token's log-probability, as OpenAI writes it. */
export interface ChatTokenLogprob {
  token: string;
  logprob: number;
  bytes: number[] | null;
  top_logprobs: { token: string; logprob: number; bytes: number[] | null }[];
}

/** `logprobs` of a choice. */
export interface ChatLogprobs {
  content: ChatTokenLogprob[];
  refusal: null;
}

/** A tool call of a response message. */
export interface ChatToolCall {
  id: string;
  type: 'function';
  function: { name: string; arguments: string };
}

/** A tool call fragment of a streamed delta. */
export interface ChatToolCallDelta {
  index: number;
  id?: string;
  type?: 'function';
  function: { name?: string; arguments: string };
}

/**
 * Extension `images` of a response (and of a tokenize answer): what became of each image of the request,
 * in request order.
 */
export interface ImageReport {
  /** `data` for a data URI, `url` for an image Iris fetched. */
  source: 'data' | 'url';
  /** The format the bytes really were (`jpeg`, `png`, `webp`, ...). */
  format: string;
  /** Size of the image as sent, after EXIF orientation. */
  original_width: number;
  original_height: number;
  /** Size it was handed to the model at. */
  width: number;
  height: number;
  /** The `detail` asked for. */
  detail: 'low' | 'high' | 'auto';
  /** Prompt tokens it cost; null where the model's projector is not modelled. */
  tokens: number | null;
}

/** A non-streamed chat completion. */
export interface ChatCompletion {
  id: string;
  object: 'chat.completion';
  created: number;
  model: string;
  system_fingerprint: string;
  choices: {
    index: number;
    message: { role: 'assistant'; content: string | null; refusal: null; tool_calls?: ChatToolCall[] };
    logprobs: ChatLogprobs | null;
    finish_reason: FinishReason;
  }[];
  usage: ChatUsage;
  /** Extension: what became of each image (absent without images). */
  images?: ImageReport[];
}

/** The delta of one streamed choice. */
export interface ChatDelta {
  role?: 'assistant';
  content?: string;
  refusal?: null;
  tool_calls?: ChatToolCallDelta[];
}

/** One streamed chunk. */
export interface ChatCompletionChunk {
  id: string;
  object: 'chat.completion.chunk';
  created: number;
  model: string;
  system_fingerprint: string;
  choices: {
    index: number;
    delta: ChatDelta;
    logprobs: ChatLogprobs | null;
    finish_reason: FinishReason | null;
  }[];
  usage?: ChatUsage | null;
  /** Extension, on the first chunk: what became of each image (absent without images). */
  images?: ImageReport[];
}

/** Identity shared by every chunk of one completion. */
export interface CompletionIdentity {
  id: string;
  created: number;
  model: string;
  system_fingerprint: string;
}

/** A fresh identity: `chatcmpl-` + 24 random alphanumerics, created now. */
export function newCompletionIdentity(model: string, fingerprint: string): CompletionIdentity {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
  const id = `chatcmpl-${[...randomBytes(24)].map((byte) => alphabet[byte % alphabet.length]).join('')}`;
  return { id, created: Math.floor(Date.now() / 1000), model, system_fingerprint: fingerprint };
}

/** OpenAI `usage` from engine counts, plus the images' share of the prompt when it is known. */
export function toChatUsage(usage: EngineUsage, imageTokens?: number): ChatUsage {
  return {
    prompt_tokens: usage.promptTokens,
    completion_tokens: usage.completionTokens,
    total_tokens: usage.promptTokens + usage.completionTokens,
    prompt_tokens_details: {
      cached_tokens: usage.cachedTokens ?? 0,
      ...(imageTokens === undefined ? {} : { image_tokens: imageTokens }),
    },
  };
}

/** OpenAI `logprobs` of a choice from engine log-probabilities. */
export function toChatLogprobs(content: readonly TokenLogprob[]): ChatLogprobs {
  return {
    content: content.map((token) => ({ token: token.token, logprob: token.logprob, bytes: token.bytes, top_logprobs: token.topLogprobs })),
    refusal: null,
  };
}

/** A whole chat completion. A choice that only calls tools has `content: null`, as OpenAI answers. */
export function buildCompletion(identity: CompletionIdentity, choices: readonly EngineChoice[], usage: EngineUsage, imageTokens?: number): ChatCompletion {
  return {
    ...identity,
    object: 'chat.completion',
    choices: choices.map((choice, index) => ({
      index,
      message: {
        role: 'assistant',
        content: choice.text === '' && choice.toolCalls.length > 0 ? null : choice.text,
        refusal: null,
        ...(choice.toolCalls.length > 0
          ? { tool_calls: choice.toolCalls.map((call) => ({ id: call.id, type: 'function' as const, function: { name: call.name, arguments: call.arguments } })) }
          : {}),
      },
      logprobs: choice.logprobs ? toChatLogprobs(choice.logprobs) : null,
      finish_reason: choice.finishReason,
    })),
    usage: toChatUsage(usage, imageTokens),
  };
}

/** A chunk with one choice. `withUsage` adds `usage: null`, as the hosted API does when include_usage is on. */
export function buildChunk(
  identity: CompletionIdentity,
  delta: ChatDelta,
  finishReason: FinishReason | null,
  withUsage: boolean,
  choiceIndex = 0,
  logprobs: ChatLogprobs | null = null,
): ChatCompletionChunk {
  return {
    ...identity,
    object: 'chat.completion.chunk',
    choices: [{ index: choiceIndex, delta, logprobs, finish_reason: finishReason }],
    ...(withUsage ? { usage: null } : {}),
  };
}

const CONTENT_MARKER = '\u0000iris-content\u0000';

/**
 * Serializes the content chunks of one completion, the bulk of every stream: the same text as
 * `JSON.stringify(buildChunk(identity, { content }, null, withUsage, choiceIndex))`, with everything but the
 * content serialized once per completion instead of once per chunk (for choice 0; other choices of `n > 1`
 * are built in full).
 */
export function contentChunkSerializer(identity: CompletionIdentity, withUsage: boolean): (content: string, choiceIndex?: number) => string {
  const full = (content: string, choiceIndex = 0): string => JSON.stringify(buildChunk(identity, { content }, null, withUsage, choiceIndex));
  const template = full(CONTENT_MARKER);
  const parts = template.split(JSON.stringify(CONTENT_MARKER));
  const [head, tail] = parts;
  // Only a model name holding the marker itself could split differently; serialize such chunks in full.
  if (parts.length !== 2 || head === undefined || tail === undefined) return full;
  return (content, choiceIndex = 0) => (choiceIndex === 0 ? head + JSON.stringify(content) + tail : full(content, choiceIndex));
}

/** The last chunk of an include_usage stream: no choices, the usage. */
export function buildUsageChunk(identity: CompletionIdentity, usage: EngineUsage, imageTokens?: number): ChatCompletionChunk {
  return { ...identity, object: 'chat.completion.chunk', choices: [], usage: toChatUsage(usage, imageTokens) };
}
