/**
 * Supervises one `llama-server` child for one model: spawns it on a free loopback port, waits until its
 * `/health` says ready, pipes its logs into Iris's logger, and restarts it (with backoff) when it dies.
 * Requests that arrive while it is (re)starting wait for it; requests in flight when it dies fail fast
 * (their sockets close) with a typed error.
 *
 * The child is Iris's alone: each start gets a fresh random API key that only Iris knows (handed over in a
 * file readable by Iris's user only, never on the command line or in the environment), a minimal
 * environment (no Iris keys, no hub token), no /slots endpoint and no CORS grant to other origins. The
 * pinned llama-server has no switch to stop it fetching `http(s)` image URLs itself; only Iris can reach it,
 * and Iris sends images as data URIs only.
 *
 * No orphans: on Linux the child is exec'd through `setpriv --pdeathsig SIGKILL`, so the kernel kills it
 * when Iris dies, even by SIGKILL; on a normal exit Iris also kills it synchronously.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, rmSync } from 'node:fs';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { engineUnavailable, type IrisError } from '../../errors.js';
import type { Logger } from '../../logger.js';

/** Settings of one llama-server child. */
export interface LlamaServerSettings {
  /** Model id, for logs. */
  id: string;
  /** Path of the llama-server binary. */
  binary: string;
  /** Text model GGUF. */
  model: string;
  /** Multimodal projector GGUF, if any. */
  mmproj?: string | undefined;
  /** llama-server's --chat-template, when the GGUF's own template is missing or wrong. */
  chatTemplate?: string | undefined;
  /** Context size (all slots together, in one unified KV cache). */
  context: number;
  /** Parallel slots. */
  slots: number;
  /** CPU threads; 0 = llama.cpp's choice. */
  threads: number;
  /** How long a start may take before it counts as failed, in ms. */
  startTimeoutMs: number;
  /** Layers to offload to the GPU (`--gpu-layers`): a count, `all` or `auto`; unset leaves llama-server's default. */
  gpuLayers?: number | 'all' | 'auto' | undefined;
  /** Extra llama-server arguments from the model's `llama_args` (checked with {@link ownedLlamaServerArg}). */
  extraArgs?: readonly string[] | undefined;
  /** llama-server's prompt cache in RAM (--cache-ram), in MiB; 0 disables it. */
  promptCacheMiB: number;
}

/**
 * llama-server arguments Iris sets itself (how it talks to the child, which model and projector, slots,
 * context, templates, GPU layers, what the child may read or fetch): `llama_args` may not set them, since
 * they would break the supervisor or silently contradict a setting Iris shows elsewhere.
 */
export const OWNED_LLAMA_SERVER_ARGS: readonly string[] = [
  '--host', '--port', '--reuse-port', '--api-key', '--api-key-file', '--api-prefix', '--ssl-key-file', '--ssl-cert-file',
  '-m', '--model', '-mu', '--model-url', '-hf', '-hfr', '--hf-repo', '-hff', '--hf-file', '-dr', '--docker-repo',
  '--models-dir', '--models-preset', '--offline',
  '-mm', '--mmproj', '-mmu', '--mmproj-url', '--no-mmproj', '--no-mmproj-auto', '--media-path',
  '-a', '--alias', '-c', '--ctx-size', '-np', '--parallel', '-kvu', '--kv-unified', '--no-kv-unified', '-t', '--threads',
  '-ngl', '--gpu-layers', '--n-gpu-layers',
  '--chat-template', '--chat-template-file', '--jinja', '--no-jinja',
  '--ui', '--webui', '--no-ui', '--no-webui', '--path', '--metrics', '--slots', '--no-slots',
  '-cram', '--cache-ram', '--cors-origins', '--cors-credentials', '--no-cors-credentials',
];

/** The argument of `llama_args` that Iris owns (see {@link OWNED_LLAMA_SERVER_ARGS}), if any. */
export function ownedLlamaServerArg(args: readonly string[]): string | undefined {
  return args.find((arg) => OWNED_LLAMA_SERVER_ARGS.includes(arg.split('=')[0]!));
}

/** The child's command line (after the binary) for these settings, port and key file. */
export function llamaServerArgs(settings: LlamaServerSettings, port: number, keyFile: string): string[] {
  return [
    '--model', settings.model,
    ...(settings.mmproj ? ['--mmproj', settings.mmproj] : []),
    ...(settings.chatTemplate ? ['--chat-template', settings.chatTemplate] : []),
    '--host', '127.0.0.1',
    '--port', String(port),
    '--ctx-size', String(settings.context),
    '--parallel', String(settings.slots),
    // One KV cache of the whole context shared by the slots: any one request may use all of it.
    '--kv-unified',
    ...(settings.threads > 0 ? ['--threads', String(settings.threads)] : []),
    ...(settings.gpuLayers === undefined ? [] : ['--gpu-layers', String(settings.gpuLayers)]),
    '--alias', settings.id,
    '--cache-ram', String(settings.promptCacheMiB),
    '--api-key-file', keyFile,
    // Browsers get no grant: the only origin allowed is the child's own, which serves no pages.
    '--cors-origins', `http://127.0.0.1:${port}`,
    '--no-cors-credentials',
    '--no-webui',
    '--no-slots',
    '--jinja',
    '--metrics',
    ...(settings.extraArgs ?? []),
  ];
}

/** Dependencies of a {@link LlamaServerProcess}. */
export interface LlamaServerProcessDeps {
  logger: Logger;
  /** Environment Iris runs in; the child gets only the variables a runtime needs from it (see {@link childEnv}). */
  env: NodeJS.ProcessEnv;
  /** Called each time the child is restarted after dying (for the restarts metric). */
  onRestart?: (() => void) | undefined;
}

/** Lifecycle of the child. */
export type LlamaServerState = 'idle' | 'starting' | 'ready' | 'restarting' | 'failed' | 'disposed';

const SETPRIV = '/usr/bin/setpriv';
/** Consecutive failed starts after which the supervisor gives up until asked again. */
const MAX_FAILED_STARTS = 3;
const live = new Set<ChildProcess>();
/** Key directories of running children, removed synchronously if Iris exits without waiting for them. */
const keyDirectories = new Set<string>();
let exitHookInstalled = false;

/** One supervised llama-server. */
export class LlamaServerProcess {
  readonly settings: LlamaServerSettings;
  #deps: LlamaServerProcessDeps;
  #state: LlamaServerState = 'idle';
  #child: ChildProcess | undefined;
  #baseUrl: string | undefined;
  #starting: Promise<string> | undefined;
  /** Settles once the current child's exit has been handled. */
  #childExit: Promise<void> | undefined;
  #failedStarts = 0;
  #lastError: IrisError | undefined;
  #recentLog: string[] = [];
  #restarts = 0;
  #startMs = 0;
  #disposed = new AbortController();
  #apiKey = '';

  constructor(settings: LlamaServerSettings, deps: LlamaServerProcessDeps) {
    this.settings = settings;
    this.#deps = deps;
    installExitHook();
  }

  /** Current lifecycle state. */
  get state(): LlamaServerState {
    return this.#state;
  }

  /** How many times the child was restarted after dying. */
  get restarts(): number {
    return this.#restarts;
  }

  /** The child's base URL while it is healthy. */
  get baseUrl(): string | undefined {
    return this.#state === 'ready' ? this.#baseUrl : undefined;
  }

  /** How long the last start took, in seconds (at least 1): what a retry during a restart should wait. */
  get startSeconds(): number {
    return Math.max(1, Math.ceil(this.#startMs / 1000));
  }

  /** The `Authorization` header value the running child accepts (its per-start random key). */
  get authorization(): string {
    return `Bearer ${this.#apiKey}`;
  }

  /** The child's pid while it runs. */
  get pid(): number | undefined {
    return this.#child?.pid;
  }

  /** Resolves with the child's base URL once it is healthy, starting it if needed. */
  async ready(): Promise<string> {
    if (this.#state === 'disposed') throw engineUnavailable(`Model '${this.settings.id}' is shutting down.`, 'shutting_down');
    if (this.#state === 'ready' && this.#baseUrl) return this.#baseUrl;
    if (this.#state === 'failed') {
      // A failed model is retried when asked again, but not in a tight loop.
      this.#failedStarts = 0;
    }
    this.#starting ??= this.#startWithRetries().finally(() => {
      this.#starting = undefined;
    });
    return this.#starting;
  }

  /**
   * The base URL of the child serving after the one at `url` stopped answering: once that child's exit was
   * seen (within `waitMs`; a child that dies while serving is restarted), whatever {@link ready} says.
   */
  async nextReady(url: string, waitMs = 2000): Promise<string> {
    const exit = this.#childExit;
    if (this.#baseUrl === url && exit !== undefined) await Promise.race([exit, sleep(waitMs)]);
    return this.ready();
  }

  /** Stops the child (SIGTERM, then SIGKILL after a grace period). */
  async dispose(): Promise<void> {
    if (this.#state === 'disposed') return;
    this.#state = 'disposed';
    this.#disposed.abort();
    await stopChild(this.#child);
    this.#child = undefined;
  }

  async #startWithRetries(): Promise<string> {
    for (;;) {
      try {
        const url = await this.#startOnce();
        this.#failedStarts = 0;
        return url;
      } catch (error) {
        this.#failedStarts += 1;
        this.#lastError = error as IrisError;
        if (this.#state === 'disposed') throw error;
        if (this.#failedStarts >= MAX_FAILED_STARTS) {
          this.#state = 'failed';
          throw error;
        }
        this.#deps.logger.warn({ model: this.settings.id, err: error }, 'llama-server failed to start; retrying');
        await sleep(500 * 2 ** this.#failedStarts, undefined, { signal: this.#disposed.signal }).catch(() => undefined);
      }
    }
  }

  async #startOnce(): Promise<string> {
    const { settings } = this;
    const logger = this.#deps.logger.child({ model: settings.id, component: 'llama-server' });
    if (this.#state !== 'restarting') this.#state = 'starting';
    this.#recentLog = [];
    const port = await freeLoopbackPort();
    const keyFile = await writeKeyFile((this.#apiKey = randomBytes(32).toString('base64url')));
    const args = llamaServerArgs(settings, port, keyFile.path);
    const usePdeathsig = process.platform === 'linux' && existsSync(SETPRIV);
    const command = usePdeathsig ? SETPRIV : settings.binary;
    const commandArgs = usePdeathsig ? ['--pdeathsig', 'SIGKILL', '--', settings.binary, ...args] : args;
    logger.info({ port, binary: settings.binary }, 'starting llama-server');

    const child = spawn(command, commandArgs, { stdio: ['ignore', 'pipe', 'pipe'], env: childEnv(this.#deps.env) });
    this.#child = child;
    live.add(child);
    const onLine = (line: string): void => {
      this.#recentLog.push(line);
      if (this.#recentLog.length > 30) this.#recentLog.shift();
      if (/\berror\b|failed/i.test(line)) logger.warn(line);
      else logger.debug(line);
    };
    if (child.stdout) createInterface({ input: child.stdout }).on('line', onLine);
    if (child.stderr) createInterface({ input: child.stderr }).on('line', onLine);

    const exited = new Promise<string>((resolve) => {
      child.once('error', (error) => resolve(`could not be started: ${error.message}`));
      child.once('exit', (code, signal) => resolve(signal ? `was killed by ${signal}` : `exited with code ${code}`));
    });
    const seen = exited.then((how) => {
      live.delete(child);
      void keyFile.remove();
      if (this.#child !== child) return;
      this.#child = undefined;
      this.#baseUrl = undefined;
      if (this.#state === 'disposed') return;
      const wasReady = this.#state === 'ready';
      logger.error({ how, lastLog: this.#recentLog.slice(-5) }, `llama-server ${how}`);
      if (wasReady) {
        // It died while serving: bring it back; requests in flight already failed with their sockets.
        this.#state = 'restarting';
        this.#restarts += 1;
        this.#deps.onRestart?.();
        void this.ready().catch((error: unknown) => logger.error({ err: error }, 'llama-server could not be restarted'));
      }
    });
    // Settles once the exit is handled (and a restart under way): what nextReady waits for.
    this.#childExit = seen;

    const baseUrl = `http://127.0.0.1:${port}`;
    const started = Date.now();
    const deadline = started + settings.startTimeoutMs;
    const startFailed = (why: string): IrisError =>
      engineUnavailable(
        `Model '${settings.id}' could not be started: llama-server ${why}. Last log lines: ${this.#recentLog.slice(-5).join(' | ')}`,
        'model_unavailable',
        undefined,
        // A retry starts it again: the next backoff plus the time this attempt took.
        (500 * 2 ** (this.#failedStarts + 1) + Date.now() - started) / 1000,
      );
    let exitReason: string | undefined;
    void exited.then((how) => {
      exitReason = how;
    });
    for (;;) {
      if (exitReason !== undefined) throw startFailed(exitReason);
      if (this.#disposed.signal.aborted) {
        await stopChild(child);
        throw engineUnavailable(`Model '${settings.id}' is shutting down.`, 'shutting_down');
      }
      if (Date.now() > deadline) {
        await stopChild(child);
        throw startFailed(`was not healthy within ${settings.startTimeoutMs} ms`);
      }
      if (await isHealthy(baseUrl)) break;
      await sleep(100);
    }
    this.#baseUrl = baseUrl;
    this.#startMs = Date.now() - started;
    this.#state = 'ready';
    logger.info({ port, pid: child.pid }, 'llama-server ready');
    return baseUrl;
  }

  /** The reason of the last failed start, if any. */
  get lastError(): IrisError | undefined {
    return this.#lastError;
  }
}

async function isHealthy(baseUrl: string): Promise<boolean> {
  try {
    const response = await fetch(`${baseUrl}/health`, { signal: AbortSignal.timeout(2000) });
    await response.body?.cancel();
    return response.ok;
  } catch {
    return false;
  }
}

/** A free TCP port on 127.0.0.1 (asked from the kernel, then released for the child to take). */
export function freeLoopbackPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

/**
 * Variables the child may inherit: what a process, its locale and its GPU runtime need. Nothing else passes
 * (no IRIS_* keys, no HF_TOKEN, no llama-server LLAMA_* settings that would override Iris's flags).
 */
const CHILD_ENV_NAMES = new Set(['PATH', 'HOME', 'USER', 'LOGNAME', 'LANG', 'LANGUAGE', 'TZ', 'TMPDIR', 'LD_LIBRARY_PATH', 'NO_COLOR']);
const CHILD_ENV_PREFIXES = ['LC_', 'CUDA_', 'NVIDIA_', 'HIP_', 'ROCR_', 'HSA_', 'GPU_', 'GGML_', 'VK_', 'OMP_', 'OPENBLAS_', 'MKL_', 'SYCL_', 'ONEAPI_', 'ZES_'];

/** The child's environment: only the allowed variables of Iris's own. */
export function childEnv(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  return Object.fromEntries(
    Object.entries(env).filter(([name]) => CHILD_ENV_NAMES.has(name) || CHILD_ENV_PREFIXES.some((prefix) => name.startsWith(prefix))),
  );
}

/** Key directories are named after the Iris process that made them: `iris-llama-<pid>-XXXXXX`. */
const KEY_DIRECTORY = /^iris-llama-(\d+)-/;
let staleKeysSwept = false;

/**
 * Removes the key directories an Iris killed without its exit hook (SIGKILL, the OOM killer) left behind:
 * those whose process is gone. Another running Iris's are left alone.
 */
async function sweepStaleKeyDirectories(): Promise<void> {
  if (staleKeysSwept) return;
  staleKeysSwept = true;
  const names = await readdir(tmpdir()).catch(() => [] as string[]);
  for (const name of names) {
    const pid = Number(KEY_DIRECTORY.exec(name)?.[1] ?? Number.NaN);
    if (Number.isInteger(pid) && pid !== process.pid && !processAlive(pid)) await rm(join(tmpdir(), name), { recursive: true, force: true }).catch(() => undefined);
  }
}

/** Whether a process with this pid exists (another user's included). */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: it exists, as another user's.
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Writes a child's API key into a new directory only Iris's user can read; removed when the child exits. */
async function writeKeyFile(key: string): Promise<{ path: string; remove: () => Promise<void> }> {
  await sweepStaleKeyDirectories();
  const directory = await mkdtemp(join(tmpdir(), `iris-llama-${process.pid}-`));
  const path = join(directory, 'api-key');
  keyDirectories.add(directory);
  await writeFile(path, `${key}\n`, { mode: 0o600 });
  return {
    path,
    // Forgotten by the exit hook only once gone: Iris exiting while this runs still removes it there.
    remove: async () => {
      await rm(directory, { recursive: true, force: true });
      keyDirectories.delete(directory);
    },
  };
}

async function stopChild(child: ChildProcess | undefined): Promise<void> {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const gone = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
  await gone;
  clearTimeout(timer);
}

/** On any normal exit of Iris, kill every child synchronously (pdeathsig covers the abnormal ones). */
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once('exit', () => {
    for (const child of live) child.kill('SIGKILL');
    for (const directory of keyDirectories) rmSync(directory, { recursive: true, force: true });
  });
}
