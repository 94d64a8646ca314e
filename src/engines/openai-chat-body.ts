/**
 * Turns an {@link EngineRequest} into the body of an OpenAI `POST /chat/completions`, as both engines send
 * it: our llama-server children and remote servers (vLLM, SGLang, llama-server, another Iris). Always a
 * stream with a final usage chunk: streaming keeps a client's disconnect an immediate cancel, and the usage
 * chunk is where token counts come from.
 */
import type { EngineMessage, EngineRequest } from './engine.js';
import { toChatResponseFormat } from '../protocol/chat-request.js';

/** The JSON body for `request`, asking for `model` when given (llama-server serves one model and needs none). */
export function toOpenAIChatBody(request: EngineRequest, model?: string): Record<string, unknown> {
  const { params } = request;
  const body: Record<string, unknown> = {
    ...(model === undefined ? {} : { model }),
    messages: request.messages.map(toOpenAIMessage),
    stream: true,
    stream_options: { include_usage: true },
  };
  const set = (key: string, value: unknown): void => {
    if (value !== undefined) body[key] = value;
  };
  set('max_tokens', params.maxTokens);
  set('temperature', params.temperature);
  set('top_p', params.topP);
  set('seed', params.seed);
  set('stop', params.stop);
  set('presence_penalty', params.presencePenalty);
  set('frequency_penalty', params.frequencyPenalty);
  // Not OpenAI's, but vLLM, SGLang, llama-server and Iris all read these names.
  set('top_k', params.topK);
  set('min_p', params.minP);
  set('ignore_eos', params.ignoreEos);
  // vLLM, SGLang and Iris call it repetition_penalty, llama-server repeat_penalty; each ignores the
  // other's name, so both are sent.
  set('repetition_penalty', params.repetitionPenalty);
  set('repeat_penalty', params.repetitionPenalty);
  set('logit_bias', params.logitBias);
  if (request.tools && request.tools.length > 0) {
    body['tools'] = request.tools.map((tool) => ({
      type: 'function',
      function: {
        name: tool.name,
        ...(tool.description === undefined ? {} : { description: tool.description }),
        ...(tool.parameters === undefined ? {} : { parameters: tool.parameters }),
        ...(tool.strict === undefined ? {} : { strict: tool.strict }),
      },
    }));
  }
  const choice = request.toolChoice;
  if (choice !== undefined) body['tool_choice'] = typeof choice === 'string' ? choice : { type: 'function', function: { name: choice.name } };
  set('parallel_tool_calls', request.parallelToolCalls);
  if (request.responseFormat !== undefined) body['response_format'] = toChatResponseFormat(request.responseFormat);
  if (request.topLogprobs !== undefined) {
    body['logprobs'] = true;
    body['top_logprobs'] = request.topLogprobs;
  }
  if (request.n !== undefined && request.n !== 1) body['n'] = request.n;
  return body;
}

/**
 * One message in OpenAI's shape. Text-only content goes as a plain string (every server takes that for
 * every role); content with images as an array of `text` and `image_url` parts with PNG data URIs.
 */
function toOpenAIMessage(message: EngineMessage): Record<string, unknown> {
  const hasImage = message.content.some((part) => part.type === 'image');
  const extra: Record<string, unknown> = {};
  if (message.toolCalls && message.toolCalls.length > 0) {
    extra['tool_calls'] = message.toolCalls.map((call) => ({ id: call.id, type: 'function', function: { name: call.name, arguments: call.arguments } }));
  }
  if (message.toolCallId !== undefined) extra['tool_call_id'] = message.toolCallId;
  if (!hasImage) {
    const text = message.content.map((part) => (part.type === 'text' ? part.text : '')).join('');
    // An assistant turn that only calls tools has no content, as OpenAI writes it.
    return { role: message.role, content: text === '' && extra['tool_calls'] ? null : text, ...extra };
  }
  return {
    role: message.role,
    ...extra,
    content: message.content.map((part) =>
      part.type === 'text'
        ? { type: 'text', text: part.text }
        : {
            type: 'image_url',
            image_url: { url: `data:${part.image.mimeType};base64,${Buffer.from(part.image.data).toString('base64')}` },
          },
    ),
  };
}
