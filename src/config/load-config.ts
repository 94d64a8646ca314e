/**
 * Merges CLI flags, environment variables and the YAML config file into one validated, frozen
 * {@link IrisConfig}. Precedence: flags > env > file > defaults. This is the only module that reads
 * `process.env` (callers pass it in, so tests can pass their own).
 */
import { existsSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join, resolve, dirname, isAbsolute } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { ConfigError } from '../errors.js';
import { deepFreeze } from './deep-freeze.js';
import { configSchema, type IrisConfig } from './config.js';

/** Options of `iris serve` that feed the config (all optional). */
export interface ConfigFlags {
  config?: string | undefined;
  model?: string | undefined;
  mmproj?: string | undefined;
  modelId?: string | undefined;
  host?: string | undefined;
  port?: string | undefined;
  apiKey?: string[] | undefined;
  allowUnauthenticated?: boolean | undefined;
  allowMediaHost?: string[] | undefined;
  denyMediaHost?: string[] | undefined;
  ctxSize?: string | undefined;
  slots?: string | undefined;
  threads?: string | undefined;
  llamaServer?: string | undefined;
  keepAlive?: string | undefined;
  memoryBudget?: string | undefined;
  preload?: string[] | undefined;
  pullOnDemand?: string | undefined;
  cacheDir?: string | undefined;
  logLevel?: string | undefined;
}


/** Where each config key can be set, for error messages. */
const SOURCES: Record<string, string> = {
  host: '--host / IRIS_HOST / host',
  port: '--port / IRIS_PORT / port',
  apiKeys: '--api-key / IRIS_API_KEYS / api_keys',
  allowUnauthenticated: '--allow-unauthenticated / allow_unauthenticated',
  models: '--model, --mmproj, --model-id / models',
  cacheDir: '--cache-dir / IRIS_CACHE_DIR / cache_dir',
  hubEndpoint: 'HF_ENDPOINT / hub_endpoint',
  allowMediaHosts: '--allow-media-host / IRIS_ALLOW_MEDIA_HOSTS / allow_media_hosts',
  denyMediaHosts: '--deny-media-host / IRIS_DENY_MEDIA_HOSTS / deny_media_hosts',
  logLevel: '--log-level / IRIS_LOG_LEVEL / log_level',
  keepAlive: '--keep-alive / IRIS_KEEP_ALIVE / keep_alive',
  memoryBudget: '--memory-budget / IRIS_MEMORY_BUDGET / memory_budget',
  preload: '--preload / preload',
  pullOnDemand: '--pull-on-demand / IRIS_PULL_ON_DEMAND / pull_on_demand',
  llama: '--llama-server / IRIS_LLAMA_SERVER / llama',
  limits: 'limits (config file)',
  images: 'images (config file)',
};

/** Loads, merges, validates and freezes the configuration. */
export function loadConfig(flags: ConfigFlags, rawEnv: NodeJS.ProcessEnv): IrisConfig {
  // An empty variable (IRIS_HOST= in a unit file) means "not set", as in most servers.
  const env = Object.fromEntries(Object.entries(rawEnv).filter(([, value]) => value !== undefined && value !== ''));
  const configPath = flags.config ?? env['IRIS_CONFIG'];
  const file = configPath === undefined ? {} : readConfigFile(configPath);
  const baseDir = configPath === undefined ? process.cwd() : dirname(resolve(configPath));

  const merged: Record<string, unknown> = { ...file };
  const set = (key: string, value: unknown): void => {
    if (value !== undefined) merged[key] = value;
  };

  // env over file
  set('host', env['IRIS_HOST']);
  set('port', numberFrom(env['IRIS_PORT'], 'IRIS_PORT'));
  set('apiKeys', listFrom(env['IRIS_API_KEYS']));
  set('allowMediaHosts', listFrom(env['IRIS_ALLOW_MEDIA_HOSTS']));
  set('denyMediaHosts', listFrom(env['IRIS_DENY_MEDIA_HOSTS']));
  set('cacheDir', env['IRIS_CACHE_DIR']);
  set('hubEndpoint', env['HF_ENDPOINT']);
  set('hubToken', env['HF_TOKEN']);
  set('logLevel', env['IRIS_LOG_LEVEL']);
  set('keepAlive', env['IRIS_KEEP_ALIVE']);
  set('memoryBudget', env['IRIS_MEMORY_BUDGET']);
  set('pullOnDemand', env['IRIS_PULL_ON_DEMAND']);
  if (env['IRIS_LLAMA_SERVER']) {
    merged['llama'] = { ...(merged['llama'] as object | undefined), serverPath: env['IRIS_LLAMA_SERVER'] };
  }

  // flags over env
  set('host', flags.host);
  set('port', numberFrom(flags.port, '--port'));
  if (flags.apiKey && flags.apiKey.length > 0) merged['apiKeys'] = flags.apiKey;
  if (flags.allowMediaHost && flags.allowMediaHost.length > 0) merged['allowMediaHosts'] = flags.allowMediaHost;
  if (flags.denyMediaHost && flags.denyMediaHost.length > 0) merged['denyMediaHosts'] = flags.denyMediaHost;
  if (flags.allowUnauthenticated) merged['allowUnauthenticated'] = true;
  set('cacheDir', flags.cacheDir);
  set('logLevel', flags.logLevel);
  set('keepAlive', flags.keepAlive);
  set('memoryBudget', flags.memoryBudget);
  set('pullOnDemand', flags.pullOnDemand);
  if (flags.preload && flags.preload.length > 0) merged['preload'] = flags.preload;
  if (flags.llamaServer) {
    merged['llama'] = { ...(merged['llama'] as object | undefined), serverPath: flags.llamaServer };
  }

  if (flags.model !== undefined) {
    const fromHub = looksLikeHubReference(flags.model);
    const model: Record<string, unknown> = {
      id: flags.modelId ?? (fromHub ? flags.model : defaultModelId(flags.model)),
      ...(fromHub ? { hub: flags.model } : { model: flags.model }),
      mmproj: flags.mmproj,
      context: numberFrom(flags.ctxSize, '--ctx-size'),
      slots: numberFrom(flags.slots, '--slots'),
      threads: numberFrom(flags.threads, '--threads'),
    };
    for (const key of Object.keys(model)) if (model[key] === undefined) delete model[key];
    merged['models'] = [model, ...((merged['models'] as unknown[] | undefined) ?? [])];
    // The model named on the command line is the one the user wants served now: load it at start.
    merged['preload'] = [...new Set([model['id'], ...((merged['preload'] as unknown[] | undefined) ?? [])])];
  } else if (flags.mmproj !== undefined || flags.modelId !== undefined) {
    throw new ConfigError('--mmproj and --model-id need --model PATH.');
  }

  merged['cacheDir'] ??= defaultCacheDir(env);

  const parsed = configSchema.safeParse(merged);
  if (!parsed.success) throw new ConfigError(describeIssues(parsed.error));

  const config = parsed.data;
  config.models = config.models.map((model) => ({
    ...model,
    ...(model.model === undefined ? {} : { model: resolvePath(baseDir, model.model) }),
    ...(model.mmproj === undefined ? {} : { mmproj: resolvePath(baseDir, model.mmproj) }),
  }));
  const ids = new Set<string>();
  for (const model of config.models) {
    if (ids.has(model.id)) throw new ConfigError(`Model id '${model.id}' is declared twice (models / --model-id).`);
    ids.add(model.id);
  }
  for (const id of config.preload) {
    if (!ids.has(id) && config.models.length > 0) {
      throw new ConfigError(`preload names '${id}', which is not a configured model (--preload / preload).`);
    }
  }
  return deepFreeze(config);
}

/** `~/.cache/iris` unless XDG_CACHE_HOME says otherwise. */
export function defaultCacheDir(env: NodeJS.ProcessEnv): string {
  const base = env['XDG_CACHE_HOME'] || join(env['HOME'] || homedir(), '.cache');
  return join(base, 'iris');
}

/**
 * `--model` takes a GGUF path or, as `ollama run` does, a model to pull: `owner/repo[:QUANT]` or a catalog
 * id. A name that exists on disk or ends in `.gguf` is a path.
 */
function looksLikeHubReference(value: string): boolean {
  if (/\.gguf$/i.test(value) || existsSync(value)) return false;
  return /^[A-Za-z0-9][\w.-]*\/[\w.-]+(:[\w.-]+)?$/.test(value) || /^[a-z0-9][\w.-]*(:[\w.-]+)?$/i.test(value) && !value.includes('.');
}

/** The id a model gets from its file name when no --model-id is given: `model.gguf` -> `model`. */
function defaultModelId(path: string): string {
  const name = path.split(/[\\/]/).pop() ?? path;
  return name.replace(/\.gguf$/i, '') || 'default';
}

function readConfigFile(path: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new ConfigError(`Cannot read config file ${path} (--config / IRIS_CONFIG): ${(error as Error).message}`, {
      cause: error,
    });
  }
  let data: unknown;
  try {
    data = parseYaml(text);
  } catch (error) {
    throw new ConfigError(`Config file ${path} is not valid YAML: ${(error as Error).message}`, { cause: error });
  }
  if (data === null || data === undefined) return {};
  if (typeof data !== 'object' || Array.isArray(data)) {
    throw new ConfigError(`Config file ${path} must hold a mapping of settings.`);
  }
  return camelizeKeys(data) as Record<string, unknown>;
}

/** The YAML file may use snake_case keys (`api_keys`); the schema uses camelCase. */
function camelizeKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(camelizeKeys);
  if (value === null || typeof value !== 'object') return value;
  return Object.fromEntries(
    Object.entries(value).map(([key, inner]) => [key.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase()), camelizeKeys(inner)]),
  );
}

function numberFrom(text: string | undefined, source: string): number | undefined {
  if (text === undefined || text === '') return undefined;
  const value = Number(text);
  if (!Number.isFinite(value) || !/^\s*-?\d+\s*$/.test(text)) {
    throw new ConfigError(`${source} must be a whole number, got '${text}'.`);
  }
  return value;
}

function listFrom(text: string | undefined): string[] | undefined {
  if (text === undefined) return undefined;
  const items = text.split(',').map((item) => item.trim()).filter((item) => item.length > 0);
  return items.length > 0 ? items : undefined;
}

function resolvePath(baseDir: string, path: string): string {
  if (path.startsWith('~/')) return join(homedir(), path.slice(2));
  return isAbsolute(path) ? path : resolve(baseDir, path);
}

function describeIssues(error: z.ZodError): string {
  const lines = error.issues.map((issue) => {
    const key = issue.path.map(String).join('.');
    const top = String(issue.path[0] ?? '');
    const where = SOURCES[top] ? ` (set by ${SOURCES[top]})` : '';
    return `- ${key || '(root)'}: ${issue.message}${where}`;
  });
  return `Invalid configuration:\n${lines.join('\n')}`;
}
