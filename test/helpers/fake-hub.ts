/**
 * A local stand-in for the Hugging Face hub, over real HTTP on 127.0.0.1, speaking the protocol Iris's hub
 * client uses: `/api/models/{repo}[/revision/{rev}]` (commit, gated), `/api/models/{repo}/tree/{rev}` (files
 * with sizes, git oids and `lfs.oid` SHA-256s, paginated with `Link`), and `/{repo}/resolve/{rev}/{path}`,
 * which answers LFS files with a 302 to a second server playing the CDN (a different origin, as on the real
 * hub) and small files directly. Both honour `Range`. Errors carry `X-Error-Code` like the real hub's.
 *
 * Knobs make it misbehave on purpose: cut a download's connection half way (once), serve wrong bytes, send
 * slowly, ignore `Range`, demand a token. Every request is recorded, so tests can count downloads and see
 * the headers they carried.
 */
import { createHash } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

/** A file in a fake repo. */
export interface FakeRepoFile {
  path: string;
  bytes: Uint8Array;
  /** Stored through LFS (listed with `lfs.oid`, downloaded through the CDN). @default true for .gguf */
  lfs?: boolean;
}

/** A fake repo. */
export interface FakeRepo {
  files: FakeRepoFile[];
  /** 40-hex commit id. @default derived from the repo name */
  commit?: string;
  /** Downloads need `Authorization: Bearer <token>` (the hub's `token`). */
  gated?: boolean;
}

/** Options of {@link startFakeHub}. */
export interface FakeHubOptions {
  repos: Record<string, FakeRepo>;
  /** The token gated repos accept. @default 'hf_test_token' */
  token?: string;
  /** Tree entries per page; more pages are linked with `Link: <...>; rel="next"`. @default 1000 */
  treePageSize?: number;
}

/** One request either server saw. */
export interface RecordedRequest {
  server: 'hub' | 'cdn';
  method: string;
  /** Path and query. */
  url: string;
  /** The repo file a download was for (`owner/name/path`), for downloads. */
  file?: string;
  range: string | undefined;
  authorization: string | undefined;
  status: number;
  /** Body bytes actually written (downloads only). */
  bytesSent: number;
}

/** A running fake hub. */
export interface FakeHub {
  /** Set HF_ENDPOINT / hubEndpoint to this. */
  endpoint: string;
  /** Origin of the CDN server the hub redirects to. */
  cdnOrigin: string;
  token: string;
  requests: RecordedRequest[];
  /**
   * The next download of `file` (`owner/name/path`) is cut after `afterBytes` body bytes; once. When
   * `beforeCut` is given the connection is closed only once it resolves, so a test can wait until the
   * client has the bytes (a client may drop bytes it had not read yet when the connection dies).
   */
  cutOnce(file: string, afterBytes: number, beforeCut?: () => Promise<unknown>): void;
  /** Downloads of `file` serve the right length but one wrong byte (a checksum failure). */
  corrupt(file: string): void;
  /** Bodies go out in `chunkBytes` pieces with `delayMs` between them. */
  throttle(chunkBytes: number, delayMs: number): void;
  /** Answer Range requests with the whole file (200), as some servers do. */
  ignoreRange(ignore: boolean): void;
  /**
   * Downloads of `file` send their first chunk, then stall until the returned function is called; for
   * tests that need a download to be in flight while something else happens.
   */
  hold(file: string): () => void;
  /** Download GETs (served by hub or CDN) of `file`. */
  downloadsOf(file: string): RecordedRequest[];
  /** Clears the record and every knob. */
  reset(): void;
  close(): Promise<void>;
}

/** The SHA-256 of some bytes, hex. */
export function sha256(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/** The git blob id of some bytes (what the hub lists as `oid` for non-LFS files). */
export function gitBlobId(bytes: Uint8Array): string {
  return createHash('sha1').update(`blob ${bytes.length}\0`).update(bytes).digest('hex');
}

/** Starts the hub and its CDN on free loopback ports. */
export async function startFakeHub(options: FakeHubOptions): Promise<FakeHub> {
  const token = options.token ?? 'hf_test_token';
  const pageSize = options.treePageSize ?? 1000;
  const requests: RecordedRequest[] = [];
  let cuts = new Map<string, { afterBytes: number; beforeCut: (() => Promise<unknown>) | undefined }>();
  let corrupted = new Set<string>();
  let throttle: { chunkBytes: number; delayMs: number } | undefined;
  let rangeIgnored = false;
  let holds = new Map<string, { released: Promise<void>; release: () => void }>();

  const repos = new Map<string, { commit: string; gated: boolean; files: (FakeRepoFile & { lfs: boolean })[] }>();
  for (const [name, repo] of Object.entries(options.repos)) {
    repos.set(name, {
      commit: repo.commit ?? createHash('sha1').update(name).digest('hex'),
      gated: repo.gated ?? false,
      files: repo.files.map((file) => ({ ...file, lfs: file.lfs ?? file.path.endsWith('.gguf') })),
    });
  }

  const record = (entry: Omit<RecordedRequest, 'bytesSent'> & { bytesSent?: number }): RecordedRequest => {
    const full: RecordedRequest = { bytesSent: 0, ...entry };
    requests.push(full);
    return full;
  };

  /** Sends `bytes` honouring Range and the knobs; `key` names the file for knobs and the record. */
  const sendFile = async (request: IncomingMessage, response: ServerResponse, bytes: Uint8Array, key: string, entry: RecordedRequest, etag: string): Promise<void> => {
    let body = Buffer.from(bytes);
    if (corrupted.has(key) && body.length > 0) {
      body = Buffer.from(body);
      body[body.length >> 1] = (body[body.length >> 1] ?? 0) ^ 0xff;
    }
    const size = body.length;
    const range = rangeIgnored ? undefined : /^bytes=(\d+)-(\d*)$/.exec(request.headers.range ?? '');
    let start = 0;
    let end = size - 1;
    response.setHeader('accept-ranges', 'bytes');
    response.setHeader('etag', etag);
    if (range) {
      start = Number(range[1]);
      end = range[2] ? Math.min(Number(range[2]), size - 1) : size - 1;
      if (start >= size) {
        entry.status = 416;
        response.writeHead(416, { 'content-range': `bytes */${size}` }).end();
        return;
      }
      entry.status = 206;
      response.writeHead(206, { 'content-range': `bytes ${start}-${end}/${size}`, 'content-length': end - start + 1, 'content-type': 'application/octet-stream' });
    } else {
      entry.status = 200;
      response.writeHead(200, { 'content-length': size, 'content-type': 'application/octet-stream' });
    }
    if (request.method === 'HEAD') {
      response.end();
      return;
    }
    let slice = body.subarray(start, end + 1);
    const cut = cuts.get(key);
    if (cut !== undefined) {
      cuts.delete(key);
      slice = slice.subarray(0, cut.afterBytes);
    }
    const chunkBytes = throttle?.chunkBytes ?? slice.length;
    for (let offset = 0; offset < slice.length; offset += Math.max(1, chunkBytes)) {
      if (response.destroyed) return;
      const chunk = slice.subarray(offset, offset + Math.max(1, chunkBytes));
      await new Promise<void>((resolve) => response.write(chunk, () => resolve()));
      entry.bytesSent += chunk.length;
      const held = holds.get(key);
      if (held) await held.released;
      if (throttle && offset + chunkBytes < slice.length) await sleep(throttle.delayMs);
    }
    if (cut !== undefined) {
      // the declared length was not sent: the client gets every byte written, then the connection closes
      // mid-body (a FIN, not a reset, so the test knows exactly how many bytes arrived)
      await cut.beforeCut?.();
      response.socket?.end();
      return;
    }
    response.end();
  };

  const hubError = (response: ServerResponse, entry: RecordedRequest, status: number, code: string, message: string): void => {
    entry.status = status;
    response.writeHead(status, { 'content-type': 'application/json', 'x-error-code': code, 'x-error-message': message });
    response.end(JSON.stringify({ error: message }));
  };

  const cdn = createServer((request, response) => {
    const url = new URL(request.url ?? '/', 'http://cdn');
    const entry = record({
      server: 'cdn',
      method: request.method ?? 'GET',
      url: request.url ?? '/',
      range: request.headers.range,
      authorization: request.headers.authorization,
      status: 0,
    });
    // /cdn/<owner>/<name>/<commit>/<path...>
    const parts = url.pathname.split('/').slice(2).map(decodeURIComponent);
    const [owner, name, commit, ...rest] = parts;
    const repo = repos.get(`${owner}/${name}`);
    const file = repo?.files.find((candidate) => candidate.path === rest.join('/'));
    if (!repo || !file || commit !== repo.commit) {
      entry.status = 404;
      response.writeHead(404).end('NoSuchKey');
      return;
    }
    entry.file = `${owner}/${name}/${file.path}`;
    void sendFile(request, response, file.bytes, entry.file, entry, `"${sha256(file.bytes)}"`);
  });

  const hub = createServer((request, response) => {
    const url = new URL(request.url ?? '/', 'http://hub');
    const entry = record({
      server: 'hub',
      method: request.method ?? 'GET',
      url: request.url ?? '/',
      range: request.headers.range,
      authorization: request.headers.authorization,
      status: 200,
    });
    const authorized = request.headers.authorization === `Bearer ${token}`;
    const segments = url.pathname.split('/').slice(1).map(decodeURIComponent);

    if (segments[0] === 'api' && segments[1] === 'models') {
      const repoName = `${segments[2]}/${segments[3]}`;
      const repo = repos.get(repoName);
      if (!repo) return hubError(response, entry, 401, 'RepoNotFound', 'Repository not found');
      const action = segments[4];
      const revision = segments[5];
      if (revision !== undefined && revision !== 'main' && revision !== repo.commit) {
        return hubError(response, entry, 404, 'RevisionNotFound', 'Invalid rev id');
      }
      if (action === undefined || action === 'revision') {
        response.writeHead(200, { 'content-type': 'application/json' });
        response.end(
          JSON.stringify({
            _id: 'x',
            id: repoName,
            modelId: repoName,
            sha: repo.commit,
            private: false,
            gated: repo.gated ? 'manual' : false,
            siblings: repo.files.map((file) => ({ rfilename: file.path })),
          }),
        );
        return;
      }
      if (action === 'tree') {
        const entries = repo.files.map((file) => ({
          type: 'file',
          oid: gitBlobId(file.lfs ? Buffer.from(`version https://git-lfs.github.com/spec/v1\noid sha256:${sha256(file.bytes)}\nsize ${file.bytes.length}\n`) : file.bytes),
          size: file.bytes.length,
          path: file.path,
          ...(file.lfs ? { lfs: { oid: sha256(file.bytes), size: file.bytes.length, pointerSize: 134 } } : {}),
        }));
        const cursor = Number(url.searchParams.get('cursor') ?? '0');
        const page = entries.slice(cursor, cursor + pageSize);
        const headers: Record<string, string> = { 'content-type': 'application/json' };
        if (cursor + pageSize < entries.length) {
          const next = new URL(url.toString());
          next.searchParams.set('cursor', String(cursor + pageSize));
          headers['link'] = `<${next.pathname}${next.search}>; rel="next"`;
        }
        response.writeHead(200, headers);
        response.end(JSON.stringify(page));
        return;
      }
      return hubError(response, entry, 404, 'NotFound', 'Not found');
    }

    // /{owner}/{name}/resolve/{revision}/{path...}
    if (segments[2] === 'resolve') {
      const repoName = `${segments[0]}/${segments[1]}`;
      const repo = repos.get(repoName);
      if (!repo) return hubError(response, entry, 401, 'RepoNotFound', 'Repository not found');
      if (repo.gated && !authorized) return hubError(response, entry, 401, 'GatedRepo', 'Access to this model is restricted');
      const revision = segments[3];
      if (revision !== 'main' && revision !== repo.commit) return hubError(response, entry, 404, 'RevisionNotFound', 'Invalid rev id');
      const path = segments.slice(4).join('/');
      const file = repo.files.find((candidate) => candidate.path === path);
      if (!file) return hubError(response, entry, 404, 'EntryNotFound', 'Entry not found');
      entry.file = `${repoName}/${file.path}`;
      response.setHeader('x-repo-commit', repo.commit);
      if (!file.lfs) {
        void sendFile(request, response, file.bytes, entry.file, entry, `"${gitBlobId(file.bytes)}"`);
        return;
      }
      const location = `${cdnOrigin}/cdn/${segments[0]}/${segments[1]}/${repo.commit}/${file.path.split('/').map(encodeURIComponent).join('/')}?X-Amz-Signature=fake`;
      entry.status = 302;
      delete entry.file; // the bytes come from the CDN
      response.writeHead(302, {
        location,
        'x-linked-etag': `"${sha256(file.bytes)}"`,
        'x-linked-size': String(file.bytes.length),
        etag: `"${gitBlobId(file.bytes)}"`,
      });
      response.end();
      return;
    }
    hubError(response, entry, 404, 'NotFound', 'Not found');
  });

  const listen = (server: Server): Promise<number> =>
    new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve((server.address() as AddressInfo).port)));
  const cdnOrigin = `http://127.0.0.1:${await listen(cdn)}`;
  // the CDN is another origin, as on the real hub: the token must not follow the redirect
  const endpoint = `http://127.0.0.1:${await listen(hub)}`;

  return {
    endpoint,
    cdnOrigin,
    token,
    requests,
    cutOnce: (file, afterBytes, beforeCut) => void cuts.set(file, { afterBytes, beforeCut }),
    corrupt: (file) => void corrupted.add(file),
    throttle: (chunkBytes, delayMs) => {
      throttle = { chunkBytes, delayMs };
    },
    ignoreRange: (ignore) => {
      rangeIgnored = ignore;
    },
    hold: (file) => {
      let release = (): void => undefined;
      const released = new Promise<void>((resolve) => (release = resolve));
      const held = { released, release: () => {
        holds.delete(file);
        release();
      } };
      holds.set(file, held);
      return held.release;
    },
    downloadsOf: (file) => requests.filter((entry) => entry.file === file && entry.method === 'GET'),
    reset: () => {
      requests.length = 0;
      cuts = new Map();
      corrupted = new Set();
      throttle = undefined;
      rangeIgnored = false;
      for (const held of holds.values()) held.release();
      holds = new Map();
    },
    close: async () => {
      for (const server of [hub, cdn]) {
        server.closeAllConnections();
        await new Promise<void>((resolve) => server.close(() => resolve()));
      }
    },
  };
}
