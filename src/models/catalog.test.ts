import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { IrisError } from '../errors.js';
import { CATALOG, DEFAULT_CATALOG_ENTRY, findCatalogEntry, isRepoId, resolveCatalogId, splitQuant, UNSUPPORTED_MODELS } from './catalog.js';

function errorOf(run: () => unknown): IrisError {
  try {
    run();
  } catch (error) {
    assert.ok(error instanceof IrisError, String(error));
    return error;
  }
  assert.fail('expected an error');
}

describe('catalog', () => {
  it('the default model is SmolVLM-256M-Instruct at Q8_0 from ggml-org', () => {
    assert.equal(DEFAULT_CATALOG_ENTRY.id, 'HuggingFaceTB/SmolVLM-256M-Instruct');
    assert.equal(DEFAULT_CATALOG_ENTRY.repo, 'ggml-org/SmolVLM-256M-Instruct-GGUF');
    assert.equal(DEFAULT_CATALOG_ENTRY.defaultQuant, 'Q8_0');
    assert.equal(DEFAULT_CATALOG_ENTRY.mmproj, 'mmproj-SmolVLM-256M-Instruct-Q8_0.gguf');
  });

  it('holds the models the issue names', () => {
    for (const id of [
      'HuggingFaceTB/SmolVLM-256M-Instruct',
      'HuggingFaceTB/SmolVLM-500M-Instruct',
      'HuggingFaceTB/SmolVLM-Instruct',
      'Qwen/Qwen2.5-VL-3B-Instruct',
      'Qwen/Qwen2.5-VL-7B-Instruct',
      'google/gemma-3-4b-it',
      'llava-hf/llava-1.5-7b-hf',
      'mistral-community/pixtral-12b',
    ]) {
      assert.ok(findCatalogEntry(id), id);
    }
  });

  it('no two entries share an id, alias or repo, and every name is usable', () => {
    const names = CATALOG.flatMap((entry) => [entry.id, entry.repo, ...entry.aliases].map((name) => name.toLowerCase()));
    assert.equal(new Set(names).size, names.length);
    for (const entry of CATALOG) {
      assert.ok(isRepoId(entry.id) && isRepoId(entry.repo), entry.id);
      assert.doesNotThrow(() => splitQuant(`${entry.id}:${entry.defaultQuant}`));
      assert.ok(entry.context >= 2048 && entry.approxBytes.model > 0, entry.id);
      assert.ok(entry.mmproj === undefined || /mmproj.*\.gguf$/.test(entry.mmproj), entry.id);
    }
    const unsupported = UNSUPPORTED_MODELS.flatMap((model) => model.ids.map((id) => id.toLowerCase()));
    assert.ok(unsupported.every((id) => !names.includes(id)));
  });

  it('resolves ids, aliases and GGUF repos case-insensitively, with an optional quantization', () => {
    const cases: [string, string, string | undefined][] = [
      ['smolvlm-256m', 'HuggingFaceTB/SmolVLM-256M-Instruct', undefined],
      ['HuggingFaceTB/SmolVLM-256M-Instruct', 'HuggingFaceTB/SmolVLM-256M-Instruct', undefined],
      ['huggingfacetb/smolvlm-256m-instruct:f16', 'HuggingFaceTB/SmolVLM-256M-Instruct', 'F16'],
      ['ggml-org/SmolVLM-256M-Instruct-GGUF:q4_k_m', 'HuggingFaceTB/SmolVLM-256M-Instruct', 'Q4_K_M'],
      ['llava-hf/llava-1.5-7b-hf', 'llava-hf/llava-1.5-7b-hf', undefined],
      ['liuhaotian/llava-v1.5-7b:Q8_0', 'llava-hf/llava-1.5-7b-hf', 'Q8_0'],
      ['pixtral', 'mistral-community/pixtral-12b', undefined],
    ];
    for (const [input, id, quant] of cases) {
      const reference = resolveCatalogId(input);
      assert.equal(reference.kind, 'catalog', input);
      assert.equal(reference.kind === 'catalog' && reference.entry.id, id, input);
      assert.equal(reference.quant, quant, input);
    }
  });

  it('takes other owner/repo names as plain hub repos', () => {
    assert.deepEqual(resolveCatalogId('bartowski/Qwen2-VL-7B-Instruct-GGUF:Q5_K_M'), {
      kind: 'repo',
      repo: 'bartowski/Qwen2-VL-7B-Instruct-GGUF',
      quant: 'Q5_K_M',
    });
    assert.deepEqual(resolveCatalogId('someone/model'), { kind: 'repo', repo: 'someone/model', quant: undefined });
  });

  it('points models the embedded engine cannot run to a remote engine', () => {
    for (const id of ['meta-llama/Llama-3.2-90B-Vision-Instruct', 'meta-llama/llama-3.2-11b-vision-instruct:Q4_K_M']) {
      const error = errorOf(() => resolveCatalogId(id));
      assert.equal(error.code, 'model_not_supported');
      assert.equal(error.status, 400);
      assert.equal(error.param, 'model');
      assert.match(error.message, /mllama/);
      assert.match(error.message, /remote engine/);
    }
  });

  it('refuses names that are neither known nor owner/repo, and paths that could escape the cache', () => {
    for (const id of ['gpt-4o', '../../etc/passwd', 'a/b/c', 'owner/..', '/abs/path', 'owner/repo:']) {
      const error = errorOf(() => resolveCatalogId(id));
      assert.ok(['model_not_found', 'invalid_value'].includes(error.code), `${id}: ${error.code}`);
    }
    assert.match(errorOf(() => resolveCatalogId('gpt-4o')).message, /smolvlm-256m/);
    assert.equal(errorOf(() => resolveCatalogId('owner/repo:Q4 K')).code, 'invalid_value');
  });
});
