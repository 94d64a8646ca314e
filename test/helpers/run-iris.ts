/**
 * Runs the `iris` command line once, as a user would, and collects what it printed and its exit code.
 */
import { spawn } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { REPO_ROOT } from './test-env.js';

/** How one `iris` run ended. */
export interface IrisRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `iris ARGS` from the repository root (killed after 60 s), with no API keys or host from the caller's env. */
export function runIris(args: string[], env: NodeJS.ProcessEnv = {}): Promise<IrisRun> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', join(REPO_ROOT, 'src/main.ts'), ...args], {
      cwd: REPO_ROOT,
      // Its own empty database, never the user's (whose keys would change what serve allows).
      env: { ...process.env, IRIS_API_KEYS: '', IRIS_HOST: '', IRIS_DATA_DIR: join(tmpdir(), `iris-cli-data-${process.pid}`), DATABASE_URL: '', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk) => (stdout += chunk));
    child.stderr.on('data', (chunk) => (stderr += chunk));
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}
