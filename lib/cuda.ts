// CUDA backend (optional second addon gradzip_cuda.node, docs/CUDA.md): device arrays, streams, and
// compress / decompress of device arrays into device packets whose bytes equal the CPU packets.
//
// Loading: prebuilds/<platform>-<arch>/gradzip_cuda.node, then build-cuda/Release/ (scripts/build-cuda.sh),
// then build/Release/ (cmake-js). No addon, no driver or no device: cudaInfo() says why, every device
// operation throws ERR_GRADZIP_CUDA with that reason, and the CPU API (Float32Array inputs) is unaffected.
import fs from 'node:fs';
import path from 'node:path';
import { packageRoot } from './binding';
import { compressorInternals, setDeviceHook } from './codecs';
import type { CompressOptions, Compressor, DecompressOptions, DeviceHook } from './codecs';
import { convert, GradzipError } from './errors';

// ------------------------------------------------------------------------------------------ native surface
interface NativeDevBuf { readonly byteLength: number; readonly freed: boolean; free(): void }
interface NativeStream { synchronize(): void; destroy(): void }
interface Probe {
  compiled: boolean;
  available: boolean;
  devices: { index: number; name: string; computeCapability: string; memory: number; multiProcessors: number }[];
  runtimeVersion: number;
  driverVersion: number;
  reason?: string;
}
interface CudaBinding {
  DevBuf: new (bytes: number) => NativeDevBuf;
  Stream: new () => NativeStream;
  encode(s: NativeStream, o: object, seed: unknown, x: NativeDevBuf, xo: number, n: number, out: NativeDevBuf, oo: number, cap: number, async: boolean): number | Promise<number>;
  decode(s: NativeStream, p: NativeDevBuf, po: number, len: number, out: NativeDevBuf, oo: number, n: number, add: boolean, alpha: number, async: boolean): undefined | Promise<undefined>;
  header(s: NativeStream, p: NativeDevBuf, po: number, len: number): { n: number; codec: number };
  copy(s: NativeStream, kind: number, a: unknown, ao: number, b: unknown, bo: number, bytes: number, async: boolean): undefined | Promise<undefined>;
  maxBytes(o: object, n: number): number;
  allocHost(bytes: number): ArrayBuffer;
  time(s: NativeStream, what: string, iters: number, ...args: unknown[]): number;
  probe(): Probe;
}

let native: CudaBinding | null | undefined;
let loadError = '';
let loadedFrom = '';

function candidates(): string[] {
  const plat = `${process.platform}-${process.arch}`;
  const env = process.env.GRADZIP_CUDA_ADDON;
  return [
    ...(env ? [env] : []),
    path.join(packageRoot, 'prebuilds', plat, 'gradzip_cuda.node'),
    path.join(packageRoot, 'build-cuda', 'Release', 'gradzip_cuda.node'),
    path.join(packageRoot, 'build', 'Release', 'gradzip_cuda.node'),
  ];
}

function load(): CudaBinding | null {
  if (native !== undefined) return native;
  native = null;
  const tried: string[] = [];
  for (const p of candidates()) {
    if (!fs.existsSync(p)) { tried.push(p); continue; }
    try {
      native = require(p) as CudaBinding;
      loadedFrom = p;
      return native;
    } catch (e) {
      loadError = `${p}: ${e instanceof Error ? e.message : String(e)}`;
    }
  }
  if (!loadError) loadError = `gradzip_cuda.node not found (looked in ${tried.join(', ')}); build it with scripts/build-cuda.sh (needs nvcc)`;
  return null;
}

let probed: Probe | undefined;
function probe(): Probe | null {
  const b = load();
  if (b === null) return null;
  if (probed === undefined) probed = b.probe();
  return probed;
}

export interface CudaInfo {
  compiled: boolean;
  available: boolean;
  devices: Probe['devices'];
  reason?: string;
  path?: string;
  runtimeVersion?: number;
  driverVersion?: number;
}

/** What info().backends.cuda reports: compiled = the CUDA addon loads; available = a device is usable. */
export function cudaInfo(): CudaInfo {
  const p = probe();
  if (p === null) return { compiled: false, available: false, devices: [], reason: loadError };
  const r: CudaInfo = { compiled: true, available: p.available, devices: p.devices, path: loadedFrom, runtimeVersion: p.runtimeVersion, driverVersion: p.driverVersion };
  if (!p.available) r.reason = `${p.reason ?? 'no CUDA device'}; device arrays are unavailable, the CPU backend (Float32Array) works as usual`;
  return r;
}
export { cudaInfo as info };

function cuda(): CudaBinding {
  const b = load();
  if (b === null) throw new GradzipError('ERR_GRADZIP_CUDA', `CUDA backend not available: ${loadError}`);
  const p = probe();
  if (p !== null && !p.available)
    throw new GradzipError('ERR_GRADZIP_CUDA', `CUDA backend not available: ${p.reason ?? 'no device'}; use Float32Array inputs (CPU backend)`);
  return b;
}

function call<T>(f: () => T): T {
  try { return f(); } catch (e) { throw convert(e); }
}
function callAsync<T>(f: () => T | Promise<T>): Promise<T> {
  try { return Promise.resolve(f()).then(undefined, (e) => { throw convert(e); }); } catch (e) { return Promise.reject(convert(e)); }
}
const bad = (m: string): never => { throw new GradzipError('ERR_GRADZIP_INVALID_ARG', m); };

// ------------------------------------------------------------------------------------------ streams
/** A CUDA stream with its own host worker: async operations on one stream run in order. */
export class Stream {
  /** @internal */ readonly _s: NativeStream;
  constructor() { this._s = call(() => new (cuda().Stream)()); }
  /** Blocks until the stream's queued work is done (use the async operations to stay off the event loop). */
  synchronize(): void { call(() => this._s.synchronize()); }
  destroy(): void { call(() => this._s.destroy()); }
}
let defStream: Stream | undefined;
/** The stream used when none is given. */
export function defaultStream(): Stream {
  if (defStream === undefined) defStream = new Stream();
  return defStream;
}
const streamOf = (s?: Stream): NativeStream => (s ?? defaultStream())._s;

// ------------------------------------------------------------------------------------------ device arrays
export type DeviceDType = 'f32' | 'u8';
type HostArray = Float32Array | Uint8Array;

/** Device memory: `length` elements of `dtype` (f32 tensors, u8 packets). byteLength <= the allocation. */
export class DeviceArray {
  /** @internal */ readonly _buf: NativeDevBuf;
  /** @internal */ _bytes: number;
  readonly dtype: DeviceDType;
  private constructor(buf: NativeDevBuf, dtype: DeviceDType, bytes: number) { this._buf = buf; this.dtype = dtype; this._bytes = bytes; }

  /** Allocates `length` elements (uninitialized). */
  static alloc(length: number, dtype: DeviceDType = 'f32'): DeviceArray {
    if (!Number.isSafeInteger(length) || length < 0) bad(`DeviceArray.alloc: length must be a safe integer >= 0, got ${String(length)}`);
    if (dtype !== 'f32' && dtype !== 'u8') bad(`DeviceArray.alloc: dtype must be 'f32' or 'u8'`);
    const bytes = length * (dtype === 'f32' ? 4 : 1);
    return new DeviceArray(call(() => new (cuda().DevBuf)(bytes)), dtype, bytes);
  }
  /** A device copy of a host Float32Array (f32) or Uint8Array (u8, e.g. a packet). */
  static from(host: HostArray, stream?: Stream): DeviceArray {
    const d = DeviceArray.alloc(host.length, host instanceof Float32Array ? 'f32' : 'u8');
    d.upload(host, stream);
    return d;
  }
  static async fromAsync(host: HostArray, stream?: Stream): Promise<DeviceArray> {
    const d = DeviceArray.alloc(host.length, host instanceof Float32Array ? 'f32' : 'u8');
    await d.uploadAsync(host, stream);
    return d;
  }
  /** @internal */ static _wrap(buf: NativeDevBuf, dtype: DeviceDType, bytes: number): DeviceArray { return new DeviceArray(buf, dtype, bytes); }

  get byteLength(): number { return this._bytes; }
  get length(): number { return this.dtype === 'f32' ? this._bytes / 4 : this._bytes; }
  get freed(): boolean { return this._buf.freed; }

  private checkHost(h: unknown, what: string): HostArray {
    const ok = this.dtype === 'f32' ? h instanceof Float32Array : h instanceof Uint8Array;
    if (!ok) bad(`${what}: expected a ${this.dtype === 'f32' ? 'Float32Array' : 'Uint8Array'}`);
    const a = h as HostArray;
    if (a.byteLength !== this._bytes) bad(`${what}: host array has ${a.length} elements, the device array ${this.length}`);
    return a;
  }
  upload(src: HostArray, stream?: Stream): this {
    const a = this.checkHost(src, 'upload');
    call(() => cuda().copy(streamOf(stream), 0, this._buf, 0, a, 0, a.byteLength, false));
    return this;
  }
  uploadAsync(src: HostArray, stream?: Stream): Promise<this> {
    return callAsync(() => {
      const a = this.checkHost(src, 'uploadAsync');
      return cuda().copy(streamOf(stream), 0, this._buf, 0, a, 0, a.byteLength, true);
    }).then(() => this);
  }
  /** Copies to the host (a new array, or `dst` of the same length; a pinned buffer from allocPinned is fastest). */
  download(dst?: HostArray, stream?: Stream): HostArray {
    const a = dst ?? (this.dtype === 'f32' ? new Float32Array(this.length) : new Uint8Array(this.length));
    this.checkHost(a, 'download');
    call(() => cuda().copy(streamOf(stream), 1, a, 0, this._buf, 0, a.byteLength, false));
    return a;
  }
  downloadAsync(dst?: HostArray, stream?: Stream): Promise<HostArray> {
    return callAsync(() => {
      const a = dst ?? (this.dtype === 'f32' ? new Float32Array(this.length) : new Uint8Array(this.length));
      this.checkHost(a, 'downloadAsync');
      return (cuda().copy(streamOf(stream), 1, a, 0, this._buf, 0, a.byteLength, true) as Promise<undefined>).then(() => a);
    });
  }
  /** Device-to-device copy of all bytes of src (same byteLength). */
  copyFrom(src: DeviceArray, stream?: Stream): this {
    if (src.byteLength !== this._bytes) bad('copyFrom: byte lengths differ');
    call(() => cuda().copy(streamOf(stream), 2, this._buf, 0, src._buf, 0, this._bytes, false));
    return this;
  }
  /** Frees the device memory now (otherwise the garbage collector does it). */
  free(): void { this._buf.free(); }
}

export function isDeviceArray(x: unknown): x is DeviceArray { return x instanceof DeviceArray; }

/** Page-locked host memory (fast, truly asynchronous transfers); freed when the ArrayBuffer is collected. */
export function allocPinned(bytes: number): ArrayBuffer {
  if (!Number.isSafeInteger(bytes) || bytes < 0) bad('allocPinned: bytes must be a safe integer >= 0');
  return call(() => cuda().allocHost(bytes));
}

// ------------------------------------------------------------------------------------------ codecs on device
export interface DeviceCompressOptions { seed?: number | bigint; out?: DeviceArray; stream?: Stream }
export interface DeviceDecompressOptions { stream?: Stream }

function nativeOptions(c: Compressor): object {
  const i = compressorInternals(c);
  if (i === undefined) bad('expected a compressor made by gradzip (qsgd, terngrad, onebit, topk, randomk, nonuniform)');
  return (i as NonNullable<typeof i>).native;
}
function checkInput(x: unknown): DeviceArray {
  if (!(x instanceof DeviceArray) || x.dtype !== 'f32') bad('device compress: input must be an f32 DeviceArray');
  return x as DeviceArray;
}
function readOpts(o: unknown): DeviceCompressOptions {
  if (o === undefined) return {};
  if (o === null || typeof o !== 'object') bad('compress options must be an object');
  for (const k of Object.keys(o as object)) if (k !== 'seed' && k !== 'out' && k !== 'stream') bad(`compress: unknown option '${k}' (expected seed, out, stream)`);
  const r = o as DeviceCompressOptions;
  if (r.out !== undefined && !(r.out instanceof DeviceArray && r.out.dtype === 'u8')) bad('compress: out must be a u8 DeviceArray');
  if (r.stream !== undefined && !(r.stream instanceof Stream)) bad('compress: stream must be a Stream');
  return r;
}

function prepare(c: Compressor, xv: unknown, ov: unknown) {
  const x = checkInput(xv);
  const o = readOpts(ov);
  const opts = nativeOptions(c);
  const n = x.length;
  const cap = call(() => cuda().maxBytes(opts, n));
  const out = o.out ?? DeviceArray.alloc(cap, 'u8');
  if (out._buf.byteLength < cap) bad(`compress: out has ${out._buf.byteLength} bytes, maxCompressedBytes(${n}) = ${cap}`);
  return { x, o, opts, n, cap, out };
}

/** Compresses a device array into a device packet (u8 DeviceArray; byteLength = packet length). */
export function compressDevice(c: Compressor, x: DeviceArray, opts?: DeviceCompressOptions): DeviceArray {
  const p = prepare(c, x, opts);
  const len = call(() => cuda().encode(streamOf(p.o.stream), p.opts, p.o.seed, p.x._buf, 0, p.n, p.out._buf, 0, p.cap, false)) as number;
  return DeviceArray._wrap(p.out._buf, 'u8', len);
}
export function compressDeviceAsync(c: Compressor, x: DeviceArray, opts?: DeviceCompressOptions): Promise<DeviceArray> {
  return callAsync(() => {
    const p = prepare(c, x, opts);
    return (cuda().encode(streamOf(p.o.stream), p.opts, p.o.seed, p.x._buf, 0, p.n, p.out._buf, 0, p.cap, true) as Promise<number>)
      .then((len) => DeviceArray._wrap(p.out._buf, 'u8', len));
  });
}

function packetOnDevice(packet: unknown, stream?: Stream): DeviceArray {
  if (packet instanceof DeviceArray) {
    if (packet.dtype !== 'u8') bad('decompress: a device packet is a u8 DeviceArray');
    return packet;
  }
  if (packet instanceof Uint8Array) return DeviceArray.from(packet, stream);
  return bad('decompress: packet must be a Uint8Array or a u8 DeviceArray');
}

function decodeArgs(packet: unknown, out: unknown, add: boolean, o?: DeviceDecompressOptions) {
  const s = streamOf(o?.stream);
  const pk = packetOnDevice(packet, o?.stream);
  const h = call(() => cuda().header(s, pk._buf, 0, pk.byteLength));
  let dst: DeviceArray;
  if (out === undefined) {
    if (add) bad('decompressAdd: acc is required');
    dst = DeviceArray.alloc(h.n, 'f32');
  } else {
    if (!(out instanceof DeviceArray) || out.dtype !== 'f32') bad('decompress: out must be an f32 DeviceArray');
    dst = out as DeviceArray;
    if (dst.length !== h.n) bad(`decompress: out has ${dst.length} elements, the packet holds ${h.n}`);
  }
  return { s, pk, dst, n: h.n };
}

/** Decodes a packet (host Uint8Array or device packet) into a device array (new, or `out` with exactly n elements). */
export function decompressDevice(packet: Uint8Array | DeviceArray, out?: DeviceArray, opts?: DeviceDecompressOptions): DeviceArray {
  const a = decodeArgs(packet, out, false, opts);
  call(() => cuda().decode(a.s, a.pk._buf, 0, a.pk.byteLength, a.dst._buf, 0, a.n, false, 1, false));
  return a.dst;
}
export function decompressDeviceAsync(packet: Uint8Array | DeviceArray, out?: DeviceArray, opts?: DeviceDecompressOptions): Promise<DeviceArray> {
  return callAsync(() => {
    const a = decodeArgs(packet, out, false, opts);
    return (cuda().decode(a.s, a.pk._buf, 0, a.pk.byteLength, a.dst._buf, 0, a.n, false, 1, true) as Promise<undefined>).then(() => a.dst);
  });
}
function checkAlpha(alpha: unknown): number {
  if (typeof alpha !== 'number' || !Number.isFinite(alpha)) bad('decompressAdd: alpha must be a finite number');
  return alpha as number;
}
/** acc += alpha * decompress(packet) on the device (multiply, then add); acc is untouched when the packet is corrupt. */
export function decompressAddDevice(packet: Uint8Array | DeviceArray, acc: DeviceArray, alpha = 1, opts?: DeviceDecompressOptions): DeviceArray {
  const al = checkAlpha(alpha);
  const a = decodeArgs(packet, acc, true, opts);
  call(() => cuda().decode(a.s, a.pk._buf, 0, a.pk.byteLength, a.dst._buf, 0, a.n, true, al, false));
  return a.dst;
}
export function decompressAddDeviceAsync(packet: Uint8Array | DeviceArray, acc: DeviceArray, alpha = 1, opts?: DeviceDecompressOptions): Promise<DeviceArray> {
  return callAsync(() => {
    const al = checkAlpha(alpha);
    const a = decodeArgs(packet, acc, true, opts);
    return (cuda().decode(a.s, a.pk._buf, 0, a.pk.byteLength, a.dst._buf, 0, a.n, true, al, true) as Promise<undefined>).then(() => a.dst);
  });
}

// ------------------------------------------------------------------------------------------ benchmarks
/** Milliseconds per call, CUDA events around `iters` calls after one warm-up (bench/gpu). @internal */
export const timing = {
  copy(dst: DeviceArray, src: DeviceArray, bytes: number, iters: number, stream?: Stream): number {
    return call(() => cuda().time(streamOf(stream), 'copy', iters, dst._buf, src._buf, bytes));
  },
  encode(c: Compressor, x: DeviceArray, out: DeviceArray, iters: number, seed: number | bigint = 1, stream?: Stream): number {
    const opts = nativeOptions(c);
    return call(() => cuda().time(streamOf(stream), 'encode', iters, opts, seed, x._buf, x.length, out._buf, out._buf.byteLength));
  },
  decode(packet: DeviceArray, out: DeviceArray, add: boolean, iters: number, stream?: Stream): number {
    return call(() => cuda().time(streamOf(stream), 'decode', iters, packet._buf, packet.byteLength, out._buf, out.length, add));
  },
};

// ------------------------------------------------------------------------------------------ hook into codecs.ts
// compress(x) / decompress(packet, out) of the public API route device arrays here. A device input gives a
// device packet (a u8 DeviceArray, typed Uint8Array by the hook interface: see docs/CUDA.md).
const hook: DeviceHook = {
  accepts: (x: unknown) => x instanceof DeviceArray,
  compress: (c: Compressor, x: unknown, opts?: CompressOptions) => compressDevice(c, x as DeviceArray, opts as DeviceCompressOptions) as unknown as Uint8Array,
  compressAsync: (c: Compressor, x: unknown, opts?: CompressOptions) => compressDeviceAsync(c, x as DeviceArray, opts as DeviceCompressOptions) as unknown as Promise<Uint8Array>,
  decompress: (packet: Uint8Array, out: unknown, _o?: DecompressOptions) => decompressDevice(packet, out as DeviceArray),
  decompressAsync: (packet: Uint8Array, out: unknown, _o?: DecompressOptions) => decompressDeviceAsync(packet, out as DeviceArray),
  decompressAdd: (packet: Uint8Array, acc: unknown, alpha: number, _o?: DecompressOptions) => decompressAddDevice(packet, acc as DeviceArray, alpha),
  decompressAddAsync: (packet: Uint8Array, acc: unknown, alpha: number, _o?: DecompressOptions) => decompressAddDeviceAsync(packet, acc as DeviceArray, alpha),
};
setDeviceHook(hook);
