/**
 * `iris build`: makes sure the llama-server binary exists (building it from the pinned llama.cpp source
 * into the cache if needed, with progress) and prints its path. `serve` does the same on first start; this
 * lets an install script, a container build or the test command pay for the build up front.
 */
import { parseArgs } from 'node:util';
import { loadConfig } from '../config/load-config.js';
import { ensureLlamaServer } from '../engines/llama-runner/build-llama-server.js';
import { createLogger } from '../logger.js';

/** Help text of `iris build`. */
export const BUILD_USAGE = `Usage: iris build [--cache-dir DIR]

Build llama-server (with its multimodal library) from the llama.cpp source pinned by Iris's node-llama-cpp
dependency, once per llama.cpp version and build flags, into <cache-dir>/llama-server/, and print its path.
With IRIS_LLAMA_SERVER / --llama-server set, print that path instead. Needs cmake, g++, make, git, libssl-dev.
`;

/** Runs `iris build`. */
export async function buildCommand(argv: string[], env: NodeJS.ProcessEnv): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
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
  const config = loadConfig({ cacheDir: values['cache-dir'], llamaServer: values['llama-server'], logLevel: values['log-level'] }, env);
  const logger = createLogger(config.logLevel);
  const binary = config.llama.serverPath ?? (await ensureLlamaServer({ cacheDir: config.cacheDir, logger }));
  logger.flush();
  process.stdout.write(`${binary}\n`);
}
