// NCCL transport: a group of GPU ranks over NCCL, with the Group API over device arrays (docs/COLLECTIVES.md,
// section "NCCL"). The natives live in the CUDA addon gradzip_cuda.node (native/cuda/nccl.cc); libnccl.so.2 is
// loaded at run time with dlopen, never linked, so neither the addon nor this module needs NCCL to load.
//
// Library search order: $GRADZIP_NCCL_LIB, then `libnccl.so.2` (the dynamic loader's paths: LD_LIBRARY_PATH,
// ldconfig), then, only when both fail, the NVIDIA pip wheel (`nvidia-nccl-cu12`/`-cu13`): its directory is
// asked from python3 (`import nvidia.nccl`) with child_process and `<dir>/lib/libnccl.so.2` is tried.
//
// Every operation is one job on the group's CUDA stream worker: the event loop never blocks, and the Promise
// settles when the stream's work is done. A deadline (`timeoutMs`) is enforced by polling
// ncclCommGetAsyncError; past it the communicator is aborted (ncclCommAbort) and the operation rejects with
// ERR_GRADZIP_TIMEOUT; the group is unusable afterwards (as on the other transports).
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { compressorInternals } from '../codecs';
import { GradzipError, convert } from '../errors';
import type * as CudaModule from '../cuda';
import type { DeviceArray, Stream } from '../cuda';
import { checkTimeout, deriveSeed, freshSeed } from './util';
import type { CompressorLike, GroupStats } from './group';

interface NcclNative {
  ncclLoad(paths: string[]): { ok: boolean; path?: string; version?: number; errors: string[] };
  ncclUniqueId(): Uint8Array;
  ncclInitRank(stream: unknown, id: Uint8Array, size: number, rank: number): Promise<unknown>;
  ncclAllreduceF32(comm: unknown, stream: unknown, buf: unknown, n: number, divisor: number, timeoutMs: number): Promise<void>;
  ncclBcast(comm: unknown, stream: unknown, buf: unknown, bytes: number, root: number, timeoutMs: number): Promise<void>;
  ncclBarrier(comm: unknown, stream: unknown, timeoutMs: number): Promise<void>;
  ncclAllgatherCompressed(comm: unknown, stream: unknown, options: object, seed: bigint, x: unknown, n: number, mode: number, timeoutMs: number): Promise<number[]>;
  ncclClose(comm: unknown, stream: unknown): Promise<void>;
  ncclAbortComm(comm: unknown): void;
}

export interface NcclInfo {
  /** the library loaded and a CUDA device is usable */
  available: boolean;
  /** why not, when not available */
  reason?: string;
  /** the libnccl.so.2 that was loaded */
  library?: string;
  /** ncclGetVersion(), e.g. 22703 for 2.27.3 */
  version?: number;
  /** every path tried, with the loader's error */
  tried?: string[];
}

export interface NcclOptions {
  rank: number;
  size: number;
  /** the 128-byte id from comm.ncclUniqueId() on one rank, distributed by the user (required when size > 1) */
  id?: Uint8Array;
  /** the CUDA stream of the group's operations (default: a new one) */
  stream?: Stream;
  /** per-operation timeout in ms (0 or absent: none); not applied to the communicator's creation */
  timeoutMs?: number;
}

export interface NcclAllreduceOptions {
  average?: boolean;
  /** a gradzip compressor (qsgd(...), topk(...), ...); absent: fp32 ncclAllReduce */
  compressor?: CompressorLike | null;
  /** compressed algorithm: only 'allgather' (the default here) */
  algorithm?: 'allgather';
  seed?: number | bigint;
  timeoutMs?: number;
}

const err = (code: string, m: string) => new GradzipError(code as never, m);

// ------------------------------------------------------------------------------------------ loading
let cudaMod: typeof CudaModule | null = null;
function cudaModule(): typeof CudaModule {
  // loaded lazily: importing gradzip must not load the CUDA addon
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  if (!cudaMod) cudaMod = require('../cuda') as typeof CudaModule;
  return cudaMod;
}

let loaded: { native: NcclNative | null; info: NcclInfo } | null = null;

/** The pip wheel's directory of libnccl.so.2, asked from python3 (null when python3 or the wheel is absent). */
function pipWheelLib(tried: string[]): string | null {
  const py = process.env.GRADZIP_PYTHON || 'python3';
  try {
    const dir = execFileSync(py, ['-c', 'import nvidia.nccl, os; print(os.path.dirname(nvidia.nccl.__file__))'], {
      encoding: 'utf8', timeout: 20000, stdio: ['ignore', 'pipe', 'pipe'],
    }).trim();
    const lib = path.join(dir, 'lib', 'libnccl.so.2');
    if (fs.existsSync(lib)) return lib;
    tried.push(`${lib}: not found (nvidia.nccl is at ${dir})`);
  } catch (e) {
    const m = e instanceof Error ? e.message.split('\n').filter(Boolean).slice(-1)[0] : String(e);
    tried.push(`pip wheel (${py} -c "import nvidia.nccl"): ${m}`);
  }
  return null;
}

function load(): { native: NcclNative | null; info: NcclInfo } {
  if (loaded) return loaded;
  const c = cudaModule().cudaInfo();
  if (!c.compiled || !c.path) {
    return (loaded = { native: null, info: { available: false, reason: `the CUDA addon is not available: ${c.reason ?? 'not built'}` } });
  }
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const nat = require(c.path) as Partial<NcclNative>;  // the module cached by lib/cuda.ts: same classes
  if (typeof nat.ncclLoad !== 'function') {
    return (loaded = { native: null, info: { available: false, reason: `${c.path} has no NCCL transport (rebuild it with scripts/build-cuda.sh)` } });
  }
  const native = nat as NcclNative;
  const tried: string[] = [];
  const first = [process.env.GRADZIP_NCCL_LIB, 'libnccl.so.2'].filter((p): p is string => !!p);
  let r = native.ncclLoad(first);
  tried.push(...r.errors);
  if (!r.ok) {
    const lib = pipWheelLib(tried);
    if (lib) {
      r = native.ncclLoad([lib]);
      tried.push(...r.errors);
    }
  }
  if (!r.ok) {
    return (loaded = {
      native: null,
      info: { available: false, tried, reason: `${c.available ? '' : `no usable CUDA device (${c.reason ?? 'unknown'}); and `}libnccl.so.2 not found or unusable (set GRADZIP_NCCL_LIB, add it to LD_LIBRARY_PATH, or pip install nvidia-nccl-cu12/cu13); tried: ${tried.join('; ')}` },
    });
  }
  const info: NcclInfo = { available: c.available, library: r.path, version: r.version, tried };
  if (!c.available) info.reason = `no usable CUDA device: ${c.reason ?? 'unknown'}`;
  return (loaded = { native, info });
}

/** Whether NCCL can be used here, and if not, why (never throws). */
export function ncclInfo(): NcclInfo {
  try {
    return { ...load().info };
  } catch (e) {
    return { available: false, reason: e instanceof Error ? e.message : String(e) };
  }
}

function nccl$(): NcclNative {
  const l = load();
  if (!l.native || !l.info.available) throw err('ERR_GRADZIP_CUDA', `NCCL transport not available: ${l.info.reason}`);
  return l.native;
}

/** Maps the addon's errors to GradzipErrors (a worker message "ERR_GRADZIP_TIMEOUT: ..." becomes that code). */
function mapError(e: unknown): unknown {
  const m = e instanceof Error ? e.message : '';
  if (m.startsWith('ERR_GRADZIP_TIMEOUT: ')) return err('ERR_GRADZIP_TIMEOUT', m.slice(21));
  return convert(e);
}
function wrap<T>(f: () => Promise<T>): Promise<T> {
  try {
    return f().catch((e) => { throw mapError(e); });
  } catch (e) {
    return Promise.reject(mapError(e));
  }
}

/** A new NCCL unique id (128 bytes) for comm.nccl({ id }); make it on one rank and send it to the others. */
export function ncclUniqueId(): Uint8Array {
  try {
    return nccl$().ncclUniqueId();
  } catch (e) {
    throw mapError(e);
  }
}

// ------------------------------------------------------------------------------------------ the group
function isPow2(P: number): boolean {
  return (P & (P - 1)) === 0;
}

function toSeed(seed: unknown): bigint {
  if (seed === undefined || seed === null) return freshSeed();
  if (typeof seed === 'bigint') return BigInt.asUintN(64, seed);
  if (typeof seed === 'number' && Number.isInteger(seed) && seed >= 0 && seed <= Number.MAX_SAFE_INTEGER) return BigInt(seed);
  throw err('ERR_GRADZIP_INVALID_ARG', 'allreduce: seed must be a non-negative integer or a bigint');
}

/** A group of GPU ranks over NCCL: the Group operations on device arrays (one rank per GPU and process). */
export class NcclGroup {
  readonly rank: number;
  readonly size: number;
  readonly transport = 'nccl' as const;
  timeoutMs: number;
  /** the library and version in use */
  readonly ncclInfo: NcclInfo;
  bytesSent = 0;
  bytesReceived = 0;
  private ops = 0;
  private tail: Promise<unknown> = Promise.resolve();
  private closed = false;
  private broken: { code: string; message: string } | null = null;

  /** @internal */
  constructor(private nat: NcclNative, private comm: unknown, readonly stream: Stream, rank: number, size: number, timeoutMs: number, info: NcclInfo) {
    this.rank = rank;
    this.size = size;
    this.timeoutMs = timeoutMs;
    this.ncclInfo = info;
  }

  private get s(): unknown {
    return (this.stream as unknown as { _s: unknown })._s;
  }

  private enqueue<T>(name: string, timeoutMs: number | undefined, fn: (ms: number) => Promise<T>): Promise<T> {
    if (this.closed) return Promise.reject(err('ERR_GRADZIP_INVALID_ARG', `${name}: the group is closed`));
    let ms: number;
    try {
      ms = timeoutMs === undefined ? this.timeoutMs : checkTimeout(timeoutMs, name);
    } catch (e) {
      return Promise.reject(e);
    }
    const run = async () => {
      if (this.broken) throw err(this.broken.code, `${name}: the group is unusable after an earlier failure (${this.broken.message})`);
      try {
        return await wrap(() => fn(ms));
      } catch (e) {
        const code = (e as { code?: string }).code;
        if (code === 'ERR_GRADZIP_TIMEOUT' || (code === 'ERR_GRADZIP_CUDA' && /asynchronous error|aborted/.test((e as Error).message))) {
          this.broken = { code: code!, message: (e as Error).message };
        }
        throw e;
      } finally {
        this.ops++;
      }
    };
    const p = this.tail.then(run, run);
    this.tail = p.catch(() => undefined);
    return p;
  }

  private device(x: unknown, what: string, dtype?: 'f32'): DeviceArray {
    const D = cudaModule().DeviceArray;
    if (!(x instanceof D) || (dtype && x.dtype !== dtype)) {
      throw err('ERR_GRADZIP_INVALID_ARG', `${what}: x must be a${dtype ? 'n f32' : ''} DeviceArray (gradzip/cuda) on the group's GPU`);
    }
    if (x.freed) throw err('ERR_GRADZIP_INVALID_ARG', `${what}: the device array was freed`);
    return x;
  }

  /** In-place all-reduce of a device f32 array. Uncompressed: ncclAllReduce (sum; `average` then divides by P).
   *  Compressed ('allgather'): each rank compresses x on the device (seed deriveSeed(seed, rank, 0)) into its
   *  fixed-size slot, one ncclAllGather moves the slots, every rank decodes and adds all P packets in rank
   *  order on the device: the same bits on every rank, equal to the in-process/MPI allgather result. */
  allreduce(x: DeviceArray, opts: NcclAllreduceOptions = {}): Promise<void> {
    const o = opts ?? {};
    let dx: DeviceArray;
    let native: object | null = null;
    let seed = 0n;
    try {
      dx = this.device(x, 'allreduce', 'f32');
      if (o.algorithm !== undefined && o.algorithm !== 'allgather') {
        throw err('ERR_GRADZIP_INVALID_ARG', `allreduce: the NCCL transport implements algorithm 'allgather' only (got '${String(o.algorithm)}')`);
      }
      if ((o as { errorFeedback?: unknown }).errorFeedback) throw err('ERR_GRADZIP_INVALID_ARG', 'allreduce: errorFeedback is not supported on the NCCL transport');
      if (o.compressor) {
        const w = o.compressor as unknown as { name?: string };
        if (w.name === 'errorFeedback') throw err('ERR_GRADZIP_INVALID_ARG', 'allreduce: errorFeedback(...) compressors are not supported on the NCCL transport');
        const ci = compressorInternals(o.compressor);
        if (!ci) throw err('ERR_GRADZIP_INVALID_ARG', 'allreduce: compressor must be a gradzip compressor (qsgd(...), topk(...), ...)');
        native = ci.native as object;
        seed = deriveSeed(toSeed(o.seed), this.rank, 0);
      }
    } catch (e) {
      return Promise.reject(e);
    }
    const P = this.size, avg = !!o.average && P > 1;
    return this.enqueue('allreduce', o.timeoutMs, async (ms) => {
      const n = dx.length;
      if (!native) {
        await this.nat.ncclAllreduceF32(this.comm, this.s, dx._buf, n, avg ? P : 0, ms);
        if (P > 1) { this.bytesSent += 4 * n; this.bytesReceived += 4 * n; }
        return;
      }
      const mode = !avg ? 0 : isPow2(P) ? 1 : 2;
      const lens = await this.nat.ncclAllgatherCompressed(this.comm, this.s, native, seed, dx._buf, n, mode, ms);
      if (P > 1) {
        this.bytesSent += lens[this.rank];
        for (let j = 0; j < P; j++) if (j !== this.rank) this.bytesReceived += lens[j];
      }
    });
  }

  /** Copies root's bytes into every rank's device array (same byteLength everywhere). */
  broadcast(x: DeviceArray, root = 0, opts: { timeoutMs?: number } = {}): Promise<void> {
    let dx: DeviceArray;
    try {
      dx = this.device(x, 'broadcast');
      if (!Number.isInteger(root) || root < 0 || root >= this.size) throw err('ERR_GRADZIP_INVALID_ARG', `broadcast: root must be an integer rank in [0, ${this.size})`);
    } catch (e) {
      return Promise.reject(e);
    }
    return this.enqueue('broadcast', opts?.timeoutMs, async (ms) => {
      await this.nat.ncclBcast(this.comm, this.s, dx._buf, dx.byteLength, root, ms);
      if (this.size > 1) {
        if (this.rank === root) this.bytesSent += dx.byteLength;
        else this.bytesReceived += dx.byteLength;
      }
    });
  }

  /** Resolves when every rank has called it (an all-reduce of one float: NCCL has no barrier). */
  barrier(opts: { timeoutMs?: number } = {}): Promise<void> {
    return this.enqueue('barrier', opts?.timeoutMs, (ms) => this.nat.ncclBarrier(this.comm, this.s, ms));
  }

  stats(): GroupStats {
    return { rank: this.rank, size: this.size, transport: 'nccl', bytesSent: this.bytesSent, bytesReceived: this.bytesReceived, ops: this.ops };
  }

  /** Aborts the communicator (ncclCommAbort): the pending operation and every later one reject. */
  abort(): void {
    this.nat.ncclAbortComm(this.comm);
  }

  /** Destroys the communicator (ncclCommDestroy) once the queued operations are done. */
  async close(): Promise<void> {
    if (this.closed) return;
    const last = this.tail;
    this.closed = true;
    await last;
    await wrap(() => this.nat.ncclClose(this.comm, this.s));
  }
}

/** Joins an NCCL group as `rank` of `size` (one rank per GPU and process; every rank passes the same `id`).
 *  Rejects with ERR_GRADZIP_CUDA (and the reason) when the CUDA addon, a device or libnccl.so.2 is missing. */
export function nccl(opts: NcclOptions): Promise<NcclGroup> {
  return (async () => {
    const o = opts ?? ({} as NcclOptions);
    const { rank, size } = o;
    if (!Number.isInteger(size) || size < 1) throw err('ERR_GRADZIP_INVALID_ARG', 'comm.nccl: size must be an integer >= 1');
    if (!Number.isInteger(rank) || rank < 0 || rank >= size) throw err('ERR_GRADZIP_INVALID_ARG', `comm.nccl: rank must be an integer in [0, ${size})`);
    if (o.id !== undefined && !(o.id instanceof Uint8Array && o.id.byteLength === 128)) {
      throw err('ERR_GRADZIP_INVALID_ARG', 'comm.nccl: id must be the 128-byte Uint8Array from comm.ncclUniqueId()');
    }
    if (o.id === undefined && size > 1) throw err('ERR_GRADZIP_INVALID_ARG', 'comm.nccl: id is required when size > 1 (comm.ncclUniqueId() on one rank, sent to the others)');
    const timeoutMs = checkTimeout(o.timeoutMs, 'comm.nccl') || 0;
    const nat = nccl$();
    const cm = cudaModule();
    if (o.stream !== undefined && !(o.stream instanceof cm.Stream)) throw err('ERR_GRADZIP_INVALID_ARG', 'comm.nccl: stream must be a Stream (gradzip/cuda)');
    const stream = o.stream ?? new cm.Stream();
    const id = o.id ?? nat.ncclUniqueId();
    const comm = await wrap(() => nat.ncclInitRank((stream as unknown as { _s: unknown })._s, id, size, rank));
    return new NcclGroup(nat, comm, stream, rank, size, timeoutMs, load().info);
  })().catch((e) => { throw mapError(e); });
}
