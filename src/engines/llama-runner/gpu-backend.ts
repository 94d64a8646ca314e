/**
 * Which ggml backend llama-server is built with: `cpu`, `cuda` (an NVIDIA GPU, CUDA toolkit) or `vulkan`
 * (any GPU with a Vulkan driver, Vulkan SDK). `auto` picks a GPU backend only when its toolchain is verified
 * to work and a GPU is visible, so a machine with a stray `nvcc` on the PATH, or a CI box with a toolkit but
 * no GPU, keeps building (and reusing) the CPU build. An explicitly asked backend is checked for its
 * toolchain and refused with the reason when it is missing.
 */
import { execFile } from 'node:child_process';
import { existsSync, realpathSync } from 'node:fs';
import { delimiter, dirname, join } from 'node:path';
import { promisify } from 'node:util';

/** A backend llama-server can be built with. */
export type LlamaServerBackend = 'cpu' | 'cuda' | 'vulkan';
/** What `--backend` accepts. */
export type BackendChoice = LlamaServerBackend | 'auto';
/** Every value of `--backend`. */
export const BACKEND_CHOICES: readonly BackendChoice[] = ['auto', 'cpu', 'cuda', 'vulkan'];

/** A backend whose toolchain was found: the cmake flags it adds to the CPU build's. */
export interface ResolvedBackend {
  backend: LlamaServerBackend;
  /** cmake flags to add (a `-DX=Y` here replaces the CPU build's `-DX=...`). */
  cmakeFlags: string[];
  /** What was found, for the log. */
  detail: string;
}

/** The outside world detection looks at; tests pass a fake PATH and files. */
export interface BackendProbeDeps {
  env: NodeJS.ProcessEnv;
  /** Runs a tool; resolves with its stdout, rejects when it fails. */
  run?: (command: string, args: string[]) => Promise<string>;
  exists?: (path: string) => boolean;
}

/** Thrown when an explicitly asked backend cannot be built here. */
export class BackendUnavailableError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'BackendUnavailableError';
  }
}

const execFileAsync = promisify(execFile);
const defaultRun = async (command: string, args: string[]): Promise<string> =>
  (await execFileAsync(command, args, { timeout: 10_000 })).stdout;

/**
 * Resolves `--backend`: `auto` becomes the first GPU backend whose toolchain works and whose GPU is
 * visible, else `cpu`; `cuda` / `vulkan` are checked for their toolchain.
 * @throws {BackendUnavailableError} when an explicitly asked GPU backend's toolchain is missing.
 */
export async function resolveBackend(choice: BackendChoice, deps: BackendProbeDeps): Promise<ResolvedBackend> {
  const probe = { run: deps.run ?? defaultRun, exists: deps.exists ?? existsSync, env: deps.env };
  if (choice === 'cpu') return { backend: 'cpu', cmakeFlags: [], detail: 'CPU only' };
  if (choice === 'auto') {
    for (const backend of ['cuda', 'vulkan'] as const) {
      const found = await findToolchain(backend, probe);
      if (typeof found !== 'string' && found.gpuVisible) return found.resolved;
    }
    return { backend: 'cpu', cmakeFlags: [], detail: 'CPU only (no GPU with a working CUDA toolkit or Vulkan SDK found)' };
  }
  const found = await findToolchain(choice, probe);
  if (typeof found === 'string') throw new BackendUnavailableError(`--backend ${choice}: ${found}`);
  return found.resolved;
}

interface Probe {
  run: (command: string, args: string[]) => Promise<string>;
  exists: (path: string) => boolean;
  env: NodeJS.ProcessEnv;
}

type Toolchain = { resolved: ResolvedBackend; gpuVisible: boolean } | string;

function findToolchain(backend: 'cuda' | 'vulkan', probe: Probe): Promise<Toolchain> {
  return backend === 'cuda' ? findCuda(probe) : findVulkan(probe);
}

/** nvcc that runs, the CUDA runtime and cuBLAS headers next to it (llama.cpp links cuBLAS), and a GPU. */
async function findCuda(probe: Probe): Promise<Toolchain> {
  const roots = [probe.env['CUDA_HOME'], probe.env['CUDA_PATH'], '/usr/local/cuda'].filter((root): root is string => !!root);
  const nvcc = which('nvcc', probe) ?? roots.map((root) => join(root, 'bin', 'nvcc')).find((path) => probe.exists(path));
  if (nvcc === undefined) return 'nvcc (the CUDA toolkit) was not found on the PATH, in CUDA_HOME or /usr/local/cuda';
  const version = await probe.run(nvcc, ['--version']).catch(() => undefined);
  const release = version === undefined ? undefined : /release (\d+\.\d+)/.exec(version)?.[1];
  if (release === undefined) return `${nvcc} --version failed: it is not a working CUDA toolkit`;
  const compiler = realPath(nvcc);
  const includeDirs = [join(dirname(dirname(compiler)), 'include'), ...roots.map((root) => join(root, 'include')), '/usr/include'];
  for (const header of ['cuda_runtime.h', 'cublas_v2.h']) {
    if (!includeDirs.some((dir) => probe.exists(join(dir, header)))) {
      return `${header} was not found next to ${compiler} (${includeDirs.join(', ')}): install the CUDA toolkit with cuBLAS`;
    }
  }
  const gpus = await probe.run('nvidia-smi', ['-L']).catch(() => '');
  const gpuVisible = /^GPU \d+/m.test(gpus);
  return {
    gpuVisible,
    resolved: {
      backend: 'cuda',
      cmakeFlags: [
        '-DGGML_CUDA=ON',
        `-DCMAKE_CUDA_COMPILER=${compiler}`,
        // Without a GPU to ask (a container build), compile for llama.cpp's list of common architectures, and
        // link without the driver's libcuda.so (the container runtime mounts it), as llama.cpp's own image does.
        ...(gpuVisible ? [] : ['-DGGML_NATIVE=OFF', '-DCMAKE_EXE_LINKER_FLAGS=-Wl,--allow-shlib-undefined']),
      ],
      detail: `CUDA ${release} (${compiler})${gpuVisible ? '' : ', no GPU visible: portable build for common architectures'}`,
    },
  };
}

/** glslc and the Vulkan headers (the SDK), and a GPU that vulkaninfo lists. */
async function findVulkan(probe: Probe): Promise<Toolchain> {
  const sdk = probe.env['VULKAN_SDK'];
  const glslc = which('glslc', probe) ?? (sdk ? [join(sdk, 'bin', 'glslc')].find((path) => probe.exists(path)) : undefined);
  if (glslc === undefined) return 'glslc (the Vulkan SDK) was not found on the PATH or in VULKAN_SDK';
  if ((await probe.run(glslc, ['--version']).catch(() => undefined)) === undefined) return `${glslc} --version failed`;
  const headers = [sdk ? join(sdk, 'include') : undefined, '/usr/include'].filter((dir): dir is string => !!dir);
  if (!headers.some((dir) => probe.exists(join(dir, 'vulkan', 'vulkan.h')))) {
    return `vulkan/vulkan.h was not found (${headers.join(', ')}): install the Vulkan SDK or libvulkan-dev`;
  }
  const summary = await probe.run('vulkaninfo', ['--summary']).catch(() => '');
  return {
    gpuVisible: /PHYSICAL_DEVICE_TYPE_(DISCRETE|INTEGRATED)_GPU/.test(summary),
    resolved: { backend: 'vulkan', cmakeFlags: ['-DGGML_VULKAN=ON'], detail: `Vulkan (${glslc})` },
  };
}

function which(command: string, probe: Probe): string | undefined {
  const path = probe.env['PATH'] ?? '';
  return path
    .split(delimiter)
    .filter((dir) => dir.length > 0)
    .map((dir) => join(dir, command))
    .find((candidate) => probe.exists(candidate));
}

function realPath(path: string): string {
  try {
    return realpathSync(path);
  } catch {
    return path;
  }
}

/**
 * The same backend built to run on other machines than this one (a container image): no `-march=native`,
 * ggml's default x86-64 feature set (AVX2, FMA, F16C) instead. Part of the cache key, like every flag.
 */
export function portableBackend(backend: ResolvedBackend): ResolvedBackend {
  return {
    ...backend,
    cmakeFlags: mergeCmakeFlags(backend.cmakeFlags, ['-DGGML_NATIVE=OFF']),
    detail: `${backend.detail}, portable`,
  };
}

/**
 * The cmake flags of a build: the CPU build's, with a backend's flags added; a backend flag that sets a
 * variable the CPU build sets too (`-DGGML_NATIVE=OFF`) replaces it.
 */
export function mergeCmakeFlags(base: readonly string[], extra: readonly string[]): string[] {
  const name = (flag: string): string => flag.split('=')[0]!;
  const overridden = new Set(extra.map(name));
  return [...base.filter((flag) => !overridden.has(name(flag))), ...extra];
}
