// Typed loader of the CPU addon. node-gyp-build resolves it from the package root: build/Release (a local
// compile) first, then prebuilds/<platform>-<arch>/ (shipped in the npm tarball, loads with install scripts
// off). Loaded lazily on first use so `require('gradzip')` and the export list never need the addon.
import path from 'node:path';
import { GradzipError } from './errors';

/** Opaque handle of a gz::Params copied from a validated options object (see makeParams). */
export type ParamsHandle = { readonly __gradzipParams: unique symbol };

/** The options object the TypeScript layer builds once per compressor (numbers are the enums of gradzip.h). */
export interface NativeOptions {
  codec: number;
  levels: number;
  bucket: number;
  norm: number;
  coding: number;
  hasK: boolean;
  k: number;
  ratio: number;
  vt: number;
  shape: number;
  nonfiniteZero: boolean;
  threads: number;
  forceScalar: boolean;
}

export type Seed = number | bigint | undefined;

export interface RawHeader {
  version: number;
  codec: number;
  flags: number;
  n: number;
  seed: bigint;
  bucket: number;
  paramBytes: number;
  chunkCount: number;
  chunkElems: number;
  payloadBytes: number;
  totalBytes: number;
  levels: number;
  norm: number;
  coding: number;
  k: number;
  vt: number;
  shape?: number;
  scale?: number;
  levelTable?: Float32Array;
}

export interface RawInfo {
  cpu: { avx2: boolean; bmi2: boolean; fma: boolean; f16c: boolean; sse42: boolean; pclmul: boolean; hardwareThreads: number };
  threads: number;
  formatVersion: number;
  maxN: number;
  napiVersion: number;
}

export interface Binding {
  makeParams(o: NativeOptions): ParamsHandle;
  maxBytes(p: ParamsHandle, n: number): number;
  encode(p: ParamsHandle, x: Float32Array, seed: Seed, out?: Uint8Array): Uint8Array | number;
  encodeAsync(p: ParamsHandle, x: Float32Array, seed: Seed, out?: Uint8Array): Promise<Uint8Array | number>;
  decode(pkt: Uint8Array, out: Float32Array | undefined, threads: number, scalar: boolean): Float32Array;
  decodeAsync(pkt: Uint8Array, out: Float32Array | undefined, threads: number, scalar: boolean): Promise<Float32Array>;
  decodeAdd(pkt: Uint8Array, acc: Float32Array, alpha: number, threads: number, scalar: boolean): Float32Array;
  decodeAddAsync(pkt: Uint8Array, acc: Float32Array, alpha: number, threads: number, scalar: boolean): Promise<Float32Array>;
  parse(pkt: Uint8Array): RawHeader;
  efStep(p: ParamsHandle, g: Float32Array, h: Float32Array, scratch: Float32Array, alpha: number, beta: number,
    seed: Seed, out?: Uint8Array): Uint8Array | number;
  efStepAsync(p: ParamsHandle, g: Float32Array, h: Float32Array, scratch: Float32Array, alpha: number, beta: number,
    seed: Seed, out?: Uint8Array): Promise<Uint8Array | number>;
  info(): RawInfo;
  setThreads(t: number): void;
}

/** The package root (dist/cjs/.. /..), where build/ and prebuilds/ live. */
export const packageRoot: string = path.resolve(__dirname, '..', '..');

let cached: Binding | undefined;
let loadError: GradzipError | undefined;

export function binding(): Binding {
  if (cached !== undefined) return cached;
  if (loadError !== undefined) throw loadError;
  try {
    // eslint-disable-next-line @typescript-eslint/no-var-requires
    const load = require('node-gyp-build') as (dir: string) => unknown;
    cached = load(packageRoot) as Binding;
    return cached;
  } catch (e) {
    const why = e instanceof Error ? e.message.split('\n')[0] : String(e);
    loadError = new GradzipError('ERR_GRADZIP_NO_BINDING',
      `gradzip: the native addon could not be loaded for ${process.platform}-${process.arch} ` +
      `(node ${process.versions.node}, N-API ${process.versions.napi}): ${why}\n` +
      'No prebuilt binary fits and none was compiled (npm may have skipped the install script). To fix:\n' +
      '  npm install-scripts approve gradzip && npm rebuild gradzip\n' +
      'or build from source inside the package folder: npx node-gyp rebuild  (needs python3, make and a C++17 compiler)',
      { cause: e });
    throw loadError;
  }
}

/** True when the addon is loadable (never throws). */
export function hasBinding(): boolean {
  try { binding(); return true; } catch { return false; }
}
