/**
 * Soak: the load mix of the hardening audit against one Iris (tiny synthetic model, loopback only), for a
 * bounded time. Well-behaved clients (streamed and plain completions with a valid key) run beside hostile
 * ones: wrong keys with bodies that never finish, slow bodies, 50k-message requests, lone surrogates, huge
 * and bogus model ids, large bodies. Prints the status counts per kind of client and the resident memory of
 * Iris and its children at the start, at the peak and at the end; asserts nothing.
 *
 *   npm run soak -- [--seconds 60] [--clients 16]
 */
import { readFileSync, readdirSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import { freeLoopbackPort } from '../src/engines/llama-runner/llama-server-process.js';
import { synthesizeModel } from '../src/synth/recipes.js';
import { startIris } from '../test/helpers/test-env.js';

const { values } = parseArgs({ options: { seconds: { type: 'string', default: '60' }, clients: { type: 'string', default: '16' } } });
const seconds = Number(values.seconds);
const clients = Number(values.clients);
const KEY = 'soak-key';

const model = await synthesizeModel({ out: join(tmpdir(), 'iris-bench-models', 'tiny'), size: 'tiny', seed: 1 });
const dir = await mkdtemp(join(tmpdir(), 'iris-soak-'));
await writeFile(join(dir, 'keys'), `${KEY}\n`);
const iris = await startIris({
  args: ['--model', model.modelPath, '--mmproj', model.mmprojPath, '--model-id', 'tiny', '--ctx-size', '4096', '--slots', '4', '--api-key-file', join(dir, 'keys')],
  // The hub is a closed port: bogus catalog ids must be answered without it.
  env: { IRIS_LOG_LEVEL: 'warn', HF_ENDPOINT: `http://127.0.0.1:${await freeLoopbackPort()}` },
});
const irisPid = iris.child.pid!;

/** Resident bytes of a process (0 once it is gone). */
function rss(pid: number): number {
  try {
    const match = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return match ? Number(match[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

/** Pids of a process's descendants. */
function descendants(pid: number): number[] {
  const found: number[] = [];
  for (const task of safeReaddir(`/proc/${pid}/task`)) {
    let children: string;
    try {
      children = readFileSync(`/proc/${pid}/task/${task}/children`, 'utf8');
    } catch {
      continue;
    }
    for (const child of children.split(' ').filter(Boolean).map(Number)) found.push(child, ...descendants(child));
  }
  return found;
}

function safeReaddir(path: string): string[] {
  try {
    return readdirSync(path);
  } catch {
    return [];
  }
}

interface Sample {
  iris: number;
  children: number;
}
const sample = (): Sample => ({ iris: rss(irisPid), children: descendants(irisPid).reduce((sum, pid) => sum + rss(pid), 0) });
const start = sample();
let peak = start;

const counts = new Map<string, Map<string, number>>();
const count = (kind: string, outcome: string | number): void => {
  const byOutcome = counts.get(kind) ?? new Map<string, number>();
  byOutcome.set(String(outcome), (byOutcome.get(String(outcome)) ?? 0) + 1);
  counts.set(kind, byOutcome);
};

const deadline = Date.now() + seconds * 1000;
const post = async (body: string, key = KEY, signal?: AbortSignal): Promise<Response> =>
  fetch(`${iris.baseUrl}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
    body,
    ...(signal ? { signal } : {}),
  });

/** A raw connection that sends headers and part of a body, then waits until the server ends it. */
function unfinishedBody(key: string): Promise<string> {
  return new Promise((resolve) => {
    const socket = connect(iris.port, '127.0.0.1');
    let received = '';
    socket.setEncoding('latin1');
    socket.on('data', (data: string) => (received += data));
    socket.on('error', () => undefined);
    socket.on('close', () => resolve(/^HTTP\/1\.1 (\d{3})/.exec(received)?.[1] ?? 'closed'));
    socket.once('connect', () => {
      socket.write(
        `POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nAuthorization: Bearer ${key}\r\nContent-Length: 1000000\r\n\r\n{"model":`,
      );
    });
    // Bounded: the server's body deadline ends it, or the soak's own end does.
    setTimeout(() => socket.destroy(), Math.max(1000, deadline - Date.now())).unref();
  });
}

const simple = (text: string, extra: Record<string, unknown> = {}) =>
  JSON.stringify({ model: 'tiny', messages: [{ role: 'user', content: text }], max_tokens: 16, ...extra });

/** The load mix: each kind of client, by weight. */
const mix: [string, number, () => Promise<string | number>][] = [
  ['chat', 6, async () => (await post(simple('Tell me about the sea.'))).status],
  [
    'chat-stream',
    4,
    async () => {
      const response = await post(simple('Tell me a story.', { stream: true }));
      await response.text();
      return response.status;
    },
  ],
  ['wrong-key-unfinished-body', 3, () => unfinishedBody('wrong')],
  ['slow-body', 1, () => unfinishedBody(KEY)],
  ['50k-messages', 1, async () => (await post(JSON.stringify({ model: 'tiny', messages: Array.from({ length: 50_000 }, () => ({ role: 'user', content: 'hi' })) }))).status],
  ['lone-surrogate', 1, async () => (await post(`{"model":"tiny","messages":[{"role":"user","content":"t\\ud800t"}]}`)).status],
  ['1mb-model-id', 1, async () => (await post(JSON.stringify({ model: 'm'.repeat(1_000_000), messages: [{ role: 'user', content: 'hi' }] }))).status],
  ['bogus-catalog-id', 2, async () => (await post(simple('hi', { model: `smolvlm-256m:Q${Math.floor(Math.random() * 1e6)}` }))).status],
  ['8mb-body', 1, async () => (await post(simple('x'.repeat(8_000_000)))).status],
  [
    'cancelled-stream',
    1,
    async () => {
      const controller = new AbortController();
      const response = await post(simple('A long answer please.', { stream: true, max_tokens: 2000, ignore_eos: true }), KEY, controller.signal);
      const reader = response.body!.getReader();
      await reader.read();
      controller.abort();
      return response.status;
    },
  ],
];
const totalWeight = mix.reduce((sum, [, weight]) => sum + weight, 0);
const pick = () => {
  let roll = Math.random() * totalWeight;
  for (const entry of mix) if ((roll -= entry[1]) < 0) return entry;
  return mix[0]!;
};

const sampler = setInterval(() => {
  const now = sample();
  if (now.iris + now.children > peak.iris + peak.children) peak = now;
}, 500);
await Promise.all(
  Array.from({ length: clients }, async () => {
    while (Date.now() < deadline) {
      const [kind, , run] = pick();
      try {
        count(kind, await run());
      } catch (error) {
        count(kind, (error as Error).name);
      }
    }
  }),
);
clearInterval(sampler);
await sleep(2000);
const end = sample();
await iris.stop();
await rm(dir, { recursive: true, force: true });

const mib = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(0)} MiB`;
process.stdout.write(`soak: ${seconds} s, ${clients} clients, loopback only\n\nstatus counts:\n`);
for (const [kind, byOutcome] of [...counts].sort()) {
  process.stdout.write(`  ${kind.padEnd(28)} ${[...byOutcome].sort().map(([outcome, n]) => `${outcome}: ${n}`).join(', ')}\n`);
}
process.stdout.write('\nresident memory        iris     children\n');
for (const [label, value] of [['start', start], ['peak', peak], ['end', end]] as const) {
  process.stdout.write(`  ${label.padEnd(18)} ${mib(value.iris).padStart(9)} ${mib(value.children).padStart(12)}\n`);
}
