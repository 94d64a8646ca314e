/**
 * The `iris` command line as a user runs it: synth writes a loadable pair, serve refuses to expose an
 * unauthenticated server, explains how to start offline when the hub is unreachable, and names bad flags.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { freeLoopbackPort } from '../../src/engines/llama-runner/llama-server-process.js';
import { runIris } from '../helpers/run-iris.js';

const iris = runIris;

describe('iris CLI', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'iris-cli-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
    await rm(join(tmpdir(), `iris-cli-data-${process.pid}`), { recursive: true, force: true });
  });

  test('iris synth --out DIR writes model.gguf and mmproj.gguf', async () => {
    const out = join(dir, 'synth');
    const run = await iris(['synth', '--out', out]);
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, /model\.gguf/);
    assert.ok((await stat(join(out, 'model.gguf'))).size > 0);
    assert.ok((await stat(join(out, 'mmproj.gguf'))).size > 0);
    const bad = await iris(['synth', '--out', out, '--size', 'huge']);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /--size must be one of/);
  });

  test('serve refuses a non-loopback host without an API key unless told to serve openly', async () => {
    const run = await iris(['serve', '--host', '0.0.0.0', '--model', join(dir, 'synth/model.gguf')]);
    assert.equal(run.code, 2);
    assert.match(run.stderr, /--api-key/);
    assert.match(run.stderr, /--allow-unauthenticated/);
  });

  test('with no model and no reachable hub, serve says how to start offline', async () => {
    const closedPort = await freeLoopbackPort();
    const run = await iris(['serve', '--cache-dir', join(dir, 'cache')], { HF_ENDPOINT: `http://127.0.0.1:${closedPort}` });
    assert.notEqual(run.code, 0);
    assert.match(run.stderr, /--model PATH/);
    assert.match(run.stderr, /iris synth/);
  });

  test('bad flags and config values are named', async () => {
    const unknown = await iris(['serve', '--modle', 'x']);
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /--modle/);
    const port = await iris(['serve', '--port', 'eighty']);
    assert.equal(port.code, 2);
    assert.match(port.stderr, /--port/);
    const budget = await iris(['serve', '--memory-budget', 'lots', '--model', 'm.gguf']);
    assert.equal(budget.code, 2);
    assert.match(budget.stderr, /memory_budget|--memory-budget/);
  });
});
