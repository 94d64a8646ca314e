/**
 * The model cache on disk: `<cacheDir>/models/<owner>/<repo>/<file>`, one directory per hub repo holding its
 * files under their repo paths. A file exists under its final name only once it is complete and verified;
 * `<file>.part` holds bytes of an unfinished download and `<file>.lock` marks one in progress. This module
 * lists what is cached (for `iris models` and offline starts) and removes it (`iris rm`).
 */
import { readdir, rm, rmdir, stat } from 'node:fs/promises';
import { join, relative, sep } from 'node:path';
import { check } from 'proper-lockfile';
import { catalogEntryForRepo, isRepoId, type CatalogEntry } from '../catalog.js';
import { modelBusy, modelNotFound } from '../../errors.js';
import { readGgufMetadata } from '../../gguf/gguf-reader.js';
import { ggufNumber, ggufString } from '../../gguf/gguf-values.js';
import { isMmprojGguf, isModelGguf, quantOf, selectProjector, splitIndex } from './select-files.js';

/** What a served model takes in besides text. */
export type Modality = 'text' | 'image' | 'audio';

/** A complete file in a repo's cache directory. */
export interface CachedFile {
  /** Path inside the repo, `/`-separated. */
  path: string;
  /** Where it is on disk. */
  absolutePath: string;
  /** Size in bytes. */
  size: number;
}

/** A model (one quantization of a repo) in the cache. */
export interface CachedModel {
  /** The hub repo it came from. */
  repo: string;
  /** The catalog id when the repo is in the catalog, else the repo. */
  id: string;
  /** The catalog entry, when there is one. */
  catalog: CatalogEntry | undefined;
  /** Quantization from the file name (`Q8_0`), or `unknown`. */
  quant: string;
  /** The text model file (the first part of a split model). */
  modelPath: string;
  /** Every file of the text model (several for a split model). */
  modelFiles: string[];
  /** The projector, when one is cached. */
  mmprojPath: string | undefined;
  /** Bytes on disk: model files plus projector. */
  sizeBytes: number;
  /** Trained context length from the GGUF metadata (`<arch>.context_length`). */
  contextLength: number | undefined;
  /** `general.architecture` of the text model. */
  architecture: string | undefined;
  /** libmtmd projector type from the projector's metadata. */
  projector: string | undefined;
  /** What it takes in: text, plus what the projector encodes. */
  modalities: Modality[];
  /** Why the metadata could not be read, when it could not. */
  problem: string | undefined;
}

/** Where a hub file lives in the cache. */
export function hubCachePath(cacheDir: string, repo: string, file: string): string {
  return join(repoCacheDir(cacheDir, repo), ...file.split('/'));
}

/** The cache directory of a repo. */
export function repoCacheDir(cacheDir: string, repo: string): string {
  return join(cacheDir, 'models', ...repo.split('/'));
}

/** The complete files cached for a repo (no `.part` or `.lock`), or none. */
export async function listCachedFiles(cacheDir: string, repo: string): Promise<CachedFile[]> {
  const root = repoCacheDir(cacheDir, repo);
  const files: CachedFile[] = [];
  const walk = async (directory: string): Promise<void> => {
    const entries = await readdir(directory, { withFileTypes: true }).catch(() => []);
    for (const entry of entries) {
      const absolutePath = join(directory, entry.name);
      if (entry.isDirectory()) {
        if (!entry.name.endsWith('.lock')) await walk(absolutePath);
        continue;
      }
      if (!entry.isFile() || entry.name.endsWith('.part')) continue;
      const size = await stat(absolutePath).then((info) => info.size, () => -1);
      if (size >= 0) files.push({ path: relative(root, absolutePath).split(sep).join('/'), absolutePath, size });
    }
  };
  await walk(root);
  return files.sort((a, b) => a.path.localeCompare(b.path));
}

/** Every repo with a cache directory, as `owner/name`. */
export async function listCachedRepos(cacheDir: string): Promise<string[]> {
  const base = join(cacheDir, 'models');
  const repos: string[] = [];
  for (const owner of await directories(base)) {
    for (const name of await directories(join(base, owner))) {
      const repo = `${owner}/${name}`;
      if (isRepoId(repo)) repos.push(repo);
    }
  }
  return repos.sort((a, b) => a.localeCompare(b));
}

/** The models of one cached repo, one per cached text-model file (or split set), with projector and metadata. */
export async function listCachedModelsOf(cacheDir: string, repo: string): Promise<CachedModel[]> {
  const files = await listCachedFiles(cacheDir, repo);
  const catalog = catalogEntryForRepo(repo);
  const models: CachedModel[] = [];
  for (const primary of files.filter((file) => isModelGguf(file.path) && splitIndex(file.path) <= 1)) {
    const parts = splitSet(files, primary);
    const mmproj = selectProjector(
      files.filter((file) => isMmprojGguf(file.path)),
      primary.path,
      catalog?.mmproj,
    );
    models.push({
      repo,
      id: catalog?.id ?? repo,
      catalog,
      quant: quantOf(primary.path) ?? 'unknown',
      modelPath: primary.absolutePath,
      modelFiles: parts.map((file) => file.absolutePath),
      mmprojPath: mmproj?.absolutePath,
      sizeBytes: parts.reduce((sum, file) => sum + file.size, 0) + (mmproj?.size ?? 0),
      ...(await describeModel(primary.absolutePath, mmproj?.absolutePath)),
    });
  }
  return models;
}

/** Every model in the cache, repo by repo. */
export async function listCachedModels(cacheDir: string): Promise<CachedModel[]> {
  const models: CachedModel[] = [];
  for (const repo of await listCachedRepos(cacheDir)) models.push(...(await listCachedModelsOf(cacheDir, repo)));
  return models;
}

/**
 * Deletes a repo's cached files: all of them, or with `quant` only that quantization's model files (and
 * the projector too when no other model of the repo is left).
 *
 * @returns the deleted paths.
 * @throws {IrisError} `model_not_found` (404) when nothing matching is cached; `model_unavailable` (409)
 *   while a download into the repo's directory is in progress.
 */
export async function removeCachedModel(cacheDir: string, repo: string, quant?: string | undefined): Promise<string[]> {
  if (!isRepoId(repo)) throw modelNotFound(repo, `'${repo}' is not a repo id (owner/name).`);
  const root = repoCacheDir(cacheDir, repo);
  if (await downloadInProgress(root)) {
    throw modelBusy(`${repo} is being downloaded right now; remove it once the pull has finished.`);
  }
  const files = await listCachedFiles(cacheDir, repo);
  if (quant === undefined) {
    if (files.length === 0 && !(await exists(root))) throw modelNotFound(repo, `${repo} is not in the cache (${root}).`);
    await rm(root, { recursive: true, force: true });
    await rmdir(join(root, '..')).catch(() => undefined); // the owner directory, when it is now empty
    return files.map((file) => file.absolutePath);
  }

  const wanted = quant.toUpperCase();
  const models = files.filter((file) => isModelGguf(file.path));
  const doomed = models.filter((file) => quantOf(file.path) === wanted);
  if (doomed.length === 0) {
    const cached = [...new Set(models.map((file) => quantOf(file.path) ?? file.path))];
    throw modelNotFound(repo, `${repo} has no ${wanted} model in the cache${cached.length > 0 ? ` (cached: ${cached.join(', ')})` : ''}.`);
  }
  if (doomed.length === models.length) doomed.push(...files.filter((file) => !isModelGguf(file.path)));
  for (const file of doomed) {
    await rm(file.absolutePath, { force: true });
    await rm(`${file.absolutePath}.part`, { force: true });
  }
  if ((await listCachedFiles(cacheDir, repo)).length === 0) {
    await rm(root, { recursive: true, force: true });
    await rmdir(join(root, '..')).catch(() => undefined);
  }
  return doomed.map((file) => file.absolutePath);
}

async function describeModel(
  modelPath: string,
  mmprojPath: string | undefined,
): Promise<Pick<CachedModel, 'contextLength' | 'architecture' | 'projector' | 'modalities' | 'problem'>> {
  const modalities: Modality[] = ['text'];
  let contextLength: number | undefined;
  let architecture: string | undefined;
  let projector: string | undefined;
  const problems: string[] = [];
  try {
    const { metadata } = await readGgufMetadata(modelPath);
    architecture = ggufString(metadata['general.architecture']);
    if (architecture !== undefined) contextLength = ggufNumber(metadata[`${architecture}.context_length`]);
  } catch (error) {
    problems.push((error as Error).message);
  }
  if (mmprojPath !== undefined) {
    try {
      const { metadata } = await readGgufMetadata(mmprojPath);
      projector = ggufString(metadata['clip.projector_type']) ?? ggufString(metadata['clip.vision.projector_type']);
      const vision = metadata['clip.has_vision_encoder'];
      const audio = metadata['clip.has_audio_encoder'];
      // projectors from before the has_*_encoder keys were all vision encoders
      if (vision === undefined ? audio === undefined : vision.value === true) modalities.push('image');
      if (audio?.value === true) modalities.push('audio');
    } catch (error) {
      problems.push((error as Error).message);
      modalities.push('image');
    }
  }
  return { contextLength, architecture, projector, modalities, problem: problems.length > 0 ? problems.join('; ') : undefined };
}

function splitSet(files: readonly CachedFile[], primary: CachedFile): CachedFile[] {
  const match = /-(\d{5})-of-(\d{5})\.gguf$/i.exec(primary.path);
  if (!match) return [primary];
  const prefix = primary.path.slice(0, match.index);
  return files.filter((file) => file.path.startsWith(prefix) && file.path.endsWith(`-of-${match[2]}.gguf`) && splitIndex(file.path) > 0);
}

/** Whether any `<file>.lock` below `root` is held by a live download. */
async function downloadInProgress(root: string): Promise<boolean> {
  const locks: string[] = [];
  const walk = async (directory: string): Promise<void> => {
    for (const entry of await readdir(directory, { withFileTypes: true }).catch(() => [])) {
      if (!entry.isDirectory()) continue;
      const path = join(directory, entry.name);
      if (entry.name.endsWith('.lock')) locks.push(path);
      else await walk(path);
    }
  };
  await walk(root);
  for (const lockPath of locks) {
    const target = lockPath.slice(0, -'.lock'.length);
    if (await check(target, { realpath: false, lockfilePath: lockPath, stale: 15_000 }).catch(() => false)) return true;
  }
  return false;
}

async function directories(path: string): Promise<string[]> {
  const entries = await readdir(path, { withFileTypes: true }).catch(() => []);
  return entries.filter((entry) => entry.isDirectory()).map((entry) => entry.name);
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

