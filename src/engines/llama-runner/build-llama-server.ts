/**
 * Builds `llama-server` (with libmtmd) from the llama.cpp source pinned by our exact `node-llama-cpp`
 * dependency: the package ships llama.cpp as a git bundle (`llama/gitRelease.bundle`). We clone it, run
 * cmake with OpenSSL and native CPU flags (tests, examples and the web UI off: nothing is downloaded), and
 * build only the `llama-server` target.
 *
 * A build takes minutes, so it happens once per (llama.cpp commit, flags) into
 * `<cacheDir>/llama-server/<commit>-<flags hash>/llama-server`. Two processes building at once are safe:
 * an exclusive lock directory (atomic mkdir, stolen when its owner is dead) serializes them, the build runs
 * in a private temp directory, and the finished binary is moved into place with an atomic rename, so a
 * reader sees either nothing or the whole binary.
 *
 * Written by hand because no library builds llama.cpp's server: node-llama-cpp builds only its own addon.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readFile, rename, rm, stat, writeFile, chmod, copyFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { cpus } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { buildFailed, type IrisError } from '../../errors.js';
import type { Logger } from '../../logger.js';
import { mergeCmakeFlags, type LlamaServerBackend, type ResolvedBackend } from './gpu-backend.js';
import { processAlive } from './llama-server-process.js';

/** The llama.cpp commit node-llama-cpp 3.22.1 ships; the build refuses a bundle at any other commit. */
export const PINNED_LLAMA_CPP_COMMIT = 'de3ff815ea7d559ee917f063901b8986f038abc6';

/** cmake flags of a local CPU build. Part of the cache key. */
export const LLAMA_SERVER_CMAKE_FLAGS: readonly string[] = Object.freeze([
  '-DCMAKE_BUILD_TYPE=Release',
  '-DBUILD_SHARED_LIBS=OFF',
  '-DGGML_NATIVE=ON',
  '-DLLAMA_OPENSSL=ON',
  '-DLLAMA_BUILD_TESTS=OFF',
  '-DLLAMA_BUILD_EXAMPLES=OFF',
  '-DLLAMA_BUILD_UI=OFF',
  '-DLLAMA_USE_PREBUILT_UI=OFF',
]);

/** The CPU build: no backend flags. */
export const CPU_BACKEND: ResolvedBackend = Object.freeze({ backend: 'cpu', cmakeFlags: [], detail: 'CPU only' });

/** Options of {@link ensureLlamaServer}. */
export interface EnsureLlamaServerOptions {
  /** Iris cache directory; the binary goes under `<cacheDir>/llama-server/`. */
  cacheDir: string;
  /** The ggml backend to build with (see gpu-backend.ts). @default CPU_BACKEND */
  backend?: ResolvedBackend;
  logger: Logger;
  /** Parallel compile jobs. @default the number of CPUs */
  jobs?: number;
  /** Called with the build's percentage as cmake reports it. */
  onProgress?: (percent: number) => void;
}

/** The cmake flags of a build with this backend. */
export function llamaServerCmakeFlags(backend: ResolvedBackend = CPU_BACKEND): string[] {
  return mergeCmakeFlags(LLAMA_SERVER_CMAKE_FLAGS, backend.cmakeFlags);
}

/** The cmake configure command line (after `cmake`) for a source and build directory. */
export function llamaServerConfigureArgs(source: string, build: string, backend: ResolvedBackend = CPU_BACKEND): string[] {
  return ['-S', source, '-B', build, ...llamaServerCmakeFlags(backend)];
}

/**
 * Where the build for the pinned commit, backend and flags lives (whether built yet or not):
 * `<commit>-<flags hash>` for the CPU build, `<commit>-<backend>-<flags hash>` for a GPU build.
 */
export function llamaServerCachePath(cacheDir: string, backend: ResolvedBackend = CPU_BACKEND): string {
  const flagsHash = createHash('sha256').update(llamaServerCmakeFlags(backend).join('\n')).digest('hex').slice(0, 10);
  const key = backend.backend === 'cpu' ? flagsHash : `${backend.backend}-${flagsHash}`;
  return join(cacheDir, 'llama-server', `${PINNED_LLAMA_CPP_COMMIT.slice(0, 12)}-${key}`, 'llama-server');
}

/** Returns the path of a built llama-server, building it first if the cache has none. */
export async function ensureLlamaServer(options: EnsureLlamaServerOptions): Promise<string> {
  const binary = llamaServerCachePath(options.cacheDir, options.backend);
  if (await isExecutable(binary)) return binary;

  const buildRoot = dirname(binary);
  await mkdir(dirname(buildRoot), { recursive: true });
  const lock = await acquireBuildLock(`${buildRoot}.lock`, options.logger);
  try {
    // Someone else may have finished while we waited for the lock.
    if (await isExecutable(binary)) return binary;
    await buildInto(buildRoot, binary, options);
    return binary;
  } finally {
    await lock.release();
  }
}

/** What a build of Iris's records next to its binary (`build-info.json`). */
export interface BuildInfo {
  commit: string;
  backend: LlamaServerBackend;
  flags: string[];
}

/** The build info next to a llama-server binary, when it is one of Iris's builds. */
export async function readBuildInfo(binary: string): Promise<BuildInfo | undefined> {
  try {
    const info = JSON.parse(await readFile(join(dirname(binary), 'build-info.json'), 'utf8')) as Partial<BuildInfo>;
    const backend = info.backend ?? 'cpu';
    return ['cpu', 'cuda', 'vulkan'].includes(backend) ? { commit: String(info.commit), backend, flags: info.flags ?? [] } : undefined;
  } catch {
    return undefined;
  }
}

/** The git bundle with llama.cpp's source inside our node-llama-cpp dependency. */
export function llamaCppBundlePath(): string {
  // The package's exports hide package.json, so start from its entry point and walk up to its root.
  let dir = dirname(createRequire(import.meta.url).resolve('node-llama-cpp'));
  while (!existsSync(join(dir, 'llama', 'gitRelease.bundle'))) {
    const parent = dirname(dir);
    if (parent === dir || basename(dir) === 'node_modules') {
      throw buildError('cannot find node-llama-cpp\'s llama/gitRelease.bundle; reinstall dependencies (npm install).');
    }
    dir = parent;
  }
  return join(dir, 'llama', 'gitRelease.bundle');
}

async function buildInto(buildRoot: string, binary: string, options: EnsureLlamaServerOptions): Promise<void> {
  const { logger } = options;
  const work = `${buildRoot}.tmp-${process.pid}-${Date.now()}`;
  const source = join(work, 'src');
  const build = join(work, 'build');
  const started = Date.now();
  const backend = options.backend ?? CPU_BACKEND;
  logger.info(
    { target: binary, backend: backend.backend },
    `building llama-server (${backend.detail}) from the pinned llama.cpp source (takes a few minutes, once)`,
  );
  try {
    await rm(work, { recursive: true, force: true });
    await mkdir(work, { recursive: true });
    const bundle = llamaCppBundlePath();
    if (!existsSync(bundle)) {
      throw buildError(`llama.cpp source bundle not found at ${bundle}; reinstall dependencies (npm install).`);
    }
    await run('git', ['clone', '--quiet', bundle, source], { logger, cwd: work });
    const head = (await run('git', ['rev-parse', 'HEAD'], { logger, cwd: source })).trim();
    if (head !== PINNED_LLAMA_CPP_COMMIT) {
      throw buildError(`llama.cpp bundle is at ${head}, expected the pinned ${PINNED_LLAMA_CPP_COMMIT}.`);
    }
    await run('cmake', llamaServerConfigureArgs(source, build, options.backend), { logger, cwd: work });
    const jobs = String(options.jobs ?? Math.max(1, cpus().length));
    let lastLogged = -10;
    await run('cmake', ['--build', build, '--target', 'llama-server', '-j', jobs], {
      logger,
      cwd: work,
      onLine: (line) => {
        const match = /^\[\s*(\d+)%\]/.exec(line);
        if (!match) return;
        const percent = Number(match[1]);
        options.onProgress?.(percent);
        if (percent >= lastLogged + 10) {
          lastLogged = percent;
          logger.info({ percent }, `building llama-server: ${percent}%`);
        }
      },
    });
    const built = join(build, 'bin', 'llama-server');
    if (!(await isExecutable(built))) throw buildError(`the build finished but ${built} is missing`);
    const staged = join(work, 'stage');
    await mkdir(staged, { recursive: true });
    await copyFile(built, join(staged, 'llama-server'));
    await chmod(join(staged, 'llama-server'), 0o755);
    await writeFile(
      join(staged, 'build-info.json'),
      JSON.stringify({ commit: PINNED_LLAMA_CPP_COMMIT, backend: backend.backend, flags: llamaServerCmakeFlags(backend), builtAt: new Date().toISOString() }, null, 2),
    );
    await rm(buildRoot, { recursive: true, force: true });
    await rename(staged, buildRoot);
    logger.info({ seconds: Math.round((Date.now() - started) / 1000), binary }, 'llama-server built');
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

interface RunOptions {
  logger: Logger;
  cwd: string;
  onLine?: (line: string) => void;
}

/** Runs a build tool, streaming its output to the logger; resolves with stdout. */
function run(command: string, args: string[], options: RunOptions): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd: options.cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    const tail: string[] = [];
    const remember = (line: string): void => {
      tail.push(line);
      if (tail.length > 40) tail.shift();
    };
    createInterface({ input: child.stdout }).on('line', (line) => {
      stdout += `${line}\n`;
      remember(line);
      options.onLine?.(line);
      options.logger.debug({ tool: command }, line);
    });
    createInterface({ input: child.stderr }).on('line', (line) => {
      remember(line);
      options.logger.debug({ tool: command }, line);
    });
    child.on('error', (error) =>
      reject(buildError(`cannot run ${command}: ${error.message} (install it: cmake, g++, git, libssl-dev)`, error)),
    );
    child.on('close', (code, signal) => {
      if (code === 0) resolve(stdout);
      else reject(buildError(`${command} ${args.slice(0, 2).join(' ')} failed (${signal ?? `exit ${code}`}):\n${tail.join('\n')}`));
    });
  });
}

/** A held build lock. */
export interface BuildLock {
  release(): Promise<void>;
}

/**
 * An exclusive lock between processes: mkdir is atomic; the owner's pid is written inside, and a lock whose
 * owner process is gone is stolen. Waits (polling once a second) while another live process holds it.
 */
export async function acquireBuildLock(path: string, logger: Logger): Promise<BuildLock> {
  let announced = false;
  for (;;) {
    try {
      await mkdir(path);
      await writeFile(join(path, 'owner'), String(process.pid));
      return { release: () => rm(path, { recursive: true, force: true }) };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
    const owner = Number(await readFile(join(path, 'owner'), 'utf8').catch(() => ''));
    if (Number.isInteger(owner) && owner > 0 && !processAlive(owner)) {
      logger.warn({ lock: path, owner }, 'removing a stale llama-server build lock');
      await rm(path, { recursive: true, force: true });
      continue;
    }
    if (!(owner > 0)) {
      // The owner may be between mkdir and writing its pid; give it a moment, then treat it as stale.
      const age = Date.now() - (await stat(path).then((s) => s.mtimeMs).catch(() => Date.now()));
      if (age > 30_000) await rm(path, { recursive: true, force: true });
    }
    if (!announced) {
      logger.info({ lock: path, owner }, 'another process is building llama-server; waiting for it');
      announced = true;
    }
    await sleep(1000);
  }
}

async function isExecutable(path: string): Promise<boolean> {
  try {
    const info = await stat(path);
    return info.isFile() && (info.mode & 0o111) !== 0;
  } catch {
    return false;
  }
}

function buildError(message: string, cause?: unknown): IrisError {
  return buildFailed(message, cause);
}
