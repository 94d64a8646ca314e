/**
 * THE table of Iris's settings. Every setting is written once, here: its place in {@link IrisConfig}, its
 * zod schema, its default, its `iris serve` flag, its environment variable and its `--help` line. The YAML
 * key is the place in snake_case (`limits.max_body_bytes`). config.ts builds the schema from this table,
 * load-config.ts merges flags > env > file > defaults by it, and `iris serve` takes its parseArgs options
 * and its `--help` text from it.
 *
 * To add a setting, add ONE entry below:
 * ```ts
 * maxWidgets: setting({
 *   schema: z.number().int().min(1),   // the value's type and bounds, without a default
 *   default: 8,                        // as a user would write it ('10m', '70%', 8); omit for optional
 *   flag: 'max-widgets',               // optional: `iris serve --max-widgets N`
 *   env: 'IRIS_MAX_WIDGETS',           // optional
 *   input: 'integer',                  // how flag/env text is read: text (default), integer, list, switch
 *   placeholder: 'N',                  // shown after the flag in --help
 *   help: 'widgets per request',       // the --help line (and the JSDoc of the setting)
 * }),
 * ```
 * A setting in a section of the file (`limits:`, `images:`, `llama:`) goes inside that section's
 * `section({...})`; a per-model setting goes in {@link MODEL_SETTINGS} (its flag applies to `--model`).
 * Read it as `config.maxWidgets` (typed from the schema). Nothing else needs editing.
 */
import { z } from 'zod';
import { durationSchema, memorySizeSchema } from './value-schemas.js';

/** How the text of a flag or an environment variable becomes a value. */
export type SettingInput =
  /** the text as is */
  | 'text'
  /** a whole number; anything else is an error naming the flag or variable */
  | 'integer'
  /** a repeatable flag; the variable is comma-separated */
  | 'list'
  /** a flag without a value that turns the setting on */
  | 'switch';

/** One setting: where it comes from, what it accepts, what it defaults to, how --help describes it. */
export interface Setting<S extends z.ZodType = z.ZodType> {
  /** The value's schema, default included. */
  schema: S;
  /** The default as a user writes it (shown by --help), if any. */
  default?: unknown;
  /** Flag of `iris serve`, without the dashes. */
  flag?: string;
  /** Environment variable. */
  env?: string;
  /** How flag and env text is read. @default 'text' */
  input: SettingInput;
  /** Placeholder after the flag in --help, e.g. `PORT`. */
  placeholder?: string;
  /** What the setting does, for --help. */
  help: string;
  /** The default as --help says it, when it is computed rather than written here. */
  defaultText?: string;
}

interface SettingSpec<S extends z.ZodType> {
  schema: S;
  flag?: string;
  env?: string;
  input?: SettingInput;
  placeholder?: string;
  help: string;
  defaultText?: string;
}

/** Declares a setting; with `default`, the schema fills it in (parsed like user input) when nothing sets it. */
export function setting<S extends z.ZodType>(spec: SettingSpec<S> & { default: z.input<S> }): Setting<z.ZodPrefault<S>>;
export function setting<S extends z.ZodType>(spec: SettingSpec<S>): Setting<S>;
export function setting(spec: SettingSpec<z.ZodType> & { default?: unknown }): Setting {
  const { default: fallback, input = 'text', ...rest } = spec;
  return fallback === undefined ? { ...rest, input } : { ...rest, input, default: fallback, schema: spec.schema.prefault(fallback) };
}

/** A group of settings kept under one key of the config file (`limits:`), read as `config.limits.x`. */
export interface Section<T extends Record<string, Setting> = Record<string, Setting>> {
  section: T;
  /** What the section holds. */
  help: string;
}

/** Declares a section of the config file. */
export function section<T extends Record<string, Setting>>(help: string, settings: T): Section<T> {
  return { section: settings, help };
}

/** Settings that only steer loading (`--config`, `--model`) and are not part of the frozen config. */
export const LOADING_SETTINGS = {
  model: setting({
    schema: z.string(),
    flag: 'model',
    placeholder: 'PATH|REPO',
    help: 'text model GGUF, or a catalog id / hub repo[:QUANT] to pull (without it: the default model, SmolVLM-256M-Instruct, from the hub)',
  }),
  config: setting({ schema: z.string(), flag: 'config', env: 'IRIS_CONFIG', placeholder: 'FILE', help: 'YAML config file' }),
} as const;

/** Settings of one model (config file `models:` entries; the flags apply to the `--model` one). */
export const MODEL_SETTINGS = {
  /** The id clients send as `model`. */
  id: setting({
    schema: z.string().min(1).max(256),
    flag: 'model-id',
    placeholder: 'ID',
    help: 'id clients send as "model"',
    defaultText: 'the file name without .gguf',
  }),
  /** Path to the multimodal projector GGUF; without it the model is text-only. */
  mmproj: setting({ schema: z.string().min(1).optional(), flag: 'mmproj', placeholder: 'PATH', help: 'multimodal projector GGUF for --model' }),
  /** llama-server's --chat-template, for models whose GGUF template is missing or wrong (e.g. `vicuna`). */
  chatTemplate: setting({ schema: z.string().min(1).optional(), help: "llama-server's --chat-template, for models whose GGUF template is missing or wrong" }),
  /** Context size in tokens for the whole llama-server (shared by its slots). */
  context: setting({
    schema: z.number().int().min(256).max(1_048_576).optional(),
    flag: 'ctx-size',
    input: 'integer',
    placeholder: 'N',
    help: 'context size for --model',
    defaultText: "the catalog's for catalog models, else 4096",
  }),
  /** Parallel requests (llama-server slots); unset: chosen from the machine (engines/llama-runner/machine-defaults.ts). */
  slots: setting({
    schema: z.number().int().min(1).max(64).optional(),
    flag: 'slots',
    input: 'integer',
    placeholder: 'N',
    help: 'parallel requests for --model',
    defaultText: '4 per thread, at most 16 and one per 1024 tokens of context; upstream models 64',
  }),
  /** CPU threads for llama-server; 0 lets llama.cpp choose; unset: the usable physical cores (machine-defaults.ts). */
  threads: setting({
    schema: z.number().int().min(0).max(1024).optional(),
    flag: 'threads',
    input: 'integer',
    placeholder: 'N',
    help: 'CPU threads for --model; 0 lets llama.cpp choose',
    defaultText: 'the CPUs Iris may use, at most one per physical core',
  }),
  /** How long the model stays loaded after its last request (ms after parsing; -1 = forever). */
  keepAlive: setting({
    schema: durationSchema.optional(),
    help: 'unload this model when idle this long',
    defaultText: "the server's keep_alive; -1 for the --model model unless a keep-alive is set",
  }),
  /** Memory for the engine's prompt cache (llama-server --cache-ram), in bytes after parsing; 0 disables it. */
  promptCache: setting({ schema: memorySizeSchema.optional(), help: "memory for this model's prompt cache; 0 disables it", defaultText: "the server's prompt_cache" }),
  /** Layers llama-server offloads to the GPU (`--gpu-layers`): a count, `all` or `auto`. */
  gpuLayers: setting({
    schema: z
      .union([z.number().int().min(0), z.enum(['all', 'auto']), z.string().regex(/^\d+$/).transform(Number)], {
        error: "must be a number of layers, 'all' or 'auto'",
      })
      .optional(),
    flag: 'gpu-layers',
    placeholder: 'N|all|auto',
    help: 'layers of --model on the GPU',
    defaultText: "all with a GPU build of llama-server, else llama-server's own",
  }),
  /** Extra llama-server arguments (`[--flash-attn, on]`); arguments Iris sets itself are refused at startup. */
  llamaArgs: setting({ schema: z.array(z.string().min(1)).optional(), help: 'extra llama-server arguments, for what Iris does not model' }),
} as const;

/** Settings of the server: top-level keys of the config file, and its sections. */
export const SERVER_SETTINGS = {
  /** Which unconfigured model ids a request may pull from the hub on demand. */
  pullOnDemand: setting({
    schema: z.enum(['never', 'catalog', 'any']),
    default: 'catalog',
    flag: 'pull-on-demand',
    env: 'IRIS_PULL_ON_DEMAND',
    placeholder: 'MODE',
    help: 'which unconfigured models a request may pull: never|catalog|any',
  }),
  /** Model ids loaded at start instead of on first request. */
  preload: setting({
    schema: z.array(z.string().min(1)),
    default: [],
    flag: 'preload',
    input: 'list',
    placeholder: 'ID',
    help: 'load this configured model at start, not on first request; repeatable (--model is always preloaded)',
  }),
  /** How long an idle model stays loaded, for models that do not set their own (ms after parsing; -1 = forever). */
  keepAlive: setting({
    schema: durationSchema,
    default: '10m',
    flag: 'keep-alive',
    env: 'IRIS_KEEP_ALIVE',
    placeholder: 'DURATION',
    help: 'unload a model idle this long: 30s, 10m, 1h, -1 = never; unless set, the --model model stays loaded',
  }),
  /** Memory the loaded models may use together (bytes after parsing). */
  memoryBudget: setting({
    schema: memorySizeSchema,
    default: '70%',
    flag: 'memory-budget',
    env: 'IRIS_MEMORY_BUDGET',
    placeholder: 'SIZE',
    help: 'memory all loaded models may use: 8GiB, 512MB, 70%; the least recently used idle model is unloaded to make room',
  }),
  /** Memory each embedded model's prompt cache may use (llama-server --cache-ram), counted in the memory budget. */
  promptCache: setting({
    schema: memorySizeSchema.optional(),
    flag: 'prompt-cache',
    env: 'IRIS_PROMPT_CACHE',
    placeholder: 'SIZE',
    help: "memory for each model's prompt cache, counted in the memory budget; 0 disables it",
    defaultText: 'a 16th of the memory budget, at most 1GiB',
  }),
  /** Interface to listen on. */
  host: setting({ schema: z.string().min(1), default: '127.0.0.1', flag: 'host', env: 'IRIS_HOST', placeholder: 'HOST', help: 'interface to listen on' }),
  /** Port to listen on; 0 picks a free one. */
  port: setting({
    schema: z.number().int().min(0).max(65535),
    default: 8080,
    flag: 'port',
    env: 'IRIS_PORT',
    input: 'integer',
    placeholder: 'PORT',
    help: 'port to listen on',
  }),
  /**
   * Admin API keys (Authorization: Bearer), in clear or as `sha256:<64 hex>` of the key. Keys made with
   * `iris keys create` live in the database instead.
   */
  apiKeys: setting({
    schema: z.array(
      z.string().min(1).refine((key) => !key.startsWith('sha256:') || /^sha256:[0-9a-fA-F]{64}$/.test(key), {
        message: "a sha256: key must be sha256: followed by the 64 hex digits of the key's SHA-256",
      }),
    ),
    default: [],
    flag: 'api-key',
    env: 'IRIS_API_KEYS',
    input: 'list',
    placeholder: 'KEY',
    help: 'accepted admin API key, or sha256:<hex> of one; repeatable; visible in ps: prefer --api-key-file (iris keys create makes keys with limits)',
  }),
  /** A file of accepted API keys, one per line (`#` starts a comment), added to apiKeys; keeps keys out of `ps`. */
  apiKeyFile: setting({
    schema: z.string().min(1).optional(),
    flag: 'api-key-file',
    env: 'IRIS_API_KEYS_FILE',
    placeholder: 'FILE',
    help: 'file of accepted admin API keys (or sha256:<hex>), one per line, # starts a comment',
  }),
  /** Serve without API keys on a non-loopback interface. */
  allowUnauthenticated: setting({
    schema: z.boolean(),
    default: false,
    flag: 'allow-unauthenticated',
    input: 'switch',
    help: 'serve without API keys on a non-loopback host',
  }),
  /** Hosts, host:port pairs or CIDRs that remote image URLs may reach despite SSRF rules. */
  allowMediaHosts: setting({
    schema: z.array(z.string().min(1)),
    default: [],
    flag: 'allow-media-host',
    env: 'IRIS_ALLOW_MEDIA_HOSTS',
    input: 'list',
    placeholder: 'VALUE',
    help: 'host, host:port or CIDR remote images may come from despite SSRF rules; repeatable',
  }),
  /** Hosts, host:port pairs or CIDRs that remote image URLs may never reach. */
  denyMediaHosts: setting({
    schema: z.array(z.string().min(1)),
    default: [],
    flag: 'deny-media-host',
    env: 'IRIS_DENY_MEDIA_HOSTS',
    input: 'list',
    placeholder: 'VALUE',
    help: 'host, host:port or CIDR remote images may never come from; repeatable',
  }),
  /** Directory for built llama-server binaries and downloaded models. */
  cacheDir: setting({
    schema: z.string().min(1),
    flag: 'cache-dir',
    env: 'IRIS_CACHE_DIR',
    placeholder: 'DIR',
    help: 'cache for the llama-server build and models',
    defaultText: '~/.cache/iris',
  }),
  /** Directory for Iris's own data: the SQLite database `iris.db`. */
  dataDir: setting({
    schema: z.string().min(1),
    flag: 'data-dir',
    env: 'IRIS_DATA_DIR',
    placeholder: 'DIR',
    help: "Iris's data: the SQLite database iris.db with keys, limits and usage",
    defaultText: '~/.local/share/iris',
  }),
  /** PostgreSQL URL; when set, keys, limits and usage live there instead of SQLite (several gateways share it). */
  databaseUrl: setting({
    schema: z.string().regex(/^postgres(ql)?:\/\//, 'must be a postgres:// or postgresql:// URL').optional(),
    flag: 'database-url',
    env: 'DATABASE_URL',
    placeholder: 'URL',
    help: 'keep keys, limits and usage in PostgreSQL instead (gateways sharing it share them)',
  }),
  /** pino log level. */
  logLevel: setting({
    schema: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']),
    default: 'info',
    flag: 'log-level',
    env: 'IRIS_LOG_LEVEL',
    placeholder: 'LEVEL',
    help: 'fatal|error|warn|info|debug|trace|silent',
  }),
  /** A second port serving only GET /metrics, without authentication (for a scraper on a private network). */
  metricsPort: setting({
    schema: z.number().int().min(1).max(65535).optional(),
    flag: 'metrics-port',
    env: 'IRIS_METRICS_PORT',
    input: 'integer',
    placeholder: 'PORT',
    help: 'also serve GET /metrics on this port, without an API key',
  }),
  /** On SIGTERM/SIGINT, how long requests in flight may take to finish before they are ended (ms after parsing). */
  shutdownGrace: setting({
    schema: durationSchema.pipe(z.number().min(0, 'must not be negative (0 ends requests in flight at once)')),
    default: '30s',
    flag: 'shutdown-grace',
    env: 'IRIS_SHUTDOWN_GRACE',
    placeholder: 'DURATION',
    help: 'on SIGTERM/SIGINT, how long requests in flight may take to finish',
  }),
  /** Hugging Face hub endpoint. */
  hubEndpoint: setting({
    schema: z.url({ protocol: /^https?$/, error: 'must be an http(s) URL' }),
    default: 'https://huggingface.co',
    env: 'HF_ENDPOINT',
    help: 'Hugging Face hub endpoint (or a mirror)',
  }),
  /** Hub token for gated repos. */
  hubToken: setting({ schema: z.string().min(1).optional(), env: 'HF_TOKEN', help: 'Hugging Face token for gated or private repos' }),

  /** Where the embedded engine comes from. */
  llama: section('where the embedded engine comes from', {
    /** A user's own llama-server binary (CUDA, Metal builds); skips our build. */
    serverPath: setting({
      schema: z.string().min(1).optional(),
      flag: 'llama-server',
      env: 'IRIS_LLAMA_SERVER',
      placeholder: 'PATH',
      help: 'use this llama-server binary instead of building one',
    }),
    /** ggml backend of the llama-server Iris builds; `auto` picks a GPU backend when its toolkit works and a GPU is visible. */
    backend: setting({
      schema: z.enum(['auto', 'cpu', 'cuda', 'vulkan']),
      default: 'auto',
      flag: 'backend',
      env: 'IRIS_LLAMA_BACKEND',
      placeholder: 'B',
      help: 'backend of the llama-server Iris builds: auto|cpu|cuda|vulkan (auto: CUDA or Vulkan when it works and a GPU is visible)',
    }),
    /** Milliseconds to wait for a started llama-server to report healthy. */
    startTimeoutMs: setting({ schema: z.number().int().min(1000), default: 120_000, help: 'ms to wait for a started llama-server to report healthy' }),
  }),

  /** Limits on what one request may carry. */
  limits: section('limits on what one request may carry', {
    /** Largest accepted request body in bytes (100 MiB). */
    maxBodyBytes: setting({ schema: z.number().int().min(1024), default: 100 * 1024 * 1024, help: 'largest accepted request body in bytes' }),
    /** Largest single image (decoded from base64 or fetched) in bytes (20 MB). */
    maxImageBytes: setting({ schema: z.number().int().min(1024), default: 20 * 1000 * 1000, help: 'largest single image in bytes' }),
    /** All images of one request together, in bytes (50 MB). */
    maxRequestImageBytes: setting({ schema: z.number().int().min(1024), default: 50 * 1000 * 1000, help: 'all images of one request together, in bytes' }),
    /** Largest `n` (choices) of one chat request; each choice takes a slot of the model. */
    maxChoicesPerRequest: setting({ schema: z.number().int().min(1).max(128), default: 8, help: 'largest n (choices) of one chat request' }),
    /** Images in one request. */
    maxImagesPerRequest: setting({ schema: z.number().int().min(1).max(10_000), default: 50, help: 'images in one request' }),
    /** Largest image in pixels (width x height) that is decoded at all; refuses decompression bombs (50 MP). */
    maxImagePixels: setting({ schema: z.number().int().min(1), default: 50_000_000, help: 'largest image in pixels that is decoded at all' }),
    /** Time to fetch one remote image, connect included, in ms. */
    imageFetchTimeoutMs: setting({ schema: z.number().int().min(100), default: 10_000, help: 'ms to fetch one remote image, connect included' }),
    /** Requests waiting for a slot per model before new ones get 429. */
    maxQueuedPerModel: setting({ schema: z.number().int().min(0), default: 64, help: 'requests waiting for a slot per model before new ones get 429' }),
    /** Longest a request may wait in the queue for a slot, in ms. */
    queueTimeoutMs: setting({ schema: z.number().int().min(100), default: 120_000, help: 'ms a request may wait in the queue for a slot' }),
    /** Messages in one request. */
    maxMessages: setting({ schema: z.number().int().min(1), default: 2048, help: 'messages in one request' }),
    /** UTF-8 bytes of all text in one request's messages together (4 MiB). */
    maxTextBytes: setting({ schema: z.number().int().min(1024), default: 4 * 1024 * 1024, help: "UTF-8 bytes of all text in one request's messages" }),
    /** Time for a client to send a request's headers (from connecting), in ms; later is a 408. */
    headersTimeoutMs: setting({ schema: z.number().int().min(100), default: 10_000, help: 'ms a client has to send its request headers (408 after)' }),
    /** Time for a client to send a whole request, body included, in ms; later is a 408. */
    bodyTimeoutMs: setting({ schema: z.number().int().min(100), default: 60_000, help: 'ms a client has to send its whole request, body included (408 after)' }),
    /**
     * How long an idle keep-alive connection stays open, in ms. Longer than the idle timeout of common load
     * balancers (60 s), which must not reuse a connection the server is closing; under a connection flood,
     * idle connections are the first closed anyway.
     */
    keepAliveTimeoutMs: setting({ schema: z.number().int().min(100), default: 72_000, help: 'ms an idle keep-alive connection stays open' }),
    /** Open client connections; beyond it the oldest idle one is closed, or the new one if none is idle. */
    maxConnections: setting({ schema: z.number().int().min(1), default: 1024, help: 'open client connections; past it the oldest idle one is closed' }),
    /** Request body bytes (by Content-Length) received or held at once; beyond it: 503 + Retry-After (512 MiB). */
    maxBodyBytesInFlight: setting({
      schema: z.number().int().min(1024),
      default: 512 * 1024 * 1024,
      help: 'request body bytes received or held at once (503 + Retry-After past it)',
    }),
    /** Time for the engine to start answering (prompt processing included), in ms. */
    engineFirstByteTimeoutMs: setting({ schema: z.number().int().min(100), default: 300_000, help: 'ms the engine has to start answering (504 after)' }),
    /** Longest pause between two parts of an engine's answer, in ms. */
    engineIdleTimeoutMs: setting({ schema: z.number().int().min(100), default: 120_000, help: "ms the engine may pause between two parts of its answer (504 after)" }),
  }),

  /** How images are normalized and cached. */
  images: section('how images are normalized and cached', {
    /** Colour transparent pixels are composited onto, `#rrggbb`. */
    background: setting({
      schema: z.string().regex(/^#[0-9a-fA-F]{6}$/, 'must be a #rrggbb colour'),
      default: '#ffffff',
      help: 'colour transparent pixels are composited onto, #rrggbb',
    }),
    /** Redirects followed when fetching one remote image; every hop is checked again. */
    maxRedirects: setting({ schema: z.number().int().min(0).max(10), default: 3, help: 'redirects followed when fetching one remote image' }),
    /** Bytes of normalized images kept by content hash (0 disables; 256 MiB). */
    decodedCacheBytes: setting({ schema: z.number().int().min(0), default: 256 * 1024 * 1024, help: 'bytes of normalized images kept by content hash (0 disables)' }),
    /** Bytes of fetched images kept by URL (0 disables; 64 MiB). */
    fetchCacheBytes: setting({ schema: z.number().int().min(0), default: 64 * 1024 * 1024, help: 'bytes of fetched images kept by URL (0 disables)' }),
    /** How long fetched image bytes are reused, in ms. */
    fetchCacheTtlMs: setting({ schema: z.number().int().min(0).max(3_600_000), default: 60_000, help: 'ms fetched image bytes are reused' }),
  }),

  /** The Responses API's stored responses (kept in the database). */
  responses: section("the Responses API's stored responses", {
    /** How long a stored response is kept, in ms after parsing (30 days, as OpenAI keeps them); 0 stores none. */
    retention: setting({
      schema: durationSchema.pipe(z.number().min(0, 'must not be negative (0 stores no responses)')),
      default: '30d',
      flag: 'responses-retention',
      env: 'IRIS_RESPONSES_RETENTION',
      placeholder: 'DURATION',
      help: 'how long stored Responses API responses are kept (0 stores none)',
    }),
    /** Largest stored JSON of one response, in bytes after parsing (16 MiB); a larger one is not stored. */
    maxBytes: setting({
      schema: memorySizeSchema.pipe(z.number().int().min(1, 'must be at least 1 byte (use --responses-retention 0 to store none)')),
      default: '16MiB',
      flag: 'responses-max-bytes',
      env: 'IRIS_RESPONSES_MAX_BYTES',
      placeholder: 'SIZE',
      help: 'largest stored Responses API response (its JSON, images included); larger ones are not stored',
    }),
  }),
} as const;

/** A setting with its place: `path` in the config (or in a model, or in loading), as camelCase segments. */
export interface PlacedSetting {
  scope: 'server' | 'model' | 'loading';
  path: readonly string[];
  setting: Setting;
}

/** Every setting of the table with its place, in table order (the order of --help). */
export function allSettings(): PlacedSetting[] {
  const placed: PlacedSetting[] = [];
  const walk = (scope: PlacedSetting['scope'], table: Record<string, Setting | Section>, prefix: readonly string[]): void => {
    for (const [key, entry] of Object.entries(table)) {
      if ('section' in entry) walk(scope, entry.section, [...prefix, key]);
      else placed.push({ scope, path: [...prefix, key], setting: entry });
    }
  };
  walk('loading', LOADING_SETTINGS, []);
  walk('model', MODEL_SETTINGS, []);
  walk('server', SERVER_SETTINGS, []);
  return placed;
}

/** The config file key of a place: `limits.max_body_bytes`. */
export function yamlKey(path: readonly string[]): string {
  return path.map((segment) => segment.replace(/[A-Z]/g, (letter) => `_${letter.toLowerCase()}`)).join('.');
}

/** The key of a flag in the parsed flags object: `--max-body-bytes` -> `maxBodyBytes`. */
export function flagKey(flag: string): string {
  return flag.replace(/-([a-z])/g, (_, letter: string) => letter.toUpperCase());
}
