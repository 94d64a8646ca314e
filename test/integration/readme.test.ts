/**
 * The README's quick start and Models examples, run as written: every command of their `sh` blocks runs in a
 * fresh directory with a real photo-sized JPEG, with `iris` on the PATH (what `npm link` gives), against a real
 * server. Only the setup commands this test itself depends on (`npm install`, `npm link`) are skipped, by name,
 * so a command added there is run or the test fails. The hub is a local stand-in serving synthetic models under
 * the repos the commands name, so `iris serve` with no model and the `iris pull` examples work offline.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { chmod, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { freeLoopbackPort } from '../../src/engines/llama-runner/llama-server-process.js';
import { DEFAULT_CATALOG_ENTRY } from '../../src/models/catalog.js';
import { startFakeHub, type FakeHub } from '../helpers/fake-hub.js';
import { makeLargeJpeg } from '../helpers/images.js';
import { REPO_ROOT, llamaServerBinary, syntheticModel } from '../helpers/test-env.js';

/** Commands the test does not run, because running the test needs them done already. */
const SKIPPED = new Set(['npm install', 'npm link']);

/** The shell commands of one README section's `sh` blocks, continuation lines joined. */
function sectionCommands(readme: string, heading: string): string[] {
  const start = readme.indexOf(`\n${heading}\n`);
  assert.ok(start >= 0, `README has a '${heading}' section`);
  const end = readme.indexOf('\n## ', start + heading.length + 2);
  const section = readme.slice(start, end < 0 ? undefined : end);
  const commands: string[] = [];
  for (const block of section.matchAll(/```sh\n([\s\S]*?)```/g)) {
    const joined = block[1]!.replace(/\\\n\s*/g, ' ');
    for (const line of joined.split('\n')) {
      const command = line.replace(/\s+#[^'"]*$/, '').trim();
      if (command.length > 0 && !command.startsWith('#')) commands.push(command);
    }
  }
  return commands;
}

describe('README quick start', () => {
  let dir: string;
  let hub: FakeHub;
  let env: NodeJS.ProcessEnv;
  let port: number;
  let server: ChildProcess | undefined;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'iris-readme-'));
    const tiny = await syntheticModel('tiny');
    const repo = DEFAULT_CATALOG_ENTRY.repo;
    const name = repo.split('/')[1]!.replace(/-GGUF$/, '');
    const [model, mmproj] = await Promise.all([readFile(tiny.modelPath), readFile(tiny.mmprojPath)]);
    // The repos the README's commands name, each with a synthetic model under the file names the real one has.
    hub = await startFakeHub({
      repos: {
        [repo]: { files: [{ path: `${name}-Q8_0.gguf`, bytes: model }, { path: `mmproj-${name}-Q8_0.gguf`, bytes: mmproj }] },
        'ggml-org/gemma-3-4b-it-GGUF': {
          files: [{ path: 'gemma-3-4b-it-Q8_0.gguf', bytes: model }, { path: 'mmproj-model-f16.gguf', bytes: mmproj }],
        },
        'bartowski/Qwen2-VL-7B-Instruct-GGUF': {
          files: [
            { path: 'Qwen2-VL-7B-Instruct-Q4_K_M.gguf', bytes: model },
            { path: 'mmproj-Qwen2-VL-7B-Instruct-f16.gguf', bytes: mmproj },
          ],
        },
      },
    });
    // `iris` on the PATH, as `npm link` puts it there (running the sources, so no stale dist/ is tested).
    const bin = join(dir, 'bin');
    await mkdir(bin);
    await writeFile(join(bin, 'iris'), `#!/bin/sh\nexec ${join(REPO_ROOT, 'node_modules/.bin/tsx')} ${join(REPO_ROOT, 'src/main.ts')} "$@"\n`);
    await chmod(join(bin, 'iris'), 0o755);
    port = await freeLoopbackPort();
    env = {
      ...process.env,
      PATH: `${bin}:${process.env['PATH'] ?? ''}`,
      HF_ENDPOINT: hub.endpoint,
      IRIS_PORT: String(port),
      IRIS_LLAMA_SERVER: await llamaServerBinary(),
      IRIS_CACHE_DIR: join(dir, 'cache'),
      IRIS_API_KEYS: '',
      IRIS_HOST: '',
      IRIS_CONFIG: '',
    };
    // A camera-sized JPEG: its base64 alone is over what one command-line argument may hold (128 KiB).
    await writeFile(join(dir, 'photo.jpg'), await makeLargeJpeg(3000, 2000));
  });

  after(async () => {
    await stopServer();
    await hub?.close();
    await rm(dir, { recursive: true, force: true });
  });

  async function stopServer(): Promise<void> {
    const running = server;
    server = undefined;
    if (!running || running.exitCode !== null || running.signalCode !== null) return;
    const exited = new Promise((resolve) => running.once('exit', resolve));
    process.kill(-running.pid!, 'SIGTERM');
    const timer = setTimeout(() => process.kill(-running.pid!, 'SIGKILL'), 10_000);
    await exited;
    clearTimeout(timer);
  }

  async function startServer(command: string): Promise<void> {
    await stopServer();
    const child = spawn('bash', ['-c', `exec ${command}`], { cwd: dir, env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    let output = '';
    child.stdout!.on('data', (chunk) => (output += chunk));
    child.stderr!.on('data', (chunk) => (output += chunk));
    server = child;
    const deadline = Date.now() + 180_000;
    for (;;) {
      assert.ok(child.exitCode === null, `'${command}' exited (${child.exitCode}):\n${output.slice(-3000)}`);
      assert.ok(Date.now() < deadline, `'${command}' did not become ready:\n${output.slice(-3000)}`);
      if (await fetch(`http://127.0.0.1:${port}/ready`).then((response) => response.ok, () => false)) return;
      await sleep(200);
    }
  }

  function run(command: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
    return new Promise((resolve) => {
      const child = spawn('bash', ['-c', command], { cwd: dir, env, stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (chunk) => (stdout += chunk));
      child.stderr.on('data', (chunk) => (stderr += chunk));
      child.on('exit', (code) => resolve({ code, stdout, stderr }));
    });
  }

  test('every quick start command works as written', async () => {
    const readme = await readFile(join(REPO_ROOT, 'README.md'), 'utf8');
    const commands = sectionCommands(readme, '## Quick start');
    const skipped = commands.filter((command) => SKIPPED.has(command));
    assert.deepEqual(skipped, [...SKIPPED], 'the quick start starts with npm install and npm link');
    let answers = 0;
    for (const written of commands.filter((command) => !SKIPPED.has(command))) {
      // The server listens where IRIS_PORT says; the commands talk to the README's port.
      const command = written.replaceAll('127.0.0.1:8080', `127.0.0.1:${port}`);
      if (/^iris serve\b/.test(command)) {
        await startServer(command);
        continue;
      }
      const result = await run(command);
      assert.equal(result.code, 0, `'${written}' failed:\n${result.stderr}`);
      if (/^curl\b/.test(command)) {
        const completion = JSON.parse(result.stdout) as {
          object?: string;
          choices?: { message?: { content?: unknown } }[];
          usage?: { prompt_tokens_details?: { image_tokens?: number } };
        };
        assert.equal(completion.object, 'chat.completion', result.stdout);
        assert.equal(typeof completion.choices?.[0]?.message?.content, 'string');
        assert.ok((completion.usage?.prompt_tokens_details?.image_tokens ?? 0) > 0, 'the photo reached the model');
        answers += 1;
      }
    }
    assert.equal(answers, 2, 'both the hub model and the synthetic model answered about the photo');
    const body = await readFile(join(dir, 'body.json'));
    assert.ok(body.length > 128 * 1024, 'the photo in the body is larger than a command-line argument may be');
  });

  test('every command of the Models section works as written', async () => {
    const readme = await readFile(join(REPO_ROOT, 'README.md'), 'utf8');
    const commands = sectionCommands(readme, '## Models');
    assert.ok(commands.length >= 5, commands.join('\n'));
    for (const command of commands) {
      const result = await run(command);
      assert.equal(result.code, 0, `'${command}' failed:\n${result.stderr}`);
    }
  });

  test('the README and deploy/ name only environment variables Iris (or its test suite) reads', async () => {
    // Iris's own variables are read in src/ (the playground's in src/web/); the test suite's (IRIS_TEST_*) in test/helpers/.
    const sources = await Promise.all(
      ['src', 'test/helpers'].flatMap(async (root) =>
        Promise.all(
          (await readdir(join(REPO_ROOT, root), { recursive: true }))
            .filter((file) => /\.(ts|js|html)$/.test(file) && !file.endsWith('.test.ts'))
            .map((file) => readFile(join(REPO_ROOT, root, file), 'utf8')),
        ),
      ),
    ).then((texts) => texts.flat());
    const code = sources.join('\n');
    const documents = ['README.md', ...(await readdir(join(REPO_ROOT, 'deploy'))).map((file) => join('deploy', file))];
    for (const document of documents) {
      const text = await readFile(join(REPO_ROOT, document), 'utf8');
      for (const [name] of text.matchAll(/\bIRIS_[A-Z_]+[A-Z]\b/g)) {
        // Read by Iris (`'IRIS_X'`), or by the code the playground writes for a client (`$IRIS_X`).
        assert.ok(code.includes(`'${name}'`) || code.includes(`$${name}`), `${document} names ${name}, which Iris does not read`);
      }
    }
  });
});
