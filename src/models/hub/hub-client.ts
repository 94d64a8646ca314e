/**
 * A small client for the parts of the Hugging Face hub's HTTP API that pulls need, as huggingface_hub
 * (`hf_api.py`, `file_download.py`), huggingface.js (`list-files.ts`, `file-download-info.ts`) and llama.cpp's
 * own `common/hf-cache.cpp` use them:
 *
 * - `GET {endpoint}/api/models/{repo}/revision/{revision}`: the repo's commit (`sha`), `gated`, `siblings`.
 * - `GET {endpoint}/api/models/{repo}/tree/{commit}?recursive=true`: files with `size` and, for LFS files,
 *   `lfs.oid` (their SHA-256); paginated through `Link: <...>; rel="next"`.
 * - `GET {endpoint}/{repo}/resolve/{commit}/{path}`: the bytes, usually through a 302 to a CDN; `Range` works.
 *
 * Errors carry `X-Error-Code` (`RepoNotFound`, `RevisionNotFound`, `EntryNotFound`, `GatedRepo`); the hub
 * answers 401 rather than 404 for a repo it will not admit exists to an anonymous caller.
 *
 * Redirects are followed by hand, not by undici's interceptor, so the `Authorization` header (HF_TOKEN) goes
 * only to the hub's own origin and never to the CDN it redirects to (as huggingface.js does).
 */
import { Agent, request, type Dispatcher } from 'undici';
import { z } from 'zod';
import { downloadFailed, hubUnreachableError, modelNotFound, type IrisError } from '../../errors.js';

/** Options of {@link HubClient}. */
export interface HubClientOptions {
  /** Hub base URL (config `hubEndpoint`, env HF_ENDPOINT), e.g. `https://huggingface.co`. */
  endpoint: string;
  /** Access token for gated and private repos (env HF_TOKEN); sent only to the hub's origin. */
  token?: string | undefined;
  /** undici dispatcher for every request. @default a shared Agent with a 10 s connect timeout */
  dispatcher?: Dispatcher | undefined;
  /** `User-Agent` header. @default 'iris' */
  userAgent?: string | undefined;
}

/** What the hub says about a repo at a revision. */
export interface HubRepoInfo {
  /** The repo id as the hub spells it. */
  id: string;
  /** The commit the revision points to; later requests use it so a repo update cannot mix files. */
  commit: string;
  /** Whether the repo is gated (needs accepted terms and a token). */
  gated: boolean;
}

/** One file of a repo. */
export interface HubFile {
  /** Path inside the repo, `/`-separated. */
  path: string;
  /** Size in bytes. */
  size: number;
  /** SHA-256 of the content (hex), known for LFS files. */
  sha256: string | undefined;
  /** Git blob id (SHA-1 of `blob <size>\0<content>`), known for files stored in git itself. */
  gitOid: string | undefined;
}

/** An open download of a file, possibly from an offset. */
export interface HubFileResponse {
  /** 200 (whole file), 206 (from `start`) or 416 (`start` is at or past the end). */
  status: 200 | 206 | 416;
  /** First byte the body holds: `start` for 206, 0 for 200. */
  start: number;
  /** Size of the whole file as the server reports it, when it does. */
  totalSize: number | undefined;
  /** The bytes; must be consumed or dumped. */
  body: Dispatcher.ResponseData['body'];
  /** The URL that answered, after redirects (for logs). */
  url: string;
}

const repoInfoSchema = z.looseObject({
  id: z.string().optional(),
  modelId: z.string().optional(),
  sha: z.string().regex(/^[0-9a-f]{40}$/, 'a 40-character commit id'),
  gated: z.union([z.boolean(), z.string()]).optional(),
});

const treeEntrySchema = z.looseObject({
  type: z.string(),
  path: z.string().min(1),
  size: z.number().int().min(0).optional(),
  oid: z.string().optional(),
  lfs: z
    .looseObject({
      oid: z.string().regex(/^[0-9a-f]{64}$/, 'a SHA-256'),
      size: z.number().int().min(0),
    })
    .optional(),
});

const treeSchema = z.array(treeEntrySchema);

const defaultAgent = new Agent({ connect: { timeout: 10_000 }, headersTimeout: 30_000, bodyTimeout: 60_000 });
const MAX_REDIRECTS = 5;
const MAX_TREE_PAGES = 100;

/** Talks to one hub endpoint. Stateless; cheap to create per pull. */
export class HubClient {
  readonly endpoint: string;
  readonly #origin: string;
  readonly #token: string | undefined;
  readonly #dispatcher: Dispatcher;
  readonly #userAgent: string;

  constructor(options: HubClientOptions) {
    this.endpoint = options.endpoint.replace(/\/+$/, '');
    this.#origin = new URL(this.endpoint).origin;
    this.#token = options.token;
    this.#dispatcher = options.dispatcher ?? defaultAgent;
    this.#userAgent = options.userAgent ?? 'iris';
  }

  /**
   * The repo's commit at `revision`.
   *
   * @throws {IrisError} `hub_unreachable` (503) when the hub cannot be reached; `model_not_found` (404) for
   *   an unknown repo or revision; `download_failed` (502) for a gated repo without access or another refusal.
   */
  async repoInfo(repo: string, revision = 'main', signal?: AbortSignal): Promise<HubRepoInfo> {
    const url = `${this.endpoint}/api/models/${repo}/revision/${encodeURIComponent(revision)}`;
    const { json } = await this.#getJson(url, repo, signal);
    const parsed = repoInfoSchema.safeParse(json);
    if (!parsed.success) throw unexpectedAnswer(url, parsed.error);
    return {
      id: parsed.data.id ?? parsed.data.modelId ?? repo,
      commit: parsed.data.sha,
      gated: parsed.data.gated !== undefined && parsed.data.gated !== false,
    };
  }

  /**
   * Every file of the repo at `revision` (a commit id is best), following the tree's pagination.
   *
   * @throws {IrisError} as {@link repoInfo}; also when the hub lists a path that could escape a directory.
   */
  async listFiles(repo: string, revision: string, signal?: AbortSignal): Promise<HubFile[]> {
    const files: HubFile[] = [];
    let url: string | undefined = `${this.endpoint}/api/models/${repo}/tree/${encodeURIComponent(revision)}?recursive=true&expand=false`;
    for (let page = 0; url !== undefined; page++) {
      if (page >= MAX_TREE_PAGES) throw unexpectedAnswer(url, new Error(`more than ${MAX_TREE_PAGES} pages of files`));
      const { json, headers }: { json: unknown; headers: Dispatcher.ResponseData['headers'] } = await this.#getJson(url, repo, signal);
      const parsed = treeSchema.safeParse(json);
      if (!parsed.success) throw unexpectedAnswer(url, parsed.error);
      for (const entry of parsed.data) {
        if (entry.type !== 'file') continue;
        if (!isSafeRepoPath(entry.path)) throw unexpectedAnswer(url, new Error(`unsafe file path '${entry.path}'`));
        files.push({
          path: entry.path,
          size: entry.lfs?.size ?? entry.size ?? 0,
          sha256: entry.lfs?.oid,
          gitOid: entry.lfs === undefined && entry.oid !== undefined && /^[0-9a-f]{40}$/.test(entry.oid) ? entry.oid : undefined,
        });
      }
      const next = nextLink(header(headers, 'link'));
      url = next === undefined ? undefined : new URL(next, url).toString();
    }
    return files;
  }

  /** The `resolve` URL of a file (what a browser would download). */
  fileUrl(repo: string, revision: string, path: string): string {
    return `${this.endpoint}/${repo}/resolve/${encodeURIComponent(revision)}/${path.split('/').map(encodeURIComponent).join('/')}`;
  }

  /**
   * Opens a download of `path`, from byte `start` when it is above 0 (a `Range` request), following the
   * hub's redirects. The caller must consume or dump `body`.
   *
   * @throws {IrisError} `model_not_found` when the file is gone; `download_failed` for other refusals.
   * @throws {Error} a plain error for what is worth retrying (a failed connection, a 5xx or 429 answer).
   */
  async openFile(repo: string, revision: string, path: string, options: { start: number; signal?: AbortSignal | undefined }): Promise<HubFileResponse> {
    let url = this.fileUrl(repo, revision, path);
    for (let hop = 0; ; hop++) {
      const headers: Record<string, string> = { 'user-agent': this.#userAgent, 'accept-encoding': 'identity' };
      if (options.start > 0) headers['range'] = `bytes=${options.start}-`;
      if (this.#token !== undefined && new URL(url).origin === this.#origin) headers['authorization'] = `Bearer ${this.#token}`;
      const response = await request(url, { method: 'GET', headers, dispatcher: this.#dispatcher, signal: options.signal });
      const { statusCode } = response;
      if (statusCode >= 300 && statusCode < 400) {
        await response.body.dump();
        const location = header(response.headers, 'location');
        if (location === undefined || hop >= MAX_REDIRECTS) {
          throw downloadFailed(`The hub answered ${statusCode} for ${path} in ${repo} with ${location === undefined ? 'no Location' : 'too many redirects'}.`);
        }
        url = new URL(location, url).toString();
        continue;
      }
      if (statusCode === 200 || statusCode === 206 || statusCode === 416) {
        const range = header(response.headers, 'content-range');
        const length = header(response.headers, 'content-length');
        const fromRange = range === undefined ? undefined : /^bytes\s+(\d+)-\d+\/(\d+)$/.exec(range);
        const rangeTotal = range === undefined ? undefined : /\/(\d+)$/.exec(range);
        return {
          status: statusCode,
          start: statusCode === 206 && fromRange ? Number(fromRange[1]) : 0,
          totalSize: rangeTotal ? Number(rangeTotal[1]) : statusCode === 200 && length !== undefined ? Number(length) : undefined,
          body: response.body,
          url,
        };
      }
      const detail = await errorDetail(response);
      // a busy or failing server is worth another attempt; a refusal is not
      if (statusCode >= 500 || statusCode === 429) throw new Error(`the server answered ${statusCode}${detail.message ? ` (${detail.message})` : ''}`);
      throw statusError(statusCode, detail, repo, `${path} in ${repo}`);
    }
  }

  async #getJson(url: string, repo: string, signal: AbortSignal | undefined): Promise<{ json: unknown; headers: Dispatcher.ResponseData['headers'] }> {
    const headers: Record<string, string> = { accept: 'application/json', 'user-agent': this.#userAgent };
    if (this.#token !== undefined) headers['authorization'] = `Bearer ${this.#token}`;
    let response: Dispatcher.ResponseData;
    try {
      response = await request(url, { method: 'GET', headers, dispatcher: this.#dispatcher, signal });
    } catch (error) {
      if (signal?.aborted) throw error;
      throw hubUnreachable(this.endpoint, error);
    }
    if (response.statusCode !== 200) {
      const detail = await errorDetail(response);
      throw statusError(response.statusCode, detail, repo, repo);
    }
    try {
      return { json: await response.body.json(), headers: response.headers };
    } catch (error) {
      if (signal?.aborted) throw error;
      throw unexpectedAnswer(url, error);
    }
  }
}

/**
 * The error for a hub that cannot be reached at all, with the way to start without it.
 * Code `hub_unreachable`, status 503.
 */
export function hubUnreachable(endpoint: string, cause: unknown): IrisError {
  const reason = networkReason(cause);
  return hubUnreachableError(
    `Cannot reach the Hugging Face hub at ${endpoint}${reason ? ` (${reason})` : ''}. ` +
      'Set HF_ENDPOINT to use a mirror, or start offline with a local model: ' +
      'iris serve --model PATH/model.gguf --mmproj PATH/mmproj.gguf; ' +
      'to try Iris without any download, make a synthetic model first: ' +
      'iris synth --out ./synth && iris serve --model ./synth/model.gguf --mmproj ./synth/mmproj.gguf',
    cause,
  );
}

/** Whether a repo path is relative and stays inside its directory (no `..`, no absolute or empty parts). */
export function isSafeRepoPath(path: string): boolean {
  if (path.length === 0 || path.length > 1024 || path.startsWith('/') || path.includes('\\') || path.includes('\0')) return false;
  return path.split('/').every((part) => part.length > 0 && part !== '.' && part !== '..');
}

function statusError(status: number, detail: { code: string | undefined; message: string }, repo: string, what: string): IrisError {
  const suffix = detail.message ? ` (${detail.message})` : '';
  if (detail.code === 'GatedRepo' || status === 403) {
    return downloadFailed(
      `${repo} is gated: accept its terms on the hub, then set HF_TOKEN to a token of that account${suffix}.`,
    );
  }
  if (detail.code === 'RevisionNotFound') return modelNotFound(repo, `The hub has no such revision of ${repo}${suffix}.`);
  if (detail.code === 'EntryNotFound') return modelNotFound(repo, `The hub has no file ${what}${suffix}.`);
  if (detail.code === 'RepoNotFound' || status === 401 || status === 404) {
    return modelNotFound(repo, `The hub has no repo '${repo}' (if it is private, set HF_TOKEN)${suffix}.`);
  }
  if (status === 429) return downloadFailed(`The hub is rate-limiting requests for ${what}; retry later${suffix}.`);
  return downloadFailed(`The hub answered ${status} for ${what}${suffix}.`);
}


function unexpectedAnswer(url: string, cause: unknown): IrisError {
  return downloadFailed(`The hub sent an answer Iris does not understand for ${url}: ${(cause as Error).message ?? String(cause)}`, cause);
}

async function errorDetail(response: Dispatcher.ResponseData): Promise<{ code: string | undefined; message: string }> {
  const code = header(response.headers, 'x-error-code');
  let message = header(response.headers, 'x-error-message') ?? '';
  const text = await response.body.text().catch(() => '');
  if (!message && text) {
    try {
      const body = JSON.parse(text) as { error?: unknown };
      if (typeof body.error === 'string') message = body.error;
    } catch {
      // not JSON: the header is all there is
    }
  }
  return { code, message: message.slice(0, 300) };
}

function header(headers: Dispatcher.ResponseData['headers'], name: string): string | undefined {
  const value = headers[name];
  return Array.isArray(value) ? value[0] : value;
}

/** The `rel="next"` target of a `Link` header (RFC 8288). */
function nextLink(link: string | undefined): string | undefined {
  if (link === undefined) return undefined;
  for (const part of link.split(',')) {
    const match = /<([^>]+)>\s*;\s*(?:[^,]*;\s*)?rel="?next"?/.exec(part.trim());
    if (match) return match[1];
  }
  return undefined;
}

/** A short reason from an undici / system network error (`ECONNREFUSED`, `ENOTFOUND`, ...). */
function networkReason(error: unknown): string {
  const seen = new Set<unknown>();
  let current: unknown = error;
  while (current instanceof Error && !seen.has(current)) {
    seen.add(current);
    const code = (current as NodeJS.ErrnoException).code;
    if (typeof code === 'string' && /^E[A-Z]+$/.test(code)) return code;
    current = current.cause;
  }
  return error instanceof Error ? error.message : '';
}
