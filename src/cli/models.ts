/**
 * `iris models`: the models in the cache (size, quantization, context, what they take in, where they are)
 * and, when an Iris server is running, what it serves and which of those are loaded now; or with `--catalog`
 * the models Iris knows how to pull.
 */
import { parseArgs } from 'node:util';
import prettyBytes from 'pretty-bytes';
import { request } from 'undici';
import { loadConfig } from '../config/load-config.js';
import { CATALOG } from '../models/catalog.js';
import { listCachedModels, type CachedModel } from '../models/hub/index.js';
import { table } from './cli-support.js';

/** Help text of `iris models`. */
export const MODELS_USAGE = `Usage: iris models [options]

List the models in the cache: id, quantization, size on disk, trained context, input modalities, path;
then, if an Iris server answers, the models it serves and which are loaded.

Options:
  --catalog           list the catalog of known vision-language models instead (what 'iris pull' accepts by name)
  --json              print JSON instead of a table
  --cache-dir DIR     cache directory (env IRIS_CACHE_DIR, default ~/.cache/iris)
  --config FILE       YAML config file (env IRIS_CONFIG)
  --server URL        the running server to ask (default http://IRIS_HOST:IRIS_PORT, with the first of IRIS_API_KEYS)
`;

/** Runs `iris models`. */
export async function modelsCommand(argv: string[], env: NodeJS.ProcessEnv): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      catalog: { type: 'boolean' },
      json: { type: 'boolean' },
      'cache-dir': { type: 'string' },
      config: { type: 'string' },
      server: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values.help) {
    process.stdout.write(MODELS_USAGE);
    return;
  }
  if (values.catalog) {
    if (values.json) {
      process.stdout.write(`${JSON.stringify(CATALOG, null, 2)}\n`);
      return;
    }
    process.stdout.write(
      table(
        ['ID', 'ALIAS', 'GGUF REPO', 'QUANT', 'CONTEXT', 'DOWNLOAD', 'PROJECTOR'],
        CATALOG.map((entry) => [
          entry.id,
          entry.aliases[0] ?? '',
          entry.repo,
          entry.defaultQuant,
          String(entry.context),
          `~${prettyBytes(entry.approxBytes.model + entry.approxBytes.mmproj, { maximumFractionDigits: 1 })}`,
          entry.projector,
        ]),
      ),
    );
    return;
  }

  const config = loadConfig({ config: values.config, cacheDir: values['cache-dir'] }, env);
  const host = config.host === '0.0.0.0' || config.host === '::' ? '127.0.0.1' : config.host;
  const serverUrl = values.server ?? `http://${host.includes(':') ? `[${host}]` : host}:${config.port}`;
  const [models, served] = await Promise.all([listCachedModels(config.cacheDir), servedModels(serverUrl, config.apiKeys[0])]);
  if (values.json) {
    process.stdout.write(`${JSON.stringify({ cached: models.map(toJson), server: served === undefined ? null : { url: serverUrl, models: served } }, null, 2)}\n`);
    return;
  }
  if (served !== undefined) {
    process.stdout.write(`Served by ${serverUrl}:\n`);
    process.stdout.write(
      table(
        ['MODEL', 'STATE', 'CONTEXT', 'MEMORY', 'INPUT'],
        served.map((model) => [
          model.id,
          model.state ?? (model.loaded ? 'loaded' : 'unloaded'),
          model.context_length === undefined ? '?' : String(model.context_length),
          typeof model.memory_bytes === 'number' ? prettyBytes(model.memory_bytes, { maximumFractionDigits: 1 }) : '?',
          (model.input_modalities ?? ['text']).join('+'),
        ]),
      ),
    );
    process.stdout.write('\n');
  }
  if (models.length === 0) {
    process.stdout.write(`No models in the cache (${config.cacheDir}/models). Pull one with: iris pull smolvlm-256m\n`);
    return;
  }
  if (served !== undefined) process.stdout.write('In the cache:\n');
  process.stdout.write(
    table(
      ['MODEL', 'QUANT', 'SIZE', 'CONTEXT', 'INPUT', 'PATH'],
      models.map((model) => [
        model.id,
        model.quant,
        prettyBytes(model.sizeBytes, { maximumFractionDigits: 1 }),
        model.contextLength === undefined ? '?' : String(model.contextLength),
        model.modalities.join('+'),
        model.modelPath,
      ]),
    ),
  );
  const problems = models.filter((model) => model.problem !== undefined);
  for (const model of problems) process.stdout.write(`warning: ${model.modelPath}: ${model.problem}\n`);
}

/** A model as a running server's /v1/models shows it (Iris's extension fields are optional: any server will do). */
interface ServedModel {
  id: string;
  loaded?: boolean;
  state?: string;
  context_length?: number;
  memory_bytes?: number | null;
  input_modalities?: string[];
}

/** The models a running server lists, or undefined when none answers (quickly) at `url`. */
async function servedModels(url: string, apiKey: string | undefined): Promise<ServedModel[] | undefined> {
  try {
    const response = await request(`${url.replace(/\/$/, '')}/v1/models`, {
      headers: apiKey === undefined ? {} : { authorization: `Bearer ${apiKey}` },
      headersTimeout: 1500,
      bodyTimeout: 1500,
      signal: AbortSignal.timeout(2000),
    });
    if (response.statusCode !== 200) {
      await response.body.dump();
      return undefined;
    }
    const body = (await response.body.json()) as { data?: ServedModel[] };
    return Array.isArray(body.data) ? body.data : undefined;
  } catch {
    return undefined;
  }
}

function toJson(model: CachedModel): Record<string, unknown> {
  return {
    id: model.id,
    repo: model.repo,
    quant: model.quant,
    sizeBytes: model.sizeBytes,
    contextLength: model.contextLength ?? null,
    architecture: model.architecture ?? null,
    projector: model.projector ?? null,
    modalities: model.modalities,
    modelPath: model.modelPath,
    modelFiles: model.modelFiles,
    mmprojPath: model.mmprojPath ?? null,
    problem: model.problem ?? null,
  };
}
