/**
 * What the benchmark measures against: llama-server started directly with the flags Iris gives it, the
 * stand-in upstream in its own process, and Iris itself (the real CLI in a child process, from a YAML config).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { stringify } from 'yaml';
import { freeLoopbackPort } from '../src/engines/llama-runner/llama-server-process.js';
import { REPO_ROOT, llamaServerBinary, startIris, type IrisProcess } from '../test/helpers/test-env.js';

/** A child process the benchmark started and must stop. */
export interface Started {
  baseUrl: string;
  pid: number;
  stop(): Promise<void>;
}

/** llama-server's own flags for a model, as Iris passes them (see llama-server-process.ts). */
export interface DirectModel {
  model: string;
  mmproj: string;
  context: number;
  slots: number;
  threads: number;
}

function stopper(child: ChildProcess): () => Promise<void> {
  return async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const gone = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill('SIGTERM');
    await gone;
  };
}

/** Starts llama-server directly on a free loopback port and waits until it is healthy. */
export async function startDirect(settings: DirectModel): Promise<Started> {
  const port = await freeLoopbackPort();
  const args = [
    '--model', settings.model, '--mmproj', settings.mmproj, '--host', '127.0.0.1', '--port', String(port),
    '--ctx-size', String(settings.context), '--parallel', String(settings.slots),
    ...(settings.threads > 0 ? ['--threads', String(settings.threads)] : []),
    '--kv-unified', '--no-webui', '--jinja', '--metrics', '--slots',
  ];
  const child = spawn(await llamaServerBinary(), args, { stdio: 'ignore' });
  const baseUrl = `http://127.0.0.1:${port}`;
  for (let tries = 0; ; tries += 1) {
    if (child.exitCode !== null) throw new Error(`llama-server exited with ${child.exitCode}`);
    if (await fetch(`${baseUrl}/health`).then((response) => response.ok, () => false)) break;
    if (tries > 1200) throw new Error('llama-server did not become healthy');
    await sleep(100);
  }
  return { baseUrl, pid: child.pid ?? 0, stop: stopper(child) };
}

/** Starts the stand-in upstream in its own Node process. */
export async function startStandIn(): Promise<Started> {
  const child = spawn(process.execPath, ['--import', 'tsx', join(REPO_ROOT, 'bench/stand-in-upstream.ts')], {
    cwd: REPO_ROOT,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const [line] = await Promise.race([
    (async () => {
      for await (const output of createInterface({ input: child.stdout! })) return [output];
      return [''];
    })(),
    new Promise<string[]>((_, reject) => child.once('exit', (code) => reject(new Error(`stand-in exited with ${code}`)))),
  ]);
  return { baseUrl: `http://127.0.0.1:${Number(line)}`, pid: child.pid ?? 0, stop: stopper(child) };
}

/** Starts Iris with `config` (a YAML config object) and extra CLI arguments. */
export async function startIrisWith(config: Record<string, unknown>, path: string, env: NodeJS.ProcessEnv = {}): Promise<IrisProcess> {
  await writeFile(path, stringify(config));
  return startIris({ args: ['--config', path, '--log-level', 'warn'], env });
}

/** CPU seconds (user + system) a process has used so far, from /proc; NaN where /proc is missing. */
export async function cpuSeconds(pid: number): Promise<number> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name (which may hold spaces) start after the last ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ticks = Number(fields[11]) + Number(fields[12]);
    return ticks / CLOCK_TICKS;
  } catch {
    return Number.NaN;
  }
}

/** USER_HZ; 100 on every Linux architecture Node runs on. */
const CLOCK_TICKS = 100;
