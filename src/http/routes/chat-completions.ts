/**
 * POST /v1/openai/chat/completions and POST /v1/chat/completions: validate the OpenAI request, run it through
 * the chat pipeline (admission, images, slots, engine, observation), and answer as JSON or as an SSE stream. The answer
 * carries the `images` extension (what became of each image); the request's observation gets its model,
 * queue wait, first-token time and usage for the access log and metrics.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { EngineUsage } from '../../engines/engine.js';
import type { IrisError } from '../../errors.js';
import { parseChatRequest, type ChatRequest } from '../../protocol/chat-request.js';
import { runChatPipeline, type ChatPipelineDeps, type ChatRun } from '../chat-pipeline.js';
import {
  buildChunk,
  buildCompletion,
  buildUsageChunk,
  contentChunkSerializer,
  newCompletionIdentity,
  toChatLogprobs,
  type ChatCompletionChunk,
  type CompletionIdentity,
} from '../../protocol/chat-response.js';
import { SseWriter } from '../sse.js';

/** What the route needs. */
export interface ChatCompletionsDeps extends ChatPipelineDeps {
  /** `system_fingerprint` of responses. */
  fingerprint: string;
  /** Largest `n` of one request. */
  maxChoicesPerRequest: number;
}

/** Registers the chat-completions routes. */
export function registerChatCompletions(app: FastifyInstance, deps: ChatCompletionsDeps): void {
  const handler = (request: FastifyRequest, reply: FastifyReply) => handleChat(request, reply, deps);
  app.post('/v1/openai/chat/completions', handler);
  app.post('/v1/chat/completions', handler);
}

async function handleChat(request: FastifyRequest, reply: FastifyReply, deps: ChatCompletionsDeps): Promise<unknown> {
  const prepare = () => ({ chat: parseChatRequest(request.body, { maxChoices: deps.maxChoicesPerRequest }) });
  return runChatPipeline(deps, { request, reply }, prepare, async (run, { chat }) => {
    const identity = newCompletionIdentity(run.model, deps.fingerprint);
    if (chat.stream) return streamCompletion(reply, chat, run, identity);
    const result = await run.complete();
    const completion = buildCompletion(identity, result.choices, result.usage, run.imageTokens);
    return run.imageReports.length > 0 ? { ...completion, images: run.imageReports } : completion;
  });
}

async function streamCompletion(reply: FastifyReply, chat: ChatRequest, run: ChatRun, identity: CompletionIdentity): Promise<FastifyReply> {
  const includeUsage = chat.stream_options?.include_usage === true;
  const imageReports = run.imageReports;
  // Errors before anything was generated are still ordinary HTTP errors.
  const iterator = await run.stream();
  let result = await iterator.next();
  const sse = new SseWriter(reply, { 'x-request-id': reply.request.id });
  const fail = async (error: IrisError): Promise<void> => {
    await sse.fail(run.streamFailure(error));
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
        if (includeUsage) usage = part.usage;
      } else if (part.type === 'error') {
        await flush();
        await fail(part.error);
        return reply;
      } else {
        await flush();
        if (part.type === 'text-delta') {
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
    if (usage && sse.open) await sse.send(buildUsageChunk(identity, usage, run.imageTokens));
    sse.end();
  } catch (error) {
    await sse.fail(run.streamFailure(error));
  } finally {
    await iterator.return?.(undefined);
  }
  return reply;
}
