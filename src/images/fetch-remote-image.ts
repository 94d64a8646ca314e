/**
 * THE one place Iris fetches a URL that came from a request (enforced by an eslint rule on src/images and
 * src/http). Built on undici; nothing here speaks HTTP by hand.
 *
 * Every URL is treated as hostile:
 * - only `http:` and `https:`, without credentials;
 * - the host name is resolved by Iris, every address is checked against {@link MediaHostRules}, and the
 *   socket connects to the checked address itself (no second lookup, so DNS rebinding cannot swap in a
 *   private address between check and connect); TLS still verifies the certificate against the name;
 * - redirects are followed by hand, at most `maxRedirects`, and every hop is checked again;
 * - one deadline covers the whole fetch (connect, every hop, the body);
 * - the body is counted while it streams and the download stops the moment it passes the per-image or the
 *   per-request byte limit, without reading (or buffering) the rest.
 */
import { lookup as dnsLookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import { Agent, buildConnector, request, type Dispatcher } from 'undici';
import { IrisError, invalidRequest, payloadTooLarge, requestCancelled } from '../errors.js';
import type { MediaHostRules } from './media-host-rules.js';

/** Resolves a host name to its addresses (the `dns.lookup` of the OS by default; tests pass a fake DNS). */
export type ResolveHost = (hostname: string) => Promise<string[]>;

/** Settings of a {@link RemoteImageFetcher}. */
export interface RemoteImageFetcherOptions {
  /** Which destinations may be reached. */
  rules: MediaHostRules;
  /** Deadline of one fetch in ms, connect and redirects included. @default 10000 */
  timeoutMs?: number;
  /** Redirects followed per fetch. @default 3 */
  maxRedirects?: number;
  /** The User-Agent header, `Iris/<version>`. */
  userAgent: string;
}

/** External things a fetcher uses; tests replace DNS. */
export interface RemoteImageFetcherDeps {
  resolveHost?: ResolveHost;
}

/** A byte allowance shared by all the images of one request. */
export interface ByteBudget {
  /** Bytes counted so far. */
  used: number;
  /** The most the request may use. */
  readonly max: number;
}

/** Options of one {@link RemoteImageFetcher.fetch}. */
export interface FetchImageOptions {
  /** The request field the URL came from (`messages[0].content[1].image_url.url`), for error messages. */
  param: string;
  /** Largest body accepted, in bytes. */
  maxBytes: number;
  /** The request's shared byte allowance; the download stops when it runs out. */
  budget?: ByteBudget;
  /** Aborts the fetch (the client went away). */
  signal?: AbortSignal;
}

/** What a fetch returns. */
export interface FetchedImage {
  bytes: Uint8Array;
  /** The URL the bytes finally came from (after redirects). */
  finalUrl: string;
  /** The Content-Type the server claimed; never trusted, used in error messages only. */
  contentType: string | undefined;
}

/** Raised inside the connector when a destination is refused; becomes a 400 naming the part. */
class RefusedDestinationError extends Error {
  constructor(readonly reason: string) {
    super(reason);
    this.name = 'RefusedDestinationError';
  }
}

const REDIRECT_STATUSES = new Set([301, 302, 303, 307, 308]);

async function systemResolve(hostname: string): Promise<string[]> {
  const results = await dnsLookup(hostname, { all: true, verbatim: true });
  return results.map((result) => result.address);
}

/** Fetches remote images safely. Owns a connection pool: call {@link dispose} when done. */
export class RemoteImageFetcher {
  readonly #rules: MediaHostRules;
  readonly #timeoutMs: number;
  readonly #maxRedirects: number;
  readonly #userAgent: string;
  readonly #agent: Agent;

  constructor(options: RemoteImageFetcherOptions, deps: RemoteImageFetcherDeps = {}) {
    this.#rules = options.rules;
    this.#timeoutMs = options.timeoutMs ?? 10_000;
    this.#maxRedirects = options.maxRedirects ?? 3;
    this.#userAgent = options.userAgent;
    const resolveHost = deps.resolveHost ?? systemResolve;
    const rules = this.#rules;
    const connectTo = buildConnector({ timeout: this.#timeoutMs });
    this.#agent = new Agent({
      keepAliveTimeout: 4_000,
      connections: 16,
      connect: (options, callback) => {
        const port = Number(options.port) || (options.protocol === 'https:' ? 443 : 80);
        const hostname = options.hostname.replace(/^\[(.*)\]$/, '$1');
        checkedAddress(rules, resolveHost, options.hostname, hostname, port).then(
          (address) => {
            // Connect to the address that was checked; TLS still verifies the certificate against the name.
            const servername = isIP(hostname) === 0 ? hostname : undefined;
            connectTo({ ...options, hostname: address, ...(servername === undefined ? {} : { servername }) }, callback);
          },
          (error: unknown) => callback(error as Error, null),
        );
      },
    });
  }

  /**
   * Downloads `url`. Throws a 400 `invalid_image_url` for a URL or destination that is refused, a 400
   * `image_fetch_failed` for a failed, timed-out or non-2xx fetch, and a 413 `image_too_large` when the body
   * passes a byte limit; every message names the part and the reason.
   */
  async fetch(url: string, options: FetchImageOptions): Promise<FetchedImage> {
    const { param } = options;
    let current = parseRemoteUrl(url, param);
    const deadline = new AbortController();
    const timer = setTimeout(() => deadline.abort(), this.#timeoutMs);
    const signal = options.signal ? AbortSignal.any([deadline.signal, options.signal]) : deadline.signal;
    try {
      for (let hop = 0; ; hop++) {
        this.#checkHost(current, param);
        let response: Dispatcher.ResponseData;
        try {
          response = await request(current, {
            method: 'GET',
            dispatcher: this.#agent,
            headers: { 'user-agent': this.#userAgent, accept: 'image/*,*/*;q=0.5' },
            signal,
          });
        } catch (error) {
          throw this.#fetchError(error, current, param, deadline.signal, options.signal);
        }
        const status = response.statusCode;
        if (REDIRECT_STATUSES.has(status)) {
          discard(response);
          const location = headerValue(response.headers['location']);
          if (location === undefined) {
            throw fetchFailed(`the server answered HTTP ${status} without a Location`, param);
          }
          if (hop >= this.#maxRedirects) {
            throw fetchFailed(`more than ${this.#maxRedirects} redirects`, param);
          }
          current = parseRemoteUrl(location, param, current);
          continue;
        }
        if (status < 200 || status > 299) {
          discard(response);
          throw fetchFailed(`the server answered HTTP ${status}`, param);
        }
        const contentType = headerValue(response.headers['content-type']);
        const bytes = await this.#readBody(response, options, current, deadline.signal);
        return { bytes, finalUrl: current.href, contentType };
      }
    } finally {
      clearTimeout(timer);
    }
  }

  /** Closes pooled connections. */
  async dispose(): Promise<void> {
    await this.#agent.close().catch(() => undefined);
  }

  #checkHost(url: URL, param: string): void {
    const verdict = this.#rules.checkHost(url.hostname, effectivePort(url));
    if (!verdict.allowed) throw refused(verdict.reason, param);
  }

  async #readBody(response: Dispatcher.ResponseData, options: FetchImageOptions, url: URL, deadline: AbortSignal): Promise<Uint8Array> {
    const { param, maxBytes, budget } = options;
    const declared = Number(headerValue(response.headers['content-length']));
    if (Number.isFinite(declared) && declared > maxBytes) {
      discard(response);
      throw imageTooLarge(param, maxBytes);
    }
    const chunks: Buffer[] = [];
    let length = 0;
    try {
      for await (const chunk of response.body as AsyncIterable<Buffer>) {
        length += chunk.length;
        if (length > maxBytes) throw imageTooLarge(param, maxBytes);
        if (budget) {
          budget.used += chunk.length;
          if (budget.used > budget.max) throw requestTooLarge(param, budget.max);
        }
        chunks.push(chunk);
      }
    } catch (error) {
      // Stop reading: the rest of the body is never downloaded.
      discard(response);
      if (error instanceof IrisError) throw error;
      throw this.#fetchError(error, url, param, deadline, options.signal);
    }
    return Buffer.concat(chunks, length);
  }

  #fetchError(error: unknown, url: URL, param: string, deadline: AbortSignal, clientSignal: AbortSignal | undefined): IrisError {
    if (error instanceof IrisError) return error;
    if (clientSignal?.aborted) {
      return requestCancelled(error);
    }
    if (deadline.aborted) {
      return fetchFailed(`fetching it took longer than ${this.#timeoutMs / 1000} s`, param, error);
    }
    const refusal = findRefusal(error);
    if (refusal) return refused(refusal.reason, param);
    const code = (error as { code?: string }).code ?? (error as { cause?: { code?: string } }).cause?.code;
    const reason = code === 'ENOTFOUND' || code === 'EAI_AGAIN' ? `the host '${url.hostname}' could not be resolved` : `the connection failed${code ? ` (${code})` : ''}`;
    return fetchFailed(reason, param, error);
  }
}

/** Resolves `hostname` and returns an address to connect to, or rejects if any of its addresses is refused. */
async function checkedAddress(rules: MediaHostRules, resolveHost: ResolveHost, urlHostname: string, hostname: string, port: number): Promise<string> {
  if (isIP(hostname) !== 0) {
    const verdict = rules.checkAddress(urlHostname, port, hostname);
    if (!verdict.allowed) throw new RefusedDestinationError(verdict.reason);
    return hostname;
  }
  const addresses = await resolveHost(hostname);
  if (addresses.length === 0) throw Object.assign(new Error(`no address for ${hostname}`), { code: 'ENOTFOUND' });
  // One refused address refuses the name: a name that mixes public and private addresses is an attack.
  for (const address of addresses) {
    const verdict = rules.checkAddress(hostname, port, address);
    if (!verdict.allowed) throw new RefusedDestinationError(verdict.reason);
  }
  return addresses[0] as string;
}

/** Parses and vets a URL (relative ones against `base`, for redirects). */
function parseRemoteUrl(text: string, param: string, base?: URL): URL {
  let url: URL;
  try {
    url = new URL(text, base);
  } catch (error) {
    throw invalidRequest(`Invalid image URL at '${param}': it is not a URL, a data: URI or an http(s) URL.`, param, 'invalid_image_url', error);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    const where = base ? 'redirects to' : 'uses';
    throw invalidRequest(
      `Invalid image URL at '${param}': it ${where} the '${url.protocol.replace(/:$/, '')}' scheme; only https, http and data URIs are accepted.`,
      param,
      'invalid_image_url',
    );
  }
  if (url.username !== '' || url.password !== '') {
    throw invalidRequest(`Invalid image URL at '${param}': URLs with credentials are not accepted.`, param, 'invalid_image_url');
  }
  return url;
}

function effectivePort(url: URL): number {
  return url.port === '' ? (url.protocol === 'https:' ? 443 : 80) : Number(url.port);
}

function findRefusal(error: unknown): RefusedDestinationError | undefined {
  let current: unknown = error;
  for (let depth = 0; depth < 5 && current instanceof Error; depth++) {
    if (current instanceof RefusedDestinationError) return current;
    current = current.cause;
  }
  return undefined;
}

/** Stops a body without reading it; its abort error has a listener, so it can never go unhandled. */
function discard(response: Dispatcher.ResponseData): void {
  response.body.on('error', () => undefined);
  response.body.destroy();
}

function headerValue(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

function refused(reason: string, param: string): IrisError {
  return invalidRequest(`The image URL at '${param}' is refused: ${reason}.`, param, 'invalid_image_url');
}

function fetchFailed(reason: string, param: string, cause?: unknown): IrisError {
  return invalidRequest(`Could not fetch the image at '${param}': ${reason}.`, param, 'image_fetch_failed', cause);
}

function imageTooLarge(param: string, maxBytes: number): IrisError {
  return payloadTooLarge(`The image at '${param}' is larger than the ${maxBytes}-byte limit.`, param, 'image_too_large');
}

function requestTooLarge(param: string, maxBytes: number): IrisError {
  return payloadTooLarge(
    `The images of this request add up to more than the ${maxBytes}-byte limit (reached at '${param}').`,
    param,
    'image_too_large',
  );
}
