/**
 * Hugging Face hub pulls: the hub client, file selection, resumable verified downloads into the cache,
 * progress reporters, the cache itself, and {@link pullModel}, which ties them together.
 */
export { checkModelExists, pullModel, type PullModelOptions, type PulledModel } from './pull-model.js';
export { HubClient, hubUnreachable, isSafeRepoPath, type HubClientOptions, type HubFile, type HubFileResponse, type HubRepoInfo } from './hub-client.js';
export { downloadHubFile, partPath, type DownloadHubFileOptions, type DownloadResult } from './download-file.js';
export { isMmprojGguf, isModelGguf, quantOf, selectModelFiles, selectProjector, type SelectedFiles, type SelectOptions } from './select-files.js';
export {
  hubCachePath,
  listCachedFiles,
  listCachedModels,
  listCachedModelsOf,
  listCachedRepos,
  removeCachedModel,
  repoCacheDir,
  type CachedFile,
  type CachedModel,
  type Modality,
} from './hub-cache.js';
export {
  consoleProgress,
  lineProgress,
  logProgress,
  ttyProgress,
  type ProgressListener,
  type ProgressStream,
  type PullProgressEvent,
  type ReporterOptions,
} from './progress.js';
