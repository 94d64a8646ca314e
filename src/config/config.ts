/**
 * Iris configuration: one zod schema for what may come from CLI flags, environment variables and a YAML
 * file. `loadConfig` (in load-config.ts) merges them (flags > env > file > defaults), validates once and
 * freezes the result; everything else receives the frozen {@link IrisConfig} and never reads process.env.
 */
import { totalmem } from 'node:os';
import { z } from 'zod';

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/**
 * A duration as Ollama's keep_alive takes it: `10m`, `30s`, `1h`, `500ms`, a number of seconds, or a
 * negative value for "forever". Parsed to milliseconds; -1 means never.
 */
export const durationSchema = z.union([z.number(), z.string()]).transform((input, context) => {
  const text = String(input).trim();
  const match = /^(-?\d+(?:\.\d+)?)\s*(ms|s|m|h)?$/.exec(text);
  if (!match) {
    context.addIssue({ code: 'custom', message: `'${text}' is not a duration (e.g. 30s, 10m, 1h, -1 for never)` });
    return z.NEVER;
  }
  const value = Number(match[1]);
  if (value < 0) return -1;
  return Math.round(value * (DURATION_UNITS[match[2] ?? 's'] ?? 1000));
});

/**
 * A memory size: bytes as a number, a string with a unit (`512MiB`, `8GB`, `2g`), or a share of this
 * machine's RAM (`70%`). Parsed to bytes.
 */
export const memorySizeSchema = z.union([z.number(), z.string()]).transform((input, context) => {
  const text = String(input).trim();
  const percent = /^(\d+(?:\.\d+)?)\s*%$/.exec(text);
  if (percent) {
    const share = Number(percent[1]);
    if (share <= 0 || share > 100) {
      context.addIssue({ code: 'custom', message: `'${text}' must be a share between 0% and 100%` });
      return z.NEVER;
    }
    return Math.floor((totalmem() * share) / 100);
  }
  const match = /^(\d+(?:\.\d+)?)\s*([kmgt]?)(i?)b?$/i.exec(text);
  if (!match) {
    context.addIssue({ code: 'custom', message: `'${text}' is not a memory size (e.g. 8GiB, 512MB, 70%)` });
    return z.NEVER;
  }
  const exponent = ' kmgt'.indexOf((match[2] || ' ').toLowerCase());
  const base = match[3] ? 1024 : 1000;
  return Math.floor(Number(match[1]) * base ** Math.max(0, exponent));
});

/** One OpenAI-compatible server a remote model is served from. */
export const upstreamEndpointSchema = z.strictObject({
  /** Base URL with the API prefix, e.g. `http://gpu-1:8000/v1`. */
  url: z.url({ protocol: /^https?$/ }),
  /** Bearer key for that server. */
  apiKey: z.string().min(1).optional(),
});

/** A model served by remote OpenAI-compatible servers (vLLM, SGLang, llama-server, another Iris). */
export const upstreamConfigSchema = z.strictObject({
  /** The servers; requests go round-robin to the healthy ones and fail over between them. */
  endpoints: z.array(upstreamEndpointSchema).min(1),
  /** The model name to send upstream. @default the model's id */
  model: z.string().min(1).optional(),
  /** Whether the remote model takes images. @default true */
  vision: z.boolean().default(true),
  /** Connect + first-byte timeout per attempt, in ms. @default 30000 */
  timeoutMs: z.number().int().min(100).default(30_000),
});

/**
 * One model. Exactly one of `model` (a local GGUF), `hub` (a catalog id or hub repo, pulled into the cache
 * on first load) or `upstream` (remote servers) says where it comes from.
 */
export const modelConfigSchema = z.strictObject({
  /** The id clients send as `model`. */
  id: z.string().min(1).max(256),
  /** Path to the text model GGUF. */
  model: z.string().min(1).optional(),
  /** A catalog id or hub repo, optionally with `:QUANT` (`ggml-org/SmolVLM-500M-Instruct-GGUF:Q8_0`). */
  hub: z.string().min(1).optional(),
  /** Remote OpenAI-compatible servers that serve this model. */
  upstream: upstreamConfigSchema.optional(),
  /** Path to the multimodal projector GGUF; without it the model is text-only. */
  mmproj: z.string().min(1).optional(),
  /** llama-server's --chat-template, for models whose GGUF template is missing or wrong (e.g. `vicuna`). */
  chatTemplate: z.string().min(1).optional(),
  /** Context size in tokens for the whole llama-server (shared by its slots). @default the catalog's for catalog models, else 4096 */
  context: z.number().int().min(256).max(1_048_576).optional(),
  /** Parallel sequences (llama-server slots). @default 2 */
  slots: z.number().int().min(1).max(64).default(2),
  /** CPU threads for llama-server; 0 lets llama.cpp choose. @default 0 */
  threads: z.number().int().min(0).max(1024).default(0),
  /** How long the model stays loaded after its last request (ms after parsing; -1 = forever). @default the server's keepAlive */
  keepAlive: durationSchema.optional(),
}).refine((model) => [model.model, model.hub, model.upstream].filter((source) => source !== undefined).length === 1, {
  message: 'a model needs exactly one of model (a GGUF path), hub (a repo to pull) or upstream (remote servers)',
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

/** How images are normalized and cached (config file `images:`). */
export const imagesSchema = z.strictObject({
  /** Colour transparent pixels are composited onto, `#rrggbb`. @default '#ffffff' */
  background: z.string().regex(/^#[0-9a-fA-F]{6}$/, 'must be a #rrggbb colour').default('#ffffff'),
  /** Redirects followed when fetching one remote image; every hop is checked again. @default 3 */
  maxRedirects: z.number().int().min(0).max(10).default(3),
  /** Bytes of normalized images kept by content hash (0 disables). @default 256 MiB */
  decodedCacheBytes: z.number().int().min(0).default(256 * 1024 * 1024),
  /** Bytes of fetched images kept by URL (0 disables). @default 64 MiB */
  fetchCacheBytes: z.number().int().min(0).default(64 * 1024 * 1024),
  /** How long fetched image bytes are reused, in ms. @default 60000 */
  fetchCacheTtlMs: z.number().int().min(0).max(3_600_000).default(60_000),
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
  /**
   * Which unconfigured model ids a request may pull from the hub on demand: `never`, `catalog` (ids in
   * Iris's catalog of known VLMs) or `any` (any hub repo with GGUFs). Env IRIS_PULL_ON_DEMAND. @default catalog
   */
  pullOnDemand: z.enum(['never', 'catalog', 'any']).default('catalog'),
  /** Model ids loaded at start instead of on first request. */
  preload: z.array(z.string().min(1)).default([]),
  /** How long an idle model stays loaded, for models that do not set their own (ms after parsing; -1 = forever). Env IRIS_KEEP_ALIVE. @default 10m */
  keepAlive: durationSchema.prefault('10m'),
  /** Memory the loaded models may use together (bytes after parsing); the least recently used idle model is unloaded to make room. Env IRIS_MEMORY_BUDGET. @default 70% of RAM */
  memoryBudget: memorySizeSchema.prefault('70%'),
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
  images: imagesSchema.prefault({}),
  llama: llamaSchema.prefault({}),
  /** pino log level. Env IRIS_LOG_LEVEL. @default info */
  logLevel: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
});

/** Configuration as accepted before defaults. */
export type IrisConfigInput = z.input<typeof configSchema>;
/** The frozen configuration every part receives. */
export type IrisConfig = Readonly<z.output<typeof configSchema>>;
