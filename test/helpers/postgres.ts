/**
 * A throwaway PostgreSQL server for tests: initdb on a temporary directory, pg_ctl start on a free loopback
 * port, a fresh database per caller, and stop + delete at the end. PostgreSQL refuses to run as root, so as
 * root the server runs as the `postgres` system user (the Debian package creates it; .ci/run installs the
 * package). Without PostgreSQL this throws: the PostgreSQL tests fail, they are never skipped.
 */
import { execFile } from 'node:child_process';
import { chownSync, existsSync, readdirSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { freeLoopbackPort } from '../../src/engines/llama-runner/llama-server-process.js';

const run = promisify(execFile);

/** A running throwaway server. */
export interface TestPostgres {
  /** Creates an empty database and resolves with its URL. */
  createDatabase(name: string): Promise<string>;
  stop(): Promise<void>;
}

/** The folder with initdb and pg_ctl: the newest /usr/lib/postgresql/N/bin, else PATH. */
function postgresBin(): string {
  const root = '/usr/lib/postgresql';
  if (existsSync(root)) {
    const versions = readdirSync(root)
      .filter((name) => existsSync(join(root, name, 'bin', 'initdb')))
      .sort((a, b) => Number(b) - Number(a));
    if (versions[0] !== undefined) return join(root, versions[0], 'bin');
  }
  for (const dir of (process.env['PATH'] ?? '').split(':')) {
    if (dir && existsSync(join(dir, 'initdb')) && existsSync(join(dir, 'pg_ctl'))) return dir;
  }
  throw new Error('PostgreSQL is not installed (no initdb/pg_ctl); .ci/run installs it with apt-get install postgresql.');
}

/** Starts a server; call stop() when done. */
export async function startTestPostgres(): Promise<TestPostgres> {
  const bin = postgresBin();
  const dir = await mkdtemp(join(tmpdir(), 'iris-test-pg-'));
  const asRoot = process.getuid?.() === 0;
  if (asRoot) {
    const user = await run('id', ['-u', 'postgres']).catch(() => {
      throw new Error('Tests run as root and PostgreSQL needs a non-root user: there is no "postgres" user (apt-get install postgresql creates it).');
    });
    const uid = Number(user.stdout.trim());
    const gid = Number((await run('id', ['-g', 'postgres'])).stdout.trim());
    chownSync(dir, uid, gid);
  }
  const command = (tool: string, args: string[]) =>
    asRoot ? run('runuser', ['-u', 'postgres', '--', join(bin, tool), ...args]) : run(join(bin, tool), args);
  const data = join(dir, 'data');
  await command('initdb', ['-D', data, '-U', 'iris', '--auth=trust', '--no-sync', '-E', 'UTF8', '--locale=C']);
  const port = await freeLoopbackPort();
  await command('pg_ctl', [
    '-D',
    data,
    '-l',
    join(dir, 'server.log'),
    '-w',
    '-t',
    '60',
    '-o',
    `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200`,
    'start',
  ]);
  const adminUrl = `postgres://iris@127.0.0.1:${port}/postgres`;
  let stopped = false;
  return {
    createDatabase: async (name) => {
      const client = new pg.Client({ connectionString: adminUrl });
      await client.connect();
      try {
        await client.query(`CREATE DATABASE "${name.replace(/"/g, '')}"`);
      } finally {
        await client.end();
      }
      return `postgres://iris@127.0.0.1:${port}/${encodeURIComponent(name)}`;
    },
    stop: async () => {
      if (stopped) return;
      stopped = true;
      await command('pg_ctl', ['-D', data, '-m', 'immediate', '-w', 'stop']).catch(() => undefined);
      await rm(dir, { recursive: true, force: true });
    },
  };
}
