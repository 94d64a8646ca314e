/**
 * Slots and threads for a llama-server model whose configuration names none, chosen from the machine
 * instead of fixed numbers.
 *
 * - Threads: the CPUs this process may really use: the ones its affinity allows (containers' cpusets,
 *   `taskset`), no more than the cgroup's CPU quota (`docker --cpus`), and no more than the machine's physical
 *   cores, since matrix work gains little from a core's second hyper-thread. llama.cpp's own choice counts the host's
 *   physical cores and ignores affinity and quotas, so in a container it oversubscribes.
 * - Slots: parallel sequences decoded in one batch. A decode step reads all the weights once whatever the
 *   batch, so more slots raise aggregate tokens per second until the cores are saturated: four per thread,
 *   at most 16. The slots share one KV cache of the model's context (`--kv-unified`), so any one request may
 *   use the whole context and slots cost no extra KV memory; to keep the shared cache from running out,
 *   there are no more slots than 1024-token shares of the context.
 */
import { readFileSync, readdirSync } from 'node:fs';
import { availableParallelism } from 'node:os';

/** Most slots chosen automatically. */
const MAX_AUTO_SLOTS = 16;
/** Slots per thread: enough sequences in each batch to keep a core busy. */
const SLOTS_PER_THREAD = 4;
/** Context tokens each automatic slot can count on. */
const TOKENS_PER_SLOT = 1024;

/** What the defaults are computed from. */
export interface MachineCpus {
  /** CPUs the process's affinity allows. */
  allowed: number;
  /** The cgroup CPU quota in CPUs (fractional), if one is set. */
  quota?: number | undefined;
  /** Physical cores among all online CPUs, when the topology is readable. */
  physicalCores?: number | undefined;
}

/** Reads the machine's CPUs (Linux sysfs and cgroup v2 where present; elsewhere only the affinity count). */
export function readMachineCpus(): MachineCpus {
  return { allowed: availableParallelism(), quota: cgroupQuota(), physicalCores: physicalCoreCount() };
}

/** llama-server threads for this machine. */
export function defaultThreads(cpus: MachineCpus = readMachineCpus()): number {
  let threads = cpus.allowed;
  if (cpus.quota !== undefined) threads = Math.min(threads, Math.ceil(cpus.quota));
  if (cpus.physicalCores !== undefined) threads = Math.min(threads, cpus.physicalCores);
  return Math.max(1, threads);
}

/** llama-server slots for a model with this context (all slots together) on a machine with `threads`. */
export function defaultSlots(context: number, threads: number): number {
  return Math.max(1, Math.min(MAX_AUTO_SLOTS, SLOTS_PER_THREAD * threads, Math.floor(context / TOKENS_PER_SLOT)));
}

function cgroupQuota(): number | undefined {
  try {
    const [quota, period] = readFileSync('/sys/fs/cgroup/cpu.max', 'utf8').trim().split(/\s+/);
    if (quota === undefined || quota === 'max' || period === undefined) return undefined;
    const cpus = Number(quota) / Number(period);
    return Number.isFinite(cpus) && cpus > 0 ? cpus : undefined;
  } catch {
    return undefined;
  }
}

function physicalCoreCount(): number | undefined {
  try {
    const root = '/sys/devices/system/cpu';
    const cores = new Set<string>();
    for (const entry of readdirSync(root)) {
      if (!/^cpu\d+$/.test(entry)) continue;
      const topology = `${root}/${entry}/topology`;
      try {
        cores.add(`${readFileSync(`${topology}/physical_package_id`, 'utf8').trim()}:${readFileSync(`${topology}/core_id`, 'utf8').trim()}`);
      } catch {
        // An offline CPU has no topology.
      }
    }
    return cores.size > 0 ? cores.size : undefined;
  } catch {
    return undefined;
  }
}
