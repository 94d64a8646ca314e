/**
 * Turns the image parts of a request into engine-ready images: enforces the per-request count and byte
 * limits, decodes data URIs, and normalizes every image (concurrently) for the model's shape.
 */
import type { EngineImage } from '../engines/engine.js';
import { invalidRequest, payloadTooLarge } from '../errors.js';
import type { ImageDetail } from '../protocol/chat-request.js';
import { decodeDataUri, isDataUri } from './data-uri.js';
import { normalizeImage, type ImageShape } from './normalize-image.js';

/** One image part of a request. */
export interface ImageInput {
  url: string;
  detail: ImageDetail;
  /** The request field it came from, e.g. `messages[0].content[1].image_url`. */
  param: string;
}

/** Limits the pipeline enforces. */
export interface ImagePipelineLimits {
  maxImageBytes: number;
  maxRequestImageBytes: number;
  maxImagesPerRequest: number;
  maxImagePixels: number;
}

/** Prepares a request's images for an engine. */
export class ImagePipeline {
  #limits: ImagePipelineLimits;

  constructor(limits: ImagePipelineLimits) {
    this.#limits = limits;
  }

  /** Decodes and normalizes all images, in order; throws a 4xx naming the first bad part. */
  async prepare(inputs: readonly ImageInput[], shape: ImageShape): Promise<EngineImage[]> {
    const limits = this.#limits;
    if (inputs.length > limits.maxImagesPerRequest) {
      throw invalidRequest(
        `Too many images: ${inputs.length} in one request, at most ${limits.maxImagesPerRequest} are allowed.`,
        'messages',
        'too_many_images',
      );
    }
    let total = 0;
    const sources = inputs.map((input) => {
      const param = `${input.param}.url`;
      if (!isDataUri(input.url)) {
        throw invalidRequest(
          `Only data: URIs with base64 images are accepted at '${param}' for now.`,
          param,
          'invalid_image_url',
        );
      }
      const bytes = decodeDataUri(input.url, param, limits.maxImageBytes);
      if (bytes.length > limits.maxImageBytes) {
        throw payloadTooLarge(`The image at '${param}' is larger than the ${limits.maxImageBytes}-byte limit.`, param, 'image_too_large');
      }
      total += bytes.length;
      if (total > limits.maxRequestImageBytes) {
        throw payloadTooLarge(
          `The images of this request add up to more than the ${limits.maxRequestImageBytes}-byte limit (reached at '${param}').`,
          param,
          'image_too_large',
        );
      }
      return { bytes, param };
    });
    return Promise.all(
      sources.map(({ bytes, param }) => normalizeImage(bytes, shape, { maxPixels: limits.maxImagePixels }, param)),
    );
  }
}
