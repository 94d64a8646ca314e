/**
 * POST /v1/openai/tokenize and POST /v1/tokenize: the body of a chat completion in, its prompt's token count
 * out, without generating: `{"prompt_tokens": N, "image_tokens": [per image], "images": [per image]}` (`images` as
 * in a chat completion: source, original and sent size, detail, tokens). The images go through the
 * same pipeline (fetch, decode, model-aware sizing, `detail`) and the count comes from the engine's own
 * tokenizer and chat template, so it equals the `usage.prompt_tokens` a completion of the same body reports.
 * It takes no generation slot.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { parseChatRequest } from '../../protocol/chat-request.js';
import type { ImageReport } from '../../protocol/chat-response.js';
import { countChatTokens, type ChatPipelineDeps } from '../chat-pipeline.js';

/** What the route needs. */
export type TokenizeDeps = ChatPipelineDeps;

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
  // Counting tokens generates nothing: no choice count applies.
  const count = await countChatTokens(deps, { request, reply }, () => ({ chat: parseChatRequest(request.body, { maxChoices: Number.MAX_SAFE_INTEGER }) }));
  return { prompt_tokens: count.promptTokens, image_tokens: count.imageTokens.map((tokens) => tokens ?? null), images: count.imageReports };
}
