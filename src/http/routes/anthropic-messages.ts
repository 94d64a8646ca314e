/**
 * The Anthropic Messages API: POST /v1/messages and POST /v1/messages/count_tokens (also under
 * /v1/anthropic, so an Anthropic client's base URL can be `<iris>/v1/anthropic`). The request is translated
 * into Iris's chat request and run through the one chat pipeline; the answer, the stream events and every
 * error (auth and bad JSON included) are in Anthropic's shapes.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { parseCountTokensRequest, parseMessagesRequest, toChatRequest } from '../../dialects/anthropic/messages-request.js';
import {
  AnthropicStreamTranslator,
  buildMessage,
  newMessageId,
  toAnthropicError,
  type AnthropicStreamEvent,
} from '../../dialects/anthropic/messages-response.js';
import { countChatTokens, runChatPipeline, type ChatPipelineDeps, type ChatRun } from '../chat-pipeline.js';
import { setErrorRenderer, type ErrorHandlerOptions } from '../error-handler.js';
import { SseWriter } from '../sse.js';

/** What the routes need. */
export interface AnthropicMessagesDeps extends ChatPipelineDeps {
  /** As for every route (the `retry-after` of a 429/503). */
  errors: ErrorHandlerOptions;
}

/** Registers the Messages API routes, in a scope whose errors are written in Anthropic's shape. */
export function registerAnthropicMessages(app: FastifyInstance, deps: AnthropicMessagesDeps): void {
  void app.register(async (scope) => {
    setErrorRenderer(scope, deps.errors, toAnthropicError);
    for (const prefix of ['/v1', '/v1/anthropic/v1']) {
      scope.post(`${prefix}/messages`, (request, reply) => createMessage(request, reply, deps));
      scope.post(`${prefix}/messages/count_tokens`, async (request, reply) => {
        const count = await countChatTokens(deps, { request, reply }, () => toChatRequest(parseCountTokensRequest(request.body)));
        return { input_tokens: count.promptTokens };
      });
    }
  });
}

async function createMessage(request: FastifyRequest, reply: FastifyReply, deps: AnthropicMessagesDeps): Promise<unknown> {
  const prepare = () => {
    const body = parseMessagesRequest(request.body);
    return { ...toChatRequest(body), stream: body.stream === true };
  };
  return runChatPipeline(deps, { request, reply }, prepare, async (run, { stream }) => {
    const id = newMessageId();
    if (stream) return streamMessage(reply, run, id);
    const result = await run.complete();
    const choice = result.choices[0] ?? { text: '', toolCalls: [], finishReason: 'stop' as const };
    return buildMessage(id, run.model, choice, result.usage, run.imageTokens);
  });
}

async function streamMessage(reply: FastifyReply, run: ChatRun, id: string): Promise<FastifyReply> {
  // Errors before anything was generated are still ordinary HTTP errors (in Anthropic's shape).
  const parts = await run.stream();
  const sse = new SseWriter(reply, { 'x-request-id': reply.request.id, 'request-id': reply.request.id });
  const translator = new AnthropicStreamTranslator(id, run.model, run.imageTokens);
  const send = async (events: AnthropicStreamEvent[]): Promise<void> => {
    for (const event of events) await sse.send(event.data, event.event);
  };
  try {
    await send(translator.start());
    for await (const part of parts) {
      if (!sse.open) return reply;
      await send(translator.push(part));
    }
    if (sse.open) await send(translator.finish());
  } catch (error) {
    await sse.send(toAnthropicError(run.streamFailure(error), reply.request.id).body, 'error');
  } finally {
    sse.end(false);
    await parts.return();
  }
  return reply;
}
