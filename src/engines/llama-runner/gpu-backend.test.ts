import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import {
  CPU_BACKEND,
  LLAMA_SERVER_CMAKE_FLAGS,
  PINNED_LLAMA_CPP_COMMIT,
  llamaServerCachePath,
  llamaServerConfigureArgs,
  readBuildInfo,
} from './build-llama-server.js';
import { BackendUnavailableError, portableBackend, resolveBackend, type BackendProbeDeps } from './gpu-backend.js';

/** A machine as detection sees it: files that exist and what each tool prints (a tool not listed fails to run). */
function machine(files: string[], tools: Record<string, string>, env: NodeJS.ProcessEnv = {}): BackendProbeDeps {
  return {
    env: { PATH: '/opt/bin:/usr/bin', ...env },
    exists: (path) => files.includes(path),
    run: async (command, args) => {
      const output = tools[`${command} ${args.join(' ')}`];
      if (output === undefined) throw new Error(`${command}: not found`);
      return output;
    },
  };
}

const NVCC_VERSION = 'nvcc: NVIDIA (R) Cuda compiler driver\nCuda compilation tools, release 12.4, V12.4.131\n';
// A toolkit where no real one is (paths of the machine running the tests are never looked at).
const CUDA_TOOLKIT = ['/opt/cuda-test/bin/nvcc', '/opt/cuda-test/include/cuda_runtime.h', '/opt/cuda-test/include/cublas_v2.h'];
const CUDA_TOOLS = { '/opt/cuda-test/bin/nvcc --version': NVCC_VERSION };
const CUDA_HOME = { CUDA_HOME: '/opt/cuda-test' };

describe('llama-server backends', () => {
  test('a CPU build keeps the CPU cache key and flags, so an existing build is reused', async () => {
    const cpu = await resolveBackend('cpu', machine([], {}));
    assert.equal(cpu.backend, 'cpu');
    assert.equal(llamaServerCachePath('/c', cpu), llamaServerCachePath('/c'));
    assert.match(llamaServerCachePath('/c', cpu), new RegExp(`/${PINNED_LLAMA_CPP_COMMIT.slice(0, 12)}-[0-9a-f]{10}/llama-server$`));
    assert.deepEqual(llamaServerConfigureArgs('/s', '/b', CPU_BACKEND), ['-S', '/s', '-B', '/b', ...LLAMA_SERVER_CMAKE_FLAGS]);
  });

  test('auto stays on the CPU when nvcc runs but the toolkit is incomplete, and says so when CUDA is asked for', async () => {
    // An nvcc on the PATH that runs, with the runtime headers but no cuBLAS: not a toolkit llama.cpp builds with.
    const stub = machine(['/opt/bin/nvcc', '/opt/cuda-test/include/cuda_runtime.h'], {
      '/opt/bin/nvcc --version': NVCC_VERSION,
      'nvidia-smi -L': 'GPU 0: NVIDIA L4 (UUID: GPU-1)\n',
    }, CUDA_HOME);
    assert.equal((await resolveBackend('auto', stub)).backend, 'cpu');
    await assert.rejects(resolveBackend('cuda', stub), (error: unknown) => error instanceof BackendUnavailableError && /cublas_v2\.h/.test(error.message));
    const broken = machine(['/opt/bin/nvcc'], { 'nvidia-smi -L': 'GPU 0: NVIDIA L4\n' });
    await assert.rejects(resolveBackend('cuda', broken), /nvcc --version failed/);
    await assert.rejects(resolveBackend('vulkan', machine([], {})), /glslc/);
  });

  test('auto picks CUDA only when a GPU is visible too', async () => {
    assert.equal((await resolveBackend('auto', machine(CUDA_TOOLKIT, CUDA_TOOLS, CUDA_HOME))).backend, 'cpu');
    const withGpu = await resolveBackend('auto', machine(CUDA_TOOLKIT, { ...CUDA_TOOLS, 'nvidia-smi -L': 'GPU 0: NVIDIA H100 (UUID: GPU-x)\n' }, CUDA_HOME));
    assert.equal(withGpu.backend, 'cuda');
    const args = llamaServerConfigureArgs('/s', '/b', withGpu);
    assert.ok(args.includes('-DGGML_CUDA=ON'));
    assert.ok(args.includes('-DCMAKE_CUDA_COMPILER=/opt/cuda-test/bin/nvcc'));
    // With a GPU to ask, ggml compiles for it (native); the rest of the CPU build's flags stay.
    assert.ok(args.includes('-DGGML_NATIVE=ON'));
    for (const flag of LLAMA_SERVER_CMAKE_FLAGS) assert.ok(args.includes(flag), flag);
  });

  test('the CUDA build command line for a machine without a GPU (a container build) is portable', async () => {
    const cuda = await resolveBackend('cuda', machine(CUDA_TOOLKIT, CUDA_TOOLS, CUDA_HOME));
    const args = llamaServerConfigureArgs('/src', '/build', cuda);
    assert.deepEqual(args.slice(0, 4), ['-S', '/src', '-B', '/build']);
    assert.ok(args.includes('-DGGML_CUDA=ON'));
    assert.ok(args.includes('-DGGML_NATIVE=OFF') && !args.includes('-DGGML_NATIVE=ON'), 'no native arch without a GPU');
    assert.ok(args.includes('-DCMAKE_EXE_LINKER_FLAGS=-Wl,--allow-shlib-undefined'), 'links without the driver library');
    assert.ok(args.includes('-DLLAMA_OPENSSL=ON') && args.includes('-DBUILD_SHARED_LIBS=OFF'));
    const path = llamaServerCachePath('/c', cuda);
    assert.match(path, /-cuda-[0-9a-f]{10}\/llama-server$/);
    assert.notEqual(path, llamaServerCachePath('/c'));
  });

  test('a portable build drops -march=native and has its own cache key; a copied build says its backend', async () => {
    const portable = portableBackend(CPU_BACKEND);
    const args = llamaServerConfigureArgs('/s', '/b', portable);
    assert.ok(args.includes('-DGGML_NATIVE=OFF') && !args.includes('-DGGML_NATIVE=ON'));
    assert.notEqual(llamaServerCachePath('/c', portable), llamaServerCachePath('/c'));
    const dir = await mkdtemp(join(tmpdir(), 'iris-build-info-'));
    try {
      await writeFile(join(dir, 'build-info.json'), JSON.stringify({ commit: PINNED_LLAMA_CPP_COMMIT, backend: 'cuda', flags: [] }));
      assert.equal((await readBuildInfo(join(dir, 'llama-server')))?.backend, 'cuda');
      assert.equal(await readBuildInfo(join(dir, 'elsewhere', 'llama-server')), undefined);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('Vulkan needs glslc and the headers, and auto needs a GPU it lists', async () => {
    const sdk = ['/usr/bin/glslc', '/usr/include/vulkan/vulkan.h'];
    const tools = { '/usr/bin/glslc --version': 'shaderc v2023.8\n' };
    assert.equal((await resolveBackend('auto', machine(sdk, tools))).backend, 'cpu');
    const gpu = { ...tools, 'vulkaninfo --summary': 'deviceType = PHYSICAL_DEVICE_TYPE_DISCRETE_GPU\n' };
    const vulkan = await resolveBackend('auto', machine(sdk, gpu));
    assert.equal(vulkan.backend, 'vulkan');
    assert.ok(llamaServerConfigureArgs('/s', '/b', vulkan).includes('-DGGML_VULKAN=ON'));
    await assert.rejects(resolveBackend('vulkan', machine(['/usr/bin/glslc'], tools)), /vulkan\.h/);
  });
});
