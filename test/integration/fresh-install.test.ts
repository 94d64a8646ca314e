/**
 * A fresh machine's install of the SQLite driver: the committed tree in an empty folder, an empty HOME (no
 * user npm config), `npm install` (what .ci/run runs) with the environment `.ci/run` sets (`.ci/npm-env`), and
 * better-sqlite3's own install script, which must build the native driver with nothing but the npm registry.
 * Other packages' install scripts are skipped: this is about the driver. The npm cache is reused so that no
 * more than the registry is needed.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { after, test } from 'node:test';
import { REPO_ROOT } from '../helpers/test-env.js';

const run = promisify(execFile);
const folders: string[] = [];

after(async () => {
  for (const folder of folders) await rm(folder, { recursive: true, force: true });
});

test('npm install in a clean copy builds the SQLite driver from the npm registry alone', async () => {
  const checkout = await mkdtemp(join(tmpdir(), 'iris-fresh-checkout-'));
  const home = await mkdtemp(join(tmpdir(), 'iris-fresh-home-'));
  folders.push(checkout, home);
  await run('bash', ['-c', `git -C "${REPO_ROOT}" archive HEAD | tar -x -C "${checkout}"`]);
  const cache = (await run('npm', ['config', 'get', 'cache'])).stdout.trim();
  // Nothing of this machine's npm setup leaks in (npm test exports the user's config as npm_config_*).
  const env = Object.fromEntries(Object.entries(process.env).filter(([name]) => !/^npm_/i.test(name)));
  Object.assign(env, { HOME: home, npm_config_cache: cache, npm_config_update_notifier: 'false' });
  const install = await run(
    'bash',
    ['-c', '. .ci/npm-env && npm install --ignore-scripts --prefer-offline --no-audit --no-fund && npm rebuild better-sqlite3 --foreground-scripts'],
    { cwd: checkout, env, maxBuffer: 64 * 1024 * 1024 },
  );
  const output = `${install.stdout}\n${install.stderr}`;
  assert.ok(existsSync(join(checkout, 'node_modules/better-sqlite3/build/Release/better_sqlite3.node')), output.slice(-4000));
  const probe = await run(
    process.execPath,
    ['-e', "const D = require('better-sqlite3'); const db = new D(':memory:'); process.stdout.write(String(db.prepare('select sqlite_version() as v').get().v))"],
    { cwd: checkout, env },
  );
  assert.match(probe.stdout, /^3\.\d+\.\d+$/);
});
