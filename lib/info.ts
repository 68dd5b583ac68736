// info(): version, CPU features and threads, and the backends (CUDA from lib/cuda.ts when present).
import path from 'node:path';
import { binding, packageRoot } from './binding';
import { convert } from './errors';

export interface CudaInfo {
  compiled: boolean;
  available: boolean;
  devices: unknown[];
  reason?: string;
  [key: string]: unknown;
}

export interface Info {
  version: string;
  formatVersion: number;
  napiVersion: number;
  cpu: { avx2: boolean; bmi2: boolean; fma: boolean; f16c: boolean; sse42: boolean; pclmul: boolean; hardwareThreads: number; simd: 'avx2' | 'scalar' };
  /** Default worker threads of the CPU pool (see setThreads). */
  threads: number;
  maxN: number;
  backends: { cpu: true; cuda: CudaInfo };
}

let version: string | undefined;
export function packageVersion(): string {
  if (version === undefined) {
    try {
      version = String((require(path.join(packageRoot, 'package.json')) as { version: string }).version);
    } catch {
      version = '0.0.0';
    }
  }
  return version;
}

function cudaInfo(): CudaInfo {
  let mod: Record<string, unknown>;
  try {
    mod = require('./cuda') as Record<string, unknown>;
  } catch (e) {
    return { compiled: false, available: false, devices: [], reason: 'the CUDA module is not part of this build' };
  }
  const fn = (mod.cudaInfo ?? mod.info) as (() => CudaInfo) | undefined;
  if (typeof fn !== 'function') return { compiled: false, available: false, devices: [], reason: 'lib/cuda exports no info function' };
  try {
    const r = fn();
    return { ...r, compiled: !!r.compiled, available: !!r.available, devices: Array.isArray(r.devices) ? r.devices : [] };
  } catch (e) {
    return { compiled: false, available: false, devices: [], reason: e instanceof Error ? e.message : String(e) };
  }
}

export function info(): Info {
  let raw;
  try { raw = binding().info(); } catch (e) { throw convert(e); }
  return {
    version: packageVersion(),
    formatVersion: raw.formatVersion,
    napiVersion: raw.napiVersion,
    cpu: { ...raw.cpu, simd: raw.cpu.avx2 && raw.cpu.bmi2 ? 'avx2' : 'scalar' },
    threads: raw.threads,
    maxN: raw.maxN,
    backends: { cpu: true, cuda: cudaInfo() },
  };
}
