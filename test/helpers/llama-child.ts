/**
 * Looking at the llama-server child of a running Iris from outside, as another local process would: its pid
 * and port (from Iris's "llama-server ready" log record), its command line and environment (from /proc), its
 * CPU time, and requests to it with the per-start API key Iris handed it in a file (readable by this user only).
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { request } from 'undici';
import { waitFor, type IrisProcess } from './test-env.js';

/** The running child of an Iris. */
export interface LlamaChild {
  pid: number;
  port: number;
  baseUrl: string;
}

/**
 * The child Iris most recently reported ready, or with `previousPid`, the first one reported after that
 * child. Log lines reach the pipe asynchronously, possibly after the HTTP answer that follows them, so this
 * waits for the record.
 */
export async function llamaChild(iris: IrisProcess, previousPid?: number): Promise<LlamaChild> {
  const latest = () => {
    const records = iris.logRecords('llama-server ready');
    const previous = previousPid === undefined ? -1 : records.findLastIndex((record) => Number(record['pid']) === previousPid);
    return records.slice(previous + 1).at(-1);
  };
  assert.ok(await waitFor(() => latest() !== undefined, 10_000), 'iris logged that llama-server is ready');
  const record = latest()!;
  const port = Number(record['port']);
  return { pid: Number(record['pid']), port, baseUrl: `http://127.0.0.1:${port}` };
}

/** The child's command line arguments. */
export function childArgs(child: LlamaChild): string[] {
  return readFileSync(`/proc/${child.pid}/cmdline`, 'utf8').split('\0').filter((arg) => arg.length > 0);
}

/** The child's environment as NAME=value strings. */
export function childEnvironment(child: LlamaChild): string[] {
  return readFileSync(`/proc/${child.pid}/environ`, 'utf8').split('\0').filter((entry) => entry.length > 0);
}

/** The path of the child's key file (its --api-key-file argument). */
export function childKeyFile(child: LlamaChild): string {
  const args = childArgs(child);
  const index = args.indexOf('--api-key-file');
  assert.ok(index >= 0 && args[index + 1], 'llama-server was started with --api-key-file');
  return args[index + 1]!;
}

/** A request to the child with its API key. */
export function fetchChild(child: LlamaChild, path: string, init: RequestInit = {}): Promise<Response> {
  const key = readFileSync(childKeyFile(child), 'utf8').trim();
  return fetch(`${child.baseUrl}${path}`, { ...init, headers: { ...(init.headers as Record<string, string>), authorization: `Bearer ${key}` } });
}

/**
 * Requests the child is processing now, from its Prometheus metrics (asked with its key). Each poll uses a
 * fresh connection: llama-server closes a keep-alive connection after 100 requests, and a poll that raced
 * that close would fail.
 */
export async function childRequestsProcessing(child: LlamaChild): Promise<number> {
  const key = readFileSync(childKeyFile(child), 'utf8').trim();
  const response = await request(`${child.baseUrl}/metrics`, { headers: { authorization: `Bearer ${key}` }, reset: true });
  const text = await response.body.text();
  const match = /^llamacpp:requests_processing\s+(\S+)$/m.exec(text);
  assert.ok(match, 'llama-server reports llamacpp:requests_processing');
  return Number(match[1]);
}
