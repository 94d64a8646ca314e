/**
 * Iris configuration: one zod schema for what may come from CLI flags, environment variables and a YAML
 * file. `loadConfig` (in load-config.ts) merges them (flags > env > file > defaults), validates once and
 * freezes the result; everything else receives the frozen {@link IrisConfig} and never reads process.env.
 */
import { z } from 'zod';

/** One model served by the embedded llama.cpp engine. */
export const modelConfigSchema = z.strictObject({
  /** The id clients send as `model`. */
  id: z.string().min(1).max(256),
  /** Path to the text model GGUF. */
  model: z.string().min(1),
  /** Path to the multimodal projector GGUF; without it the model is text-only. */
  mmproj: z.string().min(1).optional(),
  /** Context size in tokens for the whole llama-server (shared by its slots). @default 4096 */
  context: z.number().int().min(256).max(1_048_576).default(4096),
  /** Parallel sequences (llama-server slots). @default 2 */
  slots: z.number().int().min(1).max(64).default(2),
  /** CPU threads for llama-server; 0 lets llama.cpp choose. @default 0 */
  threads: z.number().int().min(0).max(1024).default(0),
});

/** A model as written in config (before defaults). */
export type ModelConfigInput = z.input<typeof modelConfigSchema>;
/** A model after validation and defaults. */
export type ModelConfig = z.output<typeof modelConfigSchema>;

/** Limits on what one request may carry. */
export const limitsSchema = z.strictObject({
  /** Largest accepted request body in bytes. @default 100 MiB */
  maxBodyBytes: z.number().int().min(1024).default(100 * 1024 * 1024),
  /** Largest single image (decoded from base64 or fetched) in bytes. @default 20 MB */
  maxImageBytes: z.number().int().min(1024).default(20 * 1000 * 1000),
  /** All images of one request together, in bytes. @default 50 MB */
  maxRequestImageBytes: z.number().int().min(1024).default(50 * 1000 * 1000),
  /** Images in one request. @default 50 */
  maxImagesPerRequest: z.number().int().min(1).max(10_000).default(50),
  /** Largest image in pixels (width x height) that is decoded at all; refuses decompression bombs. @default 50 MP */
  maxImagePixels: z.number().int().min(1).default(50_000_000),
  /** Time to fetch one remote image, connect included, in ms. @default 10000 */
  imageFetchTimeoutMs: z.number().int().min(100).default(10_000),
  /** Requests waiting for a slot per model before new ones get 429. @default 64 */
  maxQueuedPerModel: z.number().int().min(0).default(64),
  /** Longest a request may wait in the queue for a slot, in ms. @default 120000 */
  queueTimeoutMs: z.number().int().min(100).default(120_000),
});

/** Where the embedded engine comes from. */
export const llamaSchema = z.strictObject({
  /** A user's own llama-server binary (CUDA, Metal builds); skips our build. Env IRIS_LLAMA_SERVER. */
  serverPath: z.string().min(1).optional(),
  /** Milliseconds to wait for a started llama-server to report healthy. @default 120000 */
  startTimeoutMs: z.number().int().min(1000).default(120_000),
});

/** The whole, validated configuration. */
export const configSchema = z.strictObject({
  /** Interface to listen on. Env IRIS_HOST. @default 127.0.0.1 */
  host: z.string().min(1).default('127.0.0.1'),
  /** Port to listen on; 0 picks a free one. Env IRIS_PORT. @default 8080 */
  port: z.number().int().min(0).max(65535).default(8080),
  /** Accepted API keys (Authorization: Bearer). Env IRIS_API_KEYS, comma-separated. */
  apiKeys: z.array(z.string().min(1)).default([]),
  /** Serve without API keys on a non-loopback interface. @default false */
  allowUnauthenticated: z.boolean().default(false),
  /** Models to serve. Empty means the default model from the hub. */
  models: z.array(modelConfigSchema).default([]),
  /** Directory for built llama-server binaries and downloaded models. Env IRIS_CACHE_DIR. */
  cacheDir: z.string().min(1),
  /** Hugging Face hub endpoint. Env HF_ENDPOINT. @default https://huggingface.co */
  hubEndpoint: z.url({ protocol: /^https?$/, error: 'must be an http(s) URL' }).default('https://huggingface.co'),
  /** Hub token for gated repos. Env HF_TOKEN. */
  hubToken: z.string().min(1).optional(),
  /** Hosts, host:port pairs or CIDRs that remote image URLs may reach despite SSRF rules. Env IRIS_ALLOW_MEDIA_HOSTS. */
  allowMediaHosts: z.array(z.string().min(1)).default([]),
  /** Hosts, host:port pairs or CIDRs that remote image URLs may never reach. Env IRIS_DENY_MEDIA_HOSTS. */
  denyMediaHosts: z.array(z.string().min(1)).default([]),
  limits: limitsSchema.prefault({}),
  llama: llamaSchema.prefault({}),
  /** pino log level. Env IRIS_LOG_LEVEL. @default info */
  logLevel: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
});

/** Configuration as accepted before defaults. */
export type IrisConfigInput = z.input<typeof configSchema>;
/** The frozen configuration every part receives. */
export type IrisConfig = Readonly<z.output<typeof configSchema>>;
