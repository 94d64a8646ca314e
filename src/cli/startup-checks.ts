/**
 * What `iris serve` checks before it starts anything (no build, no pull, no child, no socket kept): every
 * local model file given on the command line or in the config file, and that the port can be listened on.
 * An operator's mistake becomes one {@link ConfigError} line naming the path or port and the flag or key
 * it came from, so `serve` exits with code 2 at once instead of running without a model. A model without
 * a projector is allowed, with one warning that it answers text only.
 */
import { createServer } from 'node:net';
import type { IrisConfig, ModelConfig } from '../config/config.js';
import { ownedLlamaServerArg } from '../engines/llama-runner/llama-server-process.js';
import { ConfigError, IrisError } from '../errors.js';
import type { Logger } from '../logger.js';
import { resolveCatalogId } from '../models/catalog.js';
import { checkModelFiles } from '../models/check-model-files.js';

/** Where the configured models came from. */
export interface ModelOrigins {
  /** `config.models[0]` came from `--model` / `--mmproj`. */
  firstFromFlags: boolean;
  /** The config file the other models came from. */
  configFile: string | undefined;
}

/** Runs every startup check; throws a {@link ConfigError} for the first mistake. */
export async function checkBeforeStart(config: IrisConfig, origins: ModelOrigins, logger: Logger): Promise<void> {
  config.models.forEach((model, index) => {
    checkLlamaSettings(model, modelKey(index, origins, 'llama_args'));
    if (model.hub !== undefined) checkHubName(model.hub, modelKey(index, origins, 'hub'));
  });
  await Promise.all(
    config.models.map(async (model, index) => {
      if (model.model === undefined) return;
      const origin = { model: modelKey(index, origins, 'model'), mmproj: modelKey(index, origins, 'mmproj') };
      const checked = await checkModelFiles({ model: model.model, mmproj: model.mmproj }, origin);
      if (checked.textOnly) {
        logger.warn(
          { model: model.id },
          `model '${model.id}' (${origin.model}) has no projector (${origin.mmproj}): it is text-only and requests with images ` +
            `get a 400. Add ${origin.mmproj} with the mmproj GGUF published with the model, or serve a catalog model ` +
            "('iris models --catalog'), which 'iris pull' fetches with its projector.",
        );
      }
    }),
  );
  await checkPortFree(config.host, config.port);
}

/** Settings Iris has for what an owned llama-server argument does, for the refusal's hint. */
const OWNED_ARG_SETTINGS: Readonly<Record<string, string>> = {
  '--ctx-size': 'context', '-c': 'context', '--parallel': 'slots', '-np': 'slots', '--threads': 'threads', '-t': 'threads',
  '--gpu-layers': 'gpu_layers', '-ngl': 'gpu_layers', '--n-gpu-layers': 'gpu_layers', '--chat-template': 'chat_template',
  '--model': 'model', '-m': 'model', '--mmproj': 'mmproj', '-mm': 'mmproj', '--alias': 'id', '-a': 'id',
};

/** `llama_args` may not set what Iris owns; llama-server settings on a remote model would do nothing. */
function checkLlamaSettings(model: ModelConfig, key: string): void {
  if (model.upstream !== undefined && (model.llamaArgs !== undefined || model.gpuLayers !== undefined)) {
    throw new ConfigError(`Model '${model.id}' is served by remote servers (upstream), so llama_args and gpu_layers do not apply (${key}).`);
  }
  const owned = ownedLlamaServerArg(model.llamaArgs ?? []);
  if (owned === undefined) return;
  const name = owned.split('=')[0]!;
  const setting = OWNED_ARG_SETTINGS[name];
  throw new ConfigError(
    `${key} sets ${name}, which Iris sets itself for llama-server${setting ? `: use the model's ${setting} setting instead` : ''}.`,
  );
}

/** A hub model's name must be a catalog id or `owner/repo` (whether the repo exists is the hub's to say). */
function checkHubName(hub: string, key: string): void {
  try {
    resolveCatalogId(hub);
  } catch (error) {
    if (!(error instanceof IrisError)) throw error;
    throw new ConfigError(`${hub} (${key}): ${error.message}`, { cause: error });
  }
}

/**
 * Where a model's setting was given, for messages: its flag for the `--model` one (`--model`, `--mmproj`), else
 * its key in the config file (`models[1].mmproj in iris.yaml`).
 */
function modelKey(index: number, origins: ModelOrigins, key: 'model' | 'mmproj' | 'hub' | 'llama_args'): string {
  if (index === 0 && origins.firstFromFlags) return key === 'mmproj' ? '--mmproj' : key === 'llama_args' ? 'llama_args' : '--model';
  const position = origins.firstFromFlags ? index - 1 : index;
  return `models[${position}].${key}${origins.configFile === undefined ? '' : ` in ${origins.configFile}`}`;
}

/** Binds host:port once and lets it go, so a busy port is reported before anything is started. */
async function checkPortFree(host: string, port: number): Promise<void> {
  if (port === 0) return;
  await new Promise<void>((resolve, reject) => {
    const server = createServer();
    server.once('error', (error) => reject(listenError(error, host, port)));
    server.listen({ host, port, exclusive: true }, () => server.close(() => resolve()));
  });
}

/**
 * One line for an error of listening on host:port; errors that are not the operator's are returned as
 * they are.
 */
export function listenError(error: unknown, host: string, port: number): unknown {
  const code = (error as NodeJS.ErrnoException).code;
  const where = `${host}:${port}`;
  switch (code) {
    case 'EADDRINUSE':
      return new ConfigError(
        `Port ${port} on ${host} is already in use (--port / IRIS_PORT): stop what listens there or choose another port.`,
        { cause: error },
      );
    case 'EACCES':
      return new ConfigError(`Not allowed to listen on ${where} (--port / IRIS_PORT): ports below 1024 need privileges.`, {
        cause: error,
      });
    case 'EADDRNOTAVAIL':
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return new ConfigError(`Cannot listen on ${host} (--host / IRIS_HOST): no interface of this machine has that address.`, {
        cause: error,
      });
    default:
      return error;
  }
}
