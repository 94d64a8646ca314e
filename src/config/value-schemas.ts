/**
 * Schemas of the value types settings share: durations, memory sizes, and remote upstream servers.
 */
import { totalmem } from 'node:os';
import { z } from 'zod';

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/**
 * A duration as Ollama's keep_alive takes it: `10m`, `30s`, `1h`, `500ms`, a number of seconds, or a
 * negative value for "forever"; also in days (`30d`). Parsed to milliseconds; -1 means never.
 */
export const durationSchema = z.union([z.number(), z.string()]).transform((input, context) => {
  const text = String(input).trim();
  const match = /^(-?\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?$/.exec(text);
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
  /** Longest silence between two chunks of a streamed answer, in ms; the attempt fails after it. @default 60000 */
  idleTimeoutMs: z.number().int().min(100).default(60_000),
});
