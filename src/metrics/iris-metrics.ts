/**
 * The Prometheus metrics of one Iris server: a prom-client registry holding every counter, histogram and
 * gauge Iris reports (see the README's metrics table), Node's process metrics (prom-client defaults), and
 * the rendering of `GET /metrics`, which appends each running llama-server's own metrics with a `model`
 * label added.
 *
 * Label values are bounded by construction: model ids of registered models, fixed endpoint names, status
 * classes (`2xx`, `4xx`, `5xx`), image source kinds and cache names. Never a raw URL, path or key.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { addLabelToExposition } from './relabel.js';

/** Fixed names of the endpoints requests are counted under. */
export type EndpointName = 'chat_completions' | 'responses' | 'messages' | 'tokenize' | 'models' | 'metrics' | 'health' | 'other';

/** Where an image came from. */
export type ImageSourceKind = 'data' | 'url';

/** The image caches of the pipeline. */
export type ImageCacheName = 'fetched' | 'decoded';

/** A model's state as the gauges show it, read when /metrics is scraped. */
export interface ModelGaugeReading {
  model: string;
  loaded: boolean;
  memoryBytes: number | undefined;
  running: number;
  waiting: number;
}

/** What the image pipeline reports (a narrow view, so images/ depends on no more than it uses). */
export interface ImageMetrics {
  /** One remote image was downloaded in `seconds`. */
  observeFetch(seconds: number): void;
  /** One image was decoded, oriented, resized and encoded in `seconds`. */
  observePreprocess(seconds: number): void;
  /** A cache answered instead of a download or a decode. */
  cacheHit(cache: ImageCacheName): void;
}

/** The label for requests whose model is unknown (not registered): keeps the label set bounded. */
export const UNKNOWN_MODEL = '';

/** Latency buckets (seconds) from a few ms to several minutes. */
const LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 80, 160, 320];
/** Per-token buckets (seconds). */
const TOKEN_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56];

/** Every metric Iris reports, in one prom-client registry. */
export class IrisMetrics implements ImageMetrics {
  readonly registry = new Registry();
  readonly requests: Counter<'model' | 'endpoint' | 'status'>;
  readonly promptTokens: Counter<'model'>;
  readonly imageTokens: Counter<'model'>;
  readonly completionTokens: Counter<'model'>;
  readonly images: Counter<'model' | 'source'>;
  readonly imageCacheHits: Counter<'cache'>;
  readonly engineRestarts: Counter<'model'>;
  readonly timeToFirstToken: Histogram<'model'>;
  readonly timePerOutputToken: Histogram<'model'>;
  readonly requestDuration: Histogram<'model' | 'endpoint'>;
  readonly queueWait: Histogram<'model'>;
  readonly imageFetch: Histogram;
  readonly imagePreprocess: Histogram;
  #models: () => ModelGaugeReading[] = () => [];

  constructor() {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry });
    const counter = <L extends string>(name: string, help: string, labelNames: readonly L[]) =>
      new Counter<L>({ name, help, labelNames, registers });
    const histogram = <L extends string>(name: string, help: string, labelNames: readonly L[], buckets = LATENCY_BUCKETS) =>
      new Histogram<L>({ name, help, labelNames, buckets, registers });
    this.requests = counter('iris_requests_total', 'HTTP requests answered, by model, endpoint and status class.', ['model', 'endpoint', 'status']);
    this.promptTokens = counter('iris_prompt_tokens_total', 'Prompt tokens processed (images included).', ['model']);
    this.imageTokens = counter('iris_image_tokens_total', 'Prompt tokens that came from images.', ['model']);
    this.completionTokens = counter('iris_completion_tokens_total', 'Tokens generated.', ['model']);
    this.images = counter('iris_images_total', 'Images received, by source (data URI or URL).', ['model', 'source']);
    this.imageCacheHits = counter('iris_image_cache_hits_total', 'Images served from a cache instead of downloaded (fetched) or decoded (decoded).', ['cache']);
    this.engineRestarts = counter('iris_engine_restarts_total', 'llama-server children restarted after dying.', ['model']);
    this.timeToFirstToken = histogram('iris_time_to_first_token_seconds', 'From arrival of the request to the first generated token.', ['model']);
    this.timePerOutputToken = histogram('iris_time_per_output_token_seconds', 'Time per generated token after the first.', ['model'], TOKEN_BUCKETS);
    this.requestDuration = histogram('iris_request_duration_seconds', 'From arrival of the request to the end of its answer.', ['model', 'endpoint']);
    this.queueWait = histogram('iris_queue_wait_seconds', 'Time a request waited for a slot of its model.', ['model']);
    this.imageFetch = histogram('iris_image_fetch_seconds', 'Time to download one remote image.', []);
    this.imagePreprocess = histogram('iris_image_preprocess_seconds', 'Time to decode, orient, resize and encode one image.', []);

    const models = (): ModelGaugeReading[] => this.#models();
    const gauge = (name: string, help: string, read: (model: ModelGaugeReading) => number | undefined): void => {
      new Gauge({
        name,
        help,
        labelNames: ['model'],
        registers,
        collect() {
          this.reset();
          for (const reading of models()) {
            const value = read(reading);
            if (value !== undefined) this.set({ model: reading.model }, value);
          }
        },
      });
    };
    gauge('iris_requests_running', 'Requests holding a slot of the model now.', (model) => model.running);
    gauge('iris_requests_waiting', 'Requests waiting for a slot of the model now.', (model) => model.waiting);
    gauge('iris_model_loaded', '1 while the model is loaded, else 0.', (model) => (model.loaded ? 1 : 0));
    gauge('iris_model_memory_bytes', 'Estimated resident memory of the model while loaded.', (model) => (model.loaded ? (model.memoryBytes ?? 0) : 0));
  }

  /** Sets where the per-model gauges read from (the model registry, wired by main). */
  readModelsFrom(read: () => ModelGaugeReading[]): void {
    this.#models = read;
  }

  observeFetch(seconds: number): void {
    this.imageFetch.observe(seconds);
  }

  observePreprocess(seconds: number): void {
    this.imagePreprocess.observe(seconds);
  }

  cacheHit(cache: ImageCacheName): void {
    this.imageCacheHits.inc({ cache });
  }

  /** The content type of {@link render}'s text. */
  get contentType(): string {
    return this.registry.contentType;
  }

  /**
   * The exposition text: Iris's metrics, then each engine's own (`children`: a model id and the Prometheus
   * text its llama-server answered) with `model="<id>"` added to every sample.
   */
  async render(children: readonly { model: string; text: string }[] = []): Promise<string> {
    const own = await this.registry.metrics();
    const scraped = addLabelToExposition(children, 'model');
    return scraped === '' ? own : `${own.replace(/\n*$/, '\n')}${scraped}`;
  }
}

/** `2xx`, `4xx`, `5xx`: the status label of a response. */
export function statusClass(status: number): string {
  return `${Math.floor(status / 100)}xx`;
}
