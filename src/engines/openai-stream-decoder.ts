/**
 * The one decoder of OpenAI chat-completion streams (`data: {chat.completion.chunk}` ... `data: [DONE]`) into
 * Iris's typed {@link StreamPart}s, used by both engines: text, tool-call and logprob deltas of every choice,
 * each choice's finish, and the final usage.
 *
 * OpenAI's chunks do not say which stop sequence ended a choice (`finish_reason` is `stop` either way). Some
 * servers do, each in its own field: llama-server in the `__verbose` debug object of its final chunk (when
 * asked with `verbose`), vLLM as a choice's `stop_reason`, SGLang as `matched_stop`. A
 * finish reports `stopSequence` only when such a field names one of the request's own stop sequences; a
 * token id, or anything else, leaves it unknown.
 *
 * It never yields an `error` part: every failure (an `{"error":...}` event, a chunk that is not JSON, a
 * stream that ends without a finish reason, a broken connection) is thrown, and the engine decides what it
 * means: before the first part a rejection (so the client gets an ordinary HTTP error, or the engine retries
 * elsewhere), after it an `error` part. The body is read to its end, past `[DONE]`, so the connection goes
 * back to its pool instead of being torn down.
 */
import { randomBytes } from 'node:crypto';
import type { EngineUsage, FinishReason, StreamPart, TokenLogprob, TopLogprob } from './engine.js';
import { engineFailed, type IrisError } from '../errors.js';
import { readUpstreamError, type UpstreamErrorBody } from './openai-error-body.js';
import { parseSseData } from './sse-lines.js';

/** How to word and classify failures of one upstream. */
export interface OpenAIStreamDecoderOptions {
  /** Who sends the stream, for error messages, e.g. `llama-server`. */
  source: string;
  /** The error an `{"error":...}` event stands for. */
  streamError(error: UpstreamErrorBody): IrisError;
  /** The request's stop sequences: a finish the upstream attributes to one of them names it. */
  stop?: readonly string[] | undefined;
}

interface WireLogprob {
  token?: string;
  logprob?: number;
  bytes?: number[] | null;
  top_logprobs?: WireLogprob[];
}

interface WireToolCall {
  index?: number;
  id?: string;
  function?: { name?: string; arguments?: string };
}

interface WireChoice {
  index?: number;
  delta?: { content?: string | null; tool_calls?: WireToolCall[] | null } | null;
  logprobs?: { content?: WireLogprob[] | null } | null;
  finish_reason?: string | null;
  /** vLLM: the stop string (or token id) that ended the choice. */
  stop_reason?: unknown;
  /** SGLang: the stop string (or token id) that ended the choice. */
  matched_stop?: unknown;
}

interface WireChunk {
  choices?: WireChoice[] | null;
  usage?: { prompt_tokens?: number; completion_tokens?: number; prompt_tokens_details?: { cached_tokens?: number | null } | null } | null;
  error?: unknown;
  /** llama-server's debug object (asked for with `verbose`), on one chunk of a choice's final result. */
  __verbose?: { stop_type?: unknown; stopping_word?: unknown } | null;
}

/** Yields the parts of one upstream chat stream; throws on any failure (see the module comment). */
export async function* decodeOpenAIChatStream(
  body: AsyncIterable<Uint8Array | string>,
  options: OpenAIStreamDecoderOptions,
): AsyncGenerator<StreamPart> {
  let usage: EngineUsage | undefined;
  let finished = 0;
  // Ids of the tool calls seen so far, per choice and call index.
  const toolCallIds = new Map<string, string>();
  // The stop sequence each choice was reported to have ended on, until its finish.
  const stoppedOn = new Map<number, string>();
  const stops = new Set(options.stop ?? []);
  const noteStop = (index: number, value: unknown): void => {
    if (typeof value === 'string' && stops.has(value)) stoppedOn.set(index, value);
  };
  for await (const events of parseSseData(body)) {
    for (const data of events) {
      if (data === '[DONE]') continue;
      let chunk: WireChunk;
      try {
        chunk = JSON.parse(data) as WireChunk;
      } catch (error) {
        throw engineFailed(`${options.source} sent a stream chunk that is not JSON.`, 'engine_error', error);
      }
      if (chunk.error !== undefined && chunk.error !== null) throw options.streamError(readUpstreamError({ error: chunk.error }));
      // llama-server sends one choice per chunk; its debug object describes that choice.
      if (chunk.__verbose?.stop_type === 'word') noteStop(chunk.choices?.[0]?.index ?? 0, chunk.__verbose.stopping_word);
      for (const choice of chunk.choices ?? []) {
        const index = choice.index ?? 0;
        noteStop(index, choice.stop_reason);
        noteStop(index, choice.matched_stop);
        const delta = choice.delta;
        if (typeof delta?.content === 'string' && delta.content.length > 0) yield { type: 'text-delta', choice: index, text: delta.content };
        for (const call of delta?.tool_calls ?? []) {
          const key = `${index}:${call.index ?? 0}`;
          let id: string | undefined;
          if (!toolCallIds.has(key)) {
            id = toToolCallId(call.id);
            toolCallIds.set(key, id);
          }
          const name = call.function?.name;
          yield {
            type: 'tool-call-delta',
            choice: index,
            index: call.index ?? 0,
            ...(id === undefined ? {} : { id }),
            ...(name ? { name } : {}),
            argumentsDelta: call.function?.arguments ?? '',
          };
        }
        const logprobs = choice.logprobs?.content;
        if (logprobs && logprobs.length > 0) yield { type: 'logprobs', choice: index, content: logprobs.map(toTokenLogprob) };
        if (choice.finish_reason) {
          finished += 1;
          const finishReason = toFinishReason(choice.finish_reason);
          const stopSequence = finishReason === 'stop' ? stoppedOn.get(index) : undefined;
          yield { type: 'finish', choice: index, finishReason, ...(stopSequence === undefined ? {} : { stopSequence }) };
        }
      }
      if (chunk.usage) usage = toUsage(chunk.usage);
    }
  }
  if (finished === 0) throw engineFailed(`${options.source} ended the stream without finishing.`, 'engine_crashed');
  if (usage) yield { type: 'usage', usage };
}

/** A fresh OpenAI-style tool call id: `call_` and 24 alphanumerics. */
export function newToolCallId(): string {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
  return `call_${[...randomBytes(24)].map((byte) => alphabet[byte % alphabet.length]).join('')}`;
}

/** Upstream ids keep their value under OpenAI's `call_` prefix (llama-server sends bare random strings). */
function toToolCallId(id: string | undefined): string {
  if (!id) return newToolCallId();
  return id.startsWith('call_') ? id : `call_${id}`;
}

function toFinishReason(reason: string): FinishReason {
  if (reason === 'length') return 'length';
  if (reason === 'tool_calls' || reason === 'function_call') return 'tool_calls';
  return 'stop';
}

function toTopLogprob(wire: WireLogprob): TopLogprob {
  return {
    token: wire.token ?? '',
    // llama-server writes a probability of 0 as the lowest float; OpenAI uses -9999 for "never".
    logprob: typeof wire.logprob === 'number' ? Math.max(wire.logprob, -9999) : -9999,
    bytes: Array.isArray(wire.bytes) ? wire.bytes : null,
  };
}

function toTokenLogprob(wire: WireLogprob): TokenLogprob {
  return { ...toTopLogprob(wire), topLogprobs: (wire.top_logprobs ?? []).map(toTopLogprob) };
}

function toUsage(usage: NonNullable<WireChunk['usage']>): EngineUsage {
  const cached = usage.prompt_tokens_details?.cached_tokens;
  return {
    promptTokens: usage.prompt_tokens ?? 0,
    completionTokens: usage.completion_tokens ?? 0,
    ...(typeof cached === 'number' ? { cachedTokens: cached } : {}),
  };
}
