/**
 * The one module that writes Server-Sent Events, in the framing the official OpenAI clients parse:
 * `data: <json>\n\n` per chunk and a final `data: [DONE]\n\n`. An error after the headers went out is
 * written as `data: {"error":{...}}` and the stream is closed. Writes respect backpressure.
 */
import type { FastifyReply } from 'fastify';
import type { IrisError } from '../errors.js';

/** Writes SSE events to a reply whose headers it sends itself. */
export class SseWriter {
  #reply: FastifyReply;
  #ended = false;

  constructor(reply: FastifyReply, headers: Record<string, string> = {}) {
    this.#reply = reply;
    reply.hijack();
    reply.raw.writeHead(200, {
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

  /** Sends one JSON event; waits if the socket is backed up. */
  async send(data: unknown): Promise<void> {
    await this.#write(`data: ${JSON.stringify(data)}\n\n`);
  }

  /** Sends an error event and ends the stream. */
  async fail(error: IrisError): Promise<void> {
    await this.#write(`data: ${JSON.stringify(error.toBody())}\n\n`);
    this.end(false);
  }

  /** Sends `[DONE]` (unless told not to) and ends the stream. */
  end(done = true): void {
    if (this.#ended) return;
    if (done && this.open) this.#reply.raw.write('data: [DONE]\n\n');
    this.#ended = true;
    this.#reply.raw.end();
  }

  async #write(text: string): Promise<void> {
    if (!this.open) return;
    const raw = this.#reply.raw;
    if (!raw.write(text)) {
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
  }
}
