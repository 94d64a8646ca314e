#!/usr/bin/env node
/**
 * Composition root and CLI entry: `iris <command> [options]`. Commands live in src/cli/, one file each.
 * This file and config/ are the only places that touch process.env and process.argv.
 */
import { buildCommand } from './cli/build.js';
import { IRIS_VERSION } from './cli/cli-support.js';
import { keysCommand } from './cli/keys.js';
import { modelsCommand } from './cli/models.js';
import { pullCommand } from './cli/pull.js';
import { rmCommand } from './cli/rm.js';
import { serveCommand } from './cli/serve.js';
import { synthCommand } from './cli/synth.js';
import { usageCommand } from './cli/usage.js';
import { CliUsageError, IrisError, OperatorError } from './errors.js';

const USAGE = `Usage: iris <command> [options]

Commands:
  serve    serve models behind the OpenAI-compatible API (default)
  pull     download a model from the Hugging Face hub into the cache
  models   list the models in the cache (--catalog: the models Iris knows)
  rm       delete a model from the cache
  synth    write a synthetic test model (model.gguf + mmproj.gguf)
  build    build llama-server from the pinned llama.cpp source (once) and print its path
  keys     create, list and revoke API keys (with limits and model scopes)
  usage    print requests and tokens per day, model or key
  version  print the version

Run 'iris <command> --help' for a command's options.
`;

async function main(argv: string[]): Promise<void> {
  const [command = 'serve', ...rest] = argv;
  switch (command) {
    case 'serve':
      return serveCommand(rest, process.env);
    case 'build':
      return buildCommand(rest, process.env);
    case 'synth':
      return synthCommand(rest);
    case 'pull':
      return pullCommand(rest, process.env);
    case 'models':
      return modelsCommand(rest, process.env);
    case 'rm':
      return rmCommand(rest, process.env);
    case 'keys':
      return keysCommand(rest, process.env);
    case 'usage':
      return usageCommand(rest, process.env);
    case 'version':
    case '--version':
      process.stdout.write(`${IRIS_VERSION}\n`);
      return;
    case 'help':
    case '--help':
    case '-h':
      process.stdout.write(USAGE);
      return;
    default:
      if (command.startsWith('--')) return serveCommand(argv, process.env);
      throw new CliUsageError(`Unknown command '${command}'.\n\n${USAGE}`);
  }
}

main(process.argv.slice(2)).catch((error: unknown) => {
  if (error instanceof OperatorError || (error as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
    process.stderr.write(`iris: ${(error as Error).message}\n`);
    process.exit(2);
  }
  if (error instanceof IrisError) {
    process.stderr.write(`iris: ${error.message}\n`);
    process.exit(1);
  }
  // A stack trace helps a developer, not an operator: only at debug level.
  const debug = /^(debug|trace)$/.test(logLevelFrom(process.argv, process.env) ?? '');
  const detail = error instanceof Error ? (debug ? (error.stack ?? error.message) : error.message) : String(error);
  process.stderr.write(`iris: ${detail}${debug ? '' : ' (--log-level debug shows where)'}\n`);
  process.exit(1);
});

/** The log level asked for with --log-level or IRIS_LOG_LEVEL, read without the config (which may have failed). */
function logLevelFrom(argv: readonly string[], env: NodeJS.ProcessEnv): string | undefined {
  const flag = argv.findIndex((arg) => arg === '--log-level' || arg.startsWith('--log-level='));
  if (flag >= 0) return argv[flag]!.includes('=') ? argv[flag]!.split('=')[1] : argv[flag + 1];
  return env['IRIS_LOG_LEVEL'];
}
