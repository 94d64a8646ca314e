/**
 * A clean `npm install` on every Node version Iris supports: each locked package installed on this platform
 * (development tools included) has an `engines.node` range covering the whole range package.json declares, so
 * npm prints no EBADENGINE warning on any of them.
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import semver from 'semver';
import { REPO_ROOT } from '../helpers/test-env.js';

interface LockedPackage {
  engines?: { node?: string } | string[];
  os?: string[];
  cpu?: string[];
}

/** Platform packages for other systems (sharp's win32 builds) are never installed here. */
function installsHere(locked: LockedPackage): boolean {
  return (locked.os === undefined || locked.os.includes(process.platform)) && (locked.cpu === undefined || locked.cpu.includes(process.arch));
}

test('every locked package supports all the Node versions Iris declares', async () => {
  const manifest = JSON.parse(await readFile(join(REPO_ROOT, 'package.json'), 'utf8')) as { engines: { node: string } };
  const lock = JSON.parse(await readFile(join(REPO_ROOT, 'package-lock.json'), 'utf8')) as { packages: Record<string, LockedPackage> };
  const supported = manifest.engines.node;
  assert.ok(semver.satisfies(process.version, supported), `the tests run on a supported Node (${process.version}, ${supported})`);
  const narrower = Object.entries(lock.packages)
    .filter(([path, locked]) => path !== '' && installsHere(locked))
    .map(([path, locked]) => ({ path, range: Array.isArray(locked.engines) ? undefined : locked.engines?.node }))
    .filter(({ range }) => range !== undefined && !semver.subset(supported, range))
    .map(({ path, range }) => `${path.replace(/^.*node_modules\//, '')} needs node ${range}`);
  assert.deepEqual(narrower, [], `Iris declares node ${supported}`);
});
