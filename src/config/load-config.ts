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
import { LOADING_SETTINGS, allSettings, flagKey, yamlKey, type PlacedSetting, type Setting } from './settings.js';

/**
 * The flags of `iris serve` as parsed, keyed by the flag's name in camelCase (`--ctx-size` -> `ctxSize`):
 * text for valued flags, a list for repeatable ones, `true` for switches. Which flags exist is the table
 * in settings.ts.
 */
export type ConfigFlags = Readonly<Record<string, string | boolean | readonly (string | boolean)[] | undefined>>;

/** Loads, merges, validates and freezes the configuration. */
export function loadConfig(flags: ConfigFlags, rawEnv: NodeJS.ProcessEnv): IrisConfig {
  // An empty variable (IRIS_HOST= in a unit file) means "not set", as in most servers.
  const env = Object.fromEntries(Object.entries(rawEnv).filter(([, value]) => value !== undefined && value !== '')) as Record<string, string>;
  const given = (placed: PlacedSetting): unknown => valueFromFlag(placed.setting, flags) ?? valueFromEnv(placed.setting, env);
  const loading = (key: keyof typeof LOADING_SETTINGS): string | undefined =>
    given({ scope: 'loading', path: [key], setting: LOADING_SETTINGS[key] }) as string | undefined;

  const configPath = loading('config');
  const file = configPath === undefined ? {} : readConfigFile(configPath);
  const baseDir = configPath === undefined ? process.cwd() : dirname(resolve(configPath));

  // flags over env over the file; the schema fills in defaults
  const merged: Record<string, unknown> = { ...file };
  const commandLineModel: Record<string, unknown> = {};
  for (const placed of allSettings()) {
    if (placed.scope === 'loading') continue;
    const value = given(placed);
    if (value === undefined) continue;
    if (placed.scope === 'model') commandLineModel[placed.path.join('.')] = value;
    else setPath(merged, placed.path, value);
  }

  const modelPath = loading('model');
  if (modelPath !== undefined) {
    const fromHub = looksLikeHubReference(modelPath);
    const model: Record<string, unknown> = {
      // Served now and kept loaded unless a keep-alive was set, so an idle instance stays ready.
      ...(merged['keepAlive'] === undefined ? { keepAlive: -1 } : {}),
      ...commandLineModel,
      id: commandLineModel['id'] ?? (fromHub ? modelPath : defaultModelId(modelPath)),
      ...(fromHub ? { hub: modelPath } : { model: modelPath }),
    };
    merged['models'] = [model, ...((merged['models'] as unknown[] | undefined) ?? [])];
    // The model named on the command line is the one the user wants served now: load it at start.
    merged['preload'] = [...new Set([model['id'], ...((merged['preload'] as unknown[] | undefined) ?? [])])];
  } else if (commandLineModel['mmproj'] !== undefined || commandLineModel['id'] !== undefined) {
    throw new ConfigError('--mmproj and --model-id need --model PATH.');
  } else if (Object.keys(commandLineModel).length > 0) {
    const named = allSettings().filter((placed) => placed.scope === 'model' && commandLineModel[placed.path.join('.')] !== undefined);
    throw new ConfigError(
      `Without --model PATH there is no model for ${named.map((placed) => `--${placed.setting.flag ?? ''}`).join(', ')} to set (in a config file, set it per model).`,
    );
  }

  merged['cacheDir'] ??= defaultCacheDir(env);
  merged['dataDir'] ??= defaultDataDir(env);

  const parsed = configSchema.safeParse(merged);
  if (!parsed.success) throw new ConfigError(describeIssues(parsed.error));

  const config = parsed.data;
  config.models = config.models.map((model) => ({
    ...model,
    ...(model.model === undefined ? {} : { model: resolvePath(baseDir, model.model) }),
    ...(model.mmproj === undefined ? {} : { mmproj: resolvePath(baseDir, model.mmproj) }),
  }));
  if (config.apiKeyFile !== undefined) {
    config.apiKeys = [...config.apiKeys, ...readApiKeyFile(resolvePath(baseDir, config.apiKeyFile))];
  }
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

/** A flag's value as the setting takes it; `undefined` when the flag was not given. */
function valueFromFlag(setting: Setting, flags: ConfigFlags): unknown {
  if (setting.flag === undefined) return undefined;
  const raw = flags[flagKey(setting.flag)];
  const name = `--${setting.flag}`;
  switch (setting.input) {
    case 'switch':
      return raw === true ? true : undefined;
    case 'list': {
      const items = (typeof raw === 'string' ? [raw] : Array.isArray(raw) ? raw : []).filter((item) => typeof item === 'string');
      return items.length > 0 ? items : undefined;
    }
    case 'integer':
      return typeof raw === 'string' ? numberFrom(raw, name) : undefined;
    case 'text':
      return typeof raw === 'string' ? raw : undefined;
  }
}

/** An environment variable's value as the setting takes it; `undefined` when it is not set. */
function valueFromEnv(setting: Setting, env: Record<string, string>): unknown {
  if (setting.env === undefined) return undefined;
  const raw = env[setting.env];
  if (raw === undefined) return undefined;
  switch (setting.input) {
    case 'switch':
      if (/^(1|true|yes)$/i.test(raw)) return true;
      if (/^(0|false|no)$/i.test(raw)) return false;
      throw new ConfigError(`${setting.env} must be true or false, got '${raw}'.`);
    case 'list':
      return listFrom(raw);
    case 'integer':
      return numberFrom(raw, setting.env);
    case 'text':
      return raw;
  }
}

function setPath(target: Record<string, unknown>, path: readonly string[], value: unknown): void {
  const [head, ...rest] = path;
  if (head === undefined) return;
  if (rest.length === 0) {
    target[head] = value;
    return;
  }
  const inner = target[head];
  const section = inner !== null && typeof inner === 'object' && !Array.isArray(inner) ? { ...(inner as Record<string, unknown>) } : {};
  setPath(section, rest, value);
  target[head] = section;
}

/** `~/.local/share/iris` unless XDG_DATA_HOME says otherwise. */
export function defaultDataDir(env: NodeJS.ProcessEnv): string {
  const base = env['XDG_DATA_HOME'] || join(env['HOME'] || homedir(), '.local', 'share');
  return join(base, 'iris');
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

/** Keys from an API key file: one per line, blank lines and `#` comments skipped. */
function readApiKeyFile(path: string): string[] {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new ConfigError(`Cannot read the API key file ${path} (--api-key-file / IRIS_API_KEYS_FILE): ${(error as Error).message}`, {
      cause: error,
    });
  }
  const keys = text.split(/\r?\n/).map((line) => line.trim()).filter((line) => line.length > 0 && !line.startsWith('#'));
  if (keys.length === 0) throw new ConfigError(`The API key file ${path} (--api-key-file / IRIS_API_KEYS_FILE) holds no keys.`);
  return keys;
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
    const sources = sourcesOf(issue.path.map(String));
    return `- ${key || '(root)'}: ${issue.message}${sources ? ` (set by ${sources})` : ''}`;
  });
  return `Invalid configuration:\n${lines.join('\n')}`;
}

/** Where the setting at an issue's path can be set: `--port / IRIS_PORT / port`. */
function sourcesOf(path: readonly string[]): string | undefined {
  const describe = (placed: PlacedSetting, key: string): string =>
    [placed.setting.flag && `--${placed.setting.flag}`, placed.setting.env, key].filter(Boolean).join(' / ');
  if (path[0] === 'models') {
    const field = path[2];
    const placed = allSettings().find((candidate) => candidate.scope === 'model' && candidate.path[0] === field);
    return placed ? describe(placed, `models[].${yamlKey(placed.path)}`) : 'models (config file) / --model';
  }
  const server = allSettings().filter((candidate) => candidate.scope === 'server');
  const exact = server.find((candidate) => candidate.path.join('.') === path.slice(0, candidate.path.length).join('.'));
  if (exact) return describe(exact, yamlKey(exact.path));
  const section = path[0];
  return section && server.some((candidate) => candidate.path.length > 1 && candidate.path[0] === section) ? `${yamlKey([section])} (config file)` : undefined;
}
