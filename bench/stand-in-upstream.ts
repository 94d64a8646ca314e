/**
 * A stand-in OpenAI-compatible upstream for the relay benchmark: `POST /v1/chat/completions` streams
 * `max_tokens` chunks (one short word each, in llama-server's chunk shape), then a usage chunk and
 * `[DONE]`, writing as fast as the socket takes them; `GET /v1/models` lists one model. It does no model
 * work at all, so a client reading it directly measures the socket and the client, and Iris relaying it
 * measures Iris's own ceiling.
 *
 * Run as its own process (`tsx bench/stand-in-upstream.ts`) so it does not share a thread with the client:
 * it prints its port on stdout.
 */
import { once } from 'node:events';
import { createServer, type ServerResponse } from 'node:http';

const MODEL = 'stand-in';

/** Writes `count` content chunks and the closing usage chunk, waiting only when the socket is full. */
async function streamChunks(response: ServerResponse, count: number, promptTokens: number): Promise<void> {
  const created = Math.floor(Date.now() / 1000);
  const head = `data: {"id":"chatcmpl-standin","object":"chat.completion.chunk","created":${created},"model":"${MODEL}","system_fingerprint":"b1","choices":[{"index":0,"delta":`;
  const closed = new AbortController();
  response.once('close', () => closed.abort());
  const drained = (): Promise<unknown> => once(response, 'drain', { signal: closed.signal }).catch(() => undefined);
  if (!response.write(`${head}{"role":"assistant","content":null},"finish_reason":null}]}\n\n`)) await drained();
  for (let index = 0; index < count; index += 1) {
    if (response.destroyed) return;
    if (!response.write(`${head}{"content":" tok${index % 10}"},"finish_reason":null}]}\n\n`)) await drained();
  }
  response.write(`${head}{},"finish_reason":"length"}]}\n\n`);
  response.write(
    `data: {"id":"chatcmpl-standin","object":"chat.completion.chunk","created":${created},"model":"${MODEL}","choices":[],"usage":{"prompt_tokens":${promptTokens},"completion_tokens":${count},"total_tokens":${promptTokens + count}}}\n\n`,
  );
  response.end('data: [DONE]\n\n');
}

const server = createServer((request, response) => {
  if (request.method === 'GET' && request.url?.endsWith('/models')) {
    response.writeHead(200, { 'content-type': 'application/json' });
    response.end(JSON.stringify({ object: 'list', data: [{ id: MODEL, object: 'model', created: 0, owned_by: 'bench' }] }));
    return;
  }
  const parts: Buffer[] = [];
  request.on('data', (part: Buffer) => parts.push(part));
  request.on('end', () => {
    const body = JSON.parse(Buffer.concat(parts).toString('utf8')) as { max_tokens?: number; max_completion_tokens?: number };
    const count = body.max_completion_tokens ?? body.max_tokens ?? 16;
    response.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
    void streamChunks(response, count, 10);
  });
});
server.keepAliveTimeout = 60_000;
server.listen(0, '127.0.0.1', () => {
  const address = server.address();
  process.stdout.write(`${typeof address === 'object' && address ? address.port : 0}\n`);
});
process.on('SIGTERM', () => process.exit(0));
