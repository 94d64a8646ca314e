/**
 * The benchmark's client side: one keep-alive undici agent for every target, requests that read a stream
 * to its end without parsing every chunk (so the client costs the same per chunk whoever sends it), and
 * the small statistics the tables need.
 */
import { Agent, request } from 'undici';

// llama-server closes idle keep-alive connections after 5 s; reusing one as it closes would fail a request.
const agent = new Agent({ connections: 256, keepAliveTimeout: 4000, keepAliveMaxTimeout: 4000, pipelining: 1 });

/** A chat-completions endpoint: a base URL (`http://127.0.0.1:PORT`) and the model name it serves. */
export interface Target {
  name: string;
  baseUrl: string;
  model: string;
}

/** What one request measured. */
export interface RequestTiming {
  /** Milliseconds from sending to the last byte. */
  totalMs: number;
  /** Milliseconds to the first non-empty content delta (streams only; else equal to totalMs). */
  firstTokenMs: number;
  /** `usage.completion_tokens` of the answer. */
  completionTokens: number;
}

/** Sends a chat completion (the body's `model` is the target's) and waits for all of the answer. */
export async function chat(target: Target, body: Record<string, unknown>): Promise<RequestTiming> {
  // Serialized before the clock starts: the client's own JSON work (12 ms for a 12 MP data URI) is not the server's.
  const text = JSON.stringify({ ...body, model: target.model });
  const started = performance.now();
  const send = () =>
    request(`${target.baseUrl}/v1/chat/completions`, {
      method: 'POST',
      dispatcher: agent,
      headers: { 'content-type': 'application/json' },
      body: text,
      headersTimeout: 0,
      bodyTimeout: 0,
    });
  // A kept-alive connection the server closed just as it was reused fails before any answer: send again.
  const response = await send().catch((error: unknown) => {
    if ((error as { code?: string }).code !== 'UND_ERR_SOCKET') throw error;
    return send();
  });
  if (response.statusCode !== 200) throw new Error(`${target.name}: HTTP ${response.statusCode} ${await response.body.text()}`);
  if (body['stream'] !== true) {
    const answer = (await response.body.json()) as { usage?: { completion_tokens?: number } };
    const totalMs = performance.now() - started;
    return { totalMs, firstTokenMs: totalMs, completionTokens: answer.usage?.completion_tokens ?? 0 };
  }
  let firstTokenMs = 0;
  // Only the last bytes are kept: the usage chunk is at the end; a first-token search needs a little overlap.
  let tail = '';
  for await (const part of response.body) {
    const bytes = part as Buffer;
    tail = (tail + bytes.subarray(Math.max(0, bytes.length - 1024)).toString('latin1')).slice(-1024);
    if (firstTokenMs === 0 && /"content":"[^"]/.test(tail)) firstTokenMs = performance.now() - started;
  }
  const totalMs = performance.now() - started;
  const tokens = /"completion_tokens":(\d+)/.exec(tail);
  return { totalMs, firstTokenMs: firstTokenMs || totalMs, completionTokens: Number(tokens?.[1] ?? 0) };
}

/** `clients` concurrent clients each sending `requestsPerClient` requests back to back: tokens per second. */
export async function aggregateTokensPerSecond(
  target: Target,
  body: Record<string, unknown>,
  clients: number,
  requestsPerClient: number,
): Promise<{ tokensPerSecond: number; tokens: number; seconds: number }> {
  const started = performance.now();
  const counts = await Promise.all(
    Array.from({ length: clients }, async () => {
      let tokens = 0;
      for (let index = 0; index < requestsPerClient; index += 1) tokens += (await chat(target, body)).completionTokens;
      return tokens;
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  const tokens = counts.reduce((sum, count) => sum + count, 0);
  return { tokensPerSecond: tokens / seconds, tokens, seconds };
}

/** The `p`th percentile (nearest rank) of `values`. */
export function percentile(values: readonly number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))] ?? Number.NaN;
}

/** The median of `values`. */
export function median(values: readonly number[]): number {
  return percentile(values, 50);
}

/** Closes the client's connections. */
export async function closeClients(): Promise<void> {
  await agent.close();
}
