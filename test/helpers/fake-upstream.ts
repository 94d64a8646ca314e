/**
 * A small OpenAI-compatible server on loopback whose answers the test controls: streams that send their
 * first chunk and then wait until released (or forever) or drop the connection, 5xx answers for chosen
 * requests, and a record of the headers each request carried. It stands in for a remote deployment (an
 * external thing), so tests can hold a stream open for exactly as long as they need.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/** How the fake answers one chat request. */
export type FakeAnswer =
  /** Stream one chunk now and the rest when released (`stall`: never). */
  | { kind: 'stream'; stall?: boolean }
  /** Stream the whole answer at once. */
  | { kind: 'complete' }
  /** Stream one chunk, then cut the connection without finishing the answer. */
  | { kind: 'drop' }
  /** Answer with this HTTP status and an OpenAI error body. */
  | { kind: 'error'; status: number; message: string };

/** A running fake upstream. */
export interface FakeUpstream {
  /** Base URL with the `/v1` prefix. */
  url: string;
  /** Request headers of each chat request, in order. */
  requests: IncomingMessage['headers'][];
  /** Streams waiting to be released. */
  readonly held: number;
  /** Finishes every held stream (one more chunk, finish reason, usage, `[DONE]`). */
  releaseAll(): void;
  close(): Promise<void>;
}

/** Starts a fake upstream serving `model`; `answer` decides per request body how to answer. */
export async function startFakeUpstream(model: string, answer: (body: { messages?: { content?: unknown }[] }) => FakeAnswer): Promise<FakeUpstream> {
  const held = new Set<ServerResponse>();
  const requests: IncomingMessage['headers'][] = [];
  const chunk = (content: string | undefined, finish: string | null, usage?: object): string =>
    `data: ${JSON.stringify({
      id: 'chatcmpl-fake',
      object: 'chat.completion.chunk',
      created: 0,
      model,
      choices: usage ? [] : [{ index: 0, delta: content === undefined ? {} : { content }, finish_reason: finish }],
      ...(usage ? { usage } : {}),
    })}\n\n`;
  const finish = (response: ServerResponse): void => {
    held.delete(response);
    response.write(chunk(' world', null));
    response.write(chunk(undefined, 'stop'));
    response.end(`${chunk(undefined, null, { prompt_tokens: 5, completion_tokens: 2, total_tokens: 7 })}data: [DONE]\n\n`);
  };
  const server = createServer((request, response) => {
    const path = (request.url ?? '').split('?')[0];
    if (request.method === 'GET' && path === '/v1/models') {
      response.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ object: 'list', data: [{ id: model, object: 'model' }] }));
      return;
    }
    if (request.method !== 'POST' || path !== '/v1/chat/completions') {
      response.writeHead(404).end();
      return;
    }
    requests.push(request.headers);
    let text = '';
    request.setEncoding('utf8');
    request.on('data', (data: string) => (text += data));
    request.on('end', () => {
      const decided = answer(JSON.parse(text) as { messages?: { content?: unknown }[] });
      if (decided.kind === 'error') {
        response
          .writeHead(decided.status, { 'content-type': 'application/json' })
          .end(JSON.stringify({ error: { message: decided.message, type: 'server_error', param: null, code: null } }));
        return;
      }
      response.writeHead(200, { 'content-type': 'text/event-stream' });
      response.write(chunk('hello', null));
      if (decided.kind === 'complete') {
        finish(response);
        return;
      }
      if (decided.kind === 'drop') {
        // Once the first chunk is on its way: a reset, as a crashed server's socket would give.
        setTimeout(() => response.socket?.resetAndDestroy(), 50);
        return;
      }
      if (!decided.stall) held.add(response);
      response.on('close', () => held.delete(response));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/v1`,
    requests,
    get held() {
      return held.size;
    },
    releaseAll: () => {
      for (const response of [...held]) finish(response);
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
