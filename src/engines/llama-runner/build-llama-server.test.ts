import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { silentLogger } from '../../logger.js';
import { LLAMA_SERVER_CMAKE_FLAGS, PINNED_LLAMA_CPP_COMMIT, acquireBuildLock, llamaCppBundlePath, llamaServerCachePath } from './build-llama-server.js';

const HERE = fileURLToPath(new URL('.', import.meta.url));

describe('llama-server build cache', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'iris-build-lock-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  test('the cache path is keyed by the pinned commit and a hash of the flags', () => {
    const path = llamaServerCachePath('/cache');
    assert.match(path, new RegExp(`^/cache/llama-server/${PINNED_LLAMA_CPP_COMMIT.slice(0, 12)}-[0-9a-f]{10}/llama-server$`));
    assert.ok(LLAMA_SERVER_CMAKE_FLAGS.includes('-DLLAMA_USE_PREBUILT_UI=OFF'), 'the build downloads nothing');
  });

  test('the pinned source bundle ships with our node-llama-cpp dependency', async () => {
    const head = await readFile(llamaCppBundlePath()).then((bytes) => bytes.subarray(0, 64).toString('latin1'));
    assert.match(head, /^# v[23] git bundle/);
  });

  test('two processes never hold the lock at once', async () => {
    const lock = join(dir, 'build.lock');
    const journal = join(dir, 'journal');
    await writeFile(journal, '');
    const script = `
      import { appendFile } from 'node:fs/promises';
      import { setTimeout as sleep } from 'node:timers/promises';
      import { acquireBuildLock } from ${JSON.stringify(join(HERE, 'build-llama-server.ts'))};
      import { silentLogger } from ${JSON.stringify(join(HERE, '../../logger.ts'))};
      const held = await acquireBuildLock(${JSON.stringify(lock)}, silentLogger());
      await appendFile(${JSON.stringify(journal)}, 'in ' + process.pid + '\\n');
      await sleep(700);
      await appendFile(${JSON.stringify(journal)}, 'out ' + process.pid + '\\n');
      await held.release();
    `;
    const run = () =>
      new Promise<number | null>((resolve) => {
        const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { stdio: 'inherit' });
        child.on('exit', resolve);
      });
    assert.deepEqual(await Promise.all([run(), run()]), [0, 0]);
    const lines = (await readFile(journal, 'utf8')).trim().split('\n');
    assert.equal(lines.length, 4);
    assert.equal(lines[0]!.split(' ')[1], lines[1]!.split(' ')[1], 'the first holder left before the second entered');
    assert.match(lines[1]!, /^out /);
    assert.match(lines[2]!, /^in /);
  });

  test('a lock left by a dead process is taken over', async () => {
    const lock = join(dir, 'stale.lock');
    await mkdir(lock);
    // A pid that does not exist: beyond the kernel's pid range.
    await writeFile(join(lock, 'owner'), '4194305');
    const started = Date.now();
    const held = await acquireBuildLock(lock, silentLogger());
    assert.ok(Date.now() - started < 2000);
    assert.equal(await readFile(join(lock, 'owner'), 'utf8'), String(process.pid));
    await held.release();
  });
});
