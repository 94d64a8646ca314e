/**
 * `iris synth --out DIR [--size tiny|tiny-tiling|smolvlm] [--seed N] [--chat-template FILE]`: writes a random-weight model pair
 * (DIR/model.gguf, DIR/mmproj.gguf) in real GGUF architectures, for tests, benchmarks and offline starts.
 */
import { readFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { synthesizeModel, type SynthSize } from '../synth/recipes.js';
import { CliUsageError } from '../errors.js';

/** Help text of `iris synth`. */
export const SYNTH_USAGE = `Usage: iris synth --out DIR [--size tiny|tiny-tiling|smolvlm] [--seed N] [--chat-template FILE]

Write a synthetic (random-weight) vision-language model: DIR/model.gguf and DIR/mmproj.gguf.
  tiny         < 1 MB, LLaVA-style mlp projector, 16 image tokens per image (tests)
  tiny-tiling  tiny text model with a tiling projector: bigger images give more tokens (tests)
  smolvlm      SmolVLM-256M's text dimensions and a ViT-B/16-sized encoder (benchmarks)
--chat-template FILE writes that Jinja template into the model instead of a minimal ChatML one (e.g. a
real model's, to exercise its tool-call format).
Its output is gibberish: it exists to exercise the server, not to answer questions.
`;

const SIZES: readonly SynthSize[] = ['tiny', 'tiny-tiling', 'smolvlm'];

/** Runs `iris synth`. */
export async function synthCommand(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      out: { type: 'string' },
      size: { type: 'string', default: 'tiny' },
      seed: { type: 'string' },
      'chat-template': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values.help) {
    process.stdout.write(SYNTH_USAGE);
    return;
  }
  if (!values.out) throw new CliUsageError(`--out DIR is required.\n\n${SYNTH_USAGE}`);
  const size = values.size as SynthSize;
  if (!SIZES.includes(size)) throw new CliUsageError(`--size must be one of ${SIZES.join(', ')}, got '${values.size}'.`);
  const seed = values.seed === undefined ? undefined : Number(values.seed);
  if (seed !== undefined && !Number.isInteger(seed)) throw new CliUsageError(`--seed must be a whole number.`);
  const started = Date.now();
  const templateFile = values['chat-template'];
  const chatTemplate = templateFile === undefined ? undefined : await readFile(templateFile, 'utf8').catch((error: unknown) => {
    throw new CliUsageError(`--chat-template: cannot read '${templateFile}' (${(error as Error).message}).`);
  });
  const result = await synthesizeModel({
    out: values.out,
    size,
    ...(seed === undefined ? {} : { seed }),
    ...(chatTemplate === undefined ? {} : { chatTemplate }),
  });
  process.stdout.write(
    `wrote ${result.modelPath}\nwrote ${result.mmprojPath}\n` +
      `(${size}, ${result.imageTokensPerImage} image tokens per base-size image, ${((Date.now() - started) / 1000).toFixed(1)} s)\n`,
  );
}
