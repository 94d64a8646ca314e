/**
 * Hub pulls against a local hub over real HTTP (test/helpers/fake-hub.ts) serving synthetic GGUFs from
 * `iris synth`: through `pullModel` and through the `iris pull` / `iris models` / `iris rm` CLI as child
 * processes with HF_ENDPOINT pointed at it. Nothing leaves loopback.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, beforeEach, describe, test } from 'node:test';
import { IrisError } from '../../src/errors.js';
import { silentLogger } from '../../src/logger.js';
import { listCachedFiles, pullModel, type PullProgressEvent } from '../../src/models/hub/index.js';
import { sha256, startFakeHub, type FakeHub } from '../helpers/fake-hub.js';
import { REPO_ROOT, startIris, syntheticModel } from '../helpers/test-env.js';

const REPO = 'iris-test/Tiny-VLM-GGUF';
const MODEL_FILE = 'Tiny-VLM-Q8_0.gguf';
const MODEL = `${REPO}/${MODEL_FILE}`;
const MMPROJ_FILE = 'mmproj-Tiny-VLM-F16.gguf';

let hub: FakeHub;
let modelBytes: Buffer;
let mmprojBytes: Buffer;
let cacheDir: string;
const cacheDirs: string[] = [];

before(async () => {
  const synth = await syntheticModel('tiny');
  modelBytes = await readFile(synth.modelPath);
  mmprojBytes = await readFile(synth.mmprojPath);
  // a second quantization: different bytes, so a mix-up would show
  const f16Bytes = Buffer.concat([modelBytes.subarray(0, modelBytes.length - 16), Buffer.alloc(16, 7)]);
  hub = await startFakeHub({
    treePageSize: 2, // several pages: the client must follow Link headers
    repos: {
      [REPO]: {
        files: [
          { path: 'README.md', bytes: Buffer.from('# Tiny VLM\n') },
          { path: MODEL_FILE, bytes: modelBytes },
          { path: 'Tiny-VLM-F16.gguf', bytes: f16Bytes },
          { path: MMPROJ_FILE, bytes: mmprojBytes },
        ],
      },
      // named as the catalog's default model, to check that ids map to the GGUF repo and its files
      'ggml-org/SmolVLM-256M-Instruct-GGUF': {
        files: [
          { path: 'SmolVLM-256M-Instruct-Q8_0.gguf', bytes: modelBytes },
          { path: 'SmolVLM-256M-Instruct-f16.gguf', bytes: f16Bytes },
          { path: 'mmproj-SmolVLM-256M-Instruct-Q8_0.gguf', bytes: mmprojBytes },
          { path: 'mmproj-SmolVLM-256M-Instruct-f16.gguf', bytes: Buffer.concat([mmprojBytes, Buffer.alloc(32)]) },
        ],
      },
      'iris-test/Gated-VLM-GGUF': { gated: true, files: [{ path: 'Gated-Q8_0.gguf', bytes: modelBytes }, { path: 'mmproj-Gated-F16.gguf', bytes: mmprojBytes }] },
      'iris-test/Safetensors-Only': { files: [{ path: 'model.safetensors', bytes: Buffer.alloc(64) }, { path: 'config.json', bytes: Buffer.from('{}') }] },
    },
  });
});

after(async () => {
  await hub?.close();
  await Promise.all(cacheDirs.map((dir) => rm(dir, { recursive: true, force: true })));
});

beforeEach(async () => {
  hub.reset();
  cacheDir = await mkdtemp(join(tmpdir(), 'iris-hub-cache-'));
  cacheDirs.push(cacheDir);
});

const configFor = (endpoint = hub.endpoint, hubToken?: string) => ({
  cacheDir,
  hubEndpoint: endpoint,
  ...(hubToken === undefined ? {} : { hubToken }),
});

const pull = (id: string, extra: { endpoint?: string; token?: string; maxAttempts?: number; progress?: (event: PullProgressEvent) => void } = {}) =>
  pullModel({
    id,
    config: configFor(extra.endpoint, extra.token),
    logger: silentLogger(),
    progress: extra.progress,
    download: { maxAttempts: extra.maxAttempts ?? 5, retryDelayMs: 10 },
  });

/** Every path below `dir`, files and directories, relative. */
async function tree(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true }).catch(() => [] as string[]);
  return entries.map(String).sort();
}

async function expectIrisError(promise: Promise<unknown>, code: string, pattern?: RegExp): Promise<IrisError> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof IrisError, `expected an IrisError, got ${String(error)}`);
    assert.equal(error.code, code, error.message);
    if (pattern) assert.match(error.message, pattern);
    return error;
  }
  assert.fail(`expected ${code}`);
}

/**
 * A progress listener (recording into `events`) and a promise that resolves once `bytes` of `file` are on
 * disk: the downloader reports progress after writing.
 */
function progressUntil(file: string, bytes: number, events: PullProgressEvent[] = []): [(event: PullProgressEvent) => void, Promise<void>] {
  let reached = (): void => undefined;
  const promise = new Promise<void>((resolve) => (reached = resolve));
  const listener = (event: PullProgressEvent): void => {
    events.push(event);
    if (event.type === 'progress' && event.file === file && event.receivedBytes >= bytes) reached();
  };
  return [listener, promise];
}

/** A loopback port nothing listens on. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

describe('pullModel', { timeout: 60_000 }, () => {
  test('pulls a repo: the quantization by default, its projector, verified, under models/<owner>/<repo>/', async () => {
    const events: PullProgressEvent[] = [];
    const pulled = await pull(REPO, { progress: (event) => events.push(event) });
    assert.equal(pulled.id, REPO);
    assert.equal(pulled.repo, REPO);
    assert.equal(pulled.quant, 'Q8_0');
    assert.equal(pulled.modelPath, join(cacheDir, 'models', 'iris-test', 'Tiny-VLM-GGUF', MODEL_FILE));
    assert.equal(pulled.mmprojPath, join(cacheDir, 'models', 'iris-test', 'Tiny-VLM-GGUF', MMPROJ_FILE));
    assert.equal(pulled.context, 4096, 'the synthetic model trained 4096 tokens');
    assert.equal(pulled.downloadedBytes, modelBytes.length + mmprojBytes.length);
    assert.equal(sha256(await readFile(pulled.modelPath)), sha256(modelBytes));
    assert.equal(sha256(await readFile(pulled.mmprojPath!)), sha256(mmprojBytes));
    assert.deepEqual(await tree(join(cacheDir, 'models', 'iris-test', 'Tiny-VLM-GGUF')), [MODEL_FILE, MMPROJ_FILE].sort(), 'no .part or .lock left');

    // the tree came in pages, and the CDN never saw the token-less hub's headers twice
    assert.ok(hub.requests.filter((entry) => entry.url.includes('/tree/')).length >= 2, 'followed the Link header');
    assert.equal(hub.downloadsOf(MODEL).length, 1);
    const done = events.filter((event) => event.type === 'done');
    assert.deepEqual(done.map((event) => [event.file, event.type === 'done' && event.cached]), [[MODEL_FILE, false], [MMPROJ_FILE, false]]);
    const last = events.filter((event) => event.type === 'progress' && event.file === MODEL_FILE).pop();
    assert.equal(last?.type === 'progress' && last.receivedBytes, modelBytes.length);

    hub.reset();
    const again = await pull(REPO);
    assert.equal(again.downloadedBytes, 0);
    assert.equal(hub.downloadsOf(MODEL).length, 0, 'a cached model is not downloaded again');
  });

  test('a quantization is chosen case-insensitively; a missing one lists what there is', async () => {
    const pulled = await pull(`${REPO}:f16`);
    assert.equal(pulled.quant, 'F16');
    assert.match(pulled.modelPath, /Tiny-VLM-F16\.gguf$/);
    await expectIrisError(pull(`${REPO}:Q2_K`), 'model_not_found', /no Q2_K GGUF.*Available: Q8_0, F16/);
  });

  test('catalog ids and aliases map to the GGUF repo and the catalog files', async () => {
    const pulled = await pull('smolvlm-256m');
    assert.equal(pulled.id, 'HuggingFaceTB/SmolVLM-256M-Instruct');
    assert.equal(pulled.repo, 'ggml-org/SmolVLM-256M-Instruct-GGUF');
    assert.equal(pulled.quant, 'Q8_0');
    assert.match(pulled.modelPath, /SmolVLM-256M-Instruct-Q8_0\.gguf$/);
    assert.match(pulled.mmprojPath ?? '', /mmproj-SmolVLM-256M-Instruct-Q8_0\.gguf$/);
    assert.equal(pulled.context, 8192);
    const byOriginalId = await pull('huggingfacetb/smolvlm-256m-instruct:F16');
    assert.match(byOriginalId.modelPath, /SmolVLM-256M-Instruct-f16\.gguf$/);
  });

  test('resumes with a Range request after the connection is cut half way', async () => {
    const half = Math.floor(modelBytes.length / 2);
    const events: PullProgressEvent[] = [];
    const [progress, received] = progressUntil(MODEL_FILE, half, events);
    hub.cutOnce(MODEL, half, () => received);
    const pulled = await pull(REPO, { progress });
    assert.equal(sha256(await readFile(pulled.modelPath)), sha256(modelBytes));
    const downloads = hub.downloadsOf(MODEL);
    assert.equal(downloads.length, 2);
    assert.equal(downloads[0]?.range, undefined);
    assert.equal(downloads[0]?.bytesSent, half);
    assert.equal(downloads[1]?.range, `bytes=${half}-`);
    assert.equal(downloads[1]?.status, 206);
    assert.equal(downloads.reduce((sum, entry) => sum + entry.bytesSent, 0), modelBytes.length, 'no byte was downloaded twice');
    assert.ok(events.some((event) => event.type === 'start' && event.file === MODEL_FILE && event.resumedFromBytes === half));
  });

  test('a pull that gave up leaves a .part that the next pull resumes', async () => {
    const half = Math.floor(modelBytes.length / 2);
    const [progress, received] = progressUntil(MODEL_FILE, half);
    hub.cutOnce(MODEL, half, () => received);
    await expectIrisError(pull(REPO, { maxAttempts: 1, progress }), 'download_failed', /Pulling again resumes it/);
    const repoDir = join(cacheDir, 'models', 'iris-test', 'Tiny-VLM-GGUF');
    assert.deepEqual(await tree(repoDir), [`${MODEL_FILE}.part`]);
    assert.equal((await stat(join(repoDir, `${MODEL_FILE}.part`))).size, half);

    const pulled = await pull(REPO);
    assert.equal(sha256(await readFile(pulled.modelPath)), sha256(modelBytes));
    const downloads = hub.downloadsOf(MODEL);
    assert.equal(downloads[1]?.range, `bytes=${half}-`);
    assert.equal(downloads[1]?.bytesSent, modelBytes.length - half);
  });

  test('a server that ignores Range still yields the right file', async () => {
    hub.cutOnce(MODEL, 1000);
    hub.ignoreRange(true);
    const pulled = await pull(REPO);
    assert.equal(sha256(await readFile(pulled.modelPath)), sha256(modelBytes));
  });

  test('a checksum mismatch is rejected and leaves nothing in the cache', async () => {
    hub.corrupt(MODEL);
    await expectIrisError(pull(REPO), 'checksum_mismatch', /SHA-256/);
    assert.deepEqual(await tree(join(cacheDir, 'models')), ['iris-test', join('iris-test', 'Tiny-VLM-GGUF')]);
    assert.deepEqual(await listCachedFiles(cacheDir, REPO), []);
  });

  test('two concurrent pulls of the same model share one download', async () => {
    hub.throttle(16 * 1024, 20);
    const seen: PullProgressEvent[][] = [[], []];
    const [first, second] = await Promise.all([
      pull(REPO, { progress: (event) => seen[0]!.push(event) }),
      pull(`${REPO}:Q8_0`, { progress: (event) => seen[1]!.push(event) }),
    ]);
    assert.equal(first.modelPath, second.modelPath);
    assert.equal(hub.downloadsOf(MODEL).length, 1, 'one GET of the model file');
    assert.equal(hub.downloadsOf(`${REPO}/${MMPROJ_FILE}`).length, 1, 'one GET of the projector');
    assert.equal(sha256(await readFile(first.modelPath)), sha256(modelBytes));
    for (const events of seen) assert.ok(events.some((event) => event.type === 'done' && event.file === MODEL_FILE), 'both callers see the download finish');
  });

  test('unknown repos and ids, unsupported models and repos without GGUFs get clear errors', async () => {
    await expectIrisError(pull('iris-test/No-Such-Repo'), 'model_not_found', /no repo 'iris-test\/No-Such-Repo'.*HF_TOKEN/);
    await expectIrisError(pull('no-such-model'), 'model_not_found', /not a model Iris knows.*smolvlm-256m/);
    await expectIrisError(pull('meta-llama/Llama-3.2-90B-Vision-Instruct'), 'model_not_supported', /remote engine/);
    await expectIrisError(pull('iris-test/Safetensors-Only'), 'model_not_found', /no GGUF model files/);
    assert.equal(hub.requests.filter((entry) => entry.url.includes('Llama-3.2')).length, 0, 'unsupported ids never reach the hub');
  });

  test('gated repos need HF_TOKEN, which goes to the hub but never to the CDN', async () => {
    await expectIrisError(pull('iris-test/Gated-VLM-GGUF'), 'download_failed', /gated.*HF_TOKEN/);
    hub.reset();
    const pulled = await pull('iris-test/Gated-VLM-GGUF', { token: hub.token });
    assert.equal(sha256(await readFile(pulled.modelPath)), sha256(modelBytes));
    const hubRequests = hub.requests.filter((entry) => entry.server === 'hub');
    const cdnRequests = hub.requests.filter((entry) => entry.server === 'cdn');
    assert.ok(hubRequests.length > 0 && hubRequests.every((entry) => entry.authorization === `Bearer ${hub.token}`));
    assert.ok(cdnRequests.length > 0 && cdnRequests.every((entry) => entry.authorization === undefined), 'the token must not follow the redirect');
  });

  test('an unreachable hub names the offline ways to start; a cached model is still served', async () => {
    const offline = `http://127.0.0.1:${await closedPort()}`;
    const error = await expectIrisError(pull(REPO, { endpoint: offline }), 'hub_unreachable');
    assert.equal(error.status, 503);
    assert.match(error.message, /--model PATH/);
    assert.match(error.message, /iris synth/);
    assert.match(error.message, /ECONNREFUSED/);

    const online = await pull(REPO);
    const cached = await pull(REPO, { endpoint: offline });
    assert.equal(cached.modelPath, online.modelPath);
    assert.equal(cached.mmprojPath, online.mmprojPath);
    assert.equal(cached.commit, undefined);
  });
});

interface CliRun {
  /** Resolves when some output (stdout + stderr so far) matches. */
  output(pattern: RegExp): Promise<void>;
  done: Promise<{ code: number | null; stdout: string; stderr: string }>;
}

/** Starts the CLI as a child process with HF_ENDPOINT at the fake hub and the test's cache. */
function startCli(args: string[], env: NodeJS.ProcessEnv = {}): CliRun {
  const childEnv: NodeJS.ProcessEnv = { ...process.env, HF_ENDPOINT: hub.endpoint, HF_TOKEN: '', IRIS_CACHE_DIR: cacheDir, ...env };
  delete childEnv['IRIS_CONFIG'];
  const child = spawn(process.execPath, ['--import', 'tsx', join(REPO_ROOT, 'src/main.ts'), ...args], {
    cwd: REPO_ROOT,
    env: childEnv,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  const watchers: { pattern: RegExp; resolve: () => void }[] = [];
  const check = (): void => {
    for (const watcher of [...watchers]) {
      if (watcher.pattern.test(stdout + stderr)) {
        watchers.splice(watchers.indexOf(watcher), 1);
        watcher.resolve();
      }
    }
  };
  child.stdout.on('data', (chunk: Buffer) => {
    stdout += chunk.toString();
    check();
  });
  child.stderr.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
    check();
  });
  const done = new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
  return {
    done,
    output: (pattern) =>
      new Promise<void>((resolve, reject) => {
        watchers.push({ pattern, resolve });
        check();
        void done.then(() => reject(new Error(`the CLI exited before printing ${pattern}:\n${stdout}${stderr}`)));
      }),
  };
}

/** Runs the CLI to the end. */
const iris = (args: string[], env: NodeJS.ProcessEnv = {}) => startCli(args, env).done;

/** Resolves once the hub has started sending `file`. */
async function downloadStarted(file: string): Promise<void> {
  while (!hub.downloadsOf(file).some((entry) => entry.bytesSent > 0)) await new Promise((resolve) => setTimeout(resolve, 20));
}

describe('iris pull / models / rm', { timeout: 120_000 }, () => {
  test('pull, list, remove', async () => {
    const pulled = await iris(['pull', REPO]);
    assert.equal(pulled.code, 0, pulled.stderr);
    const modelPath = join(cacheDir, 'models', 'iris-test', 'Tiny-VLM-GGUF', MODEL_FILE);
    assert.match(pulled.stdout, new RegExp(`pulled ${REPO} \\(${REPO}, Q8_0, .* downloaded\\)`));
    assert.ok(pulled.stdout.includes(`model   ${modelPath}`));
    // stderr is not a terminal here: plain lines, no bar redrawing
    assert.match(pulled.stderr, new RegExp(`${MODEL_FILE}: .*downloaded and verified`));
    assert.ok(!pulled.stderr.includes('\r') && !pulled.stderr.includes('\u001b['), 'no bar redrawing');
    assert.equal(sha256(await readFile(modelPath)), sha256(modelBytes));

    // --server at a port nobody listens on: only the cache is listed, whatever runs on this machine.
    const noServer = ['--server', 'http://127.0.0.1:1'];
    const listed = await iris(['models', '--json', ...noServer]);
    assert.equal(listed.code, 0, listed.stderr);
    const output = JSON.parse(listed.stdout) as { cached: Record<string, unknown>[]; server: unknown };
    assert.equal(output.server, null);
    const models = output.cached;
    assert.equal(models.length, 1);
    assert.deepEqual(
      { ...models[0], modelFiles: undefined },
      {
        id: REPO,
        repo: REPO,
        quant: 'Q8_0',
        sizeBytes: modelBytes.length + mmprojBytes.length,
        contextLength: 4096,
        architecture: 'llama',
        projector: 'mlp',
        modalities: ['text', 'image'],
        modelPath,
        modelFiles: undefined,
        mmprojPath: join(cacheDir, 'models', 'iris-test', 'Tiny-VLM-GGUF', MMPROJ_FILE),
        problem: null,
      },
    );
    const table = await iris(['models', ...noServer]);
    assert.equal(table.code, 0, table.stderr);
    assert.match(table.stdout, /^MODEL\s+QUANT\s+SIZE\s+CONTEXT\s+INPUT\s+PATH$/m);
    assert.match(table.stdout, new RegExp(`^${REPO}\\s+Q8_0\\s+\\d+(\\.\\d)? kB\\s+4096\\s+text\\+image\\s+${modelPath}$`, 'm'));

    const removed = await iris(['rm', REPO]);
    assert.equal(removed.code, 0, removed.stderr);
    assert.match(removed.stdout, new RegExp(`removed ${REPO} \\(2 files`));
    assert.deepEqual(await tree(join(cacheDir, 'models')), []);
    const empty = await iris(['models', ...noServer]);
    assert.match(empty.stdout, /No models in the cache/);
    const again = await iris(['rm', REPO]);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /not in the cache/);
  });

  test('a second iris pull process waits for the first one\'s download instead of starting its own', async () => {
    const release = hub.hold(MODEL);
    const first = startCli(['pull', REPO]);
    await downloadStarted(MODEL);
    const second = startCli(['pull', REPO]);
    await second.output(/another process is downloading it; waiting/);
    release();
    const [one, two] = await Promise.all([first.done, second.done]);
    assert.equal(one.code, 0, one.stderr);
    assert.equal(two.code, 0, two.stderr);
    assert.equal(hub.downloadsOf(MODEL).length, 1, 'one GET of the model file');
    assert.equal(hub.downloadsOf(`${REPO}/${MMPROJ_FILE}`).length, 1, 'one GET of the projector, whichever process took it');
    assert.equal(sha256(await readFile(join(cacheDir, 'models', 'iris-test', 'Tiny-VLM-GGUF', MODEL_FILE))), sha256(modelBytes));
  });

  test('an unreachable hub: exit 1 and the offline message', async () => {
    const result = await iris(['pull', REPO], { HF_ENDPOINT: `http://127.0.0.1:${await closedPort()}` });
    assert.equal(result.code, 1);
    assert.match(result.stderr, /Cannot reach the Hugging Face hub/);
    assert.match(result.stderr, /--model PATH/);
    assert.match(result.stderr, /iris synth --out/);
  });

  test('an unknown id: exit 1 naming the catalog; models --catalog lists it', async () => {
    const result = await iris(['pull', 'no-such-model']);
    assert.equal(result.code, 1);
    assert.match(result.stderr, /not a model Iris knows/);
    const catalog = await iris(['models', '--catalog']);
    assert.equal(catalog.code, 0, catalog.stderr);
    assert.match(catalog.stdout, /HuggingFaceTB\/SmolVLM-256M-Instruct\s+smolvlm-256m\s+ggml-org\/SmolVLM-256M-Instruct-GGUF\s+Q8_0\s+8192/);
    await writeFile(join(cacheDir, 'unused'), ''); // the cache dir stays usable after a failed pull
  });
});

describe('iris serve without --model', { timeout: 180_000 }, () => {
  test('pulls the default model through HF_ENDPOINT and serves it under its catalog id', async () => {
    const iris = await startIris({ args: [], env: { HF_ENDPOINT: hub.endpoint } });
    try {
      const response = await fetch(`${iris.baseUrl}/v1/models`);
      const body = (await response.json()) as { data: { id: string }[] };
      assert.deepEqual(body.data.map((model) => model.id), ['HuggingFaceTB/SmolVLM-256M-Instruct']);
      assert.equal(hub.downloadsOf('ggml-org/SmolVLM-256M-Instruct-GGUF/SmolVLM-256M-Instruct-Q8_0.gguf').length, 1);
      assert.equal(hub.downloadsOf('ggml-org/SmolVLM-256M-Instruct-GGUF/mmproj-SmolVLM-256M-Instruct-Q8_0.gguf').length, 1);
      assert.ok(iris.logRecords('downloaded and verified').length >= 2, 'the pull is logged');
    } finally {
      await iris.stop();
    }
  });

  test('without the hub or a cached copy, it exits naming --model PATH and iris synth', async () => {
    await assert.rejects(
      startIris({ args: [], env: { HF_ENDPOINT: `http://127.0.0.1:${await closedPort()}` } }),
      (error: Error) => /iris exited early/.test(error.message) && /--model PATH/.test(error.message) && /iris synth/.test(error.message),
    );
  });
});

describe('iris serve pulls on demand', { timeout: 240_000 }, () => {
  const chat = (baseUrl: string, model: string) =>
    fetch(`${baseUrl}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model, messages: [{ role: 'user', content: 'hi' }], max_tokens: 2 }),
    });

  test('a catalog id a request names is pulled once, registered under its catalog id and served', async () => {
    const local = await syntheticModel('tiny');
    const iris = await startIris({ args: ['--model', local.modelPath, '--mmproj', local.mmprojPath, '--model-id', 'local'], env: { HF_ENDPOINT: hub.endpoint } });
    try {
      // Two concurrent first requests under two names of the same model: one pull, one load.
      const [first, second] = await Promise.all([chat(iris.baseUrl, 'smolvlm-256m'), chat(iris.baseUrl, 'HuggingFaceTB/SmolVLM-256M-Instruct')]);
      assert.equal(first.status, 200, await first.clone().text());
      assert.equal(second.status, 200);
      assert.equal(((await first.json()) as { model: string }).model, 'smolvlm-256m', 'the response names the model as asked');
      assert.equal(hub.downloadsOf('ggml-org/SmolVLM-256M-Instruct-GGUF/SmolVLM-256M-Instruct-Q8_0.gguf').length, 1);
      const models = (await fetch(`${iris.baseUrl}/v1/models`).then((response) => response.json())) as { data: { id: string; loaded: boolean }[] };
      assert.deepEqual(models.data.map((model) => model.id), ['local', 'HuggingFaceTB/SmolVLM-256M-Instruct']);
      assert.equal(iris.logRecords('starting llama-server').filter((record) => record['model'] === 'HuggingFaceTB/SmolVLM-256M-Instruct').length, 1);

      // iris models asks the running server what it serves and what is loaded.
      const listing = await startCli(['models', '--server', iris.baseUrl, '--cache-dir', cacheDir], {}).done;
      assert.equal(listing.code, 0, listing.stderr);
      assert.match(listing.stdout, new RegExp(`^Served by ${iris.baseUrl}:$`, 'm'));
      assert.match(listing.stdout, /^HuggingFaceTB\/SmolVLM-256M-Instruct\s+loaded\s+8192\s+\S+ \S+\s+text\+image$/m);
      assert.match(listing.stdout, /^local\s+loaded\s+/m);

      // A plain hub repo is not pulled on demand unless --pull-on-demand any.
      const repo = await chat(iris.baseUrl, REPO);
      assert.equal(repo.status, 404);
      assert.equal(((await repo.json()) as { error: { code: string } }).error.code, 'model_not_found');
      // A model the embedded engine cannot run says where to go instead.
      const unsupported = await chat(iris.baseUrl, 'meta-llama/Llama-3.2-90B-Vision-Instruct');
      assert.equal(unsupported.status, 400);
      const body = (await unsupported.json()) as { error: { code: string; message: string; param: string } };
      assert.equal(body.error.code, 'model_not_supported');
      assert.equal(body.error.param, 'model');
      assert.match(body.error.message, /remote engine/);
    } finally {
      await iris.stop();
    }
  });

  test('on-demand discovery registers only ids that exist; failures leave no entry and are remembered briefly', async () => {
    const local = await syntheticModel('tiny');
    const iris = await startIris({ args: ['--model', local.modelPath, '--mmproj', local.mmprojPath, '--model-id', 'local'], env: { HF_ENDPOINT: hub.endpoint } });
    const listed = async () =>
      ((await fetch(`${iris.baseUrl}/v1/models`).then((response) => response.json())) as { data: { id: string }[] }).data.map((model) => model.id);
    try {
      const before = await listed();
      hub.reset();
      // 100 catalog ids with quantizations the repo does not have: each a 404, none registered.
      for (let index = 0; index < 100; index += 1) {
        const response = await chat(iris.baseUrl, `smolvlm-256m:Q${String(index).padStart(4, '0')}`);
        assert.equal(response.status, 404);
        assert.equal(((await response.json()) as { error: { code: string } }).error.code, 'model_not_found');
      }
      assert.deepEqual(await listed(), before, '/v1/models is unchanged');
      assert.equal(hub.requests.filter((request) => request.url.includes('/resolve/')).length, 0, 'nothing was downloaded');
      // The same bogus id again is answered from memory, without asking the hub.
      const asked = hub.requests.length;
      for (let index = 0; index < 10; index += 1) assert.equal((await chat(iris.baseUrl, 'smolvlm-256m:Q0007')).status, 404);
      assert.equal(hub.requests.length, asked, 'repeated failures did not reach the hub');

      // An id that exists but whose pull fails (corrupt bytes) leaves no entry either.
      hub.corrupt('ggml-org/SmolVLM-256M-Instruct-GGUF/SmolVLM-256M-Instruct-Q8_0.gguf');
      const failed = await chat(iris.baseUrl, 'smolvlm-256m');
      assert.ok(failed.status >= 500, `status ${failed.status}`);
      assert.deepEqual(await listed(), before, 'a failed pull leaves /v1/models unchanged');
      const downloads = hub.downloadsOf('ggml-org/SmolVLM-256M-Instruct-GGUF/SmolVLM-256M-Instruct-Q8_0.gguf').length;
      assert.ok((await chat(iris.baseUrl, 'smolvlm-256m')).status >= 500);
      assert.equal(hub.downloadsOf('ggml-org/SmolVLM-256M-Instruct-GGUF/SmolVLM-256M-Instruct-Q8_0.gguf').length, downloads, 'the failed pull is not retried at once');
    } finally {
      await iris.stop();
    }
  });

  test('--pull-on-demand any pulls plain repos, never pulls nothing; --model takes a repo too', async () => {
    const any = await startIris({ args: ['--model', `${REPO}:Q8_0`, '--pull-on-demand', 'any'], env: { HF_ENDPOINT: hub.endpoint } });
    try {
      // --model REPO:QUANT was pulled and preloaded before /ready.
      const models = (await fetch(`${any.baseUrl}/v1/models`).then((response) => response.json())) as { data: { id: string; loaded: boolean }[] };
      assert.deepEqual(models.data.map((model) => [model.id, model.loaded]), [[`${REPO}:Q8_0`, true]]);
      const plain = await chat(any.baseUrl, 'ggml-org/SmolVLM-256M-Instruct-GGUF');
      assert.equal(plain.status, 200);
    } finally {
      await any.stop();
    }
    const local = await syntheticModel('tiny');
    const never = await startIris({ args: ['--model', local.modelPath, '--pull-on-demand', 'never'], env: { HF_ENDPOINT: hub.endpoint } });
    try {
      hub.reset();
      assert.equal((await chat(never.baseUrl, 'smolvlm-256m')).status, 404);
      assert.equal(hub.requests.length, 0, 'nothing was asked of the hub');
    } finally {
      await never.stop();
    }
  });
});
