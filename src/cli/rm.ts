/**
 * `iris rm <model>[:QUANT]...`: deletes models' files from the cache: the whole repo, or with `:QUANT` only
 * that quantization (and the projector once no model of the repo is left).
 */
import { parseArgs } from 'node:util';
import { loadConfig } from '../config/load-config.js';
import { resolveCatalogId } from '../models/catalog.js';
import { removeCachedModel, repoCacheDir } from '../models/hub/index.js';
import { CliUsageError } from '../errors.js';

/** Help text of `iris rm`. */
export const RM_USAGE = `Usage: iris rm <model>[:QUANT]... [options]

Delete pulled models from the cache. <model> is what 'iris pull' took: a catalog id or alias, or a hub repo.
Without :QUANT every file of the repo goes; with it, only that quantization.

Options:
  --cache-dir DIR     cache directory (env IRIS_CACHE_DIR, default ~/.cache/iris)
  --config FILE       YAML config file (env IRIS_CONFIG)
`;

/** Runs `iris rm`. */
export async function rmCommand(argv: string[], env: NodeJS.ProcessEnv): Promise<void> {
  const { values, positionals } = parseArgs({
    args: argv,
    options: {
      'cache-dir': { type: 'string' },
      config: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
    allowPositionals: true,
  });
  if (values.help) {
    process.stdout.write(RM_USAGE);
    return;
  }
  if (positionals.length === 0) throw new CliUsageError(`Name a model to remove.\n\n${RM_USAGE}`);
  const config = loadConfig({ config: values.config, cacheDir: values['cache-dir'] }, env);
  for (const id of positionals) {
    const reference = resolveCatalogId(id);
    const repo = reference.kind === 'catalog' ? reference.entry.repo : reference.repo;
    const removed = await removeCachedModel(config.cacheDir, repo, reference.quant);
    const what = reference.quant === undefined ? repo : `${repo}:${reference.quant}`;
    process.stdout.write(`removed ${what} (${removed.length} file${removed.length === 1 ? '' : 's'} from ${repoCacheDir(config.cacheDir, repo)})\n`);
  }
}
