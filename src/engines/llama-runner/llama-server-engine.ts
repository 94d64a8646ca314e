/**
 * The embedded engine: an {@link Engine} backed by a supervised llama-server child. It speaks to the child's
 * own OpenAI-compatible `/v1/chat/completions` (llama-server applies the model's chat template and runs
 * libmtmd on the PNG images Iris hands it) over keep-alive loopback HTTP, and translates answers, SSE chunks
 * and failures into Iris's typed parts and errors.
 */
import { Agent, request as httpRequest, type Dispatcher } from 'undici';
import type {
  Engine,
  EngineCapabilities,
  EngineCompletion,
  EngineRequest,
  EngineTokenCountRequest,
  EngineUsage,
  FinishReason,
  StreamPart,
} from '../engine.js';
import { IrisError, engineFailed, engineUnavailable, invalidRequest, requestCancelled } from '../../errors.js';
import type { Logger } from '../../logger.js';
import { LlamaServerProcess, type LlamaServerSettings } from './llama-server-process.js';
import { collectCompletion } from '../collect-completion.js';
import { toOpenAIChatBody } from '../openai-chat-body.js';
import { parseSseData } from '../sse-lines.js';

/** Dependencies of a {@link LlamaServerEngine}. */
export interface LlamaServerEngineDeps {
  logger: Logger;
  env: NodeJS.ProcessEnv;
}

/** An engine running one GGUF model in a supervised llama-server. */
export class LlamaServerEngine implements Engine {
  readonly capabilities: EngineCapabilities;
  readonly process: LlamaServerProcess;
  #agent = new Agent({ keepAliveTimeout: 30_000, connections: 64 });
  #logger: Logger;

  constructor(settings: LlamaServerSettings & { maxImagesPerRequest: number }, deps: LlamaServerEngineDeps) {
    this.process = new LlamaServerProcess(settings, deps);
    this.#logger = deps.logger.child({ model: settings.id });
    this.capabilities = LlamaServerEngine.capabilitiesFor(settings);
  }

  /** What a model run with these settings takes: images only with a projector. */
  static capabilitiesFor(settings: { mmproj?: string | undefined; maxImagesPerRequest: number }): EngineCapabilities {
    const vision = settings.mmproj !== undefined;
    return { vision, maxImagesPerRequest: vision ? settings.maxImagesPerRequest : 0 };
  }

  isReady(): boolean {
    return this.process.state === 'ready';
  }

  async ready(): Promise<void> {
    await this.process.ready();
  }

  /**
   * Runs the request as a stream and gathers it. llama-server notices a closed connection only between
   * streamed chunks; a non-streaming request polls for it so rarely (its wait restarts whenever any other
   * result arrives) that a departed client's generation would run on. Streaming upstream always keeps
   * cancellation immediate.
   */
  async complete(request: EngineRequest): Promise<EngineCompletion> {
    return collectCompletion(this.stream(request));
  }

  async *stream(request: EngineRequest): AsyncIterable<StreamPart> {
    // llama-server (pinned commit) fails with "Chunk not found" when its prompt cache ends between two
    // adjacent images (the first reused, the second new); the same prompt without cache reuse works, so
    // such a request is retried once with cache_prompt off.
    let cachePrompt = true;
    for (;;) {
      let response: Dispatcher.ResponseData;
      try {
        response = await this.#post(request, '/v1/chat/completions', cachePrompt);
      } catch (error) {
        if (cachePrompt && isStaleMediaCacheError(error)) {
          this.#logger.warn({ err: error }, 'llama-server prompt cache split two images; retrying without prompt cache');
          cachePrompt = false;
          continue;
        }
        throw error;
      }
      let finish: FinishReason | undefined;
      let usage: EngineUsage | undefined;
      let produced = false;
      let retry = false;
      try {
        for await (const data of parseSseData(response.body)) {
          if (data === '[DONE]') break;
          let chunk: LlamaStreamChunk;
          try {
            chunk = JSON.parse(data) as LlamaStreamChunk;
          } catch (error) {
            throw engineFailed('llama-server sent a stream chunk that is not JSON.', 'engine_error', error);
          }
          if (chunk.error) {
            const error = upstreamError(500, chunk.error);
            if (!produced && cachePrompt && isStaleMediaCacheError(error)) {
              retry = true;
              break;
            }
            throw error;
          }
          const choice = chunk.choices?.[0];
          const delta = choice?.delta?.content;
          if (typeof delta === 'string' && delta.length > 0) {
            produced = true;
            yield { type: 'text-delta', text: delta };
          }
          if (choice?.finish_reason) finish = toFinishReason(choice.finish_reason);
          if (chunk.usage) usage = toUsage(chunk.usage);
        }
      } catch (error) {
        response.body.destroy();
        const irisError = error instanceof IrisError ? error : this.#connectionError(error, request.signal);
        yield { type: 'error', error: irisError };
        return;
      }
      if (retry) {
        response.body.on('error', () => undefined);
        response.body.destroy();
        this.#logger.warn('llama-server prompt cache split two images; retrying without prompt cache');
        cachePrompt = false;
        continue;
      }
      if (finish === undefined) {
        yield { type: 'error', error: engineFailed('llama-server ended the stream without finishing.', 'engine_crashed') };
        return;
      }
      if (usage) yield { type: 'usage', usage };
      yield { type: 'finish', finishReason: finish };
      return;
    }
  }

  /**
   * Counts prompt tokens with llama-server's `/v1/chat/completions/input_tokens`: the same chat template and
   * libmtmd tokenization a completion runs, with placeholder images (sizes only, no encoding), and no slot.
   */
  async countPromptTokens(request: EngineTokenCountRequest): Promise<number> {
    const response = await this.#post({ messages: request.messages, params: {}, signal: request.signal }, '/v1/chat/completions/input_tokens');
    let body: { input_tokens?: unknown };
    try {
      body = (await response.body.json()) as { input_tokens?: unknown };
    } catch (error) {
      throw this.#connectionError(error, request.signal);
    }
    if (typeof body.input_tokens !== 'number' || !Number.isInteger(body.input_tokens)) {
      throw engineFailed('llama-server answered a token count without input_tokens.');
    }
    return body.input_tokens;
  }

  async dispose(): Promise<void> {
    await this.process.dispose();
    await this.#agent.close().catch(() => undefined);
  }

  async #post(request: EngineRequest, path = '/v1/chat/completions', cachePrompt = true): Promise<Dispatcher.ResponseData> {
    const baseUrl = await this.process.ready();
    request.signal.throwIfAborted();
    const body = JSON.stringify(toLlamaBody(request, cachePrompt));
    let response: Dispatcher.ResponseData;
    try {
      response = await httpRequest(`${baseUrl}${path}`, {
        method: 'POST',
        dispatcher: this.#agent,
        headers: { 'content-type': 'application/json' },
        body,
        signal: request.signal,
        headersTimeout: 0,
        bodyTimeout: 0,
      });
    } catch (error) {
      throw this.#connectionError(error, request.signal);
    }
    if (response.statusCode >= 400) {
      const text = await response.body.text().catch(() => '');
      let message = text.slice(0, 500);
      try {
        const parsed = JSON.parse(text) as { error?: LlamaError };
        if (parsed.error) throw upstreamError(response.statusCode, parsed.error);
      } catch (error) {
        if (error instanceof IrisError) throw error;
        message = text.slice(0, 500);
      }
      throw upstreamError(response.statusCode, { message, type: '' });
    }
    return response;
  }

  /** A socket error while talking to the child: the client went away, or the child died. */
  #connectionError(error: unknown, signal: AbortSignal): IrisError {
    if (signal.aborted) {
      return requestCancelled(error);
    }
    this.#logger.warn({ err: error }, 'lost the connection to llama-server');
    if (this.process.state === 'disposed') return engineUnavailable('The model is shutting down.', 'shutting_down', error);
    return engineFailed(
      'The model runner stopped while working on this request; it is being restarted. Retry the request.',
      'engine_crashed',
      error,
    );
  }
}

interface LlamaError {
  message?: string;
  type?: string;
  code?: number;
}

interface LlamaUsage {
  prompt_tokens?: number;
  completion_tokens?: number;
  prompt_tokens_details?: { cached_tokens?: number };
}

interface LlamaStreamChunk {
  choices?: { delta?: { content?: string | null }; finish_reason?: string | null }[];
  usage?: LlamaUsage;
  error?: LlamaError;
}

/** llama-server's failure when a reused prompt-cache prefix ends between two adjacent image chunks. */
function isStaleMediaCacheError(error: unknown): boolean {
  return error instanceof IrisError && error.status >= 500 && /Chunk not found/.test(error.message);
}

/** Maps an error llama-server answered with onto ours: its 4xx are the caller's fault, the rest ours. */
function upstreamError(status: number, error: LlamaError): IrisError {
  const message = error.message || 'llama-server rejected the request.';
  if (error.type === 'exceed_context_size_error') {
    return invalidRequest(`The request is too long for the model's context: ${message}`, 'messages', 'context_length_exceeded');
  }
  if (status >= 400 && status < 500) return invalidRequest(`The model rejected the request: ${message}`, null, 'invalid_request');
  if (status === 503) return engineUnavailable(`The model is not ready: ${message}`);
  return engineFailed(`The model failed: ${message}`);
}

function toFinishReason(reason: string | null | undefined): FinishReason {
  return reason === 'length' ? 'length' : 'stop';
}

function toUsage(usage: LlamaUsage | undefined): EngineUsage {
  return {
    promptTokens: usage?.prompt_tokens ?? 0,
    completionTokens: usage?.completion_tokens ?? 0,
    ...(usage?.prompt_tokens_details?.cached_tokens === undefined
      ? {}
      : { cachedTokens: usage.prompt_tokens_details.cached_tokens }),
  };
}

/** The body llama-server's /v1/chat/completions takes: OpenAI's, plus its prompt-cache switch. */
function toLlamaBody(request: EngineRequest, cachePrompt: boolean): Record<string, unknown> {
  // Prompt-cache reuse is safe: llama.cpp keeps results identical for a given seed and prompt.
  return { ...toOpenAIChatBody(request), cache_prompt: cachePrompt };
}
