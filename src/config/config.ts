/**
 * Iris configuration: the zod schema of everything that may come from CLI flags, environment variables and
 * a YAML file, built from the one table of settings in settings.ts. `loadConfig` (in load-config.ts) merges
 * the sources (flags > env > file > defaults), validates once and freezes the result; everything else
 * receives the frozen {@link IrisConfig} and never reads process.env.
 */
import { z } from 'zod';
import { deepFreeze } from './deep-freeze.js';
import { MODEL_SETTINGS, SERVER_SETTINGS, type Section, type Setting } from './settings.js';
import { upstreamConfigSchema } from './value-schemas.js';

export { durationSchema, memorySizeSchema, upstreamConfigSchema, upstreamEndpointSchema } from './value-schemas.js';

/** The zod shape of a table of settings: each setting's schema, each section a strict object. */
type ShapeOf<T> = {
  [K in keyof T]: T[K] extends Setting<infer S> ? S : T[K] extends Section<infer F> ? z.ZodPrefault<z.ZodObject<ShapeOf<F>, z.core.$strict>> : never;
};

function shapeOf<T extends Record<string, Setting | Section>>(table: T): ShapeOf<T> {
  return Object.fromEntries(
    Object.entries(table).map(([key, entry]) => [key, 'section' in entry ? z.strictObject(shapeOf(entry.section)).prefault({}) : entry.schema]),
  ) as ShapeOf<T>;
}

/**
 * One model. Exactly one of `model` (a local GGUF), `hub` (a catalog id or hub repo, pulled into the cache
 * on first load) or `upstream` (remote servers) says where it comes from; the rest is {@link MODEL_SETTINGS}.
 */
export const modelConfigSchema = z
  .strictObject({
    /** Path to the text model GGUF. */
    model: z.string().min(1).optional(),
    /** A catalog id or hub repo, optionally with `:QUANT` (`ggml-org/SmolVLM-500M-Instruct-GGUF:Q8_0`). */
    hub: z.string().min(1).optional(),
    /** Remote OpenAI-compatible servers that serve this model. */
    upstream: upstreamConfigSchema.optional(),
    ...shapeOf(MODEL_SETTINGS),
  })
  .refine((model) => [model.model, model.hub, model.upstream].filter((source) => source !== undefined).length === 1, {
    message: 'a model needs exactly one of model (a GGUF path), hub (a repo to pull) or upstream (remote servers)',
  });

/** A model as written in config (before defaults). */
export type ModelConfigInput = z.input<typeof modelConfigSchema>;
/** A model after validation and defaults. */
export type ModelConfig = z.output<typeof modelConfigSchema>;

/** The per-model settings' written defaults, for models Iris registers itself (slots and threads have none: see machine-defaults.ts). */
export const MODEL_DEFAULTS = deepFreeze(z.object(shapeOf(MODEL_SETTINGS)).omit({ id: true }).parse({}));

/** The whole, validated configuration. */
export const configSchema = z.strictObject({
  ...shapeOf(SERVER_SETTINGS),
  /** Models to serve. Empty means the default model from the hub. */
  models: z.array(modelConfigSchema).default([]),
});

/** Configuration as accepted before defaults. */
export type IrisConfigInput = z.input<typeof configSchema>;
/** The frozen configuration every part receives. */
export type IrisConfig = Readonly<z.output<typeof configSchema>>;
