/**
 * `iris build`: makes sure the llama-server binary exists (building it from the pinned llama.cpp source
 * into the cache if needed, with progress) and prints its path. `serve` does the same on first start; this
 * lets an install script, a container build or the test command pay for the build up front.
 */
import { parseArgs } from 'node:util';
import type { IrisConfig } from '../config/config.js';
import { loadConfig } from '../config/load-config.js';
import { ensureLlamaServer, readBuildInfo } from '../engines/llama-runner/build-llama-server.js';
import { BackendUnavailableError, portableBackend, resolveBackend } from '../engines/llama-runner/gpu-backend.js';
import { ConfigError } from '../errors.js';
import { createLogger, type Logger } from '../logger.js';
import type { LlamaServerBinary } from '../models/model-sources.js';

/** Help text of `iris build`. */
export const BUILD_USAGE = `Usage: iris build [--backend auto|cpu|cuda|vulkan] [--cache-dir DIR]

Build llama-server (with its multimodal library) from the llama.cpp source pinned by Iris's node-llama-cpp
dependency, once per llama.cpp version, backend and build flags, into <cache-dir>/llama-server/, and print
its path. With IRIS_LLAMA_SERVER / --llama-server set, print that path instead. Needs cmake, g++, make, git,
libssl-dev; CUDA needs the CUDA toolkit (nvcc, cuBLAS), Vulkan the Vulkan SDK (glslc, headers).

Options:
  --backend B         auto (default; env IRIS_LLAMA_BACKEND): CUDA or Vulkan when its toolkit works and a GPU
                      is visible, else CPU; cpu, cuda or vulkan to choose (a GPU build without a visible GPU
                      compiles for common GPU architectures)
  --portable          build for any x86-64 CPU with AVX2 rather than this machine's (for container images)
  --cache-dir DIR     cache directory (env IRIS_CACHE_DIR, default ~/.cache/iris)
  --llama-server PATH print this binary's path instead of building (env IRIS_LLAMA_SERVER)
  --log-level LEVEL   fatal|error|warn|info|debug|trace|silent (env IRIS_LOG_LEVEL, default info)
`;

/** Runs `iris build`. */
export async function buildCommand(argv: string[], env: NodeJS.ProcessEnv): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      backend: { type: 'string' },
      portable: { type: 'boolean' },
      'cache-dir': { type: 'string' },
      'llama-server': { type: 'string' },
      'log-level': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values.help) {
    process.stdout.write(BUILD_USAGE);
    return;
  }
  const config = loadConfig(
    { cacheDir: values['cache-dir'], llamaServer: values['llama-server'], logLevel: values['log-level'], backend: values.backend },
    env,
  );
  const logger = createLogger(config.logLevel);
  const binary = await locateLlamaServer(config, { logger, env, portable: values.portable === true });
  logger.flush();
  process.stdout.write(`${binary.path}\n`);
}

/**
 * The llama-server to run: the operator's own (`--llama-server`), or Iris's build for the configured backend
 * (built now if the cache has none).
 * @throws {ConfigError} when an explicitly chosen GPU backend's toolkit is missing.
 */
export async function locateLlamaServer(
  config: IrisConfig,
  deps: { logger: Logger; env: NodeJS.ProcessEnv; portable?: boolean },
): Promise<LlamaServerBinary> {
  if (config.llama.serverPath !== undefined) {
    // A build of Iris's copied elsewhere (a container image) still says what it was built with.
    return { path: config.llama.serverPath, backend: (await readBuildInfo(config.llama.serverPath))?.backend ?? 'unknown' };
  }
  const resolved = await resolveBackend(config.llama.backend, { env: deps.env }).catch((error: unknown) => {
    throw error instanceof BackendUnavailableError ? new ConfigError(`${error.message} (--backend / IRIS_LLAMA_BACKEND).`) : error;
  });
  const backend = deps.portable ? portableBackend(resolved) : resolved;
  deps.logger.debug({ backend: backend.backend, detail: backend.detail }, 'llama-server backend');
  const path = await ensureLlamaServer({ cacheDir: config.cacheDir, logger: deps.logger, backend });
  return { path, backend: backend.backend };
}
