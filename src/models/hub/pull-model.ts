/**
 * `pullModel`: from what a user typed (`smolvlm-256m`, `llava-hf/llava-1.5-7b-hf`, `owner/repo:Q8_0`) to
 * verified GGUF files in the cache, ready for `llama-server -m ... --mmproj ...`. Resolves the name through
 * the catalog, asks the hub for the repo's commit and file list, picks the model and projector files for
 * the quantization, and downloads what is missing one file at a time (see download-file.ts). When the hub
 * cannot be reached, a model already in the cache is used as it is; otherwise the error explains how to
 * start offline.
 */
import type { IrisConfig } from '../../config/config.js';
import { IrisError } from '../../errors.js';
import type { Logger } from '../../logger.js';
import { resolveCatalogId, type CatalogEntry } from '../catalog.js';
import { readGgufMetadata } from '../../gguf/gguf-reader.js';
import { downloadHubFile } from './download-file.js';
import { hubCachePath, listCachedFiles } from './hub-cache.js';
import { HubClient, type HubFile } from './hub-client.js';
import type { ProgressListener } from './progress.js';
import { selectModelFiles, type SelectOptions } from './select-files.js';

/** Options of {@link pullModel}. */
export interface PullModelOptions {
  /** A catalog id or alias, or a hub repo `owner/name`; either may end in `:QUANT`. */
  id: string;
  /** Where the cache is and how to reach the hub (HF_ENDPOINT, HF_TOKEN). */
  config: Pick<IrisConfig, 'cacheDir' | 'hubEndpoint' | 'hubToken'>;
  logger: Logger;
  /** Download progress of each file (see progress.ts for ready-made reporters). */
  progress?: ProgressListener | undefined;
  /** Stops waiting (499 `request_cancelled`); downloads already running finish for the cache. */
  signal?: AbortSignal | undefined;
  /** Branch, tag or commit to pull. @default 'main' */
  revision?: string | undefined;
  /** Test and tuning knobs of the downloader. */
  download?: { maxAttempts?: number; retryDelayMs?: number } | undefined;
}

/** A pulled model, ready to serve. */
export interface PulledModel {
  /** Canonical id: the catalog id (the original model repo) or, for other repos, the repo. */
  id: string;
  /** What was asked for, as typed. */
  requested: string;
  /** The hub repo the files came from. */
  repo: string;
  /** Quantization of the model file (`Q8_0`). */
  quant: string;
  /** The commit the files came from, or `undefined` when they were taken from the cache offline. */
  commit: string | undefined;
  /** Text model GGUF (the first part of a split model). */
  modelPath: string;
  /** Projector GGUF; absent for a text-only model. */
  mmprojPath: string | undefined;
  /** Context to serve it with: the catalog's, else the model's trained context capped at 8192. */
  context: number;
  /** `llama-server --chat-template` the model needs, when the catalog says so. */
  chatTemplate: string | undefined;
  /** The catalog entry, for catalog models. */
  catalog: CatalogEntry | undefined;
  /** Bytes downloaded by this pull (0 when everything was cached). */
  downloadedBytes: number;
}

/** Context Iris gives a model outside the catalog when its GGUF trained longer: memory grows with it. */
const MAX_DEFAULT_CONTEXT = 8192;
const FALLBACK_CONTEXT = 4096;

/**
 * Makes sure a model's files are in the cache, downloading what is missing, and says how to serve it.
 * Two calls for the same files (in this process or another) share one download.
 *
 * @throws {IrisError} `model_not_found` (404: unknown id, repo, quantization or file), `model_not_supported`
 *   (400: a model the embedded engine cannot run, naming the remote-engine way), `hub_unreachable` (503:
 *   no hub and nothing cached; names `--model PATH` and `iris synth`), `download_failed` / `checksum_mismatch`
 *   (502), `request_cancelled` (499).
 */
export async function pullModel(options: PullModelOptions): Promise<PulledModel> {
  const { config, logger } = options;
  const located = await locateModel(options);
  const { entry, repo, selection } = located;
  if (located.kind === 'cache') {
    logger.warn({ repo, err: located.hubError }, `the hub is unreachable; serving ${repo} from the cache`);
    return finish(options, { entry, repo, commit: undefined, downloadedBytes: 0, ...located.cached });
  }
  const { client, commit, files } = located;
  const chosen = selectModelFiles(files, selection);
  if (chosen.mmproj === undefined) logger.warn({ repo }, `${repo} has no projector (mmproj) GGUF: the model will only take text`);
  let downloadedBytes = 0;
  const paths: string[] = [];
  for (const file of [...chosen.model, ...(chosen.mmproj ? [chosen.mmproj] : [])]) {
    const result = await downloadHubFile({
      client,
      repo,
      revision: commit,
      file,
      target: hubCachePath(config.cacheDir, repo, file.path),
      logger,
      onProgress: options.progress,
      signal: options.signal,
      maxAttempts: options.download?.maxAttempts,
      retryDelayMs: options.download?.retryDelayMs,
    });
    if (result.downloaded) downloadedBytes += file.size;
    paths.push(result.path);
  }
  return finish(options, {
    entry,
    repo,
    commit,
    quant: chosen.quant,
    modelPath: paths[0] as string,
    mmprojPath: chosen.mmproj ? paths[paths.length - 1] : undefined,
    downloadedBytes,
  });
}

/**
 * Checks that a model can be pulled without downloading anything: the id resolves, the repo exists and holds
 * files for the quantization (or, with the hub unreachable, they are in the cache).
 *
 * @throws {IrisError} as {@link pullModel} does, before any download.
 */
export async function checkModelExists(options: Pick<PullModelOptions, 'id' | 'config' | 'signal' | 'revision'>): Promise<void> {
  const located = await locateModel(options);
  if (located.kind === 'hub') selectModelFiles(located.files, located.selection);
}

type Located = { entry: CatalogEntry | undefined; repo: string; selection: SelectOptions } & (
  | { kind: 'hub'; client: HubClient; commit: string; files: HubFile[] }
  | { kind: 'cache'; cached: Pick<Resolved, 'quant' | 'modelPath' | 'mmprojPath'>; hubError: IrisError }
);

/** Resolves an id to its repo and the repo's files at the revision, or to cached files when the hub is unreachable. */
async function locateModel(options: Pick<PullModelOptions, 'id' | 'config' | 'signal' | 'revision'>): Promise<Located> {
  const { config } = options;
  const reference = resolveCatalogId(options.id);
  const entry = reference.kind === 'catalog' ? reference.entry : undefined;
  const repo = entry?.repo ?? (reference.kind === 'repo' ? reference.repo : '');
  const selection: SelectOptions = {
    repo,
    quant: reference.quant,
    defaultQuants: entry ? [entry.defaultQuant] : undefined,
    fileStem: entry?.fileStem,
    mmproj: entry?.mmproj,
  };
  const client = new HubClient({ endpoint: config.hubEndpoint, token: config.hubToken });
  try {
    const commit = (await client.repoInfo(repo, options.revision ?? 'main', options.signal)).commit;
    const files = await client.listFiles(repo, commit, options.signal);
    return { kind: 'hub', entry, repo, selection, client, commit, files };
  } catch (error) {
    if (error instanceof IrisError && error.code === 'hub_unreachable') {
      const cached = await fromCache(config.cacheDir, selection);
      if (cached) return { kind: 'cache', entry, repo, selection, cached, hubError: error };
    }
    throw error;
  }
}

interface Resolved {
  entry: CatalogEntry | undefined;
  repo: string;
  commit: string | undefined;
  quant: string;
  modelPath: string;
  mmprojPath: string | undefined;
  downloadedBytes: number;
}

async function finish(options: PullModelOptions, resolved: Resolved): Promise<PulledModel> {
  const { entry } = resolved;
  return {
    id: entry?.id ?? resolved.repo,
    requested: options.id,
    repo: resolved.repo,
    quant: resolved.quant,
    commit: resolved.commit,
    modelPath: resolved.modelPath,
    mmprojPath: resolved.mmprojPath,
    context: entry?.context ?? (await trainedContext(resolved.modelPath, options.logger)),
    chatTemplate: entry?.chatTemplate,
    catalog: entry,
    downloadedBytes: resolved.downloadedBytes,
  };
}

/** The model and projector for a selection among the repo's cached files, if the model is there. */
async function fromCache(
  cacheDir: string,
  selection: SelectOptions,
): Promise<Pick<Resolved, 'quant' | 'modelPath' | 'mmprojPath'> | undefined> {
  const cached = await listCachedFiles(cacheDir, selection.repo);
  if (cached.length === 0) return undefined;
  try {
    const chosen = selectModelFiles(cached, selection);
    return { quant: chosen.quant, modelPath: chosen.model[0]?.absolutePath ?? '', mmprojPath: chosen.mmproj?.absolutePath };
  } catch {
    return undefined;
  }
}

async function trainedContext(modelPath: string, logger: Logger): Promise<number> {
  try {
    const { metadata } = await readGgufMetadata(modelPath);
    const architecture = metadata['general.architecture'];
    const length = architecture?.type === 'string' ? metadata[`${architecture.value}.context_length`] : undefined;
    const value = length === undefined ? undefined : Number(length.value);
    if (value !== undefined && Number.isFinite(value) && value >= 256) return Math.min(value, MAX_DEFAULT_CONTEXT);
  } catch (error) {
    logger.warn({ err: error, modelPath }, 'cannot read the model\'s context length; using the default');
  }
  return FALLBACK_CONTEXT;
}
