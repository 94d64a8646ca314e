/**
 * The embedded engine: an {@link Engine} backed by a supervised llama-server child. It speaks to the child's
 * own OpenAI-compatible `/v1/chat/completions` (llama-server applies the model's chat template and runs
 * libmtmd on the PNG images Iris hands it) over keep-alive loopback HTTP, and translates answers, SSE chunks
 * and failures into Iris's typed parts and errors.
 */
import { Agent, request as httpRequest, type Dispatcher } from 'undici';
import type { Engine, EngineCapabilities, EngineCompletion, EngineRequest, EngineTokenCountRequest, StreamPart } from '../engine.js';
import { echo } from '../../echo.js';
import { IrisError, engineFailed, engineTimedOut, engineUnavailable, invalidRequest, requestCancelled } from '../../errors.js';
import type { Logger } from '../../logger.js';
import { LlamaServerProcess, type LlamaServerSettings } from './llama-server-process.js';
import { collectCompletion } from '../collect-completion.js';
import { toOpenAIChatBody } from '../openai-chat-body.js';
import { parseUpstreamError, type UpstreamErrorBody } from '../openai-error-body.js';
import { decodeOpenAIChatStream } from '../openai-stream-decoder.js';

/** Dependencies of a {@link LlamaServerEngine}. */
export interface LlamaServerEngineDeps {
  logger: Logger;
  env: NodeJS.ProcessEnv;
  /** Called each time the child is restarted after dying. */
  onRestart?: (() => void) | undefined;
}

/** How long Iris waits on llama-server; past either, the request fails with 504 and its work is dropped. */
export interface EngineDeadlines {
  /** Until the answer starts (prompt processing included), in ms. */
  firstByteTimeoutMs: number;
  /** Between two parts of the answer, in ms. */
  idleTimeoutMs: number;
}

/** An engine running one GGUF model in a supervised llama-server. */
export class LlamaServerEngine implements Engine {
  readonly process: LlamaServerProcess;
  #capabilities: EngineCapabilities;
  // llama-server (cpp-httplib) closes a keep-alive connection after 5 s idle; closing ours first keeps a
  // request from going out on a socket the child is closing (which would fail it as if the child died).
  #agent = new Agent({ keepAliveTimeout: 4_000, keepAliveMaxTimeout: 4_000, connections: 64 });
  #templateRead = false;
  #logger: Logger;
  #deadlines: EngineDeadlines;

  constructor(settings: LlamaServerSettings & EngineDeadlines & { maxImagesPerRequest: number }, deps: LlamaServerEngineDeps) {
    this.process = new LlamaServerProcess(settings, deps);
    this.#deadlines = { firstByteTimeoutMs: settings.firstByteTimeoutMs, idleTimeoutMs: settings.idleTimeoutMs };
    this.#logger = deps.logger.child({ model: settings.id });
    this.#capabilities = LlamaServerEngine.capabilitiesFor(settings);
  }

  /**
   * What a model run with these settings takes: images only with a projector. `toolCalls` is a promise
   * until the engine is ready: then llama-server has read the model's chat template and {@link capabilities}
   * says whether the template renders tools.
   */
  static capabilitiesFor(settings: { mmproj?: string | undefined; maxImagesPerRequest: number }): EngineCapabilities {
    const vision = settings.mmproj !== undefined;
    return {
      vision,
      maxImagesPerRequest: vision ? settings.maxImagesPerRequest : 0,
      toolCalls: true,
      structuredOutputs: true,
      logprobs: true,
      // llama-server answers one choice per request; Iris fans n out over the model's slots.
      maxChoicesPerRequest: 1,
    };
  }

  isReady(): boolean {
    return this.process.state === 'ready';
  }

  /** What the model can take; `toolCalls` is its chat template's, known once the engine was ready. */
  get capabilities(): EngineCapabilities {
    return this.#capabilities;
  }

  async ready(): Promise<void> {
    const baseUrl = await this.process.ready();
    if (this.#templateRead) return;
    // Tools need a chat template that renders them: without one llama-server would answer in plain text,
    // and a caller asking for tools would silently get none.
    try {
      const response = await httpRequest(`${baseUrl}/props`, { dispatcher: this.#agent, headers: { authorization: this.process.authorization } });
      const props = (await response.body.json()) as { chat_template_caps?: { supports_tool_calls?: boolean } };
      this.#capabilities = { ...this.#capabilities, toolCalls: props.chat_template_caps?.supports_tool_calls === true };
      this.#templateRead = true;
    } catch (error) {
      this.#capabilities = { ...this.#capabilities, toolCalls: false };
      this.#logger.warn({ err: error }, "could not read llama-server's chat template capabilities; tools are off");
    }
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
          this.#logger.warn({ err: error, reqId: request.requestId }, 'llama-server prompt cache split two images; retrying without prompt cache');
          cachePrompt = false;
          continue;
        }
        throw error;
      }
      // Whether a part reached the caller: until then a failure rejects (the engine contract).
      let produced = false;
      try {
        const decoderOptions = {
          source: 'llama-server',
          streamError: (error: UpstreamErrorBody) => upstreamError(streamErrorStatus(error), error, request, this.#logger),
          stop: request.params.stop,
        };
        for await (const part of decodeOpenAIChatStream(response.body, decoderOptions)) {
          // Some chat formats let the grammar repeat the call even when told not to: one call it is.
          if (part.type === 'tool-call-delta' && part.index > 0 && request.parallelToolCalls === false) continue;
          produced = true;
          // Asked with 1 alternative for top_logprobs 0 (see toLlamaBody), which it must not show.
          yield part.type === 'logprobs' && request.topLogprobs === 0
            ? { ...part, content: part.content.map((token) => ({ ...token, topLogprobs: [] })) }
            : part;
        }
        return;
      } catch (error) {
        const irisError = error instanceof IrisError ? error : this.#connectionError(error, request.signal, request.requestId);
        if (!produced && cachePrompt && isStaleMediaCacheError(irisError)) {
          this.#logger.warn({ reqId: request.requestId }, 'llama-server prompt cache split two images; retrying without prompt cache');
          cachePrompt = false;
          continue;
        }
        if (!produced) throw irisError;
        yield { type: 'error', error: irisError };
        return;
      } finally {
        if (!response.body.readableEnded) {
          response.body.on('error', () => undefined);
          response.body.destroy();
        }
      }
    }
  }

  /**
   * Counts prompt tokens with llama-server's `/v1/chat/completions/input_tokens`: the same chat template and
   * libmtmd tokenization a completion runs, with placeholder images (sizes only, no encoding), and no slot.
   */
  async countPromptTokens(request: EngineTokenCountRequest): Promise<number> {
    // Tools and the response format are part of the prompt the chat template renders.
    const response = await this.#post({ ...request, params: {} }, '/v1/chat/completions/input_tokens');
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

  /**
   * llama-server's own `/metrics` (it runs with `--metrics`), through the same connection pool as requests;
   * the one place the child is scraped, so it sends whatever credentials the child's requests carry.
   */
  async scrapeMetrics(signal: AbortSignal): Promise<string | undefined> {
    const baseUrl = this.process.baseUrl;
    if (baseUrl === undefined) return undefined;
    try {
      const response = await httpRequest(`${baseUrl}/metrics`, { method: 'GET', dispatcher: this.#agent, signal, headers: { authorization: this.process.authorization } });
      const text = await response.body.text();
      return response.statusCode === 200 ? text : undefined;
    } catch (error) {
      this.#logger.debug({ err: error }, 'could not read llama-server metrics');
      return undefined;
    }
  }

  async dispose(): Promise<void> {
    await this.process.dispose();
    await this.#agent.close().catch(() => undefined);
  }

  async #post(request: EngineRequest, path = '/v1/chat/completions', cachePrompt = true): Promise<Dispatcher.ResponseData> {
    const baseUrl = await this.process.ready();
    request.signal.throwIfAborted();
    const body = JSON.stringify(toLlamaBody(request, cachePrompt));
    const send = (url: string) =>
      httpRequest(`${url}${path}`, {
        method: 'POST',
        dispatcher: this.#agent,
        headers: { 'content-type': 'application/json', authorization: this.process.authorization },
        body,
        signal: request.signal,
        // Closing the connection on a deadline is what makes llama-server drop the work.
        headersTimeout: this.#deadlines.firstByteTimeoutMs,
        bodyTimeout: this.#deadlines.idleTimeoutMs,
      });
    // The child may not answer a request it never saw: a kept-alive connection it closed just as the request
    // went out (sent again on a fresh one), or nothing listening any more because it died between two
    // requests (sent to the child restarted in its place, once its exit was seen). At most three tries.
    let response: Dispatcher.ResponseData | undefined;
    let url = baseUrl;
    for (let attempt = 1; response === undefined; attempt += 1) {
      try {
        response = await send(url);
      } catch (error) {
        if (error instanceof IrisError) throw error;
        if (request.signal.aborted || attempt >= 3 || this.process.state === 'disposed' || !isClosedSocket(error)) {
          throw this.#connectionError(error, request.signal, request.requestId);
        }
        const refused = (error as { code?: unknown } | null)?.code === 'ECONNREFUSED';
        this.#logger.debug({ err: error, reqId: request.requestId }, refused ? 'llama-server is gone; sending to its restarted child' : 'llama-server closed a pooled connection; sending again');
        if (refused || this.process.state !== 'ready') url = await this.process.nextReady(url);
      }
    }
    if (response.statusCode >= 400) {
      const text = await response.body.text().catch(() => '');
      throw upstreamError(response.statusCode, parseUpstreamError(text), request, this.#logger, this.process.startSeconds);
    }
    return response;
  }

  /** A socket error while talking to the child: the client went away, or the child died. */
  #connectionError(error: unknown, signal: AbortSignal, requestId?: string): IrisError {
    if (signal.aborted) {
      return requestCancelled(error);
    }
    const code = (error as { code?: unknown } | null)?.code;
    if (code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_BODY_TIMEOUT') {
      const [what, ms] =
        code === 'UND_ERR_HEADERS_TIMEOUT'
          ? ['start answering', this.#deadlines.firstByteTimeoutMs]
          : ['continue its answer', this.#deadlines.idleTimeoutMs];
      this.#logger.warn({ code, reqId: requestId }, `llama-server did not ${what} within ${ms} ms; the request was dropped`);
      return engineTimedOut(`The model did not ${what} within ${ms} ms; the request was stopped. Retry, or send a shorter request.`, error);
    }
    this.#logger.warn({ err: error, reqId: requestId }, 'lost the connection to llama-server');
    if (this.process.state === 'disposed') return engineUnavailable('The model is shutting down.', 'shutting_down', error);
    return engineFailed(
      'The model runner stopped while working on this request; it is being restarted. Retry the request.',
      'engine_crashed',
      error,
    );
  }
}

/** llama-server's failure when a reused prompt-cache prefix ends between two adjacent image chunks. */
function isStaleMediaCacheError(error: unknown): boolean {
  return error instanceof IrisError && error.status >= 500 && error.cause instanceof Error && /Chunk not found/.test(error.cause.message);
}

/** The HTTP status an `{"error":...}` event inside a stream stands for (llama-server puts it in `code`). */
function streamErrorStatus(error: UpstreamErrorBody): number {
  return typeof error.code === 'number' ? error.code : 500;
}

/**
 * Maps an error llama-server answered with onto ours: its 4xx are the caller's fault, the rest ours. Its
 * messages can quote the prompt (a parse error shows the text it choked on): a 5xx never passes the
 * engine's words on, and a 4xx passes them on (escaped, cut short) only when they quote none of the
 * request's text. The log always gets them, cut short and escaped.
 */
function upstreamError(status: number, error: UpstreamErrorBody, request: EngineRequest, logger: Logger, startSeconds?: number): IrisError {
  const message = error.message || 'llama-server rejected the request.';
  logger.warn({ status, type: error.type, engineMessage: echo(message) }, 'llama-server refused the request');
  if (error.type === 'exceed_context_size_error') {
    return invalidRequest(
      "The request is too long for the model's context. Send fewer or shorter messages, or fewer images.",
      'messages',
      'context_length_exceeded',
    );
  }
  if (status >= 400 && status < 500 && /JSON schema (conversion failed|error)/.test(message)) {
    // The schema could not become a grammar: the response format's, or else a tool's parameters.
    const param = request.responseFormat?.type === 'json_schema' ? 'response_format.json_schema.schema' : 'tools';
    return invalidRequest(`The JSON schema cannot be enforced: ${message.replace(/\s+/g, ' ').trim()}`, param, 'invalid_value');
  }
  if (status >= 400 && status < 500 && /logprobs is not supported with tools/.test(message)) {
    // Iris always streams from llama-server, which cannot report logprobs while it parses tool calls.
    return invalidRequest('logprobs cannot be combined with tools on this model.', 'logprobs', 'unsupported_parameter');
  }
  if (status >= 400 && status < 500) {
    const detail = quotesRequest(message, request) ? '' : `: ${echo(message)}`;
    return invalidRequest(`The model rejected the request${detail}`, null, 'invalid_request');
  }
  // The engine's own words stay on the error as its cause, for logs and for recognising known failures.
  const cause = new Error(message);
  // llama-server answers 503 while it loads the model: that takes about as long as its start did.
  if (status === 503) return engineUnavailable('The model is not ready. Retry shortly.', 'model_unavailable', cause, startSeconds);
  return engineFailed('The model failed while processing this request.', 'engine_error', cause);
}

/** Length of the pieces of an engine message looked for in the request's text. */
const QUOTE_WINDOW = 16;

/** Whether an engine message quotes the request's text (then it is not passed on to the client). */
function quotesRequest(message: string, request: EngineRequest): boolean {
  const texts = request.messages.flatMap((turn) => turn.content.flatMap((part) => (part.type === 'text' ? [part.text] : [])));
  for (let start = 0; start + QUOTE_WINDOW <= message.length; start += QUOTE_WINDOW / 2) {
    const piece = message.slice(start, start + QUOTE_WINDOW);
    if (texts.some((text) => text.includes(piece))) return true;
  }
  return false;
}

/** The body llama-server's /v1/chat/completions takes: OpenAI's, plus its prompt-cache switch. */
function toLlamaBody(request: EngineRequest, cachePrompt: boolean): Record<string, unknown> {
  // Prompt-cache reuse is safe: llama.cpp keeps results identical for a given seed and prompt.
  const body: Record<string, unknown> = { ...toOpenAIChatBody(request), cache_prompt: cachePrompt };
  // llama-server says which stop sequence ended a choice only in its debug object; `response_fields` cuts
  // that object down to the two fields that tell (the stream decoder reads them).
  if (request.params.stop !== undefined && request.params.stop.length > 0) {
    body['verbose'] = true;
    body['response_fields'] = ['stop_type', 'stopping_word'];
  }
  // llama-server reads top_logprobs 0 as "no logprobs at all".
  if (request.topLogprobs === 0) body['top_logprobs'] = 1;
  // llama-server takes tool_choice as a string only: a named function becomes "required" over that one tool.
  const choice = request.toolChoice;
  if (typeof choice === 'object' && request.tools) {
    body['tools'] = (body['tools'] as { function: { name: string } }[]).filter((tool) => tool.function.name === choice.name);
    body['tool_choice'] = 'required';
  }
  return body;
}

/** A socket closed, reset or refused by the other side before an answer (undici's codes, and Node's). */
function isClosedSocket(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return code === 'UND_ERR_SOCKET' || code === 'ECONNRESET' || code === 'EPIPE' || code === 'UND_ERR_CLOSED' || code === 'ECONNREFUSED';
}
