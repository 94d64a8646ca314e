/**
 * POST /v1/openai/chat/completions and POST /v1/chat/completions: validate the OpenAI request, prepare its
 * images, wait for a slot of the model, run the engine, and answer as JSON or as an SSE stream. The answer
 * carries the `images` extension (what became of each image); the request's observation gets its model,
 * queue wait, first-token time and usage for the access log and metrics.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { collectCompletion } from '../../engines/collect-completion.js';
import type { EngineRequest, EngineUsage, GenerationParams, StreamPart } from '../../engines/engine.js';
import { IrisError, toIrisError } from '../../errors.js';
import { streamChoices } from '../../engines/fan-out-choices.js';
import type { ImagePipeline } from '../../images/image-pipeline.js';
import type { ModelLease, ModelRegistry } from '../../models/model-registry.js';
import { checkRequestLimits, type RequestLimits } from '../../protocol/request-limits.js';
import { parseChatRequest, type ChatRequest } from '../../protocol/chat-request.js';
import { abortOnDisconnect } from '../abort-on-disconnect.js';
import { checkCapabilities, toEngineInputs, toEngineOptions, totalImageTokens } from '../chat-inputs.js';
import { estimateTextTokens, type RequestAccounting, type RequestTicket } from '../request-accounting.js';
import {
  buildChunk,
  buildCompletion,
  buildUsageChunk,
  contentChunkSerializer,
  newCompletionIdentity,
  toChatLogprobs,
  type ChatCompletionChunk,
  type CompletionIdentity,
  type ImageReport,
} from '../../protocol/chat-response.js';
import type { Drain } from '../drain.js';
import { withRequestId } from '../error-handler.js';
import { observeStream } from '../request-observation.js';
import { SseWriter } from '../sse.js';

/** What the route needs. */
export interface ChatCompletionsDeps {
  registry: ModelRegistry;
  images: ImagePipeline;
  /** Model scope, per-key limits and usage records. */
  accounting: RequestAccounting;
  /** Bounds on the messages of one request. */
  limits: RequestLimits;
  /** `system_fingerprint` of responses. */
  fingerprint: string;
  /** Largest `n` of one request. */
  maxChoicesPerRequest: number;
  drain: Drain;
}

/** Registers the chat-completions routes. */
export function registerChatCompletions(app: FastifyInstance, deps: ChatCompletionsDeps): void {
  const handler = (request: FastifyRequest, reply: FastifyReply) => handleChat(request, reply, deps);
  app.post('/v1/openai/chat/completions', handler);
  app.post('/v1/chat/completions', handler);
}

async function handleChat(request: FastifyRequest, reply: FastifyReply, deps: ChatCompletionsDeps): Promise<unknown> {
  const observation = request.observation;
  const ticket = deps.accounting.begin(request, reply);
  const abort = abortOnDisconnect(request, reply, deps.drain.signal);
  let lease: ModelLease | undefined;
  let releaseSlots: (() => void) | undefined;
  try {
    const chat = parseChatRequest(request.body, { maxChoices: deps.maxChoicesPerRequest });
    checkRequestLimits(chat, deps.limits);
    ticket.useModel(chat.model);
    const model = await deps.registry.resolve(chat.model);
    observation.model = model.definition.id;
    // Admission in the order a user expects: the request is checked and its images prepared against what
    // the model takes (known from its files, nothing started) before the model is loaded, then its slots.
    const admission = await model.admission(abort.signal);
    checkCapabilities(chat, admission.capabilities, model.definition.id);
    const { messages, imageTokens, images: imageReports } = await toEngineInputs(
      chat,
      { id: model.definition.id, admission },
      deps.images,
      abort.signal,
    );
    const images = totalImageTokens(imageTokens);
    observation.imageSources = imageReports.map((image) => image.source);
    if (images !== undefined && imageReports.length > 0) observation.imageTokens = images;
    ticket.images(images, imageTokens.length);
    const engineRequest: EngineRequest = {
      messages,
      params: toGenerationParams(chat),
      ...toEngineOptions(chat),
      signal: abort.signal,
      requestId: request.id,
    };
    await ticket.admit(estimateTextTokens(chat) + (images ?? 0), (engineRequest.params.maxTokens ?? 0) * (chat.n ?? 1));
    lease = await model.lease(abort.signal);
    // Whether the chat template renders tools is known only once the model runs.
    checkCapabilities(chat, lease.engine.capabilities, model.definition.id);
    // Each choice generates in a slot of its own.
    const queued = performance.now();
    releaseSlots = await lease.scheduler.acquire(abort.signal, chat.n ?? 1);
    observation.queueWaitSeconds = (performance.now() - queued) / 1000;
    const identity = newCompletionIdentity(chat.model, deps.fingerprint);
    const parts = observeStream(streamChoices(lease.engine, engineRequest), observation);
    if (chat.stream) return await streamCompletion(reply, chat, parts, identity, images, imageReports, abort.signal, ticket);
    const result = await collectCompletion(parts);
    ticket.usage(result.usage);
    const completion = buildCompletion(identity, result.choices, result.usage, images);
    return imageReports.length > 0 ? { ...completion, images: imageReports } : completion;
  } catch (error) {
    // Ended at the end of the shutdown grace period: say so rather than "cancelled".
    const failure = shutdownReason(abort.signal) ?? error;
    ticket.fail(failure);
    throw failure;
  } finally {
    releaseSlots?.();
    lease?.release();
    ticket.end(abort.signal.aborted);
    abort.dispose();
  }
}

/** The error a request ended by the shutdown grace period reports, if that is what ended it. */
function shutdownReason(signal: AbortSignal): IrisError | undefined {
  return signal.aborted && signal.reason instanceof IrisError ? signal.reason : undefined;
}

async function streamCompletion(
  reply: FastifyReply,
  chat: ChatRequest,
  parts: AsyncIterable<StreamPart>,
  identity: CompletionIdentity,
  imageTokens: number | undefined,
  imageReports: ImageReport[],
  signal: AbortSignal,
  ticket: RequestTicket,
): Promise<FastifyReply> {
  const includeUsage = chat.stream_options?.include_usage === true;
  const iterator = parts[Symbol.asyncIterator]();
  // Errors before anything was generated are still ordinary HTTP errors.
  let result = await iterator.next();
  const sse = new SseWriter(reply, { 'x-request-id': reply.request.id });
  const fail = async (error: IrisError): Promise<void> => {
    const failure = withRequestId(shutdownReason(signal) ?? error, reply.request.id);
    reply.request.observation.streamError = failure.code;
    await sse.fail(failure);
  };
  let usage: EngineUsage | undefined;
  // With logprobs, a content chunk waits here for the logprobs of its tokens, which arrive as the next part.
  let held: ChatCompletionChunk | undefined;
  const contentChunk = contentChunkSerializer(identity, includeUsage);
  const flush = async (): Promise<void> => {
    if (held) await sse.send(held);
    held = undefined;
  };
  try {
    for (let index = 0; index < (chat.n ?? 1); index += 1) {
      const first = buildChunk(identity, { role: 'assistant', content: '', refusal: null }, null, includeUsage, index);
      await sse.send(index === 0 && imageReports.length > 0 ? { ...first, images: imageReports } : first);
    }
    while (!result.done) {
      const part = result.value;
      if (!sse.open) break;
      if (part.type === 'logprobs') {
        const target = held?.choices[0];
        if (target && target.index === (part.choice ?? 0) && target.logprobs === null) {
          target.logprobs = toChatLogprobs(part.content);
        } else {
          await flush();
          await sse.send(buildChunk(identity, {}, null, includeUsage, part.choice, toChatLogprobs(part.content)));
        }
      } else if (part.type === 'usage') {
        ticket.usage(part.usage);
        if (includeUsage) usage = part.usage;
      } else if (part.type === 'error') {
        await flush();
        reply.request.log.warn({ err: part.error }, 'stream failed after it started');
        ticket.fail(part.error);
        await fail(part.error);
        return reply;
      } else {
        await flush();
        if (part.type === 'text-delta') {
          ticket.delta();
          // Only a request for logprobs waits for them; any other content goes out at once.
          if (chat.logprobs === true) held = buildChunk(identity, { content: part.text }, null, includeUsage, part.choice);
          else if (!sse.sendJson(contentChunk(part.text, part.choice))) await sse.drained();
        } else if (part.type === 'tool-call-delta') {
          const call = {
            index: part.index,
            ...(part.id === undefined ? {} : { id: part.id, type: 'function' as const }),
            function: { ...(part.name === undefined ? {} : { name: part.name }), arguments: part.argumentsDelta },
          };
          await sse.send(buildChunk(identity, { tool_calls: [call] }, null, includeUsage, part.choice));
        } else {
          await sse.send(buildChunk(identity, {}, part.finishReason, includeUsage, part.choice));
        }
      }
      result = await iterator.next();
    }
    await flush();
    if (usage && sse.open) await sse.send(buildUsageChunk(identity, usage, imageTokens));
    sse.end();
  } catch (error) {
    const irisError = error instanceof IrisError ? error : toIrisError(error);
    if (irisError.status >= 500) reply.request.log.error({ err: error }, 'stream failed');
    ticket.fail(irisError);
    await fail(irisError);
  } finally {
    await iterator.return?.(undefined);
  }
  return reply;
}


function toGenerationParams(chat: ChatRequest): GenerationParams {
  const params: GenerationParams = {};
  const maxTokens = chat.max_completion_tokens ?? chat.max_tokens;
  if (maxTokens != null) params.maxTokens = maxTokens;
  if (chat.temperature != null) params.temperature = chat.temperature;
  if (chat.top_p != null) params.topP = chat.top_p;
  if (chat.top_k != null) params.topK = chat.top_k;
  if (chat.min_p != null) params.minP = chat.min_p;
  if (chat.seed != null) params.seed = chat.seed;
  if (chat.stop != null) params.stop = typeof chat.stop === 'string' ? [chat.stop] : chat.stop;
  if (chat.presence_penalty != null) params.presencePenalty = chat.presence_penalty;
  if (chat.frequency_penalty != null) params.frequencyPenalty = chat.frequency_penalty;
  if (chat.repetition_penalty != null) params.repetitionPenalty = chat.repetition_penalty;
  if (chat.ignore_eos != null) params.ignoreEos = chat.ignore_eos;
  if (chat.logit_bias != null && Object.keys(chat.logit_bias).length > 0) params.logitBias = chat.logit_bias;
  return params;
}
