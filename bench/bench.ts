/**
 * `npm run bench`: every figure of the performance goals in one table, Iris against the same work without
 * Iris, each measured in one run with the targets alternating (round by round, or request by request) so
 * that the shared machine's noise hits both alike. Prints the table with the machine's core count and writes
 * it as JSON to bench/results/<date>.json. Asserts nothing.
 *
 *   npm run bench -- [--full] [--only relay,latency,ttft,batching,images]
 *
 * Targets: llama-server started directly with the flags Iris gives it (same binary, model and bodies), and a
 * stand-in upstream (bench/stand-in-upstream.ts) that streams OpenAI chunks as fast as the socket takes
 * them, read directly or relayed by Iris as a remote engine: the gateway's own ceiling.
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { availableParallelism, cpus, loadavg, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { request } from 'undici';
import { imagePolicyFromMmproj } from '../src/images/image-policy.js';
import { normalizeImage } from '../src/images/normalize-image.js';
import { synthesizeModel } from '../src/synth/recipes.js';
import { dataUri, makeImage } from '../test/helpers/images.js';
import { REPO_ROOT } from '../test/helpers/test-env.js';
import { aggregateTokensPerSecond, chat, closeClients, median, percentile, type Target } from './clients.js';
import { cpuSeconds, startDirect, startIrisWith, startStandIn, type Started } from './targets.js';

const SECTIONS = ['relay', 'latency', 'ttft', 'batching', 'images'] as const;
type Section = (typeof SECTIONS)[number];

const { values } = parseArgs({ options: { full: { type: 'boolean', default: false }, only: { type: 'string' } } });
const full = values.full === true;
const only = new Set<Section>(values.only ? (values.only.split(',') as Section[]) : SECTIONS);
for (const section of only) if (!SECTIONS.includes(section)) throw new Error(`--only: unknown section '${section}' (${SECTIONS.join(', ')})`);

/** How much work each section does: the default keeps the whole run to a few minutes on 2 busy cores. */
const effort = {
  relayRounds: full ? 7 : 3,
  latencySamples: full ? 1000 : 200,
  ttftSamples: full ? 8 : 3,
  batchingRounds: full ? 3 : 1,
  imageCount: full ? 16 : 8,
};
const CONCURRENCIES = [1, 8, 64];
const TINY_CONTEXT = 16_384;
const TINY_SLOTS = 64;
const SMOLVLM_CONTEXT = 8192;

/** One line of the table. */
interface Row {
  section: Section;
  figure: string;
  iris: number;
  direct?: number;
  /** Iris / direct, or the figure's own ratio. */
  ratio?: number;
  unit: string;
  goal?: string;
  met?: boolean;
  /** Spread of the per-round ratios, where there are rounds. */
  noise?: string;
}
const rows: Row[] = [];

const workDir = await mkdtemp(join(tmpdir(), 'iris-bench-'));
const modelsDir = join(tmpdir(), 'iris-bench-models');
const started: Started[] = [];
const machine = {
  cores: availableParallelism(),
  cpu: cpus()[0]?.model ?? 'unknown',
  memoryGiB: Math.round(totalmem() / 2 ** 30),
  loadAverage: loadavg().map((load) => Number(load.toFixed(2))),
  node: process.version,
};
console.log(`machine: ${machine.cores} cores (${machine.cpu}), ${machine.memoryGiB} GiB, load ${machine.loadAverage.join(' ')}, node ${machine.node}`);

const tiny = await synthesizeModel({ out: join(modelsDir, 'tiny'), size: 'tiny', seed: 1 });
const needsSmolvlm = only.has('batching') || only.has('images') || only.has('ttft');
const smolvlmInIris = only.has('batching') || only.has('ttft');
const smolvlm = needsSmolvlm ? await synthesizeModel({ out: join(modelsDir, 'smolvlm'), size: 'smolvlm', seed: 1 }) : undefined;

const standIn = only.has('relay') ? await startStandIn() : undefined;
if (standIn) started.push(standIn);
const tinyDirect = await startDirect({ model: tiny.modelPath, mmproj: tiny.mmprojPath, context: TINY_CONTEXT, slots: TINY_SLOTS, threads: 0 });
started.push(tinyDirect);
// What Iris chooses by default for SmolVLM is read back from its llama-server's /props below.
const iris = await startIrisWith(
  {
    models: [
      { id: 'tiny', model: tiny.modelPath, mmproj: tiny.mmprojPath, context: TINY_CONTEXT, slots: TINY_SLOTS },
      ...(standIn ? [{ id: 'stand-in', upstream: { model: 'stand-in', endpoints: [{ url: `${standIn.baseUrl}/v1` }] }, slots: 64 }] : []),
      ...(smolvlm && smolvlmInIris ? [{ id: 'smolvlm', model: smolvlm.modelPath, mmproj: smolvlm.mmprojPath, context: SMOLVLM_CONTEXT }] : []),
    ],
    preload: ['tiny', ...(smolvlm && smolvlmInIris ? ['smolvlm'] : [])],
    keep_alive: -1,
    limits: { max_body_bytes: 200 * 2 ** 20 },
  },
  join(workDir, 'iris.yaml'),
);
const irisPid = iris.child.pid ?? 0;

const text = [{ role: 'user', content: 'Describe a sunny day at the beach.' }];
const streamBody = (maxTokens: number) => ({ messages: text, max_tokens: maxTokens, ignore_eos: true, temperature: 0, seed: 1, stream: true, stream_options: { include_usage: true } });

/** Runs `measure` for Iris and direct alternately `rounds` times (flipping who goes first each round). */
async function alternate<T>(rounds: number, measure: (who: 'iris' | 'direct') => Promise<T>): Promise<{ iris: T[]; direct: T[] }> {
  const results = { iris: [] as T[], direct: [] as T[] };
  for (let round = 0; round < rounds; round += 1) {
    const order: ('iris' | 'direct')[] = round % 2 === 0 ? ['iris', 'direct'] : ['direct', 'iris'];
    for (const who of order) results[who].push(await measure(who));
  }
  return results;
}

function spread(values: number[]): string {
  return `${Math.min(...values).toFixed(3)}-${Math.max(...values).toFixed(3)}`;
}

async function relay(): Promise<void> {
  const pairs: [string, Target, Target, number][] = [
    ['llama-server tiny', { name: 'iris', baseUrl: iris.baseUrl, model: 'tiny' }, { name: 'direct', baseUrl: tinyDirect.baseUrl, model: 'tiny' }, 128],
  ];
  if (standIn) {
    pairs.push(['stand-in upstream', { name: 'iris', baseUrl: iris.baseUrl, model: 'stand-in' }, { name: 'direct', baseUrl: standIn.baseUrl, model: 'stand-in' }, 1024]);
  }
  for (const [label, irisTarget, directTarget, maxTokens] of pairs) {
    for (const clients of CONCURRENCIES) {
      const requestsPerClient = Math.max(1, Math.round(32 / clients));
      const body = streamBody(maxTokens);
      await aggregateTokensPerSecond(irisTarget, body, clients, 1);
      await aggregateTokensPerSecond(directTarget, body, clients, 1);
      let irisCpu = 0;
      const runs = await alternate(effort.relayRounds, async (who) => {
        if (who === 'direct') return aggregateTokensPerSecond(directTarget, body, clients, requestsPerClient);
        const cpuBefore = await cpuSeconds(irisPid);
        const result = await aggregateTokensPerSecond(irisTarget, body, clients, requestsPerClient);
        irisCpu += (await cpuSeconds(irisPid)) - cpuBefore;
        return result;
      });
      const rate = (list: { tokens: number; seconds: number }[]) => list.reduce((sum, run) => sum + run.tokens, 0) / list.reduce((sum, run) => sum + run.seconds, 0);
      const irisRate = rate(runs.iris);
      const directRate = rate(runs.direct);
      const ratio = irisRate / directRate;
      rows.push({
        section: 'relay',
        figure: `relay ${label}, ${clients} stream${clients > 1 ? 's' : ''}`,
        iris: irisRate,
        direct: directRate,
        ratio,
        unit: 'tokens/s',
        goal: '>= 0.98',
        met: ratio >= 0.98,
        noise: spread(runs.iris.map((run, index) => run.tokensPerSecond / (runs.direct[index]?.tokensPerSecond ?? Number.NaN))),
      });
      printRow(rows.at(-1)!);
      if (label.startsWith('stand-in')) {
        // Every token is one chunk here; chunks per CPU-second of the Iris process is its ceiling per core.
        const irisTokens = runs.iris.reduce((sum, run) => sum + run.tokens, 0);
        rows.push({ section: 'relay', figure: `relay ceiling, ${clients} stream${clients > 1 ? 's' : ''}: chunks per Iris CPU-second`, iris: irisTokens / irisCpu, unit: 'chunks/s/core' });
        printRow(rows.at(-1)!);
      }
    }
  }
}

async function latency(): Promise<void> {
  const irisTarget: Target = { name: 'iris', baseUrl: iris.baseUrl, model: 'tiny' };
  const directTarget: Target = { name: 'direct', baseUrl: tinyDirect.baseUrl, model: 'tiny' };
  // A small image at the model's own size: Iris sends the same pixels direct gets, so only its overhead differs.
  const image = dataUri(await makeImage({ width: 32, height: 32, seed: 3 }));
  const bodies: [string, Record<string, unknown>][] = [
    ['text', { messages: text, max_tokens: 1, temperature: 0, seed: 1 }],
    ['small image', { messages: [{ role: 'user', content: [{ type: 'text', text: 'What is this?' }, { type: 'image_url', image_url: { url: image } }] }], max_tokens: 1, temperature: 0, seed: 1 }],
  ];
  for (const [label, body] of bodies) {
    for (let index = 0; index < 10; index += 1) {
      await chat(irisTarget, body);
      await chat(directTarget, body);
    }
    const runs = await alternate(effort.latencySamples, async (who) => (await chat(who === 'iris' ? irisTarget : directTarget, body)).totalMs);
    for (const [p, goal] of [[50, 1], [99, 3]] as const) {
      const irisMs = percentile(runs.iris, p);
      const directMs = percentile(runs.direct, p);
      rows.push({
        section: 'latency',
        figure: `one-token answer, ${label}: p${p} latency (ratio: Iris - direct, ms)`,
        iris: irisMs,
        direct: directMs,
        ratio: irisMs - directMs,
        unit: 'ms',
        goal: `<= +${goal} ms`,
        met: irisMs - directMs <= goal,
      });
      printRow(rows.at(-1)!);
    }
  }
}

/** A 12 MP JPEG (4000 x 3000) that no earlier request has sent. */
let jpegSeed = 100;
async function freshLargeJpeg(): Promise<string> {
  jpegSeed += 1;
  return dataUri(await makeImage({ width: 4000, height: 3000, format: 'jpeg', seed: jpegSeed }), 'image/jpeg');
}

function imageBody(uri: string, stream: boolean, detail: 'auto' | 'low' = 'auto'): Record<string, unknown> {
  return {
    messages: [{ role: 'user', content: [{ type: 'text', text: 'What is in this photo?' }, { type: 'image_url', image_url: { url: uri, detail } }] }],
    max_tokens: 1,
    temperature: 0,
    seed: 1,
    stream,
  };
}

async function ttft(): Promise<void> {
  const targets: Record<'iris' | 'direct', Target> = {
    iris: { name: 'iris', baseUrl: iris.baseUrl, model: 'tiny' },
    direct: { name: 'direct', baseUrl: tinyDirect.baseUrl, model: 'tiny' },
  };
  await chat(targets.iris, imageBody(await freshLargeJpeg(), true));
  await chat(targets.direct, imageBody(await freshLargeJpeg(), true));
  const runs = await alternate(effort.ttftSamples, async (who) => {
    const body = imageBody(await freshLargeJpeg(), true);
    const first = (await chat(targets[who], body)).firstTokenMs;
    const repeat = (await chat(targets[who], body)).firstTokenMs;
    return { first, repeat };
  });
  const firstIris = median(runs.iris.map((run) => run.first));
  const firstDirect = median(runs.direct.map((run) => run.first));
  const repeatIris = median(runs.iris.map((run) => run.repeat));
  const repeatDirect = median(runs.direct.map((run) => run.repeat));
  rows.push({ section: 'ttft', figure: '12 MP JPEG, first time: time to first token', iris: firstIris, direct: firstDirect, ratio: firstIris / firstDirect, unit: 'ms' });
  printRow(rows.at(-1)!);
  rows.push({ section: 'ttft', figure: '12 MP JPEG, repeated: time to first token', iris: repeatIris, direct: repeatDirect, ratio: repeatIris / repeatDirect, unit: 'ms' });
  printRow(rows.at(-1)!);
  const ratio = repeatIris / firstIris;
  rows.push({
    section: 'ttft',
    figure: 'repeated image TTFT / first (ratio column; direct: its own)',
    iris: ratio,
    direct: repeatDirect / firstDirect,
    ratio,
    unit: 'x',
    goal: '<= 0.3',
    met: ratio <= 0.3,
    noise: spread(runs.iris.map((run) => run.repeat / run.first)),
  });
  printRow(rows.at(-1)!);

  // With real image work: the SmolVLM-sized model encodes the image with its projector (one 512 px tile at
  // detail low), which a repeat skips altogether when llama-server's prompt cache holds the same bytes.
  if (!smolvlm) return;
  const smol: Target = { name: 'iris', baseUrl: iris.baseUrl, model: 'smolvlm' };
  const smolRuns: { first: number; repeat: number }[] = [];
  for (let sample = 0; sample < effort.ttftSamples; sample += 1) {
    const body = imageBody(await freshLargeJpeg(), true, 'low');
    const first = (await chat(smol, body)).firstTokenMs;
    const repeat = (await chat(smol, body)).firstTokenMs;
    smolRuns.push({ first, repeat });
  }
  const smolFirst = median(smolRuns.map((run) => run.first));
  const smolRepeat = median(smolRuns.map((run) => run.repeat));
  rows.push({
    section: 'ttft',
    figure: 'SmolVLM-sized, 12 MP JPEG at detail low: repeated / first TTFT (Iris ms: first; direct column: repeated)',
    iris: smolFirst,
    direct: smolRepeat,
    ratio: smolRepeat / smolFirst,
    unit: 'ms',
    goal: '<= 0.3',
    met: smolRepeat / smolFirst <= 0.3,
    noise: spread(smolRuns.map((run) => run.repeat / run.first)),
  });
  printRow(rows.at(-1)!);
}

async function batching(): Promise<void> {
  if (!smolvlm) return;
  const irisTarget: Target = { name: 'iris', baseUrl: iris.baseUrl, model: 'smolvlm' };
  const body = streamBody(16);
  await aggregateTokensPerSecond(irisTarget, body, 1, 1);
  // The direct llama-server gets exactly the slots and threads Iris chose for the model.
  const props = await irisChildProps();
  const direct = await startDirect({ model: smolvlm.modelPath, mmproj: smolvlm.mmprojPath, context: SMOLVLM_CONTEXT, slots: props.slots, threads: props.threads });
  started.push(direct);
  const directTarget: Target = { name: 'direct', baseUrl: direct.baseUrl, model: 'smolvlm' };
  await aggregateTokensPerSecond(directTarget, body, 1, 1);
  const rates: Record<number, { iris: number; direct: number }> = {};
  for (const clients of [1, 8]) {
    const requestsPerClient = clients === 1 ? 2 : 1;
    const runs = await alternate(effort.batchingRounds, async (who) =>
      aggregateTokensPerSecond(who === 'iris' ? irisTarget : directTarget, body, clients, requestsPerClient),
    );
    const rate = (list: { tokens: number; seconds: number }[]) => list.reduce((sum, run) => sum + run.tokens, 0) / list.reduce((sum, run) => sum + run.seconds, 0);
    rates[clients] = { iris: rate(runs.iris), direct: rate(runs.direct) };
    rows.push({
      section: 'batching',
      figure: `SmolVLM-sized, ${clients} client${clients > 1 ? 's' : ''} (${props.slots} slots, ${props.threads || 'auto'} threads)`,
      iris: rates[clients].iris,
      direct: rates[clients].direct,
      ratio: rates[clients].iris / rates[clients].direct,
      unit: 'tokens/s',
    });
    printRow(rows.at(-1)!);
  }
  const scaling = rates[8]!.iris / rates[1]!.iris;
  rows.push({ section: 'batching', figure: 'batching: 8 clients / 1 client (ratio column: Iris)', iris: scaling, direct: rates[8]!.direct / rates[1]!.direct, ratio: scaling, unit: 'x', goal: '>= 3', met: scaling >= 3 });
  printRow(rows.at(-1)!);
}

/** The slots and threads of the SmolVLM llama-server Iris started, from the model list and its process. */
async function irisChildProps(): Promise<{ slots: number; threads: number }> {
  const { readFile, readdir } = await import('node:fs/promises');
  for (const pid of await readdir('/proc').catch(() => [] as string[])) {
    if (!/^\d+$/.test(pid)) continue;
    const args = (await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')).split('\0');
    if (!args.includes(smolvlm!.modelPath) || !args.includes('--alias')) continue;
    const flag = (name: string) => Number(args[args.indexOf(name) + 1] ?? 0);
    return { slots: flag('--parallel'), threads: args.includes('--threads') ? flag('--threads') : 0 };
  }
  throw new Error("could not find Iris's SmolVLM llama-server");
}

async function images(): Promise<void> {
  if (!smolvlm) return;
  // In process: the normalization itself, at SmolVLM's policy (2048 px longest edge, PNG out).
  const policy = await imagePolicyFromMmproj(smolvlm.mmprojPath);
  const jpegs = await Promise.all(
    Array.from({ length: 4 }, (_, index) => makeImage({ width: 4000, height: 3000, format: 'jpeg', seed: 40 + index })),
  );
  const normalize = (index: number) => normalizeImage(jpegs[index % jpegs.length]!, policy, 'auto', { maxPixels: 50_000_000 }, 'image');
  await normalize(0);
  let cpuBefore = process.cpuUsage();
  let wallBefore = performance.now();
  for (let index = 0; index < effort.imageCount; index += 1) await normalize(index);
  let cpu = process.cpuUsage(cpuBefore);
  const sequentialPerCore = effort.imageCount / ((cpu.user + cpu.system) / 1e6);
  const sequentialWall = effort.imageCount / ((performance.now() - wallBefore) / 1000);
  rows.push({ section: 'images', figure: '12 MP JPEG -> 2048 px PNG, one at a time: per CPU-second (ratio: per wall-second)', iris: sequentialPerCore, ratio: sequentialWall, unit: 'images/s/core' });
  printRow(rows.at(-1)!);
  const loop = monitorEventLoopDelay({ resolution: 1 });
  cpuBefore = process.cpuUsage();
  wallBefore = performance.now();
  loop.enable();
  await Promise.all(Array.from({ length: 8 }, (_, index) => normalize(index)));
  loop.disable();
  cpu = process.cpuUsage(cpuBefore);
  rows.push({ section: 'images', figure: '8 at once: per CPU-second (ratio: per wall-second)', iris: 8 / ((cpu.user + cpu.system) / 1e6), ratio: 8 / ((performance.now() - wallBefore) / 1000), unit: 'images/s/core' });
  printRow(rows.at(-1)!);
  rows.push({ section: 'images', figure: '8 at once, in process: event-loop delay max (ratio: p99)', iris: loop.max / 1e6, ratio: loop.percentile(99) / 1e6, unit: 'ms' });
  printRow(rows.at(-1)!);

  // Through Iris: how long a /health request waits while 8 requests with fresh 12 MP JPEGs are handled.
  const probe = async (): Promise<number> => {
    const begin = performance.now();
    const response = await request(`${iris.baseUrl}/health`);
    await response.body.text();
    return performance.now() - begin;
  };
  const idle: number[] = [];
  for (let index = 0; index < 200; index += 1) idle.push(await probe());
  const bodies = await Promise.all(Array.from({ length: 8 }, async () => imageBody(await freshLargeJpeg(), false)));
  const target: Target = { name: 'iris', baseUrl: iris.baseUrl, model: 'tiny' };
  // Iris's own event-loop delay over the burst: prom-client's histogram is reset by every scrape.
  const loopDelay = async (): Promise<{ max: number; p99: number }> => {
    const text = await (await request(`${iris.baseUrl}/metrics`)).body.text();
    const value = (name: string) => Number(new RegExp(`^${name} ([0-9.e+-]+)$`, 'm').exec(text)?.[1] ?? Number.NaN) * 1000;
    return { max: value('nodejs_eventloop_lag_max_seconds'), p99: value('nodejs_eventloop_lag_p99_seconds') };
  };
  await loopDelay();
  const busy: number[] = [];
  let running = true;
  const load = Promise.all(bodies.map((body) => chat(target, body))).finally(() => {
    running = false;
  });
  while (running) busy.push(await probe());
  await load;
  const irisLoop = await loopDelay();
  rows.push({
    section: 'images',
    figure: `Iris /health while 8 12 MP requests run: p99 ms (direct column: idle p99; ratio: max ms), ${busy.length} probes`,
    iris: percentile(busy, 99),
    direct: percentile(idle, 99),
    ratio: Math.max(...busy),
    unit: 'ms',
  });
  printRow(rows.at(-1)!);
  rows.push({ section: 'images', figure: "Iris's own event-loop delay over those 8 requests: max ms (ratio: p99 ms)", iris: irisLoop.max, ratio: irisLoop.p99, unit: 'ms' });
  printRow(rows.at(-1)!);
}

function format(value: number | undefined): string {
  if (value === undefined) return '';
  if (!Number.isFinite(value)) return String(value);
  const magnitude = Math.abs(value);
  return magnitude >= 100 ? value.toFixed(0) : magnitude >= 10 ? value.toFixed(1) : magnitude >= 1 ? value.toFixed(2) : value.toFixed(3);
}

function printRow(row: Row): void {
  console.log(`  ${row.figure}: iris ${format(row.iris)}${row.direct === undefined ? '' : `, direct ${format(row.direct)}`} ${row.unit}${row.ratio === undefined ? '' : `, ratio ${format(row.ratio)}`}${row.noise ? ` (rounds ${row.noise})` : ''}`);
}

function table(): string {
  const header = ['Figure', 'Iris', 'Direct', 'Ratio', 'Unit', 'Goal', 'Met', 'Round spread'];
  const lines = rows.map((row) => [row.figure, format(row.iris), format(row.direct), format(row.ratio), row.unit, row.goal ?? '', row.met === undefined ? '' : row.met ? 'yes' : 'no', row.noise ?? '']);
  return [header, header.map(() => '---'), ...lines].map((cells) => `| ${cells.join(' | ')} |`).join('\n');
}

async function cleanUp(): Promise<void> {
  await iris.stop();
  for (const child of started.reverse()) await child.stop();
  await closeClients();
  await rm(workDir, { recursive: true, force: true });
}
// An interrupted run stops its servers too (Iris's own llama-servers die with Iris).
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => void cleanUp().finally(() => process.exit(130)));
}

const sections: Record<Section, () => Promise<void>> = { relay, latency, ttft, batching, images };
const begin = performance.now();
try {
  const resultsDir = join(REPO_ROOT, 'bench/results');
  await mkdir(resultsDir, { recursive: true });
  const file = join(resultsDir, `${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
  for (const section of SECTIONS) {
    if (!only.has(section)) continue;
    console.log(`${section}:`);
    await sections[section]();
    // Written after every section, so that an interrupted run keeps what it measured.
    const seconds = (performance.now() - begin) / 1000;
    const finished = { date: new Date().toISOString(), machine, loadAverageNow: loadavg().map((load) => Number(load.toFixed(2))), full, seconds, effort, rows };
    await writeFile(file, `${JSON.stringify(finished, null, 2)}\n`);
  }
  const seconds = (performance.now() - begin) / 1000;
  console.log(`\n${machine.cores} cores, ${machine.cpu}, load ${machine.loadAverage.join(' ')} at the start and ${loadavg().map((load) => load.toFixed(2)).join(' ')} at the end, ${full ? 'full' : 'default'} run, ${seconds.toFixed(0)} s\n`);
  console.log(table());
  console.log(`\nwritten to ${file}`);
} finally {
  await cleanUp();
}
