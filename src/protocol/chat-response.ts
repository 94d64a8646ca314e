/**
 * The OpenAI chat-completion response and stream-chunk shapes, and builders that fill them exactly as
 * the hosted API does (`chatcmpl-` ids, `refusal: null`, `logprobs: null`, `usage: null` on chunks when
 * usage is requested).
 */
import { randomBytes } from 'node:crypto';
import type { EngineUsage, FinishReason } from './generation-result.js';

/** `usage` of a response. */
export interface ChatUsage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  /** `image_tokens` (an Iris extension): prompt tokens of the request's images; absent when not predictable. */
  prompt_tokens_details: { cached_tokens: number; image_tokens?: number };
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
    message: { role: 'assistant'; content: string; refusal: null };
    logprobs: null;
    finish_reason: FinishReason;
  }[];
  usage: ChatUsage;
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
    delta: { role?: 'assistant'; content?: string; refusal?: null };
    logprobs: null;
    finish_reason: FinishReason | null;
  }[];
  usage?: ChatUsage | null;
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

/** A whole chat completion. */
export function buildCompletion(
  identity: CompletionIdentity,
  text: string,
  finishReason: FinishReason,
  usage: EngineUsage,
  imageTokens?: number,
): ChatCompletion {
  return {
    ...identity,
    object: 'chat.completion',
    choices: [{ index: 0, message: { role: 'assistant', content: text, refusal: null }, logprobs: null, finish_reason: finishReason }],
    usage: toChatUsage(usage, imageTokens),
  };
}

/** A chunk with one choice. `withUsage` adds `usage: null`, as the hosted API does when include_usage is on. */
export function buildChunk(
  identity: CompletionIdentity,
  delta: ChatCompletionChunk['choices'][number]['delta'],
  finishReason: FinishReason | null,
  withUsage: boolean,
): ChatCompletionChunk {
  return {
    ...identity,
    object: 'chat.completion.chunk',
    choices: [{ index: 0, delta, logprobs: null, finish_reason: finishReason }],
    ...(withUsage ? { usage: null } : {}),
  };
}

/** The last chunk of an include_usage stream: no choices, the usage. */
export function buildUsageChunk(identity: CompletionIdentity, usage: EngineUsage, imageTokens?: number): ChatCompletionChunk {
  return { ...identity, object: 'chat.completion.chunk', choices: [], usage: toChatUsage(usage, imageTokens) };
}
