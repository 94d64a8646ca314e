/**
 * THE path every generating request takes, whichever API dialect carried it (chat completions, Responses,
 * Anthropic Messages): bound the request's size, account it to its API key (model scope, limits, usage
 * record), resolve the model, check the request and prepare its images against what the model
 * takes (nothing started yet), lease the model, take a slot, then run the engine. The dialect routes only
 * translate their request into Iris's chat request before, and the engine's result or stream parts into
 * their own shape after; admission, images, image-token accounting and slot release live here once.
 */
import type { FastifyReply, FastifyRequest } from 'fastify';
import { collectCompletion } from '../engines/collect-completion.js';
import type { EngineCompletion, EngineRequest, GenerationParams, StreamPart } from '../engines/engine.js';
import { streamChoices } from '../engines/fan-out-choices.js';
import { IrisError, invalidRequest, toIrisError } from '../errors.js';
import type { ImagePipeline } from '../images/image-pipeline.js';
import type { ModelLease, ModelRegistry } from '../models/model-registry.js';
import type { ChatRequest } from '../protocol/chat-request.js';
import { checkRequestLimits, type RequestLimits } from '../protocol/request-limits.js';
import type { ImageReport } from '../protocol/chat-response.js';
import { abortOnDisconnect } from './abort-on-disconnect.js';
import { checkCapabilities, toEngineInputs, toEngineOptions, totalImageTokens, type ImageParamNamer } from './chat-inputs.js';
import type { Drain } from './drain.js';
import { withRequestId } from './error-handler.js';
import { estimateTextTokens, type RequestAccounting, type RequestTicket } from './request-accounting.js';
import { observePart, type RequestObservation } from './request-observation.js';

/** What the pipeline needs. */
export interface ChatPipelineDeps {
  registry: ModelRegistry;
  images: ImagePipeline;
  /** Graceful shutdown: its signal ends requests still running at the end of the grace period. */
  drain: Drain;
  /** Model scope, per-key limits and usage records. */
  accounting: RequestAccounting;
  /** Bounds on the messages of one request (whichever dialect carried them). */
  limits: RequestLimits;
}

/** A request translated into Iris's chat request, with whatever else its route keeps from it. */
export interface PreparedChat {
  chat: ChatRequest;
  /** The dialect's field of each image (its URL or data), for errors about it; default: chat's `messages[i].content[j].image_url`. */
  imageParam?: ImageParamNamer;
}

/** One admitted request, holding its model and slot while the caller's callback runs. */
export interface ChatRun {
  /** The model id as the client sent it (echoed in responses). */
  model: string;
  /** Prompt tokens of the request's images together; undefined when any is not predictable. */
  imageTokens: number | undefined;
  /** What became of each image (source, sizes, detail, tokens), in request order. */
  imageReports: ImageReport[];
  /** Generates the whole answer. */
  complete(): Promise<EngineCompletion>;
  /**
   * Starts streaming and resolves once the first part is there, so a failure before anything was generated
   * is still thrown (and answered as an ordinary HTTP error); later failures arrive as `error` parts.
   */
  stream(): Promise<AsyncGenerator<StreamPart, void, undefined>>;
  /**
   * The error to write into a stream that fails after it started (with the request id, or the shutdown
   * that ended it), recorded on the request's observation and logged.
   */
  streamFailure(error: unknown): IrisError;
}

/**
 * Parses the request with `prepare` (the route's parsing and translation, with what it looks up, such as a
 * stored conversation: a 400 or 404 there is part of the request's story too), admits its chat request and runs `use` with the model leased and a slot held; both
 * are released when `use` settles (for a stream, `use` returns once it has written the last event). The
 * client's disconnect aborts the work.
 */
export async function runChatPipeline<P extends PreparedChat, T>(
  deps: ChatPipelineDeps,
  http: { request: FastifyRequest; reply: FastifyReply },
  prepare: () => P | Promise<P>,
  use: (run: ChatRun, prepared: P) => Promise<T>,
): Promise<T> {
  const { request } = http;
  const observation = request.observation;
  const ticket = deps.accounting.begin(request, http.reply);
  const abort = abortOnDisconnect(request, http.reply, deps.drain.signal);
  let lease: ModelLease | undefined;
  let releaseSlots: (() => void) | undefined;
  try {
    const prepared = await prepare();
    const { chat } = prepared;
    checkRequestLimits(chat, deps.limits);
    ticket.useModel(chat.model);
    const model = await deps.registry.resolve(chat.model);
    observation.model = model.definition.id;
    // Admission in the order a user expects: the request is checked and its images prepared against what
    // the model takes (known from its files, nothing started) before the model is loaded, then its slots.
    const id = model.definition.id;
    const admission = await model.admission(abort.signal);
    checkCapabilities(chat, admission.capabilities, id);
    const inputs = await toEngineInputs(chat, { id, admission }, deps.images, abort.signal, prepared.imageParam);
    const imageTokens = totalImageTokens(inputs.imageTokens);
    observation.imageSources = inputs.images.map((image) => image.source);
    if (imageTokens !== undefined && inputs.images.length > 0) observation.imageTokens = imageTokens;
    ticket.images(imageTokens, inputs.imageTokens.length);
    const engineRequest: EngineRequest = {
      messages: inputs.messages,
      params: toGenerationParams(chat),
      ...toEngineOptions(chat),
      signal: abort.signal,
      requestId: request.id,
    };
    await ticket.admit(estimateTextTokens(chat) + (imageTokens ?? 0), (engineRequest.params.maxTokens ?? 0) * (chat.n ?? 1));
    lease = await model.lease(abort.signal);
    const engine = lease.engine;
    // Whether the chat template renders tools is known only once the model runs.
    checkCapabilities(chat, engine.capabilities, id);
    // Each choice generates in a slot of its own.
    const queued = performance.now();
    releaseSlots = await lease.scheduler.acquire(abort.signal, chat.n ?? 1);
    observation.queueWaitSeconds = (performance.now() - queued) / 1000;
    const parts = (): AsyncGenerator<StreamPart> => watch(streamChoices(engine, engineRequest), observation, ticket);
    const run: ChatRun = {
      model: chat.model,
      imageTokens,
      imageReports: inputs.images,
      complete: () => collectCompletion(parts()),
      stream: () => startStream(parts()),
      streamFailure: (error) => {
        const irisError = error instanceof IrisError ? error : toIrisError(error);
        const failure = withRequestId(shutdownReason(abort.signal) ?? irisError, request.id);
        observation.streamError = failure.code;
        ticket.fail(failure);
        if (failure.status >= 500) request.log.error({ err: error }, 'stream failed after it started');
        else request.log.warn({ err: error }, 'stream failed after it started');
        return failure;
      },
    };
    return await use(run, prepared);
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

/** Tells the request's observation and ticket what the engine did: each piece of text, the usage, a failure. */
async function* watch(parts: AsyncIterable<StreamPart>, observation: RequestObservation, ticket: RequestTicket): AsyncGenerator<StreamPart> {
  for await (const part of parts) {
    observePart(part, observation);
    if (part.type === 'text-delta' || part.type === 'tool-call-delta') ticket.delta();
    else if (part.type === 'finish') ticket.finished();
    else if (part.type === 'usage') ticket.usage(part.usage);
    else if (part.type === 'error') ticket.fail(part.error);
    yield part;
  }
}

/** The error a request ended by the shutdown grace period reports, if that is what ended it. */
function shutdownReason(signal: AbortSignal): IrisError | undefined {
  return signal.aborted && signal.reason instanceof IrisError ? signal.reason : undefined;
}

/** What a token count says: the prompt's tokens and each image's share. */
export interface ChatTokenCount {
  /** Prompt tokens, chat template and images included: what a completion's prompt usage would say. */
  promptTokens: number;
  /** Tokens of each image, in request order; undefined where the model's projector is not modelled. */
  imageTokens: (number | undefined)[];
  /** What became of each image, as a completion reports it. */
  imageReports: ImageReport[];
}

/**
 * Counts the prompt tokens `chat` makes, with its images prepared exactly as a completion prepares them,
 * without generating and without a slot.
 */
export async function countChatTokens(
  deps: ChatPipelineDeps,
  http: { request: FastifyRequest; reply: FastifyReply },
  prepare: () => PreparedChat,
): Promise<ChatTokenCount> {
  const ticket = deps.accounting.begin(http.request, http.reply);
  const abort = abortOnDisconnect(http.request, http.reply);
  let lease: ModelLease | undefined;
  try {
    const { chat, imageParam } = prepare();
    checkRequestLimits(chat, deps.limits);
    ticket.useModel(chat.model);
    const model = await deps.registry.resolve(chat.model);
    const id = model.definition.id;
    http.request.observation.model = id;
    const admission = await model.admission(abort.signal);
    const { messages, imageTokens, images } = await toEngineInputs(chat, { id, admission }, deps.images, abort.signal, imageParam);
    ticket.images(totalImageTokens(imageTokens), imageTokens.length);
    // Counting generates nothing: it counts as a request, not as tokens.
    await ticket.admit(0);
    lease = await model.lease(abort.signal);
    const engine = lease.engine;
    if (engine.countPromptTokens === undefined) {
      throw invalidRequest(`The model '${id}' cannot count tokens without generating.`, 'model', 'model_not_supported');
    }
    checkCapabilities(chat, engine.capabilities, id);
    // The chat template renders the tools and the output format into the prompt, so they count.
    const { tools, toolChoice, parallelToolCalls, responseFormat } = toEngineOptions(chat);
    const promptTokens = await engine.countPromptTokens({
      messages,
      ...(tools === undefined ? {} : { tools }),
      ...(toolChoice === undefined ? {} : { toolChoice }),
      ...(parallelToolCalls === undefined ? {} : { parallelToolCalls }),
      ...(responseFormat === undefined ? {} : { responseFormat }),
      signal: abort.signal,
    });
    return { promptTokens, imageTokens, imageReports: images };
  } catch (error) {
    ticket.fail(error);
    throw error;
  } finally {
    lease?.release();
    ticket.end(abort.signal.aborted);
    abort.dispose();
  }
}

/**
 * Waits for the stream's first part (so that a failure before it rejects), then hands out that part and the
 * rest of the stream without a step in between: the stream's own `next` answers after the first.
 */
async function startStream(iterator: AsyncGenerator<StreamPart>): Promise<AsyncGenerator<StreamPart, void, undefined>> {
  let first: IteratorResult<StreamPart> | undefined;
  try {
    first = await iterator.next();
  } catch (error) {
    await iterator.return(undefined);
    throw error;
  }
  const started: AsyncGenerator<StreamPart, void, undefined> = {
    next: () => {
      if (first === undefined) return iterator.next();
      const result = first;
      first = undefined;
      return Promise.resolve(result);
    },
    return: (value) => {
      first = undefined;
      return iterator.return(value);
    },
    throw: (error: unknown) => {
      first = undefined;
      return iterator.throw(error);
    },
    [Symbol.asyncIterator]: () => started,
  };
  return started;
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
