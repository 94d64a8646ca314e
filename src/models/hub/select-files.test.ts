import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { IrisError } from '../../errors.js';
import { isModelGguf, quantOf, selectModelFiles, splitIndex } from './select-files.js';

const files = (...paths: string[]) => paths.map((path) => ({ path }));

describe('selectModelFiles', () => {
  const repo = files(
    'README.md',
    'SmolVLM-256M-Instruct-f16.gguf',
    'SmolVLM-256M-Instruct-Q8_0.gguf',
    'SmolVLM-256M-Instruct-Q4_K_M.gguf',
    'mmproj-SmolVLM-256M-Instruct-f16.gguf',
    'mmproj-SmolVLM-256M-Instruct-Q8_0.gguf',
    'imatrix.gguf',
  );

  it('takes Q4_K_M, then Q8_0, when no quantization is asked for (llama.cpp -hf)', () => {
    const chosen = selectModelFiles(repo, { repo: 'r' });
    assert.deepEqual(chosen.model.map((file) => file.path), ['SmolVLM-256M-Instruct-Q4_K_M.gguf']);
    assert.equal(chosen.quant, 'Q4_K_M');
    // the projector closest in bits: 8 is nearer 4 than 16
    assert.equal(chosen.mmproj?.path, 'mmproj-SmolVLM-256M-Instruct-Q8_0.gguf');
    const withoutQ4 = selectModelFiles(repo.filter((file) => !file.path.includes('Q4')), { repo: 'r' });
    assert.equal(withoutQ4.quant, 'Q8_0');
  });

  it('matches an asked quantization case-insensitively and prefers the catalog names', () => {
    const chosen = selectModelFiles(repo, { repo: 'r', quant: 'F16', fileStem: 'SmolVLM-256M-Instruct', mmproj: 'mmproj-SmolVLM-256M-Instruct-Q8_0.gguf' });
    assert.equal(chosen.model[0]?.path, 'SmolVLM-256M-Instruct-f16.gguf');
    assert.equal(chosen.quant, 'F16');
    assert.equal(chosen.mmproj?.path, 'mmproj-SmolVLM-256M-Instruct-Q8_0.gguf', 'the catalog projector wins');
    const closest = selectModelFiles(repo, { repo: 'r', quant: 'f16' });
    assert.equal(closest.mmproj?.path, 'mmproj-SmolVLM-256M-Instruct-f16.gguf');
  });

  it('takes every part of a split model, first part first', () => {
    const split = files('big-Q4_K_M-00002-of-00003.gguf', 'big-Q4_K_M-00001-of-00003.gguf', 'big-Q4_K_M-00003-of-00003.gguf', 'big-Q8_0.gguf', 'mmproj-big-f16.gguf');
    const chosen = selectModelFiles(split, { repo: 'r', quant: 'Q4_K_M' });
    assert.deepEqual(
      chosen.model.map((file) => file.path),
      ['big-Q4_K_M-00001-of-00003.gguf', 'big-Q4_K_M-00002-of-00003.gguf', 'big-Q4_K_M-00003-of-00003.gguf'],
    );
    assert.equal(splitIndex('big-Q4_K_M-00002-of-00003.gguf'), 2);
  });

  it('looks for the projector beside the model or above it, not in other folders', () => {
    const nested = files('Q4/model-Q4_K_M.gguf', 'Q8/mmproj-model-Q8_0.gguf', 'mmproj-model-f16.gguf');
    assert.equal(selectModelFiles(nested, { repo: 'r' }).mmproj?.path, 'mmproj-model-f16.gguf');
    assert.equal(selectModelFiles(files('model-Q8_0.gguf'), { repo: 'r' }).mmproj, undefined);
  });

  it('explains what is missing', () => {
    assert.throws(
      () => selectModelFiles(repo, { repo: 'ggml-org/x', quant: 'Q2_K' }),
      (error: unknown) => error instanceof IrisError && error.code === 'model_not_found' && /no Q2_K GGUF\. Available: F16, Q8_0, Q4_K_M\./.test(error.message),
    );
    assert.throws(
      () => selectModelFiles(files('model.safetensors', 'mmproj-x-f16.gguf'), { repo: 'a/b' }),
      (error: unknown) => error instanceof IrisError && /a\/b has no GGUF model files/.test(error.message),
    );
  });

  it('reads quantizations from names and tells models from sidecars', () => {
    assert.equal(quantOf('SmolVLM-256M-Instruct-Q8_0.gguf'), 'Q8_0');
    assert.equal(quantOf('gemma-3-4b-it-q4_k_m.gguf'), 'Q4_K_M');
    assert.equal(quantOf('x-IQ2_XXS.gguf'), 'IQ2_XXS');
    assert.equal(quantOf('mmproj-model-f16.gguf'), 'F16');
    assert.equal(quantOf('llava-v1.5-7b-Q4_K_M-00001-of-00002.gguf'), 'Q4_K_M');
    assert.equal(quantOf('model.gguf'), undefined);
    assert.equal(isModelGguf('llava-v1.5-7b-mmproj-model-f16.gguf'), false);
    assert.equal(isModelGguf('dir/imatrix.gguf'), false);
    assert.equal(isModelGguf('dir/model-Q8_0.gguf'), true);
    assert.equal(isModelGguf('README.md'), false);
  });
});
