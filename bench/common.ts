// Shared machinery of the gradzip benchmarks (benny suites, one per kernel and size).
// GB/s = f32 input bytes (4 n) / time per call, for compress, decompress and decompressAdd alike.
// ratio = GB/s / memcpy GB/s of the same suite (Float32Array dst.set(src) of the same size, timed in the same run).
import b from 'benny';
import os from 'node:os';
import path from 'node:path';
import type * as GZ from '../dist/cjs/index';

// The package, as built (dist/bench/*.js sits beside dist/cjs).
// eslint-disable-next-line @typescript-eslint/no-var-requires
export const gz: typeof GZ = require(path.join(__dirname, '..', 'cjs', 'index.js'));

export interface Args {
  quick: boolean;
  kernels: string[] | null;
  sizes: number[];
  threads: number[];
  maxTime: number;
  outDir: string;
  tag: string;
}

export const KiB = 1024, MiB = 1024 * 1024;
export const FULL_SIZES = [4 * KiB, 16 * KiB, 64 * KiB, 256 * KiB, MiB, 4 * MiB, 16 * MiB, 64 * MiB, 256 * MiB];
export const QUICK_SIZES = [64 * KiB, MiB, 16 * MiB, 64 * MiB];

export function fmtSize(bytes: number): string {
  return bytes >= MiB ? `${bytes / MiB} MiB` : `${bytes / KiB} KiB`;
}
export function parseSize(s: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([kKmMgG]?)/.exec(s);
  if (!m) throw new Error(`bad size ${s}`);
  const mult = { '': 1, k: KiB, m: MiB, g: 1024 * MiB }[m[2].toLowerCase() as '' | 'k' | 'm' | 'g'];
  return Math.round(Number(m[1]) * mult);
}

export interface Row {
  kernel: string;
  codec: string;       // e.g. 'qsgd-fixed'
  op: 'compress' | 'decompress' | 'decompressAdd' | 'memcpy' | 'Buffer.copy' | 'naive-ts-compress';
  threads: number;
  bytes: number;       // f32 input bytes (4 n)
  n: number;
  meanMs: number;
  medianMs: number;
  rme: number;         // relative margin of error (%), from benchmark.js
  samples: number;
  gbps: number;        // from the best sample (fastest cycle), as in PERF-NOTES (best of N)
  memcpyGbps: number;  // same suite
  ratio: number;       // gbps / memcpyGbps
  compressionRatio?: number; // 4n / packet bytes
  relError?: number;         // ||decode(compress(x)) - x|| / ||x||
}

/** Deterministic Gaussian data (xorshift32 + Box-Muller); fast enough for 64 M elements. */
export function gaussianData(n: number, seed = 12345): Float32Array {
  const x = new Float32Array(n);
  let s = seed >>> 0 || 1;
  const next = () => { s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0; return (s + 0.5) / 4294967296; };
  for (let i = 0; i < n; i += 2) {
    const r = Math.sqrt(-2 * Math.log(next())), t = 2 * Math.PI * next();
    x[i] = r * Math.cos(t);
    if (i + 1 < n) x[i + 1] = r * Math.sin(t);
  }
  return x;
}

export function relError(x: Float32Array, y: Float32Array, limit = 1 << 22): number {
  let e = 0, v = 0;
  const m = Math.min(x.length, limit);
  for (let i = 0; i < m; i++) { const d = y[i] - x[i]; e += d * d; v += x[i] * x[i]; }
  return v > 0 ? Math.sqrt(e / v) : 0;
}

export function machine() {
  let info: unknown = null;
  try { info = gz.info(); } catch { /* addon missing */ }
  return { cpu: os.cpus()[0]?.model ?? 'unknown', cores: os.cpus().length, node: process.version, platform: `${os.platform()} ${os.release()}`, loadavg: os.loadavg(), gradzip: info };
}

export interface Case {
  name: string;           // unique within the suite
  codec: string;
  op: Row['op'];
  threads: number;
  fn: () => unknown;
  compressionRatio?: number;
  relError?: number;
}

/** Runs one benny suite (all cases of one kernel at one size, memcpy first and last) and returns rows. */
export async function runSuite(kernel: string, bytes: number, cases: Case[], args: Args, mem?: { src: Float32Array; dst: Float32Array }): Promise<Row[]> {
  const n = bytes / 4;
  const src = mem?.src ?? new Float32Array(n).fill(1.5), dst = mem?.dst ?? new Float32Array(n);
  const bsrc = Buffer.from(src.buffer), bdst = Buffer.from(dst.buffer);
  const all: Case[] = [
    { name: 'memcpy', codec: 'memcpy', op: 'memcpy', threads: 1, fn: () => dst.set(src) },
    { name: 'Buffer.copy', codec: 'memcpy', op: 'Buffer.copy', threads: 1, fn: () => bsrc.copy(bdst) },
    ...cases,
    { name: 'memcpy (again)', codec: 'memcpy', op: 'memcpy', threads: 1, fn: () => dst.set(src) },
  ];
  const opts = { minSamples: args.quick ? 3 : 5, maxTime: args.maxTime, delay: 0.002 };
  const got = new Map<string, { best: number; mean: number; median: number; rme: number; samples: number }>();
  const gb = (sec: number) => bytes / sec / 1e9;
  console.log(`\n${kernel} ${fmtSize(bytes)} (n = ${n})`);
  await b.suite(
    `${kernel} ${fmtSize(bytes)}`,
    ...all.map((c) => b.add(c.name, c.fn, opts)),
    b.cycle((r: any) => {
      const c = all.find((x) => x.name === r.name)!;
      const d = r.details;
      got.set(r.name, { best: d.min, mean: d.mean, median: d.median, rme: d.relativeMarginOfError, samples: r.samples });
      const extra = [c.compressionRatio ? `size ratio ${c.compressionRatio.toFixed(2)}x` : '', c.relError !== undefined ? `rel.err ${c.relError.toExponential(2)}` : ''].filter(Boolean).join(', ');
      console.log(`  ${r.name.padEnd(34)} ${gb(d.min).toFixed(2).padStart(7)} GB/s best, ${gb(d.mean).toFixed(2).padStart(7)} mean  ±${r.margin.toFixed(1)}% (${r.samples})${extra ? '  ' + extra : ''}`);
      return undefined;
    }),
  );
  // memcpy of the same run: the better of its two runs (before and after the codec cases)
  const memBest = Math.min(...['memcpy', 'memcpy (again)'].map((k) => got.get(k)?.best ?? Infinity));
  const memcpyGbps = gb(memBest);
  const rows: Row[] = [];
  for (const c of all) {
    if (c.name === 'memcpy (again)') continue;
    const r = got.get(c.name);
    if (!r) continue;
    const best = c.op === 'memcpy' ? memBest : r.best;
    rows.push({
      kernel, codec: c.codec, op: c.op, threads: c.threads, bytes, n,
      meanMs: r.mean * 1e3, medianMs: r.median * 1e3, rme: r.rme, samples: r.samples,
      gbps: gb(best), memcpyGbps, ratio: gb(best) / memcpyGbps,
      compressionRatio: c.compressionRatio, relError: c.relError,
    });
  }
  console.log(`  -> ratio to memcpy (${memcpyGbps.toFixed(2)} GB/s): ${rows.filter((r) => r.op !== 'memcpy' && r.op !== 'Buffer.copy').map((r) => `${r.codec} ${r.op} t${r.threads} ${r.ratio.toFixed(2)}`).join('; ')}`);
  return rows;
}

export interface CodecConfig {
  codec: string;   // display name
  make: (threads: number) => GZ.Compressor;
}

/**
 * The standard cases of a kernel at one size: for each codec config and thread count, compress (into a caller
 * buffer: no allocation in the loop), decompress (into a caller buffer) and decompressAdd.
 */
export function codecCases(configs: CodecConfig[], x: Float32Array, args: Args, shared: { out: Float32Array; acc: Float32Array }): Case[] {
  const cases: Case[] = [];
  for (const cfg of configs) {
    const c1 = cfg.make(1);
    const pktBuf = new Uint8Array(c1.maxCompressedBytes(x.length));
    const pkt = c1.compress(x, { seed: 1, out: pktBuf }).slice();
    const dec = gz.decompress(pkt, shared.out);
    const compressionRatio = (4 * x.length) / pkt.length;
    const err = relError(x, dec);
    for (const t of args.threads) {
      const c = cfg.make(t);
      let seed = 1;
      cases.push({ name: `${cfg.codec} compress t${t}`, codec: cfg.codec, op: 'compress', threads: t, compressionRatio, relError: err,
        fn: () => c.compress(x, { seed: seed++, out: pktBuf }) });
      cases.push({ name: `${cfg.codec} decompress t${t}`, codec: cfg.codec, op: 'decompress', threads: t,
        fn: () => gz.decompress(pkt, shared.out, { threads: t }) });
      cases.push({ name: `${cfg.codec} decompressAdd t${t}`, codec: cfg.codec, op: 'decompressAdd', threads: t,
        fn: () => gz.decompressAdd(pkt, shared.acc, 1e-3, { threads: t }) });
    }
  }
  return cases;
}

/** A kernel benchmark: its codec configurations, plus optional extra cases (e.g. the naive TypeScript baseline). */
export interface Kernel {
  name: string;
  configs: CodecConfig[];
  extra?: (x: Float32Array, args: Args) => Case[];
}

export async function runKernel(k: Kernel, args: Args, dataCache: Map<number, Float32Array>): Promise<Row[]> {
  const rows: Row[] = [];
  for (const bytes of args.sizes) {
    const n = bytes / 4;
    let x = dataCache.get(n);
    if (!x) { dataCache.clear(); (global as any).gc?.(); x = gaussianData(n); dataCache.set(n, x); }
    const shared = { out: new Float32Array(n), acc: new Float32Array(n) };
    const cases = [...codecCases(k.configs, x, args, shared), ...(k.extra ? k.extra(x, args) : [])];
    // memcpy copies the input into the decode buffer (no extra 2 x 256 MiB)
    rows.push(...(await runSuite(k.name, bytes, cases, args, { src: x, dst: shared.out })));
    (global as any).gc?.();
  }
  return rows;
}
