/**
 * A real browser for the playground tests: Debian's `chromium` package (installed by .ci/run) driven by
 * playwright-core, which downloads no browser of its own. Headless, and without Chromium's sandbox when
 * running as root (as CI containers do), which Chromium refuses otherwise.
 */
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { chromium, type Browser } from 'playwright-core';
import { REPO_ROOT } from './test-env.js';

/** Where Debian's chromium package puts the browser; IRIS_TEST_CHROMIUM overrides it. */
const CHROMIUM_PATHS = ['/usr/bin/chromium', '/usr/lib/chromium/chromium', '/usr/bin/chromium-browser'];

/** The Chromium executable, or an error saying how to install it. */
export function chromiumPath(): string {
  const fromEnv = process.env['IRIS_TEST_CHROMIUM'];
  if (fromEnv) return fromEnv;
  const found = CHROMIUM_PATHS.find((path) => existsSync(path));
  if (found === undefined) {
    throw new Error(`No Chromium found at ${CHROMIUM_PATHS.join(', ')}: apt-get install chromium (.ci/run does), or set IRIS_TEST_CHROMIUM.`);
  }
  return found;
}

/** Launches headless Chromium. */
export function launchBrowser(): Promise<Browser> {
  const asRoot = process.getuid?.() === 0;
  return chromium.launch({
    executablePath: chromiumPath(),
    headless: true,
    args: [...(asRoot ? ['--no-sandbox'] : []), '--disable-gpu', '--disable-dev-shm-usage'],
  });
}

/** A folder under test-output/ (gitignored) for what a test leaves to look at: screenshots, copied code. */
export async function testOutputDir(name: string): Promise<string> {
  const dir = join(REPO_ROOT, 'test-output', name);
  await mkdir(dir, { recursive: true });
  return dir;
}
