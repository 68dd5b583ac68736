// Shared helpers of the GPU suite (plain node:test; no node_modules needed: it loads the built dist/ and addons).
import { createRequire } from 'node:module';
const require = createRequire(import.meta.url);
export const gz = require('../../dist/cjs/index.js');
export const cuda = require('../../dist/cjs/cuda.js');
export const info = cuda.cudaInfo();
/** false when a GPU is usable, else the reason (node:test prints it as the skip message). */
export const skip = info.available ? false : `no usable CUDA device: ${info.reason ?? 'unknown'}`;

// xorshift128+ -> deterministic data
export function rng(seed) {
  let a = BigInt.asUintN(64, BigInt(seed) * 0x9E3779B97F4A7C15n + 1n), b = BigInt.asUintN(64, a ^ 0xDEADBEEFCAFEn);
  let s0 = Number(a & 0xffffffffn) >>> 0 || 1, s1 = Number(b & 0xffffffffn) >>> 0 || 2;
  return () => { // 32-bit xorshift (fast enough for test sizes)
    s0 ^= s0 << 13; s0 >>>= 0; s0 ^= s0 >>> 17; s0 ^= s0 << 5; s0 >>>= 0;
    s1 = (s1 + 0x6D2B79F5) >>> 0;
    return ((s0 ^ s1) >>> 0) / 4294967296;
  };
}
export function gaussian(n, seed, opts = {}) {
  const r = rng(seed);
  const x = new Float32Array(n);
  for (let i = 0; i < n; i += 2) {
    const u = Math.max(r(), 1e-12), v = r();
    const m = Math.sqrt(-2 * Math.log(u));
    x[i] = m * Math.cos(2 * Math.PI * v);
    if (i + 1 < n) x[i + 1] = m * Math.sin(2 * Math.PI * v);
  }
  if (opts.zeros) for (let i = 0; i < n; i += 3) x[i] = 0;
  if (opts.negzero) for (let i = 1; i < n; i += 11) x[i] = -0;
  if (opts.ties) for (let i = 0; i < n; i++) x[i] = Math.round(x[i] * 4) / 4;
  if (opts.scale !== undefined) for (let i = 0; i < n; i++) x[i] *= opts.scale;
  return x;
}
export function firstDiff(a, b) {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return i;
  return a.length === b.length ? -1 : n;
}
export function assertSameBytes(assert, got, want, what) {
  const d = firstDiff(got, want);
  if (d !== -1)
    assert.fail(`${what}: ${got.length} vs ${want.length} bytes, first difference at byte ${d} (got ${got[d]}, want ${want[d]})`);
}
export function bits(f32) { return new Uint32Array(f32.buffer, f32.byteOffset, f32.length); }
