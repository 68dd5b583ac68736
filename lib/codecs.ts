// Compressor factories (qsgd, terngrad, onebit, topk, randomk, nonuniform), their option checks, and the
// decompress functions. Options are validated once per factory call; each compressor caches the native
// params handle (a gz::Params copied from one options object), so a compress call only checks its input and
// crosses into C++ once.
import { binding, type NativeOptions, type ParamsHandle, type Seed } from './binding';
import { convert, GradzipError, invalid } from './errors';

export type CodecName = 'qsgd' | 'terngrad' | 'onebit' | 'topk' | 'randomk' | 'nonuniform';

/** Options every factory accepts. */
export interface CommonOptions {
  /** What to do with NaN and ±Inf in the input: throw ERR_GRADZIP_NONFINITE (default) or treat them as +0. */
  nonFinite?: 'throw' | 'zero';
  /** Worker threads for this compressor's encode; 0 (default) uses the global pool size (see setThreads). */
  threads?: number;
  /** Testing: disable the SIMD paths (the output is byte-identical by contract). */
  forceScalar?: boolean;
}

export interface QsgdOptions extends CommonOptions {
  /** s, the number of non-zero levels, 1..65535 (default 4). */
  levels?: number;
  /** Elements per bucket, each bucket has its own scale (default 512). */
  bucketSize?: number;
  norm?: 'l2' | 'linf';
  coding?: 'fixed' | 'gamma' | 'sparse';
}
export interface TerngradOptions extends CommonOptions { bucketSize?: number }
export interface OnebitOptions extends CommonOptions { bucketSize?: number }
export interface TopkOptions extends CommonOptions {
  /** Fraction of elements kept, in (0, 1]: k = max(1, ceil(ratio * n)). Default 0.01 when k is not given. */
  ratio?: number;
  /** Number of elements kept (clamped to n). Exclusive with ratio. */
  k?: number;
  values?: 'f32' | 'f16' | 'bf16';
}
export interface RandomkOptions extends CommonOptions { ratio?: number; k?: number }
export interface NonuniformOptions extends CommonOptions {
  /** Number of non-zero levels L, 1..64 (default 8). */
  levels?: number;
  bucketSize?: number;
  /** Weibull shape k (> 0); fitted from the data when not given. */
  shape?: number;
}

export interface CompressOptions {
  /** Philox key: a safe integer >= 0 or a bigint < 2^64. Without it a fresh seed is drawn (and recorded). */
  seed?: number | bigint;
  /** Caller buffer of at least maxCompressedBytes(n) bytes; the result is a view on it (zero copy). */
  out?: Uint8Array;
}

export interface Compressor<O extends object = object> {
  readonly name: string;
  readonly options: Readonly<O>;
  compress(x: Float32Array, opts?: CompressOptions): Uint8Array;
  compressAsync(x: Float32Array, opts?: CompressOptions): Promise<Uint8Array>;
  /** Upper bound of the packet size for n elements. */
  maxCompressedBytes(n: number): number;
}

export interface DecompressOptions {
  threads?: number;
  forceScalar?: boolean;
}

// ---------------------------------------------------------------------------------------------------------
// Device dispatch (lib/cuda.ts). Inputs that are not Float32Array are offered to the registered hook; the
// CUDA module registers itself with setDeviceHook when it is loaded (lazily, on the first such input).
export interface DeviceHook {
  accepts(x: unknown): boolean;
  compress(c: Compressor, x: unknown, opts?: CompressOptions): Uint8Array;
  compressAsync(c: Compressor, x: unknown, opts?: CompressOptions): Promise<Uint8Array>;
  decompress?(packet: Uint8Array, out: unknown, opts?: DecompressOptions): unknown;
  decompressAsync?(packet: Uint8Array, out: unknown, opts?: DecompressOptions): Promise<unknown>;
  decompressAdd?(packet: Uint8Array, acc: unknown, alpha: number, opts?: DecompressOptions): unknown;
  decompressAddAsync?(packet: Uint8Array, acc: unknown, alpha: number, opts?: DecompressOptions): Promise<unknown>;
}
let deviceHook: DeviceHook | null | undefined;
export function setDeviceHook(h: DeviceHook | null): void { deviceHook = h; }
function device(x: unknown): DeviceHook | null {
  if (x === undefined || x === null || typeof x !== 'object') return null;
  if (deviceHook === undefined) {
    deviceHook = null;
    try { require('./cuda'); } catch { /* no CUDA module */ }
  }
  return deviceHook !== null && deviceHook.accepts(x) ? deviceHook : null;
}

// ---------------------------------------------------------------------------------------------------------
// Internal registry: compressor -> native params (used by errorFeedback and the collectives).
export interface CompressorInternals {
  readonly codec: CodecName;
  readonly native: Readonly<NativeOptions>;
  params(): ParamsHandle;
}
const internals = new WeakMap<object, CompressorInternals>();
export function compressorInternals(c: unknown): CompressorInternals | undefined {
  return typeof c === 'object' && c !== null ? internals.get(c) : undefined;
}

const CODEC_ID: Record<CodecName, number> = { qsgd: 1, terngrad: 2, onebit: 3, topk: 4, randomk: 5, nonuniform: 6 };
const MAX_N = 2 ** 34;
const TWO64 = 1n << 64n;

// ---------------------------------------------------------------------------------------------------------
// Option checks.
type Check = (name: string, v: unknown) => unknown;

function describe(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v);
  if (typeof v === 'bigint') return `${v}n`;
  if (v === null || typeof v !== 'object') return String(v);
  return Array.isArray(v) ? 'an array' : `an object (${Object.prototype.toString.call(v).slice(8, -1)})`;
}

const int = (lo: number, hi: number): Check => (name, v) => {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < lo || v > hi)
    throw new GradzipError('ERR_GRADZIP_INVALID_ARG', `${name} must be an integer in [${lo}, ${hi}], got ${describe(v)}`);
  return v;
};
const oneOf = (...vals: string[]): Check => (name, v) => {
  if (typeof v !== 'string' || !vals.includes(v))
    throw new GradzipError('ERR_GRADZIP_INVALID_ARG', `${name} must be one of ${vals.map((s) => `'${s}'`).join(', ')}, got ${describe(v)}`);
  return v;
};
const bool: Check = (name, v) => {
  if (typeof v !== 'boolean') throw new GradzipError('ERR_GRADZIP_INVALID_ARG', `${name} must be a boolean, got ${describe(v)}`);
  return v;
};
const ratio: Check = (name, v) => {
  if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0 || v > 1)
    throw new GradzipError('ERR_GRADZIP_INVALID_ARG', `${name} must be a number in (0, 1], got ${describe(v)}`);
  return v;
};
// FORMAT 3.6: a given Weibull shape must lie in the fit's range [0.05, 20].
const shapeRange: Check = (name, v) => {
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 0.05 || v > 20)
    throw new GradzipError('ERR_GRADZIP_INVALID_ARG', `${name} must be a number in [0.05, 20], got ${describe(v)}`);
  return v;
};

const COMMON: Record<string, Check> = {
  nonFinite: oneOf('throw', 'zero'),
  threads: int(0, 1024),
  forceScalar: bool,
};
const BUCKET = int(1, 2 ** 31);

/** Validates `opts` against `spec` (unknown keys and wrong values are INVALID_ARG); undefined values are absent. */
function readOptions(codec: string, opts: unknown, spec: Record<string, Check>): Record<string, unknown> {
  if (opts === undefined) return {};
  if (opts === null || typeof opts !== 'object' || Array.isArray(opts))
    invalid(`${codec}: options must be a plain object, got ${describe(opts)}`);
  const out: Record<string, unknown> = {};
  for (const key of Object.keys(opts)) {
    const v = (opts as Record<string, unknown>)[key];
    const check = spec[key] ?? COMMON[key];
    if (check === undefined) {
      invalid(`${codec}: unknown option '${key}' (expected ${[...Object.keys(spec), ...Object.keys(COMMON)].join(', ')})`);
    }
    if (v === undefined) continue;
    out[key] = check(`${codec}: option '${key}'`, v);
  }
  return out;
}

function nativeBase(codec: CodecName, o: Record<string, unknown>): NativeOptions {
  return {
    codec: CODEC_ID[codec], levels: 0, bucket: 0, norm: 0, coding: 0, hasK: false, k: 0, ratio: 0, vt: 0, shape: 0,
    nonfiniteZero: o.nonFinite === 'zero', threads: (o.threads as number | undefined) ?? 0,
    forceScalar: o.forceScalar === true,
  };
}

function commonResolved(o: Record<string, unknown>): CommonOptions {
  const r: CommonOptions = { nonFinite: (o.nonFinite as 'throw' | 'zero' | undefined) ?? 'throw', threads: (o.threads as number | undefined) ?? 0 };
  if (o.forceScalar === true) r.forceScalar = true;
  return r;
}

// ---------------------------------------------------------------------------------------------------------
// Per-call argument checks (cheap: no allocation).
function readSeed(v: unknown): Seed {
  if (v === undefined) return undefined;
  if (typeof v === 'number') {
    if (Number.isSafeInteger(v) && v >= 0) return v;
  } else if (typeof v === 'bigint') {
    if (v >= 0n && v < TWO64) return v;
  }
  return invalid(`seed must be a safe integer >= 0 or a bigint in [0, 2^64), got ${describe(v)}`);
}

/** Checks the per-call options object (keys and `out` type); the seed is read by readSeed. */
function checkCall(opts: CompressOptions): void {
  if (opts === null || typeof opts !== 'object') invalid(`compress options must be an object, got ${describe(opts)}`);
  for (const k in opts) if (k !== 'seed' && k !== 'out') invalid(`compress: unknown option '${k}' (expected seed, out)`);
  const out = opts.out;
  if (out !== undefined && !(out instanceof Uint8Array)) invalid(`compress: out must be a Uint8Array, got ${describe(out)}`);
}

function notFloat32(what: string, x: unknown): never {
  return invalid(`${what} must be a Float32Array, got ${describe(x)}`);
}

function readDecompressOptions(o: DecompressOptions | undefined): { threads: number; scalar: boolean } {
  if (o === undefined) return NO_DEC_OPTS;
  const r = readOptions('decompress', o, { threads: int(0, 1024), forceScalar: bool });
  return { threads: (r.threads as number | undefined) ?? 0, scalar: r.forceScalar === true };
}
const NO_DEC_OPTS = Object.freeze({ threads: 0, scalar: false });

function checkN(n: unknown): number {
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 0 || n > MAX_N)
    invalid(`n must be an integer in [0, 2^34], got ${describe(n)}`);
  return n;
}

// ---------------------------------------------------------------------------------------------------------
function makeCompressor<O extends object>(codec: CodecName, options: O, native: NativeOptions): Compressor<O> {
  const frozenNative = Object.freeze(native);
  let handle: ParamsHandle | undefined;
  const params = (): ParamsHandle => {
    if (handle === undefined) {
      try { handle = binding().makeParams(frozenNative); } catch (e) { throw convert(e); }
    }
    return handle;
  };
  const c: Compressor<O> = {
    name: codec,
    options: Object.freeze(options),
    compress(x: Float32Array, opts?: CompressOptions): Uint8Array {
      if (!(x instanceof Float32Array)) {
        const d = device(x);
        if (d !== null) return d.compress(c, x, opts);
        notFloat32(`${codec}.compress: input`, x);
      }
      let seed: Seed, out: Uint8Array | undefined;
      if (opts !== undefined) {
        checkCall(opts);
        seed = readSeed(opts.seed);
        out = opts.out;
      }
      let r: Uint8Array | number;
      try { r = binding().encode(params(), x, seed, out); } catch (e) { throw convert(e); }
      return typeof r === 'number' ? (out as Uint8Array).subarray(0, r) : r;
    },
    compressAsync(x: Float32Array, opts?: CompressOptions): Promise<Uint8Array> {
      try {
        if (!(x instanceof Float32Array)) {
          const d = device(x);
          if (d !== null) return d.compressAsync(c, x, opts);
          notFloat32(`${codec}.compressAsync: input`, x);
        }
        let seed: Seed, out: Uint8Array | undefined;
        if (opts !== undefined) {
          checkCall(opts);
          seed = readSeed(opts.seed);
          out = opts.out;
        }
        return binding().encodeAsync(params(), x, seed, out).then(
          (r) => (typeof r === 'number' ? (out as Uint8Array).subarray(0, r) : r),
          (e) => { throw convert(e); });
      } catch (e) {
        return Promise.reject(convert(e));
      }
    },
    maxCompressedBytes(n: number): number {
      checkN(n);
      try { return binding().maxBytes(params(), n); } catch (e) { throw convert(e); }
    },
  };
  Object.freeze(c);
  internals.set(c, Object.freeze({ codec, native: frozenNative, params }));
  return c;
}

// ---------------------------------------------------------------------------------------------------------
// Factories.

export type ResolvedQsgdOptions = Required<Pick<QsgdOptions, 'levels' | 'bucketSize' | 'norm' | 'coding'>> & CommonOptions;
export function qsgd(options?: QsgdOptions): Compressor<ResolvedQsgdOptions> {
  const o = readOptions('qsgd', options, {
    levels: int(1, 65535), bucketSize: BUCKET, norm: oneOf('l2', 'linf'), coding: oneOf('fixed', 'gamma', 'sparse'),
  });
  const r = {
    levels: (o.levels as number | undefined) ?? 4,
    bucketSize: (o.bucketSize as number | undefined) ?? 512,
    norm: (o.norm as 'l2' | 'linf' | undefined) ?? 'l2',
    coding: (o.coding as 'fixed' | 'gamma' | 'sparse' | undefined) ?? 'fixed',
    ...commonResolved(o),
  };
  const n = nativeBase('qsgd', o);
  n.levels = r.levels;
  n.bucket = r.bucketSize;
  n.norm = r.norm === 'l2' ? 0 : 1;
  n.coding = r.coding === 'fixed' ? 0 : r.coding === 'gamma' ? 1 : 2;
  return makeCompressor('qsgd', r, n);
}

export type ResolvedBucketOptions = { bucketSize: number } & CommonOptions;
export function terngrad(options?: TerngradOptions): Compressor<ResolvedBucketOptions> {
  const o = readOptions('terngrad', options, { bucketSize: BUCKET });
  const r = { bucketSize: (o.bucketSize as number | undefined) ?? 512, ...commonResolved(o) };
  const n = nativeBase('terngrad', o);
  n.levels = 1;
  n.bucket = r.bucketSize;
  n.norm = 1;
  return makeCompressor('terngrad', r, n);
}

export function onebit(options?: OnebitOptions): Compressor<ResolvedBucketOptions> {
  const o = readOptions('onebit', options, { bucketSize: BUCKET });
  const r = { bucketSize: (o.bucketSize as number | undefined) ?? 512, ...commonResolved(o) };
  const n = nativeBase('onebit', o);
  n.bucket = r.bucketSize;
  return makeCompressor('onebit', r, n);
}

function sparsity(codec: CodecName, o: Record<string, unknown>, n: NativeOptions): { ratio?: number; k?: number } {
  if (o.ratio !== undefined && o.k !== undefined) invalid(`${codec}: give either option 'ratio' or option 'k', not both`);
  if (o.k !== undefined) {
    n.hasK = true;
    n.k = o.k as number;
    return { k: o.k as number };
  }
  n.ratio = (o.ratio as number | undefined) ?? 0.01;
  return { ratio: n.ratio };
}

export type ResolvedTopkOptions = { ratio?: number; k?: number; values: 'f32' | 'f16' | 'bf16' } & CommonOptions;
export function topk(options?: TopkOptions): Compressor<ResolvedTopkOptions> {
  const o = readOptions('topk', options, { ratio, k: int(1, MAX_N), values: oneOf('f32', 'f16', 'bf16') });
  const n = nativeBase('topk', o);
  const values = (o.values as 'f32' | 'f16' | 'bf16' | undefined) ?? 'f32';
  n.vt = values === 'f32' ? 0 : values === 'f16' ? 1 : 2;
  const r = { ...sparsity('topk', o, n), values, ...commonResolved(o) };
  return makeCompressor('topk', r, n);
}

export type ResolvedRandomkOptions = { ratio?: number; k?: number } & CommonOptions;
export function randomk(options?: RandomkOptions): Compressor<ResolvedRandomkOptions> {
  const o = readOptions('randomk', options, { ratio, k: int(1, MAX_N) });
  const n = nativeBase('randomk', o);
  const r = { ...sparsity('randomk', o, n), ...commonResolved(o) };
  return makeCompressor('randomk', r, n);
}

export type ResolvedNonuniformOptions = { levels: number; bucketSize: number; shape?: number } & CommonOptions;
export function nonuniform(options?: NonuniformOptions): Compressor<ResolvedNonuniformOptions> {
  const o = readOptions('nonuniform', options, { levels: int(1, 64), bucketSize: BUCKET, shape: shapeRange });
  const r: ResolvedNonuniformOptions = {
    levels: (o.levels as number | undefined) ?? 8,
    bucketSize: (o.bucketSize as number | undefined) ?? 512,
    ...commonResolved(o),
  };
  if (o.shape !== undefined) r.shape = o.shape as number;
  const n = nativeBase('nonuniform', o);
  n.levels = r.levels;
  n.bucket = r.bucketSize;
  n.shape = r.shape ?? 0;
  return makeCompressor('nonuniform', r, n);
}

// ---------------------------------------------------------------------------------------------------------
// Decompression (any packet: the codec and its parameters travel in it).

/** A device packet (from compress of a DeviceArray) or a device destination sends the call to the CUDA hook. */
function deviceFor(packet: unknown, dst: unknown): DeviceHook | null {
  if (dst !== undefined && !(dst instanceof Float32Array)) { const d = device(dst); if (d) return d; }
  return packet instanceof Uint8Array ? null : device(packet);
}
function checkPacket(what: string, p: unknown): asserts p is Uint8Array {
  if (!(p instanceof Uint8Array)) invalid(`${what}: packet must be a Uint8Array, got ${describe(p)}`);
}
function checkAlpha(alpha: unknown): number {
  if (typeof alpha !== 'number' || !Number.isFinite(alpha)) invalid(`decompressAdd: alpha must be a finite number, got ${describe(alpha)}`);
  return alpha;
}

/** Decodes a packet into a new Float32Array of n elements, or into `out` (exactly n elements). */
export function decompress(packet: Uint8Array, out?: Float32Array, opts?: DecompressOptions): Float32Array {
  const d = deviceFor(packet, out);
  if (d?.decompress) return d.decompress(packet, out, opts) as Float32Array;
  checkPacket('decompress', packet);
  if (out !== undefined && !(out instanceof Float32Array)) notFloat32('decompress: out', out);
  const o = readDecompressOptions(opts);
  try { return binding().decode(packet, out, o.threads, o.scalar); } catch (e) { throw convert(e); }
}

/** acc += alpha * decompress(packet), in float32 (multiply, then add), without a temporary. Returns acc. */
export function decompressAdd(packet: Uint8Array, acc: Float32Array, alpha = 1, opts?: DecompressOptions): Float32Array {
  const d = deviceFor(packet, acc);
  if (d?.decompressAdd) return d.decompressAdd(packet, acc, checkAlpha(alpha), opts) as Float32Array;
  checkPacket('decompressAdd', packet);
  if (!(acc instanceof Float32Array)) notFloat32('decompressAdd: acc', acc);
  checkAlpha(alpha);
  const o = readDecompressOptions(opts);
  try { return binding().decodeAdd(packet, acc, alpha, o.threads, o.scalar); } catch (e) { throw convert(e); }
}

export function decompressAsync(packet: Uint8Array, out?: Float32Array, opts?: DecompressOptions): Promise<Float32Array> {
  try {
    const d = deviceFor(packet, out);
    if (d?.decompressAsync) return d.decompressAsync(packet, out, opts) as Promise<Float32Array>;
    checkPacket('decompressAsync', packet);
    if (out !== undefined && !(out instanceof Float32Array)) notFloat32('decompressAsync: out', out);
    const o = readDecompressOptions(opts);
    return binding().decodeAsync(packet, out, o.threads, o.scalar).then(undefined, (e) => { throw convert(e); });
  } catch (e) {
    return Promise.reject(convert(e));
  }
}

export function decompressAddAsync(packet: Uint8Array, acc: Float32Array, alpha = 1, opts?: DecompressOptions): Promise<Float32Array> {
  try {
    const d = deviceFor(packet, acc);
    if (d?.decompressAddAsync) return d.decompressAddAsync(packet, acc, checkAlpha(alpha), opts) as Promise<Float32Array>;
    checkPacket('decompressAddAsync', packet);
    if (!(acc instanceof Float32Array)) notFloat32('decompressAddAsync: acc', acc);
    checkAlpha(alpha);
    const o = readDecompressOptions(opts);
    return binding().decodeAddAsync(packet, acc, alpha, o.threads, o.scalar).then(undefined, (e) => { throw convert(e); });
  } catch (e) {
    return Promise.reject(convert(e));
  }
}

/** Sets the default number of worker threads of the CPU pool (0 = hardware concurrency). */
export function setThreads(threads: number): void {
  int(0, 1024)('setThreads: threads', threads);
  try { binding().setThreads(threads); } catch (e) { throw convert(e); }
}

/** @internal shared by feedback.ts */
export const _internal = { checkCall, readSeed, describe, notFloat32, device };
