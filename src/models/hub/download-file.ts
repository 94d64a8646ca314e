/**
 * Downloads one hub file into the cache, safely:
 *
 * - streamed into `<target>.part`; an interrupted download (a cut connection, a killed process) resumes
 *   from the bytes already there with a `Range` request, within a pull (a few retries with backoff) and
 *   across pulls;
 * - the SHA-256 the hub publishes (or, for small non-LFS files, the git blob id) is computed while the bytes
 *   stream, over the resumed prefix too, and checked before the file is renamed into place, so the cache
 *   never holds a partial or wrong file under its final name; a mismatch deletes the `.part`;
 * - concurrent pulls of the same file share one download: within a process through a map of downloads in
 *   flight, across processes through a lock next to the file (proper-lockfile: an atomic mkdir whose mtime
 *   the holder refreshes; a waiter takes over a lock its holder stopped refreshing, and resumes the `.part`).
 *
 * Why not node-llama-cpp's `createModelDownloader` (ipull), which is installed: it resolves `hf:` URIs
 * through the hub's Ollama-style `/v2/.../manifests` endpoint rather than the file tree (and falls back to
 * reading HF_ENDPOINT from `process.env`), fetches a file as 5 MB chunks over 3 parallel ranged streams (so
 * the bytes cannot be hashed as they arrive, and it checks no SHA-256 at all), and has no lock against a
 * second process. Resume, verification and locking are what this module is for, so it uses undici and
 * proper-lockfile directly.
 */
import { createHash, type Hash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, open, rename, rm, stat, truncate } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { lock } from 'proper-lockfile';
import { IrisError, checksumMismatch, downloadFailed, requestCancelled } from '../../errors.js';
import type { Logger } from '../../logger.js';
import type { HubClient, HubFile } from './hub-client.js';
import type { ProgressListener, PullProgressEvent } from './progress.js';

/** Options of {@link downloadHubFile}. */
export interface DownloadHubFileOptions {
  client: HubClient;
  /** Repo id, `owner/name`. */
  repo: string;
  /** Commit (or branch) to download from; a commit keeps resumed bytes consistent. */
  revision: string;
  /** The file, with the size and checksum from the repo's file list. */
  file: HubFile;
  /** Final path in the cache. */
  target: string;
  logger: Logger;
  /** Progress events; also receives the events of a download this call joins. */
  onProgress?: ProgressListener | undefined;
  /** Stops waiting for the file (499 `request_cancelled`); a download others share goes on. */
  signal?: AbortSignal | undefined;
  /** Connection attempts before giving up; each resumes where the last stopped. @default 5 */
  maxAttempts?: number | undefined;
  /** Delay before retry `n` is `retryDelayMs * 2^(n-1)`. @default 500 */
  retryDelayMs?: number | undefined;
}

/** What {@link downloadHubFile} did. */
export interface DownloadResult {
  /** The file in the cache. */
  path: string;
  /** False when it was already there (size matched), or another process downloaded it meanwhile. */
  downloaded: boolean;
}

interface SharedDownload {
  promise: Promise<DownloadResult>;
  listeners: Set<ProgressListener>;
}

// Downloads in flight in this process, by absolute target path.
const inFlight = new Map<string, SharedDownload>();

const LOCK_STALE_MS = 15_000;
const LOCK_POLL_MS = 250;

/**
 * Makes sure `target` holds the verified file, downloading (or resuming) it if needed.
 *
 * @throws {IrisError} `checksum_mismatch` (nothing is left behind), `download_failed` after the retries,
 *   `model_not_found` when the hub no longer has the file, `request_cancelled` when `signal` aborts.
 */
export async function downloadHubFile(options: DownloadHubFileOptions): Promise<DownloadResult> {
  const target = resolve(options.target);
  let shared = inFlight.get(target);
  if (shared === undefined) {
    const listeners = new Set<ProgressListener>();
    const emit = (event: PullProgressEvent): void => {
      for (const listener of listeners) {
        try {
          listener(event);
        } catch (error) {
          options.logger.debug({ err: error }, 'a progress listener threw');
        }
      }
    };
    const created: SharedDownload = { listeners, promise: Promise.resolve({ path: target, downloaded: false }) };
    created.promise = runDownload({ ...options, target }, emit).finally(() => inFlight.delete(target));
    // every caller may stop waiting (their signals), so the failure must not go unhandled
    created.promise.catch(() => undefined);
    inFlight.set(target, created);
    shared = created;
  } else {
    options.logger.debug({ repo: options.repo, file: options.file.path }, 'joining a download already in progress');
  }
  const { listeners, promise } = shared;
  if (options.onProgress) listeners.add(options.onProgress);
  try {
    return await untilAborted(promise, options.signal);
  } finally {
    if (options.onProgress) listeners.delete(options.onProgress);
  }
}

async function runDownload(options: DownloadHubFileOptions & { target: string }, emit: (event: PullProgressEvent) => void): Promise<DownloadResult> {
  const { target, file, repo, logger } = options;
  const done = (cached: boolean): DownloadResult => {
    emit({ type: 'done', repo, file: file.path, totalBytes: file.size, cached });
    return { path: target, downloaded: !cached };
  };
  if (await isComplete(target, file.size)) return done(true);
  await mkdir(dirname(target), { recursive: true });

  const aborter = new AbortController();
  const release = await acquireLock(target, { repo, file: file.path, logger, emit, onLost: (error) => aborter.abort(error) });
  try {
    // another process may have finished it while this one waited for the lock
    if (await isComplete(target, file.size)) return done(true);
    await fetchVerified(options, emit, aborter.signal);
    await rename(partPath(target), target);
    logger.info({ repo, file: file.path, path: target, bytes: file.size }, `downloaded ${repo}/${file.path}`);
    return done(false);
  } finally {
    await release().catch((error: unknown) => logger.warn({ err: error, target }, 'could not release a download lock'));
  }
}

/** Fills `<target>.part` with the whole file and checks its checksum, resuming and retrying as needed. */
async function fetchVerified(
  options: DownloadHubFileOptions & { target: string },
  emit: (event: PullProgressEvent) => void,
  signal: AbortSignal,
): Promise<void> {
  const { client, repo, revision, file, logger } = options;
  const part = partPath(options.target);
  const maxAttempts = options.maxAttempts ?? 5;
  const retryDelayMs = options.retryDelayMs ?? 500;
  let restartedAfterMismatch = false;

  for (let attempt = 1; ; attempt++) {
    let offset = await sizeOf(part);
    if (offset > file.size) {
      await rm(part, { force: true });
      offset = 0;
    }
    const resumed = offset;
    try {
      let hash = newHash(file);
      if (offset > 0) await hashFile(part, hash);
      if (offset < file.size || file.size === 0) {
        const response = await client.openFile(repo, revision, file.path, { start: offset, signal });
        if (response.status === 416) {
          // the server has nothing past `offset`: the part is either complete or not this file
          await response.body.dump();
          if (offset !== file.size) throw new RetryableError(`the server refused the range from byte ${offset}`);
        } else {
          if (response.totalSize !== undefined && response.totalSize !== file.size) {
            await response.body.dump();
            throw downloadFailed(`${repo}/${file.path} changed on the hub during the pull (${response.totalSize} bytes instead of ${file.size}); pull again.`);
          }
          if (response.status === 200 && offset > 0) {
            logger.warn({ repo, file: file.path }, 'the server ignored the Range request; downloading the file from the start');
            await truncate(part, 0);
            hash = newHash(file);
            offset = 0;
          } else if (response.status === 206 && response.start !== offset) {
            await response.body.dump();
            throw new RetryableError(`the server answered a range from byte ${response.start} instead of ${offset}`);
          }
          emit({ type: 'start', repo, file: file.path, totalBytes: file.size, resumedFromBytes: offset });
          let received = offset;
          // written chunk by chunk and awaited, so every byte that arrived before a cut is on disk to resume from
          // (a write stream destroyed by a failing pipeline drops what it had buffered)
          const out = await open(part, offset > 0 ? 'a' : 'w');
          try {
            for await (const chunk of response.body as AsyncIterable<Buffer>) {
              received += chunk.length;
              if (received > file.size) throw new RetryableError(`the server sent more than the ${file.size} bytes the hub lists`);
              hash.update(chunk);
              await out.write(chunk);
              emit({ type: 'progress', repo, file: file.path, receivedBytes: received, totalBytes: file.size });
            }
          } finally {
            await out.close();
          }
        }
      } else {
        emit({ type: 'start', repo, file: file.path, totalBytes: file.size, resumedFromBytes: offset });
      }

      const size = await sizeOf(part);
      if (size !== file.size) throw new RetryableError(`the connection ended after ${size} of ${file.size} bytes`);
      const expected = file.sha256 ?? file.gitOid;
      if (expected !== undefined) {
        const actual = hash.digest('hex');
        if (actual !== expected) {
          await rm(part, { force: true });
          if (resumed > 0 && !restartedAfterMismatch) {
            // the bytes on disk may come from an older revision of the file: start over once
            restartedAfterMismatch = true;
            logger.warn({ repo, file: file.path }, 'a resumed download did not match its checksum; downloading it again from the start');
            continue;
          }
          throw checksumMismatch(
            `${repo}/${file.path} failed verification: its ${file.sha256 ? 'SHA-256' : 'git blob id'} is ${actual}, the hub lists ${expected}. ` +
              'The download was deleted; pull again, and check HF_ENDPOINT if it keeps failing.',
          );
        }
      } else {
        logger.warn({ repo, file: file.path }, 'the hub lists no checksum for this file; it is kept unverified');
      }
      return;
    } catch (error) {
      if (signal.aborted) throw downloadFailed(`The download of ${repo}/${file.path} stopped: ${(signal.reason as Error)?.message ?? 'aborted'}.`, signal.reason);
      if (error instanceof IrisError) throw error;
      if (attempt >= maxAttempts) {
        throw downloadFailed(`The download of ${repo}/${file.path} failed after ${attempt} attempts: ${describeError(error)}. Pulling again resumes it.`, error);
      }
      const delay = retryDelayMs * 2 ** (attempt - 1);
      logger.warn({ repo, file: file.path, attempt, err: error }, `download interrupted (${describeError(error)}); resuming in ${delay} ms`);
      await sleep(delay);
    }
  }
}

interface LockContext {
  repo: string;
  file: string;
  logger: Logger;
  emit: (event: PullProgressEvent) => void;
  onLost: (error: Error) => void;
}

/** Takes the cross-process lock of `target`, waiting while another live process holds it. */
async function acquireLock(target: string, context: LockContext): Promise<() => Promise<void>> {
  let announced = false;
  for (;;) {
    try {
      return await lock(target, {
        realpath: false,
        lockfilePath: `${target}.lock`,
        stale: LOCK_STALE_MS,
        retries: 0,
        onCompromised: (error) => {
          context.logger.error({ err: error, target }, 'lost the download lock of a file');
          context.onLost(error);
        },
      });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ELOCKED') {
        throw downloadFailed(`Cannot lock ${target} for downloading: ${describeError(error)}.`, error);
      }
    }
    if (!announced) {
      announced = true;
      context.logger.info({ repo: context.repo, file: context.file }, 'another process is downloading this file; waiting for it');
      context.emit({ type: 'waiting', repo: context.repo, file: context.file });
    }
    await sleep(LOCK_POLL_MS);
  }
}

/** Where a file's bytes go until they are verified. */
export function partPath(target: string): string {
  return `${target}.part`;
}

function newHash(file: HubFile): Hash {
  if (file.sha256 === undefined && file.gitOid !== undefined) {
    // git hashes the header `blob <size>\0` before the content
    return createHash('sha1').update(`blob ${file.size}\0`);
  }
  return createHash('sha256');
}

async function hashFile(path: string, hash: Hash): Promise<void> {
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
}

async function isComplete(path: string, size: number): Promise<boolean> {
  return stat(path).then(
    (info) => info.isFile() && info.size === size,
    () => false,
  );
}

async function sizeOf(path: string): Promise<number> {
  return stat(path).then(
    (info) => info.size,
    () => 0,
  );
}

async function untilAborted<T>(promise: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (signal === undefined) return promise;
  const cancelled = (): IrisError =>
    requestCancelled(signal.reason, 'The request was cancelled while its model was downloading; the download goes on.');
  if (signal.aborted) throw cancelled();
  let onAbort: (() => void) | undefined;
  const aborted = new Promise<never>((_, reject) => {
    onAbort = () => reject(cancelled());
    signal.addEventListener('abort', onAbort, { once: true });
  });
  try {
    return await Promise.race([promise, aborted]);
  } finally {
    if (onAbort) signal.removeEventListener('abort', onAbort);
  }
}

function describeError(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  const code = (error as NodeJS.ErrnoException).code;
  return code && !error.message.includes(code) ? `${error.message} (${code})` : error.message;
}

/** A transient failure: the next attempt resumes from what is on disk. */
class RetryableError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RetryableError';
  }
}
