/**
 * The OpenAI Responses API: POST /v1/openai/responses and POST /v1/responses create a response (JSON or an
 * SSE stream of named events); GET and DELETE /v1/(openai/)responses/{id} read and delete a stored one.
 * The request is translated into Iris's chat request and run through the one chat pipeline; responses
 * are stored per API key (src/dialects/responses/response-store.ts).
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { objectNotFound, type IrisError } from '../../errors.js';
import { parseResponsesRequest, toChatRequest } from '../../dialects/responses/responses-request.js';
import {
  finishedResponse,
  initialResponse,
  newResponseId,
  outputItems,
  toAssistantTurn,
  ResponseStreamTranslator,
  type ResponseObject,
  type ResponseStreamEvent,
} from '../../dialects/responses/responses-response.js';
import type { ResponseStore } from '../../dialects/responses/response-store.js';
import { apiKeyOwner } from '../auth.js';
import { runChatPipeline, type ChatPipelineDeps, type ChatRun } from '../chat-pipeline.js';
import { SseWriter } from '../sse.js';

/** What the routes need. */
export interface ResponsesDeps extends ChatPipelineDeps {
  responses: ResponseStore;
}

/** Registers the Responses API routes. */
export function registerResponses(app: FastifyInstance, deps: ResponsesDeps): void {
  for (const prefix of ['/v1/openai', '/v1']) {
    app.post(`${prefix}/responses`, (request, reply) => createResponse(request, reply, deps));
    app.get<{ Params: { id: string } }>(`${prefix}/responses/:id`, async (request) => storedResponse(deps, request.params.id, apiKeyOwner(request)).response);
    app.delete<{ Params: { id: string } }>(`${prefix}/responses/:id`, async (request) => {
      const owner = apiKeyOwner(request);
      const { id } = request.params;
      if (!deps.responses.delete(id, owner)) throw responseNotFound(id, null);
      return { id, object: 'response', deleted: true };
    });
  }
}

async function createResponse(request: FastifyRequest, reply: FastifyReply, deps: ResponsesDeps): Promise<unknown> {
  const owner = apiKeyOwner(request);
  const prepare = () => {
    const body = parseResponsesRequest(request.body);
    const previousId = body.previous_response_id;
    const history = previousId == null ? [] : storedResponse(deps, previousId, owner, 'previous_response_id').conversation;
    return { body, ...toChatRequest(body, history) };
  };
  return runChatPipeline(deps, { request, reply }, prepare, async (run, { body, conversation }) => {
    const store = body.store !== false;
    const save = (response: ResponseObject): void => {
      if (store) deps.responses.put({ owner, response, conversation: [...conversation, toAssistantTurn(response.output)] });
    };
    const started = initialResponse(newResponseId(), body, store);
    if (body.stream) return streamResponse(reply, run, started, save);
    const result = await run.complete();
    const choice = result.choices[0] ?? { text: '', toolCalls: [], finishReason: 'stop' as const };
    const response = finishedResponse(started, outputItems(choice), choice.finishReason, result.usage, run.imageTokens);
    save(response);
    return response;
  });
}

async function streamResponse(
  reply: FastifyReply,
  run: ChatRun,
  started: ResponseObject,
  save: (response: ResponseObject) => void,
): Promise<FastifyReply> {
  // Errors before anything was generated are still ordinary HTTP errors.
  const parts = await run.stream();
  const sse = new SseWriter(reply, { 'x-request-id': reply.request.id });
  const translator = new ResponseStreamTranslator(started, run.imageTokens);
  const send = async (events: ResponseStreamEvent[]): Promise<void> => {
    for (const event of events) await sse.send(event, event.type);
  };
  try {
    await send(translator.start());
    for await (const part of parts) {
      if (!sse.open) return reply;
      if (part.type === 'error') {
        await send(translator.fail(run.streamFailure(part.error)));
        return reply;
      }
      await send(translator.push(part));
    }
    if (!sse.open) return reply;
    await send(translator.finish());
    save(translator.response);
  } catch (error) {
    await send(translator.fail(run.streamFailure(error)));
  } finally {
    sse.end(false);
    await parts.return();
  }
  return reply;
}

function storedResponse(deps: ResponsesDeps, id: string, owner: string, param: string | null = null) {
  const entry = deps.responses.get(id, owner);
  if (!entry) throw responseNotFound(id, param);
  return entry;
}

function responseNotFound(id: string, param: string | null): IrisError {
  const what = param === 'previous_response_id' ? 'Previous response' : 'Response';
  return objectNotFound(`${what} with id '${id}' not found.`, param);
}
