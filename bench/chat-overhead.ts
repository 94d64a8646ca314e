/**
 * Iris vs llama-server direct, in one process run: the same synthetic model, the same llama-server binary
 * and the same request bodies (text + one PNG image as a data URI), alternating between the two targets so
 * that machine noise hits both alike. Prints latencies and the ratio Iris / direct; asserts nothing.
 *
 *   npm run bench -- [--size tiny|tiny-tiling|smolvlm] [--requests 30] [--concurrency 4] [--max-tokens 16]
 */
import { spawn } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import { freeLoopbackPort } from '../src/engines/llama-runner/llama-server-process.js';
import { synthesizeModel, type SynthSize } from '../src/synth/recipes.js';
import { dataUri, makeImage } from '../test/helpers/images.js';
import { llamaServerBinary, startIris } from '../test/helpers/test-env.js';

const { values } = parseArgs({
  options: {
    size: { type: 'string', default: 'tiny' },
    requests: { type: 'string', default: '30' },
    concurrency: { type: 'string', default: '4' },
    'max-tokens': { type: 'string', default: '16' },
  },
});
const size = values.size as SynthSize;
const requests = Number(values.requests);
const concurrency = Number(values.concurrency);
const maxTokens = Number(values['max-tokens']);

const model = await synthesizeModel({ out: join(tmpdir(), 'iris-bench-models', size), size, seed: 1 });
const binary = await llamaServerBinary();
const context = 8192;
const slots = concurrency;

// llama-server direct, with the flags Iris gives it.
const directPort = await freeLoopbackPort();
const direct = spawn(binary, ['--model', model.modelPath, '--mmproj', model.mmprojPath, '--host', '127.0.0.1', '--port', String(directPort), '--ctx-size', String(context), '--parallel', String(slots), '--no-webui', '--jinja'], { stdio: 'ignore' });
const directUrl = `http://127.0.0.1:${directPort}`;
for (let i = 0; i < 600 && !(await fetch(`${directUrl}/health`).then((r) => r.ok, () => false)); i += 1) await sleep(100);

const iris = await startIris({ args: ['--model', model.modelPath, '--mmproj', model.mmprojPath, '--model-id', 'bench', '--ctx-size', String(context), '--slots', String(slots)], env: { IRIS_LOG_LEVEL: 'warn' } });

const image = dataUri(await makeImage({ width: 320, height: 240 }));
const body = (stream: boolean) =>
  JSON.stringify({
    model: 'bench',
    messages: [{ role: 'user', content: [{ type: 'text', text: 'Describe the image.' }, { type: 'image_url', image_url: { url: image } }] }],
    max_tokens: maxTokens,
    ignore_eos: true,
    temperature: 0,
    seed: 1,
    stream,
    ...(stream ? { stream_options: { include_usage: true } } : {}),
  });

/** One request; returns total and first-token milliseconds. */
async function once(baseUrl: string, stream: boolean): Promise<{ total: number; first: number }> {
  const started = performance.now();
  const response = await fetch(`${baseUrl}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: body(stream) });
  if (!response.ok) throw new Error(`${baseUrl}: ${response.status} ${await response.text()}`);
  let first = 0;
  if (stream) {
    const reader = response.body!.getReader();
    let text = '';
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      text += Buffer.from(value).toString('utf8');
      if (first === 0 && /"content":"[^"]/.test(text)) first = performance.now() - started;
    }
  } else {
    await response.json();
  }
  const total = performance.now() - started;
  return { total, first: first || total };
}

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? 0;
}

async function sequential(stream: boolean): Promise<void> {
  const times = { iris: [] as number[], direct: [] as number[], irisFirst: [] as number[], directFirst: [] as number[] };
  await once(iris.baseUrl, stream);
  await once(directUrl, stream);
  for (let i = 0; i < requests; i += 1) {
    const a = await once(iris.baseUrl, stream);
    const b = await once(directUrl, stream);
    times.iris.push(a.total);
    times.irisFirst.push(a.first);
    times.direct.push(b.total);
    times.directFirst.push(b.first);
  }
  const label = stream ? 'stream' : 'non-stream';
  const p50i = percentile(times.iris, 50);
  const p50d = percentile(times.direct, 50);
  console.log(`${label.padEnd(11)} p50 iris ${p50i.toFixed(1)} ms, direct ${p50d.toFixed(1)} ms, ratio ${(p50i / p50d).toFixed(3)}; p90 ratio ${(percentile(times.iris, 90) / percentile(times.direct, 90)).toFixed(3)}`);
  if (stream) {
    const fi = percentile(times.irisFirst, 50);
    const fd = percentile(times.directFirst, 50);
    console.log(`${'first token'.padEnd(11)} p50 iris ${fi.toFixed(1)} ms, direct ${fd.toFixed(1)} ms, ratio ${(fi / fd).toFixed(3)}`);
  }
}

async function throughput(baseUrl: string): Promise<number> {
  let next = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < requests) {
        next += 1;
        await once(baseUrl, false);
      }
    }),
  );
  return (requests / (performance.now() - started)) * 1000;
}

try {
  console.log(`model ${size} (${model.imageTokensPerImage} image tokens), ${requests} requests, ${maxTokens} tokens each, 320x240 PNG`);
  await sequential(false);
  await sequential(true);
  const irisRps = await throughput(iris.baseUrl);
  const directRps = await throughput(directUrl);
  console.log(`concurrency ${concurrency}: iris ${irisRps.toFixed(2)} req/s, direct ${directRps.toFixed(2)} req/s, ratio ${(irisRps / directRps).toFixed(3)}`);
} finally {
  direct.kill('SIGTERM');
  await iris.stop();
}
