/**
 * First run as an operator meets it: a wrong model path, a file that is not a model, a projector that does not
 * fit, or a busy port stops `iris serve` at once with exit code 2 and one line naming the path or port and the
 * flag or key; a model without a projector starts with a text-only warning; and a request for a model this
 * server does not serve is told which ones it does.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import OpenAI from 'openai';
import { freeLoopbackPort } from '../../src/engines/llama-runner/llama-server-process.js';
import { ggufValue } from '../../src/gguf/gguf-values.js';
import { writeGguf } from '../../src/synth/gguf-writer.js';
import type { SynthResult } from '../../src/synth/recipes.js';
import { runIris, type IrisRun } from '../helpers/run-iris.js';
import { startIris, syntheticModel } from '../helpers/test-env.js';

/** The command lines of a process's children (Linux /proc). */
async function childCommandLines(parent: number): Promise<string[][]> {
  const lines: string[][] = [];
  for (const pid of (await readdir('/proc')).filter((name) => /^\d+$/.test(name))) {
    const status = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => '');
    if (new RegExp(`^PPid:\\s+${parent}$`, 'm').test(status)) {
      lines.push((await readFile(`/proc/${pid}/cmdline`, 'utf8')).split('\0').filter((arg) => arg.length > 0));
    }
  }
  return lines;
}

/** The run failed the way an operator's mistake should: exit 2, one line on stderr, no stack trace. */
function assertOneLineMistake(run: IrisRun, pattern: RegExp): void {
  assert.equal(run.code, 2, run.stderr);
  const lines = run.stderr.trim().split('\n');
  assert.equal(lines.length, 1, run.stderr);
  assert.match(lines[0]!, pattern);
  assert.doesNotMatch(run.stderr, /\n\s+at /);
}

describe('iris serve: startup checks', () => {
  let dir: string;
  let tiny: SynthResult;
  // A llama-server that must never be started: every check happens before it would be.
  const noServer = ['--llama-server', '/nonexistent/llama-server'];
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'iris-startup-'));
    tiny = await syntheticModel('tiny');
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  test('a model path that does not exist names the path and --model', async () => {
    const run = await runIris(['serve', '--model', './nope/model.gguf', ...noServer]);
    assertOneLineMistake(run, /nope\/model\.gguf \(--model\) does not exist/);
    // A misspelt catalog id is not a path, and not a name the hub could have: refused before any pull.
    assertOneLineMistake(await runIris(['serve', '--model', 'smolvlm-265m', ...noServer]), /smolvlm-265m \(--model\): .*not a model Iris knows.*smolvlm-256m/);
  });

  test('a file that is not GGUF, and a projector passed as the model, are named', async () => {
    const text = join(dir, 'notes.gguf');
    await writeFile(text, 'this is not a model\n');
    assertOneLineMistake(await runIris(['serve', '--model', text, ...noServer]), /notes\.gguf \(--model\) is not a GGUF file/);
    assertOneLineMistake(
      await runIris(['serve', '--model', tiny.modelPath, '--mmproj', text, ...noServer]),
      /notes\.gguf \(--mmproj\) is not a GGUF file/,
    );
    assertOneLineMistake(
      await runIris(['serve', '--model', tiny.mmprojPath, ...noServer]),
      /mmproj\.gguf \(--model\) is a multimodal projector, not a text model/,
    );
    assertOneLineMistake(
      await runIris(['serve', '--model', tiny.modelPath, '--mmproj', tiny.modelPath, ...noServer]),
      /model\.gguf \(--mmproj\) is not a multimodal projector/,
    );
  });

  test('a projector made for another model is refused, from flags and from the config file', async () => {
    // An mlp projector whose output is 128 wide, for a text model that takes 64.
    const wide = join(dir, 'wide-mmproj.gguf');
    await writeGguf(wide, {
      metadata: [
        ['general.architecture', ggufValue.str('clip')],
        ['clip.projector_type', ggufValue.str('mlp')],
      ],
      tensors: [{ name: 'mm.2.weight', dims: [128, 128], type: 'F32', fill: (target) => target.fill(0) }],
    });
    assertOneLineMistake(
      await runIris(['serve', '--model', tiny.modelPath, '--mmproj', wide, ...noServer]),
      /wide-mmproj\.gguf \(--mmproj\) does not match .*model\.gguf \(--model\): the projector makes 128-wide embeddings, the model takes 64/,
    );
    const config = join(dir, 'iris.yaml');
    await writeFile(config, `models:\n  - id: a\n    model: ${tiny.modelPath}\n    mmproj: ${tiny.mmprojPath}\n  - id: b\n    model: ${tiny.modelPath}\n    mmproj: ./wide-mmproj.gguf\n`);
    assertOneLineMistake(
      await runIris(['serve', '--config', config, ...noServer]),
      /wide-mmproj\.gguf \(models\[1\]\.mmproj in .*iris\.yaml\) does not match/,
    );
    await writeFile(config, 'models:\n  - id: a\n    model: ./missing.gguf\n');
    assertOneLineMistake(await runIris(['serve', '--config', config, ...noServer]), /missing\.gguf \(models\[0\]\.model in .*iris\.yaml\) does not exist/);
  });

  test('a busy port is one line naming --port and IRIS_PORT', async () => {
    const port = await freeLoopbackPort();
    const holder: Server = createServer();
    await new Promise<void>((resolve) => holder.listen(port, '127.0.0.1', resolve));
    try {
      const run = await runIris(['serve', '--model', tiny.modelPath, '--mmproj', tiny.mmprojPath, '--port', String(port), ...noServer]);
      assertOneLineMistake(run, new RegExp(`Port ${port} on 127\\.0\\.0\\.1 is already in use \\(--port / IRIS_PORT\\)`));
      const fromEnv = await runIris(['serve', '--model', tiny.modelPath, '--mmproj', tiny.mmprojPath, ...noServer], { IRIS_PORT: String(port) });
      assertOneLineMistake(fromEnv, /already in use \(--port \/ IRIS_PORT\)/);
    } finally {
      await new Promise((resolve) => holder.close(resolve));
    }
  });

  test('a model without a projector starts with one text-only warning; a 404 names the served model', async () => {
    const iris = await startIris({ args: ['--model', tiny.modelPath, '--model-id', 'texty'] });
    try {
      const warnings = iris.logRecords('text-only');
      assert.equal(warnings.length, 1, iris.logs.join('\n'));
      assert.equal(warnings[0]!['level'], 40);
      assert.match(String(warnings[0]!['msg']), /'texty' \(--model\) has no projector \(--mmproj\)/);
      // A clean start: nothing else to warn about (Node prints deprecations to the same stderr).
      assert.deepEqual(iris.logs.filter((line) => /Deprecation|ExperimentalWarning|\(node:\d+\)/.test(line)), []);

      const client = new OpenAI({ baseURL: `${iris.baseUrl}/v1/openai`, apiKey: 'unused', maxRetries: 0 });
      for (const model of ['gpt-4o', 'no-such/repo-GGUF']) {
        const error = await client.chat.completions
          .create({ model, messages: [{ role: 'user', content: 'hi' }] })
          .then(() => undefined, (caught: unknown) => caught);
        assert.ok(error instanceof OpenAI.NotFoundError, String(error));
        assert.equal((error.error as { code?: string }).code, 'model_not_found');
        assert.match(error.message, new RegExp(`'${model}' does not exist.*This server serves: texty\\..*catalog models \\(smolvlm-256m`));
      }
    } finally {
      await iris.stop();
    }
  });

  test('llama_args and gpu_layers reach the llama-server command line; an argument Iris owns is refused', async () => {
    const config = join(dir, 'args.yaml');
    await writeFile(
      config,
      `models:\n  - id: tuned\n    model: ${tiny.modelPath}\n    mmproj: ${tiny.mmprojPath}\n    gpu_layers: 0\n` +
        '    llama_args: [--temp, "0.25", --no-context-shift]\n',
    );
    const iris = await startIris({ args: ['--config', config, '--preload', 'tuned'] });
    try {
      const children = await childCommandLines(iris.child.pid!);
      const server = children.find((args) => args.some((arg) => arg.endsWith('llama-server')));
      assert.ok(server, JSON.stringify(children));
      const at = (flag: string): string | undefined => server[server.indexOf(flag) + 1];
      assert.equal(at('--temp'), '0.25');
      assert.ok(server.includes('--no-context-shift'));
      assert.equal(at('--gpu-layers'), '0');
      assert.equal(at('--alias'), 'tuned');
    } finally {
      await iris.stop();
    }

    for (const [args, pattern] of [
      ['[--port, "9000"]', /models\[0\]\.llama_args in .*owned\.yaml sets --port, which Iris sets itself/],
      ['["--ctx-size=8192"]', /sets --ctx-size, which Iris sets itself for llama-server: use the model's context setting instead/],
      ['[-ngl, "99"]', /sets -ngl, .*gpu_layers setting instead/],
    ] as const) {
      const owned = join(dir, 'owned.yaml');
      await writeFile(owned, `models:\n  - id: tuned\n    model: ${tiny.modelPath}\n    llama_args: ${args}\n`);
      assertOneLineMistake(await runIris(['serve', '--config', owned, ...noServer]), pattern);
    }
  });
});
