/**
 * Downloads one file of a Hugging Face hub repo into the cache (`<cacheDir>/models/<repo>/<file>`):
 * streamed to a `.part` file, then renamed into place, so the cache never holds a partial file under its
 * final name. `HF_ENDPOINT` points it elsewhere; `HF_TOKEN` is sent for gated repos.
 */
import { createWriteStream } from 'node:fs';
import { mkdir, rename, rm, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { Agent, interceptors, request } from 'undici';
import type { IrisConfig } from '../config/config.js';
import { IrisError } from '../errors.js';
import type { Logger } from '../logger.js';

/** What to download. */
export interface HubFileRequest {
  repo: string;
  file: string;
  revision?: string;
  config: Pick<IrisConfig, 'cacheDir' | 'hubEndpoint' | 'hubToken'>;
  logger: Logger;
}

// The hub redirects downloads to its CDN.
const hubAgent = new Agent({ connect: { timeout: 10_000 } }).compose(interceptors.redirect({ maxRedirections: 5 }));

/** Where a hub file lives in the cache. */
export function hubCachePath(cacheDir: string, repo: string, file: string): string {
  return join(cacheDir, 'models', ...repo.split('/'), ...file.split('/'));
}

/** Returns the cached path of the file, downloading it first if it is not cached. */
export async function downloadHubFile(options: HubFileRequest): Promise<string> {
  const { repo, file, config, logger } = options;
  const target = hubCachePath(config.cacheDir, repo, file);
  if (await stat(target).then((info) => info.isFile(), () => false)) return target;
  await mkdir(dirname(target), { recursive: true });
  const url = `${config.hubEndpoint.replace(/\/$/, '')}/${repo}/resolve/${options.revision ?? 'main'}/${file}`;
  const part = `${target}.part-${process.pid}`;
  logger.info({ url }, `downloading ${repo}/${file}`);
  try {
    const response = await request(url, {
      dispatcher: hubAgent,
      headers: config.hubToken ? { authorization: `Bearer ${config.hubToken}` } : {},
      headersTimeout: 30_000,
      bodyTimeout: 60_000,
    });
    if (response.statusCode !== 200) {
      await response.body.dump();
      throw new IrisError(`The hub answered ${response.statusCode} for ${url}.`, {
        status: 502,
        type: 'server_error',
        code: 'download_failed',
      });
    }
    await pipeline(response.body, createWriteStream(part));
    await rename(part, target);
    return target;
  } catch (error) {
    await rm(part, { force: true });
    if (error instanceof IrisError) throw error;
    throw new IrisError(`Cannot reach the Hugging Face hub at ${config.hubEndpoint} to download ${repo}/${file}: ${(error as Error).message}.`, {
      status: 503,
      type: 'service_unavailable_error',
      code: 'hub_unreachable',
      cause: error,
    });
  }
}
