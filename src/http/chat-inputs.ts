/**
 * Shared by the chat-completions and tokenize routes: turns a parsed chat request into engine messages,
 * preparing its images (fetched, decoded, sized for the model) on the way, and reports each image's tokens.
 */
import type { EngineCapabilities, EngineContentPart, EngineImage, EngineMessage, EngineRequest } from '../engines/engine.js';
import { invalidRequest } from '../errors.js';
import type { ImageInput, ImagePipeline, PreparedImage } from '../images/image-pipeline.js';
import type { ModelAdmission } from '../models/model-registry.js';
import type { ChatMessage, ChatRequest } from '../protocol/chat-request.js';
import type { ImageReport } from '../protocol/chat-response.js';

/**
 * Names the request field of an image part for errors about it (the field holding its URL or data), given
 * the chat message and content part it became. Dialects name their own fields; chat's default is
 * `messages[i].content[j].image_url.url`.
 */
export type ImageParamNamer = (messageIndex: number, partIndex: number) => string;

/** Engine messages and what their images cost. */
export interface ChatInputs {
  messages: EngineMessage[];
  /** Predicted prompt tokens of each image, in order; undefined entries where the projector is not modelled. */
  imageTokens: (number | undefined)[];
  /** What became of each image, in order (the `images` extension field). */
  images: ImageReport[];
}

/**
 * Converts messages to engine messages, preparing every image (concurrently) on the way. Checks the request
 * against what the model takes first, so a request it cannot serve costs no image work (and, since the
 * route calls this before leasing the model, no model load).
 */
export async function toEngineInputs(
  chat: ChatRequest,
  model: { id: string; admission: ModelAdmission },
  images: ImagePipeline,
  signal: AbortSignal,
  imageParam?: ImageParamNamer,
): Promise<ChatInputs> {
  const inputs: ImageInput[] = [];
  chat.messages.forEach((message, messageIndex) => {
    if (message.role !== 'user' || typeof message.content === 'string') return;
    message.content.forEach((part, partIndex) => {
      if (part.type !== 'image_url') return;
      inputs.push({
        url: part.image_url.url,
        detail: part.image_url.detail ?? 'auto',
        param: `messages[${messageIndex}].content[${partIndex}].image_url`,
        ...(imageParam === undefined ? {} : { urlParam: imageParam(messageIndex, partIndex) }),
      });
    });
  });
  const { capabilities, imagePolicy } = model.admission;
  if (inputs.length > 0 && !capabilities.vision) {
    throw invalidRequest(
      `The model '${model.id}' does not accept images (it has no multimodal projector).`,
      inputs[0]?.urlParam ?? inputs[0]?.param ?? null,
      'model_not_supported',
    );
  }
  if (inputs.length > capabilities.maxImagesPerRequest) {
    throw invalidRequest(
      `Too many images: ${inputs.length} in one request, at most ${capabilities.maxImagesPerRequest} are allowed for model '${model.id}'.`,
      'messages',
      'too_many_images',
    );
  }
  const prepared = await images.prepare(inputs, imagePolicy, signal, { maxImageTokens: chat.max_image_tokens ?? undefined });
  let next = 0;
  const messages = chat.messages.map((message) => toEngineMessage(message, () => prepared[next++] as EngineImage));
  return { messages, imageTokens: prepared.map((image) => image.tokens), images: prepared.map(toImageReport) };
}

function toImageReport(image: PreparedImage): ImageReport {
  return {
    source: image.source,
    format: image.sourceFormat,
    original_width: image.sourceWidth,
    original_height: image.sourceHeight,
    width: image.width,
    height: image.height,
    detail: image.detail,
    tokens: image.tokens ?? null,
  };
}

/** Refuses what the model's engine cannot do, by the field that asks for it. */
export function checkCapabilities(chat: ChatRequest, capabilities: EngineCapabilities, modelId: string): void {
  const refuse = (what: string, param: string): never => {
    throw invalidRequest(`The model '${modelId}' does not support ${what}.`, param, 'model_not_supported');
  };
  if (chat.tools && chat.tools.length > 0 && !capabilities.toolCalls) refuse('tools', 'tools');
  if (chat.response_format && chat.response_format.type !== 'text' && !capabilities.structuredOutputs) refuse('structured outputs', 'response_format');
  if (chat.logprobs === true && !capabilities.logprobs) refuse('logprobs', 'logprobs');
}

/** Tools, output format, logprobs and choices of the request, as the engine takes them. */
export function toEngineOptions(chat: ChatRequest): Omit<EngineRequest, 'messages' | 'params' | 'signal'> {
  const options: Omit<EngineRequest, 'messages' | 'params' | 'signal'> = {};
  if (chat.tools && chat.tools.length > 0) {
    options.tools = chat.tools.map(({ function: tool }) => ({
      name: tool.name,
      ...(tool.description === undefined ? {} : { description: tool.description }),
      ...(tool.parameters === undefined ? {} : { parameters: tool.parameters }),
      ...(tool.strict == null ? {} : { strict: tool.strict }),
    }));
  }
  const choice = chat.tool_choice;
  if (choice != null) options.toolChoice = typeof choice === 'string' ? choice : { name: choice.function.name };
  if (chat.parallel_tool_calls != null) options.parallelToolCalls = chat.parallel_tool_calls;
  const format = chat.response_format;
  if (format != null) {
    options.responseFormat =
      format.type === 'json_schema'
        ? {
            type: 'json_schema',
            name: format.json_schema.name,
            schema: format.json_schema.schema ?? {},
            ...(format.json_schema.strict == null ? {} : { strict: format.json_schema.strict }),
            ...(format.json_schema.description === undefined ? {} : { description: format.json_schema.description }),
          }
        : { type: format.type };
  }
  if (chat.logprobs === true) options.topLogprobs = chat.top_logprobs ?? 0;
  if (chat.n != null && chat.n > 1) options.n = chat.n;
  return options;
}

/** The sum of the images' tokens, or undefined when any is unknown. */
export function totalImageTokens(imageTokens: readonly (number | undefined)[]): number | undefined {
  let total = 0;
  for (const tokens of imageTokens) {
    if (tokens === undefined) return undefined;
    total += tokens;
  }
  return total;
}

function toEngineMessage(message: ChatMessage, nextImage: () => EngineImage): EngineMessage {
  const role = message.role === 'developer' ? 'system' : message.role;
  const extra: Pick<EngineMessage, 'toolCalls' | 'toolCallId'> = {};
  if (message.role === 'assistant' && message.tool_calls && message.tool_calls.length > 0) {
    extra.toolCalls = message.tool_calls.map((call) => ({ id: call.id, name: call.function.name, arguments: call.function.arguments }));
  }
  if (message.role === 'tool') extra.toolCallId = message.tool_call_id;
  const content = message.content;
  if (content === undefined || content === null) return { role, content: [], ...extra };
  if (typeof content === 'string') return { role, content: [{ type: 'text', text: content }], ...extra };
  const parts: EngineContentPart[] = content.map((part) =>
    part.type === 'text' ? { type: 'text', text: part.text } : { type: 'image', image: nextImage() },
  );
  return { role, content: parts, ...extra };
}
