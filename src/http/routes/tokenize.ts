/**
 * POST /v1/openai/tokenize and POST /v1/tokenize: the body of a chat completion in, its prompt's token count
 * out, without generating: `{"prompt_tokens": N, "image_tokens": [per image], "images": [per image]}` (`images` as
 * in a chat completion: source, original and sent size, detail, tokens). The images go through the
 * same pipeline (fetch, decode, model-aware sizing, `detail`) and the count comes from the engine's own
 * tokenizer and chat template, so it equals the `usage.prompt_tokens` a completion of the same body reports.
 * It takes no generation slot.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { invalidRequest } from '../../errors.js';
import type { ImagePipeline } from '../../images/image-pipeline.js';
import type { ModelLease, ModelRegistry } from '../../models/model-registry.js';
import { checkRequestLimits, type RequestLimits } from '../../protocol/request-limits.js';
import { parseChatRequest } from '../../protocol/chat-request.js';
import type { ImageReport } from '../../protocol/chat-response.js';
import { abortOnDisconnect } from '../abort-on-disconnect.js';
import { checkCapabilities, toEngineInputs, toEngineOptions, totalImageTokens } from '../chat-inputs.js';
import type { RequestAccounting } from '../request-accounting.js';

/** What the route needs. */
export interface TokenizeDeps {
  registry: ModelRegistry;
  images: ImagePipeline;
  /** Model scope, per-key limits and usage records. */
  accounting: RequestAccounting;
  /** Bounds on the messages of one request. */
  limits: RequestLimits;
}

/** The answer of the tokenize endpoint. */
export interface TokenizeResponse {
  /** Prompt tokens, chat template and images included: what `usage.prompt_tokens` of a completion would say. */
  prompt_tokens: number;
  /** Tokens of each image, in request order; null where the model's projector is not modelled. */
  image_tokens: (number | null)[];
  /** What became of each image, as in a chat completion's `images`. */
  images: ImageReport[];
}

/** Registers the tokenize routes. */
export function registerTokenize(app: FastifyInstance, deps: TokenizeDeps): void {
  const handler = (request: FastifyRequest, reply: FastifyReply) => handleTokenize(request, reply, deps);
  app.post('/v1/openai/tokenize', handler);
  app.post('/v1/tokenize', handler);
}

async function handleTokenize(request: FastifyRequest, reply: FastifyReply, deps: TokenizeDeps): Promise<TokenizeResponse> {
  const ticket = deps.accounting.begin(request, reply);
  const abort = abortOnDisconnect(request, reply);
  let lease: ModelLease | undefined;
  try {
    // Counting tokens generates nothing: no choice count applies.
    const chat = parseChatRequest(request.body, { maxChoices: Number.MAX_SAFE_INTEGER });
    checkRequestLimits(chat, deps.limits);
    ticket.useModel(chat.model);
    const model = await deps.registry.resolve(chat.model);
    const id = model.definition.id;
    request.observation.model = id;
    const admission = await model.admission(abort.signal);
    const { messages, imageTokens, images } = await toEngineInputs(chat, { id, admission }, deps.images, abort.signal);
    ticket.images(totalImageTokens(imageTokens), imageTokens.length);
    // Counting generates nothing: it counts as a request, not as tokens.
    await ticket.admit(0);
    lease = await model.lease(abort.signal);
    const engine = lease.engine;
    if (engine.countPromptTokens === undefined) {
      throw invalidRequest(`The model '${id}' cannot count tokens without generating.`, 'model', 'model_not_supported');
    }
    checkCapabilities(chat, engine.capabilities, id);
    const { tools, toolChoice, parallelToolCalls, responseFormat } = toEngineOptions(chat);
    const promptTokens = await engine.countPromptTokens({
      messages,
      ...(tools === undefined ? {} : { tools }),
      ...(toolChoice === undefined ? {} : { toolChoice }),
      ...(parallelToolCalls === undefined ? {} : { parallelToolCalls }),
      ...(responseFormat === undefined ? {} : { responseFormat }),
      signal: abort.signal,
    });
    return { prompt_tokens: promptTokens, image_tokens: imageTokens.map((tokens) => tokens ?? null), images };
  } catch (error) {
    ticket.fail(error);
    throw error;
  } finally {
    lease?.release();
    ticket.end(abort.signal.aborted);
    abort.dispose();
  }
}
