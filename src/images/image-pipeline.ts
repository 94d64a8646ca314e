/**
 * Turns the image parts of a request into engine-ready images: enforces the per-request count and byte
 * limits, decodes data URIs, fetches remote URLs (concurrently, each distinct URL once, through the one
 * SSRF-safe fetch helper), and normalizes every image for the model's {@link ImagePolicy} and the part's
 * `detail`.
 *
 * Two bounded caches sit on the way: fetched bytes by URL for a short time (so a conversation that resends
 * the same image URL on every turn does not download it again), and normalized images by content hash
 * (sha256 of the bytes, plus the policy and detail that shaped them), so a repeated image skips decode and
 * resize altogether. Both are LRUs bounded by bytes.
 */
import { createHash } from 'node:crypto';
import { LRUCache } from 'lru-cache';
import { IrisError, invalidRequest, payloadTooLarge } from '../errors.js';
import type { ImageDetail } from '../protocol/chat-request.js';
import { decodeDataUri, isDataUri } from './data-uri.js';
import type { ByteBudget, FetchImageOptions, FetchedImage } from './fetch-remote-image.js';
import type { ImagePolicy } from './image-policy.js';
import { normalizeImage, type NormalizedImage } from './normalize-image.js';

/** One image part of a request. */
export interface ImageInput {
  url: string;
  detail: ImageDetail;
  /** The request field it came from, e.g. `messages[0].content[1].image_url`. */
  param: string;
}

/** Limits the pipeline enforces. */
export interface ImagePipelineLimits {
  /** Largest single image in bytes (decoded base64 or fetched). */
  maxImageBytes: number;
  /** All the images of one request together, in bytes. */
  maxRequestImageBytes: number;
  /** Images in one request. */
  maxImagesPerRequest: number;
  /** Largest image in pixels that is decoded at all. */
  maxImagePixels: number;
}

/** Settings of an {@link ImagePipeline}. */
export interface ImagePipelineOptions {
  limits: ImagePipelineLimits;
  /** Colour transparent pixels are composited onto. @default '#ffffff' */
  background?: string;
  /** Bytes of normalized images kept by content hash; 0 disables the cache. @default 256 MiB */
  decodedCacheBytes?: number;
  /** Bytes of fetched images kept by URL; 0 disables the cache. @default 64 MiB */
  fetchCacheBytes?: number;
  /** How long fetched bytes are reused, in ms. @default 60000 */
  fetchCacheTtlMs?: number;
}

/** The one thing the pipeline needs from the network: the SSRF-safe fetch helper (or a fake in tests). */
export interface ImageFetcher {
  fetch(url: string, options: FetchImageOptions): Promise<FetchedImage>;
}

/** What the pipeline is built from. */
export interface ImagePipelineDeps {
  fetcher: ImageFetcher;
}

/** An image ready for the engine, with its predicted token count. */
export type PreparedImage = NormalizedImage;

/** Prepares a request's images for an engine. Owns its caches; call {@link dispose} when done. */
export class ImagePipeline {
  readonly #limits: ImagePipelineLimits;
  readonly #background: string;
  readonly #fetcher: ImageFetcher;
  readonly #decoded: LRUCache<string, PreparedImage> | undefined;
  readonly #fetched: LRUCache<string, Uint8Array> | undefined;

  constructor(options: ImagePipelineOptions, deps: ImagePipelineDeps) {
    this.#limits = options.limits;
    this.#background = options.background ?? '#ffffff';
    this.#fetcher = deps.fetcher;
    const decodedBytes = options.decodedCacheBytes ?? 256 * 1024 * 1024;
    const fetchedBytes = options.fetchCacheBytes ?? 64 * 1024 * 1024;
    const ttl = options.fetchCacheTtlMs ?? 60_000;
    this.#decoded =
      decodedBytes > 0 ? new LRUCache({ maxSize: decodedBytes, sizeCalculation: (image) => image.data.length + 512 }) : undefined;
    this.#fetched =
      fetchedBytes > 0 && ttl > 0
        ? new LRUCache({ maxSize: fetchedBytes, sizeCalculation: (bytes) => Math.max(1, bytes.length), ttl, ttlAutopurge: false })
        : undefined;
  }

  /**
   * Fetches, decodes and normalizes all images, in order. Throws a 4xx naming the first bad part found; the
   * other downloads of the request are then abandoned.
   */
  async prepare(inputs: readonly ImageInput[], policy: ImagePolicy, signal?: AbortSignal): Promise<PreparedImage[]> {
    const limits = this.#limits;
    if (inputs.length > limits.maxImagesPerRequest) {
      throw invalidRequest(
        `Too many images: ${inputs.length} in one request, at most ${limits.maxImagesPerRequest} are allowed.`,
        'messages',
        'too_many_images',
      );
    }
    if (inputs.length === 0) return [];
    const budget: ByteBudget = { used: 0, max: limits.maxRequestImageBytes };
    const failed = new AbortController();
    const combined = signal ? AbortSignal.any([signal, failed.signal]) : failed.signal;
    const downloads = new Map<string, Promise<Uint8Array>>();
    const normalizations = new Map<string, Promise<PreparedImage>>();

    // Data URIs are decoded (and counted) first, in order, so their errors are deterministic.
    const sources = inputs.map((input) => {
      const param = `${input.param}.url`;
      if (!isDataUri(input.url)) return { input, param, bytes: undefined };
      const bytes = decodeDataUri(input.url, param, limits.maxImageBytes);
      if (bytes.length > limits.maxImageBytes) {
        throw payloadTooLarge(`The image at '${param}' is larger than the ${limits.maxImageBytes}-byte limit.`, param, 'image_too_large');
      }
      chargeBudget(budget, bytes.length, param);
      return { input, param, bytes };
    });

    const prepareOne = async ({ input, param, bytes }: (typeof sources)[number]): Promise<PreparedImage> => {
      const data = bytes ?? (await this.#download(input.url, param, budget, downloads, combined));
      const key = `${sha256(data)}:${input.detail}:${JSON.stringify(policy)}`;
      const cached = this.#decoded?.get(key);
      if (cached) return cached;
      let pending = normalizations.get(key);
      if (!pending) {
        pending = normalizeImage(data, policy, input.detail, { maxPixels: limits.maxImagePixels, background: this.#background }, param);
        normalizations.set(key, pending);
      }
      const image = await pending;
      this.#decoded?.set(key, image);
      return image;
    };

    try {
      return await Promise.all(
        sources.map((source) =>
          prepareOne(source).catch((error: unknown) => {
            failed.abort();
            throw rename(error, source.param);
          }),
        ),
      );
    } finally {
      failed.abort();
    }
  }

  /** Drops the caches. */
  dispose(): void {
    this.#decoded?.clear();
    this.#fetched?.clear();
  }

  /** The bytes at `url`: from the short-lived cache, from a download already under way, or fetched now. */
  async #download(url: string, param: string, budget: ByteBudget, downloads: Map<string, Promise<Uint8Array>>, signal: AbortSignal): Promise<Uint8Array> {
    let pending = downloads.get(url);
    if (!pending) {
      const cached = this.#fetched?.get(url);
      if (cached) {
        chargeBudget(budget, cached.length, param);
        pending = Promise.resolve(cached);
      } else {
        pending = this.#fetcher
          .fetch(url, { param, maxBytes: this.#limits.maxImageBytes, budget, signal })
          .then((fetched) => {
            this.#fetched?.set(url, fetched.bytes);
            return fetched.bytes;
          });
      }
      downloads.set(url, pending);
    }
    return pending;
  }
}

function chargeBudget(budget: ByteBudget, bytes: number, param: string): void {
  budget.used += bytes;
  if (budget.used > budget.max) {
    throw payloadTooLarge(
      `The images of this request add up to more than the ${budget.max}-byte limit (reached at '${param}').`,
      param,
      'image_too_large',
    );
  }
}

/**
 * An image shared by several parts (the same URL twice) fails with the message of the part that fetched it;
 * each part reports its own field.
 */
function rename(error: unknown, param: string): unknown {
  if (!(error instanceof IrisError) || error.param === null || error.param === param || error.code === 'request_cancelled') return error;
  return error.with({ message: error.message.split(`'${error.param}'`).join(`'${param}'`), param });
}

function sha256(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}
