/**
 * `iris pull <model>[:QUANT]...`: downloads models' GGUF files from the Hugging Face hub into the cache, with
 * a progress bar on a terminal and plain lines otherwise; an interrupted pull resumes where it stopped.
 */
import { parseArgs } from 'node:util';
import prettyBytes from 'pretty-bytes';
import { loadConfig } from '../config/load-config.js';
import { createLogger } from '../logger.js';
import { consoleProgress, pullModel, type PulledModel } from '../models/hub/index.js';
import { CliUsageError } from '../errors.js';

/** Help text of `iris pull`. */
export const PULL_USAGE = `Usage: iris pull <model>[:QUANT]... [options]

Download models from the Hugging Face hub into the cache (resumes an interrupted pull, verifies SHA-256).
<model> is a catalog id or alias (see 'iris models --catalog'), e.g. smolvlm-256m or
HuggingFaceTB/SmolVLM-256M-Instruct, or a hub repo with GGUF files, e.g. ggml-org/gemma-3-4b-it-GGUF.
:QUANT picks a quantization (Q4_K_M, Q8_0, F16, ...; default: the catalog's, else Q4_K_M or Q8_0).

Options:
  --revision REV      branch, tag or commit to pull (default main)
  --cache-dir DIR     cache directory (env IRIS_CACHE_DIR, default ~/.cache/iris); files go to DIR/models/<repo>/
  --config FILE       YAML config file (env IRIS_CONFIG)
  --log-level LEVEL   fatal|error|warn|info|debug|trace|silent (default warn)

Environment: HF_ENDPOINT (hub or mirror, default https://huggingface.co), HF_TOKEN (gated and private repos).
`;

/** Runs `iris pull`. */
export async function pullCommand(argv: string[], env: NodeJS.ProcessEnv): Promise<void> {
  const { values, positionals } = parseArgs({
    args: argv,
    options: {
      revision: { type: 'string' },
      'cache-dir': { type: 'string' },
      config: { type: 'string' },
      'log-level': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
    allowPositionals: true,
  });
  if (values.help) {
    process.stdout.write(PULL_USAGE);
    return;
  }
  if (positionals.length === 0) throw new CliUsageError(`Name a model to pull.\n\n${PULL_USAGE}`);
  const config = loadConfig({ config: values.config, cacheDir: values['cache-dir'], logLevel: values['log-level'] ?? 'warn' }, env);
  const logger = createLogger(config.logLevel);
  const progress = consoleProgress(process.stderr);
  try {
    for (const id of positionals) {
      const pulled = await pullModel({ id, config, logger, progress, revision: values.revision });
      process.stdout.write(describePull(pulled));
    }
  } finally {
    logger.flush();
  }
}

function describePull(pulled: PulledModel): string {
  const downloaded = pulled.downloadedBytes > 0 ? `${prettyBytes(pulled.downloadedBytes)} downloaded` : 'already in the cache';
  const lines = [
    `pulled ${pulled.id} (${pulled.repo}, ${pulled.quant}, ${downloaded})`,
    `  model   ${pulled.modelPath}`,
    ...(pulled.mmprojPath === undefined ? ['  (no projector: text only)'] : [`  mmproj  ${pulled.mmprojPath}`]),
    `  serve:  iris serve --model ${pulled.modelPath}${pulled.mmprojPath === undefined ? '' : ` --mmproj ${pulled.mmprojPath}`} --model-id ${pulled.id} --ctx-size ${pulled.context}`,
  ];
  return `${lines.join('\n')}\n`;
}
