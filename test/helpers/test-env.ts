/**
 * Shared setup for integration tests: the real llama-server binary (built once per machine into the
 * cache, with progress on stderr, or taken from IRIS_TEST_LLAMA_SERVER), synthetic models written by our
 * own `synth` code into a per-machine temp folder, and Iris started as a real child process through its CLI.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { promisify } from 'node:util';
import { existsSync } from 'node:fs';
import { mkdtemp, rename, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { defaultCacheDir } from '../../src/config/load-config.js';
import { ensureLlamaServer } from '../../src/engines/llama-runner/build-llama-server.js';
import { freeLoopbackPort } from '../../src/engines/llama-runner/llama-server-process.js';
import { createLogger } from '../../src/logger.js';
import { synthesizeModel, type SynthResult, type SynthSize } from '../../src/synth/recipes.js';
import { recordRequestBodies } from './record-request-bodies.js';

const execFileAsync = promisify(execFile);

/** The repository root. */
export const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url));

/** Origins of the Iris processes this test process started. */
const irisOrigins = new Set<string>();

// Every chat request body a test sends to Iris (not to a bare llama-server) is kept for the OpenAPI
// conformance check (test/conformance).
recordRequestBodies(REPO_ROOT, (url) => irisOrigins.has(url.origin));

let binary: Promise<string> | undefined;

/** A llama-server binary: IRIS_TEST_LLAMA_SERVER, or ours from the cache (built on first use). */
export function llamaServerBinary(): Promise<string> {
  binary ??= (async () => {
    const fromEnv = process.env['IRIS_TEST_LLAMA_SERVER'];
    if (fromEnv) return fromEnv;
    return ensureLlamaServer({ cacheDir: defaultCacheDir(process.env), logger: createLogger('info') });
  })();
  return binary;
}

const models = new Map<string, Promise<SynthResult>>();

/** A synthetic model pair, written once per machine and seed (synthesis is deterministic). */
export function syntheticModel(size: SynthSize = 'tiny', seed = 1): Promise<SynthResult> {
  const key = `${size}-${seed}`;
  let model = models.get(key);
  if (!model) {
    model = synthesizeModel({ out: join(tmpdir(), 'iris-test-models', key), size, seed });
    models.set(key, model);
  }
  return model;
}

/**
 * A synthetic model carrying one of the real chat templates shipped in the pinned llama.cpp source
 * (`models/templates/<name>.jinja`), with `extraTokens` (such as the template's tool-call marker) as single
 * tokens of its vocabulary. Written once per machine.
 */
export function templatedModel(name: string, extraTokens: readonly string[]): Promise<SynthResult> {
  const key = `template-${name}-${extraTokens.join('|')}`;
  let model = models.get(key);
  if (!model) {
    model = (async () => {
      const chatTemplate = await readLlamaCppFile(`models/templates/${name}.jinja`);
      const out = join(tmpdir(), 'iris-test-models', `template-${name}`);
      return synthesizeModel({ out, size: 'tiny', seed: 1, chatTemplate, extraTokens });
    })();
    models.set(key, model);
  }
  return model;
}

let llamaCppSource: Promise<string> | undefined;

/** A file of the llama.cpp source pinned inside node-llama-cpp (its git bundle, cloned once per machine). */
async function readLlamaCppFile(path: string): Promise<string> {
  llamaCppSource ??= (async () => {
    const bundle = join(REPO_ROOT, 'node_modules/node-llama-cpp/llama/gitRelease.bundle');
    const { stdout: heads } = await execFileAsync('git', ['bundle', 'list-heads', bundle]);
    const commit = heads.trim().split(/\s+/)[0] ?? 'unknown';
    const clone = join(tmpdir(), `iris-test-llama-cpp-${commit.slice(0, 12)}.git`);
    if (!existsSync(clone)) {
      const partial = `${clone}.tmp-${process.pid}`;
      await execFileAsync('git', ['clone', '--quiet', '--bare', bundle, partial]);
      await rename(partial, clone).catch(() => rm(partial, { recursive: true, force: true }));
    }
    return clone;
  })();
  const { stdout } = await execFileAsync('git', ['--git-dir', await llamaCppSource, 'show', `HEAD:${path}`], { maxBuffer: 16 * 1024 * 1024 });
  return stdout;
}

/** A running Iris child process. */
export interface IrisProcess {
  baseUrl: string;
  port: number;
  child: ChildProcess;
  /** Every log line Iris wrote (JSON lines from pino), for assertions on what it did. */
  logs: string[];
  /** Parsed log records matching a message fragment. */
  logRecords(fragment: string): Record<string, unknown>[];
  /** Stops Iris with SIGTERM and waits for it to exit. */
  stop(): Promise<void>;
}

/** Options of {@link startIris}. */
export interface StartIrisOptions {
  /** Arguments after `serve`; --port, --llama-server and --log-level are added. */
  args: string[];
  env?: NodeJS.ProcessEnv;
  /** Wait for /ready (all models healthy) rather than only /health. @default true */
  waitReady?: boolean;
}

/** Starts `iris serve` on a free port and waits until it answers. */
export async function startIris(options: StartIrisOptions): Promise<IrisProcess> {
  const port = await freeLoopbackPort();
  const server = await llamaServerBinary();
  const cacheDir = await mkdtemp(join(tmpdir(), 'iris-test-cache-'));
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', join(REPO_ROOT, 'src/main.ts'), 'serve', '--port', String(port), '--llama-server', server, '--log-level', 'debug', '--cache-dir', cacheDir, ...options.args],
    {
      cwd: REPO_ROOT,
      // Each Iris gets its own SQLite database unless the test names one (IRIS_DATA_DIR, DATABASE_URL).
      env: { ...process.env, IRIS_API_KEYS: '', IRIS_DATA_DIR: join(cacheDir, 'data'), DATABASE_URL: '', ...options.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  const logs: string[] = [];
  const collect = (line: string): void => {
    logs.push(line);
    if (process.env['IRIS_TEST_VERBOSE']) process.stderr.write(`[iris] ${line}\n`);
  };
  createInterface({ input: child.stdout! }).on('line', collect);
  createInterface({ input: child.stderr! }).on('line', collect);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const baseUrl = `http://127.0.0.1:${port}`;
  irisOrigins.add(baseUrl);
  const deadline = Date.now() + 120_000;
  const path = options.waitReady === false ? '/health' : '/ready';
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`iris exited early (${child.exitCode ?? child.signalCode}):\n${logs.slice(-20).join('\n')}`);
    }
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`iris did not become ready:\n${logs.slice(-20).join('\n')}`);
    }
    const ok = await fetch(`${baseUrl}${path}`).then((response) => response.ok, () => false);
    if (ok) break;
    await sleep(100);
  }
  return {
    baseUrl,
    port,
    child,
    logs,
    logRecords: (fragment) =>
      logs
        .filter((line) => line.includes(fragment))
        .map((line) => {
          try {
            return JSON.parse(line) as Record<string, unknown>;
          } catch {
            return {};
          }
        }),
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
        await exited;
        clearTimeout(timer);
      }
      await rm(cacheDir, { recursive: true, force: true });
    },
  };
}

/**
 * The pid and port of an Iris's llama-server child, from its "llama-server ready" log records: the latest,
 * or with `previousPid`, the first one logged after that child's. Log lines reach the pipe asynchronously,
 * possibly after the HTTP answer that follows them, so this waits for the record.
 */
export async function llamaServerOf(iris: IrisProcess, previousPid?: number): Promise<{ pid: number; port: number }> {
  const latest = () => {
    const records = iris.logRecords('llama-server ready');
    const previous = previousPid === undefined ? -1 : records.findLastIndex((record) => Number(record['pid']) === previousPid);
    return records.slice(previous + 1).at(-1);
  };
  if (!(await waitFor(() => latest() !== undefined, 10_000))) throw new Error('iris has not logged that llama-server is ready');
  const record = latest()!;
  return { pid: Number(record['pid']), port: Number(record['port']) };
}

/** llama-server's own view of its slots (GET /slots on its loopback port). */
export async function llamaServerSlots(port: number): Promise<{ is_processing: boolean }[]> {
  const url = `http://127.0.0.1:${port}/slots`;
  // llama-server closes a keep-alive connection after 5 s idle; a request that raced that close is retried once.
  const response = await fetch(url).catch(() => fetch(url));
  return (await response.json()) as { is_processing: boolean }[];
}

/** Whether a process with this pid exists. */
export function processExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Waits until `check` is true or the time is up; returns the last value of `check`. */
export async function waitFor(check: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return true;
    if (Date.now() > deadline) return false;
    await sleep(50);
  }
}
