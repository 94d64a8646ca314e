/**
 * The one module that writes Server-Sent Events, in the framing the official OpenAI clients parse:
 * `data: <json>\n\n` per chunk and a final `data: [DONE]\n\n`. An error after the headers went out is
 * written as `data: {"error":{...}}` and the stream is closed.
 *
 * Events queued in the same turn of the event loop (an upstream read usually carries several chunks) go
 * out in one socket write at the end of that turn (`setImmediate`), instead of one write and one chunked
 * frame each. Writes respect backpressure: {@link SseWriter.sendJson} says when to wait for
 * {@link SseWriter.drained}. The dialects (Responses, Anthropic) write named events through the same writer
 * and end without `[DONE]`.
 */
import type { FastifyReply } from 'fastify';
import type { IrisError } from '../errors.js';

/** Writes SSE events to a reply whose headers it sends itself. */
export class SseWriter {
  #reply: FastifyReply;
  #ended = false;
  #pending = '';
  #flushScheduled = false;
  #flush = (): void => {
    this.#flushScheduled = false;
    const text = this.#pending;
    this.#pending = '';
    if (text !== '' && this.open) this.#reply.raw.write(text);
  };

  /** Headers already set on the reply (request id, rate limits) go out with the stream's. */
  constructor(reply: FastifyReply, headers: Record<string, string> = {}) {
    this.#reply = reply;
    const set = Object.fromEntries(
      Object.entries(reply.getHeaders()).filter((entry): entry is [string, string | number | string[]] => entry[1] !== undefined),
    );
    reply.hijack();
    reply.raw.writeHead(200, {
      ...set,
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache',
      connection: 'keep-alive',
      'x-accel-buffering': 'no',
      ...headers,
    });
    reply.raw.flushHeaders();
  }

  /** Whether the client is still there. */
  get open(): boolean {
    return !this.#ended && !this.#reply.raw.destroyed && this.#reply.raw.writable;
  }

  /**
   * Queues one event whose data is already JSON text. Returns false when the client is not keeping up:
   * await {@link drained} before sending more.
   */
  sendJson(json: string, event?: string): boolean {
    if (!this.open) return true;
    this.#pending += `${event === undefined ? '' : `event: ${event}\n`}data: ${json}\n\n`;
    if (!this.#flushScheduled) {
      this.#flushScheduled = true;
      setImmediate(this.#flush);
    }
    return !this.#reply.raw.writableNeedDrain;
  }

  /**
   * Sends one JSON event, named by an `event:` line when `event` is given (the Responses and Anthropic
   * dialects name theirs); waits if the socket is backed up.
   */
  async send(data: unknown, event?: string): Promise<void> {
    if (!this.sendJson(JSON.stringify(data), event)) await this.drained();
  }

  /** Resolves once the socket takes more data (or the client is gone). */
  async drained(): Promise<void> {
    this.#flush();
    const raw = this.#reply.raw;
    if (!this.open || !raw.writableNeedDrain) return;
    await new Promise<void>((resolve) => {
      const done = (): void => {
        raw.off('drain', done);
        raw.off('close', done);
        resolve();
      };
      raw.on('drain', done);
      raw.on('close', done);
    });
  }

  /** Sends an error event and ends the stream. */
  async fail(error: IrisError): Promise<void> {
    await this.send(error.toBody());
    this.end(false);
  }

  /** Sends what is queued and `[DONE]` (unless told not to), and ends the stream. */
  end(done = true): void {
    if (this.#ended) return;
    const text = this.open ? `${this.#pending}${done ? 'data: [DONE]\n\n' : ''}` : '';
    this.#pending = '';
    this.#ended = true;
    this.#reply.raw.end(text);
  }
}
