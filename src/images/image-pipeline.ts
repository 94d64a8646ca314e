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
 *
 * A request may cap its images' tokens (`max_image_tokens`): when the sizes the policy picks cost more,
 * images are made smaller within the policy (see {@link fitImageTokens}) and normalized again from the
 * bytes already at hand, or the request is refused with a 400 naming the fewest tokens reachable.
 */
import { createHash } from 'node:crypto';
import { LRUCache } from 'lru-cache';
import { IrisError, invalidRequest, payloadTooLarge } from '../errors.js';
import type { ImageDetail } from '../protocol/chat-request.js';
import { decodeDataUri, isDataUri } from './data-uri.js';
import type { ByteBudget, FetchImageOptions, FetchedImage } from './fetch-remote-image.js';
import type { ImageMetrics } from '../metrics/iris-metrics.js';
import { fitImageTokens, type ImagePolicy } from './image-policy.js';
import { normalizeImage, type NormalizedImage } from './normalize-image.js';

/** One image part of a request. */
export interface ImageInput {
  url: string;
  detail: ImageDetail;
  /** The request field it came from, e.g. `messages[0].content[1].image_url`. */
  param: string;
  /** The field holding its URL or data, named in errors about it. @default `${param}.url` */
  urlParam?: string;
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
  /** Where fetch and preprocessing times and cache hits are reported. */
  metrics?: ImageMetrics | undefined;
}

/** An image ready for the engine, with its predicted token count and where it came from. */
export interface PreparedImage extends NormalizedImage {
  /** A data URI or a URL Iris fetched. */
  source: 'data' | 'url';
  /** The `detail` the request asked for. */
  detail: ImageDetail;
}

/** Per-request options of {@link ImagePipeline.prepare}. */
export interface PrepareOptions {
  /** The most prompt tokens the request's images may cost together (extension `max_image_tokens`). */
  maxImageTokens?: number | undefined;
}

/** Prepares a request's images for an engine. Owns its caches; call {@link dispose} when done. */
export class ImagePipeline {
  readonly #limits: ImagePipelineLimits;
  readonly #background: string;
  readonly #fetcher: ImageFetcher;
  readonly #decoded: LRUCache<string, NormalizedImage> | undefined;
  readonly #metrics: ImageMetrics | undefined;
  readonly #fetched: LRUCache<string, Uint8Array> | undefined;

  constructor(options: ImagePipelineOptions, deps: ImagePipelineDeps) {
    this.#limits = options.limits;
    this.#background = options.background ?? '#ffffff';
    this.#fetcher = deps.fetcher;
    this.#metrics = deps.metrics;
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
  async prepare(inputs: readonly ImageInput[], policy: ImagePolicy, signal?: AbortSignal, options: PrepareOptions = {}): Promise<PreparedImage[]> {
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
    const normalizations = new Map<string, Promise<NormalizedImage>>();

    // Data URIs are decoded (and counted) first, in order, so their errors are deterministic.
    const sources = inputs.map((input) => {
      const param = input.urlParam ?? `${input.param}.url`;
      if (!isDataUri(input.url)) return { input, param, bytes: undefined };
      const bytes = decodeDataUri(input.url, param, limits.maxImageBytes);
      if (bytes.length > limits.maxImageBytes) {
        throw payloadTooLarge(`The image at '${param}' is larger than the ${limits.maxImageBytes}-byte limit.`, param, 'image_too_large');
      }
      chargeBudget(budget, bytes.length, param);
      return { input, param, bytes };
    });

    const normalize = async (data: Uint8Array, input: ImageInput, param: string, size?: { width: number; height: number }): Promise<NormalizedImage> => {
      const key = `${sha256(data)}:${input.detail}:${JSON.stringify(policy)}${size ? `:${size.width}x${size.height}` : ''}`;
      const cached = this.#decoded?.get(key);
      if (cached) {
        this.#metrics?.cacheHit('decoded');
        return cached;
      }
      let pending = normalizations.get(key);
      if (!pending) {
        const started = performance.now();
        pending = normalizeImage(data, policy, input.detail, { maxPixels: limits.maxImagePixels, background: this.#background }, param, size);
        void pending.then(() => this.#metrics?.observePreprocess((performance.now() - started) / 1000), () => undefined);
        normalizations.set(key, pending);
      }
      const image = await pending;
      this.#decoded?.set(key, image);
      return image;
    };
    const prepareOne = async ({ input, param, bytes }: (typeof sources)[number]): Promise<{ image: PreparedImage; data: Uint8Array }> => {
      const data = bytes ?? (await this.#download(input.url, param, budget, downloads, combined));
      const image = await normalize(data, input, param);
      return { image: { ...image, source: bytes === undefined ? 'url' : 'data', detail: input.detail }, data };
    };
    const guarded = <T>(work: Promise<T>, param: string): Promise<T> =>
      work.catch((error: unknown) => {
        failed.abort();
        throw rename(error, param);
      });

    try {
      const prepared = await Promise.all(sources.map((source) => guarded(prepareOne(source), source.param)));
      const images = prepared.map(({ image }) => image);
      if (options.maxImageTokens === undefined) return images;
      const sizes = fitToTokenCap(images, policy, options.maxImageTokens);
      return await Promise.all(
        prepared.map(async ({ image, data }, index) => {
          const size = sizes[index]!;
          if (size.width === image.width && size.height === image.height) return image;
          const source = sources[index]!;
          const smaller = await guarded(normalize(data, source.input, source.param, size), source.param);
          return { ...smaller, source: image.source, detail: image.detail };
        }),
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
        this.#metrics?.cacheHit('fetched');
        chargeBudget(budget, cached.length, param);
        pending = Promise.resolve(cached);
      } else {
        const started = performance.now();
        pending = this.#fetcher
          .fetch(url, { param, maxBytes: this.#limits.maxImageBytes, budget, signal })
          .then((fetched) => {
            this.#metrics?.observeFetch((performance.now() - started) / 1000);
            this.#fetched?.set(url, fetched.bytes);
            return fetched.bytes;
          });
      }
      downloads.set(url, pending);
    }
    return pending;
  }
}

/** The sizes that keep the images within `maxTokens`; a 400 naming `max_image_tokens` when none can. */
function fitToTokenCap(images: readonly PreparedImage[], policy: ImagePolicy, maxTokens: number): { width: number; height: number }[] {
  const planned = images.map((image) => {
    if (image.tokens === undefined) {
      throw invalidRequest(
        "max_image_tokens cannot be honoured for this model: how many tokens its images cost is not known to Iris.",
        'max_image_tokens',
        'unsupported_parameter',
      );
    }
    return { sourceWidth: image.sourceWidth, sourceHeight: image.sourceHeight, width: image.width, height: image.height, tokens: image.tokens };
  });
  const fitted = fitImageTokens(policy, planned, maxTokens);
  if (!fitted.fits) {
    throw invalidRequest(
      `The images of this request cost at least ${fitted.minimumTokens} tokens even at the lowest resolution this model's ` +
        `image policy allows, more than max_image_tokens (${maxTokens}).`,
      'max_image_tokens',
      'invalid_value',
    );
  }
  return fitted.images;
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
