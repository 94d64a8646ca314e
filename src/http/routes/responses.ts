/**
 * The OpenAI Responses API: POST /v1/openai/responses and POST /v1/responses create a response (JSON or an
 * SSE stream of named events); GET and DELETE /v1/(openai/)responses/{id} read and delete a stored one, and
 * GET /v1/(openai/)responses/{id}/input_items lists its input. The request is translated into Iris's chat
 * request and run through the one chat pipeline; responses are stored in the database per API key
 * (src/store/response-records.ts, holding src/dialects/responses/stored-response.ts). A failure to store
 * is logged and the answer still returned; a failure to read is a 500.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { objectNotFound, type IrisError } from '../../errors.js';
import { inResponsesTerms, parseResponsesRequest, toChatRequest } from '../../dialects/responses/responses-request.js';
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
import { listInputItems, toInputItems, type StoredResponse } from '../../dialects/responses/stored-response.js';
import type { ResponseRecordStore } from '../../store/response-records.js';
import { apiKeyOwner } from '../auth.js';
import { runChatPipeline, type ChatPipelineDeps, type ChatRun } from '../chat-pipeline.js';
import { SseWriter } from '../sse.js';

/** What the routes need. */
export interface ResponsesDeps extends ChatPipelineDeps {
  responses: ResponseRecordStore;
}

/** Registers the Responses API routes. */
export function registerResponses(app: FastifyInstance, deps: ResponsesDeps): void {
  for (const prefix of ['/v1/openai', '/v1']) {
    app.post(`${prefix}/responses`, (request, reply) => createResponse(request, reply, deps));
    app.get<{ Params: { id: string } }>(`${prefix}/responses/:id`, async (request) => (await storedResponse(deps, request.params.id, apiKeyOwner(request))).response);
    app.get<{ Params: { id: string }; Querystring: Record<string, string | string[]> }>(`${prefix}/responses/:id/input_items`, async (request) => {
      const { inputItems } = await storedResponse(deps, request.params.id, apiKeyOwner(request));
      return listInputItems(inputItems, request.query);
    });
    app.delete<{ Params: { id: string } }>(`${prefix}/responses/:id`, async (request) => {
      const owner = apiKeyOwner(request);
      const { id } = request.params;
      if (!(await deps.responses.delete(id, owner))) throw responseNotFound(id, null);
      return { id, object: 'response', deleted: true };
    });
  }
}

async function createResponse(request: FastifyRequest, reply: FastifyReply, deps: ResponsesDeps): Promise<unknown> {
  const owner = apiKeyOwner(request);
  // Errors of the request's own parsing already name its fields (a stray `max_tokens` is refused as itself).
  let afterTranslation = false;
  const prepare = async () => {
    const body = parseResponsesRequest(request.body);
    const previousId = body.previous_response_id;
    const history = previousId == null ? [] : (await storedResponse(deps, previousId, owner, 'previous_response_id')).conversation;
    const translated = { body, ...toChatRequest(body, history) };
    afterTranslation = true;
    return translated;
  };
  // Errors raised after the translation name the Responses request's fields, not the chat request's.
  const answer = runChatPipeline(deps, { request, reply }, prepare, async (run, { body, conversation }) => {
    // With a retention of 0 nothing is stored, and the response says so.
    const store = body.store !== false && deps.responses.enabled;
    const save = async (response: ResponseObject): Promise<void> => {
      if (!store) return;
      const stored: StoredResponse = { response, conversation: [...conversation, toAssistantTurn(response.output)], inputItems: toInputItems(body.input) };
      try {
        const outcome = await deps.responses.put({ id: response.id, owner, body: stored });
        if (!outcome.stored) {
          request.log.warn(
            { responseId: response.id, bytes: outcome.bytes, maxBytes: deps.responses.maxBytes },
            'response not stored: larger than --responses-max-bytes',
          );
        }
      } catch (error) {
        // The answer is generated: the client gets it; only a later GET or follow-up misses it.
        request.log.error({ err: error, responseId: response.id }, 'could not store the response in the database');
      }
    };
    const started = initialResponse(newResponseId(), body, store);
    if (body.stream) return streamResponse(reply, run, started, save);
    const result = await run.complete();
    const choice = result.choices[0] ?? { text: '', toolCalls: [], finishReason: 'stop' as const };
    const response = finishedResponse(started, outputItems(choice), choice.finishReason, result.usage, run.imageTokens);
    await save(response);
    return response;
  });
  return answer.catch((error: unknown) => {
    throw afterTranslation ? inResponsesTerms(error) : error;
  });
}

async function streamResponse(
  reply: FastifyReply,
  run: ChatRun,
  started: ResponseObject,
  save: (response: ResponseObject) => Promise<void>,
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
    const last = translator.finish();
    // Stored before the client hears it is done, so a GET right after finds it.
    await save(translator.response);
    await send(last);
  } catch (error) {
    await send(translator.fail(run.streamFailure(error)));
  } finally {
    sse.end(false);
    await parts.return();
  }
  return reply;
}

async function storedResponse(deps: ResponsesDeps, id: string, owner: string, param: string | null = null): Promise<StoredResponse> {
  const entry = await deps.responses.get<StoredResponse>(id, owner);
  if (!entry) throw responseNotFound(id, param);
  return entry;
}

function responseNotFound(id: string, param: string | null): IrisError {
  const what = param === 'previous_response_id' ? 'Previous response' : 'Response';
  return objectNotFound(`${what} with id '${id}' not found.`, param);
}
