// TinyScript non-uniform quantizer through the public API: the paper figure (8 non-uniform levels vs uniform
// QSGD l-inf with 8 and 16 levels on heavy-tailed data), the measured error against its exact expectation, the fit
// and levels carried in the packet, determinism, and hostile packets. Numbers: docs/NONUNIFORM.md.
import { describe, expect, it } from 'vitest';
import * as gz from '../dist/cjs/index.js';
import { rngOpen as rng } from './rng';

const { nonuniform, qsgd, decompress, decompressAdd, inspect, GradzipError } = gz as any;
const F = Math.fround;

// ---------- deterministic data ----------
function gaussians(n: number, seed: number): Float64Array {
  const r = rng(seed), g = new Float64Array(n);
  for (let i = 0; i < n; i += 2) {
    const m = Math.sqrt(-2 * Math.log(r())), t = 2 * Math.PI * r();
    g[i] = m * Math.cos(t);
    if (i + 1 < n) g[i + 1] = m * Math.sin(t);
  }
  return g;
}
/** Heavy-tailed data: products of two independent standard Gaussians. */
function heavy(n: number, seed: number): Float32Array {
  const a = gaussians(n, seed), b = gaussians(n, seed + 1), x = new Float32Array(n);
  for (let i = 0; i < n; i++) x[i] = a[i] * b[i];
  return x;
}
function mse(x: Float32Array, y: Float32Array): number {
  let s = 0;
  for (let i = 0; i < x.length; i++) s += (y[i] - x[i]) ** 2;
  return s / x.length;
}
function crc32c(b: Uint8Array): number {
  let c = ~0;
  for (const byte of b) {
    c ^= byte;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
  }
  return ~c >>> 0;
}
function fixCrc(p: Uint8Array): Uint8Array {
  new DataView(p.buffer, p.byteOffset, p.byteLength).setUint32(p.length - 4, crc32c(p.subarray(0, p.length - 4)), true);
  return p;
}
function expectCode(f: () => unknown, code: string) {
  let err: any;
  try { f(); } catch (e) { err = e; }
  expect(err).toBeInstanceOf(GradzipError);
  expect(err.code).toBe(code);
}

const N = 1 << 20; // ≈ 1e6
const B = 512;

describe('TinyScript figure: 8 non-uniform levels vs uniform (QSGD l-inf) on heavy-tailed data', () => {
  const x = heavy(N, 2024);
  const nu = nonuniform({ levels: 8, bucketSize: B });
  const pn = nu.compress(x, { seed: 1 });
  const yn = decompress(pn);
  const mseNu = mse(x, yn);

  it('non-uniform 8 beats uniform 8 and is near uniform 16 (ratios logged, see docs/NONUNIFORM.md)', () => {
    const u8 = qsgd({ levels: 8, bucketSize: B, norm: 'linf' });
    const u16 = qsgd({ levels: 16, bucketSize: B, norm: 'linf' });
    const mse8 = mse(x, decompress(u8.compress(x, { seed: 1 })));
    const mse16 = mse(x, decompress(u16.compress(x, { seed: 1 })));
    const bits = (p: Uint8Array) => inspect(p).bitsPerElement.toFixed(3);
    const p = inspect(pn).params;
    // eslint-disable-next-line no-console
    console.log(`[nonuniform figure] n=${N} bucket=${B}: MSE nonuniform-8 ${mseNu.toPrecision(5)} (${bits(pn)} bits/elt, k=${p.shape.toFixed(4)}), ` +
      `uniform-8 ${mse8.toPrecision(5)} (${bits(u8.compress(x, { seed: 1 }))}), uniform-16 ${mse16.toPrecision(5)} (${bits(u16.compress(x, { seed: 1 }))}); ` +
      `nu8/u8 = ${(mseNu / mse8).toFixed(3)}, nu8/u16 = ${(mseNu / mse16).toFixed(3)}`);
    expect(mseNu).toBeLessThan(mse8);
    // Regression guards around the measured values (0.36 and 1.39 on this data; docs/NONUNIFORM.md): the MSE
    // itself is pinned to within 0.3% of its exact expectation by the next test, so these margins are wide.
    expect(mseNu / mse8).toBeLessThan(0.45);
    expect(mseNu / mse16).toBeLessThan(1.6);
  });

  it('the measured MSE equals its exact expectation from the levels in the packet (within 5 SE)', () => {
    // Each coordinate rounds to lo = M q_t or hi = M q_{t+1}, up with probability P = trunc(p * 65536) / 65536
    // (FORMAT 3.6, float32 arithmetic reproduced with Math.fround). Its squared error D² has mean
    // (1-P)(lo-|x|)² + P(hi-|x|)² and variance E[D⁴] - E[D²]²; the sum over i is compared within 5 SE.
    const q: number[] = inspect(pn).params.levelTable;
    const L = q.length - 1;
    let mean = 0, vari = 0;
    for (let s = 0; s < N; s += B) {
      let M = 0;
      for (let i = s; i < s + B; i++) M = Math.max(M, Math.abs(x[i]));
      const rM = F(1 / M);
      for (let i = s; i < s + B; i++) {
        let a = F(Math.abs(x[i]) * rM);
        a = a < 1 ? a : 1;
        let t = 0;
        while (t + 1 < L && q[t + 1] <= a) t++;
        let p = F(F(a - q[t]) / F(q[t + 1] - q[t]));
        p = p < 1 ? p : 1;
        const P = Math.trunc(F(p * 65536)) / 65536;
        const ax = Math.abs(x[i]);
        const dl = (F(M * q[t]) - ax) ** 2, dh = (F(M * q[t + 1]) - ax) ** 2;
        const m1 = (1 - P) * dl + P * dh, m2 = (1 - P) * dl * dl + P * dh * dh;
        mean += m1;
        vari += m2 - m1 * m1;
      }
    }
    const measured = mseNu * N;
    expect(Math.abs(measured - mean)).toBeLessThanOrEqual(5 * Math.sqrt(vari) + 1e-9 * mean);
  });
});

describe('nonuniform packet contents and determinism', () => {
  const x = heavy(50000, 7);

  it('carries the fitted shape, scale and strictly increasing levels 0 = q0 < … < qL = 1', () => {
    for (const levels of [1, 2, 5, 8, 16, 64]) {
      const p = inspect(nonuniform({ levels, bucketSize: 256 }).compress(x, { seed: 3 })).params;
      expect(p.levels).toBe(levels);
      expect(p.levelTable.length).toBe(levels + 1);
      expect(p.levelTable[0]).toBe(0);
      expect(p.levelTable[levels]).toBe(1);
      for (let t = 1; t <= levels; t++) expect(p.levelTable[t]).toBeGreaterThan(p.levelTable[t - 1]);
      expect(p.shape).toBeGreaterThanOrEqual(0.05);
      expect(p.shape).toBeLessThanOrEqual(20);
      expect(p.scale).toBeGreaterThan(0);
    }
  });

  it('a given shape travels as given (f32) and changes the levels', () => {
    const a = inspect(nonuniform({ shape: 0.5 }).compress(x, { seed: 3 })).params;
    const b = inspect(nonuniform({ shape: 2 }).compress(x, { seed: 3 })).params;
    expect(a.shape).toBe(0.5);
    expect(b.shape).toBe(2);
    // heavier tail (smaller k) puts the first level lower
    expect(a.levelTable[1]).toBeLessThan(b.levelTable[1]);
  });

  it('one tensor-wide bucket of Weibull data: the moment fit recovers k within 5 standard errors', () => {
    // With a single bucket, |x|/M is an exactly scaled Weibull sample, so k̂ is the plain moment estimator; its
    // standard error by the delta method (R = m2/m1², Var R̂ from the Weibull moments Γ(1 + r/k)) is
    // 0.00240 / 0.00195 / 0.00308 for k = 0.5 / 1 / 2 at n = 2^18 (as computed in native/tests/test_nonuniform.cc,
    // test_fit, scaled from its N = 400000 by sqrt(400000 / 2^18)).
    const se: Record<number, number> = { 0.5: 0.0024, 1: 0.00195, 2: 0.00308 };
    for (const k of [0.5, 1, 2]) {
      const n = 1 << 18, r = rng(900 + k * 10), w = new Float32Array(n);
      for (let i = 0; i < n; i++) w[i] = (i & 1 ? 1 : -1) * 3.5 * (-Math.log(r())) ** (1 / k);
      const p = inspect(nonuniform({ bucketSize: n }).compress(w, { seed: 1 })).params;
      expect(Math.abs(p.shape - k)).toBeLessThan(5 * se[k]);
    }
  });

  it('same seed ⇒ same bytes: sync, async, 1 and 2 threads, scalar and SIMD', async () => {
    const ref = nonuniform({ levels: 8, bucketSize: 512 }).compress(x, { seed: 11 });
    expect(await nonuniform({ levels: 8 }).compressAsync(x, { seed: 11 })).toEqual(ref);
    expect(nonuniform({ threads: 1 }).compress(x, { seed: 11 })).toEqual(ref);
    expect(nonuniform({ threads: 2 }).compress(x, { seed: 11 })).toEqual(ref);
    expect(nonuniform({ forceScalar: true }).compress(x, { seed: 11 })).toEqual(ref);
    expect(nonuniform().compress(x, { seed: 12 })).not.toEqual(ref);
  });

  it('decompressAdd adds alpha * decompress', () => {
    const p = nonuniform({ levels: 5, bucketSize: 100 }).compress(x, { seed: 2 });
    const y = decompress(p);
    const acc = new Float32Array(x.length).map((_, i) => (i % 7) - 3);
    const want = acc.map((a, i) => F(a + F(0.25 * y[i])));
    decompressAdd(p, acc, 0.25);
    expect(acc).toEqual(want);
  });

  it('non-finite input is ERR_GRADZIP_NONFINITE unless nonFinite: "zero"', () => {
    const v = x.slice(0, 1000);
    v[517] = NaN;
    expectCode(() => nonuniform().compress(v, { seed: 1 }), 'ERR_GRADZIP_NONFINITE');
    v[517] = -Infinity;
    expectCode(() => nonuniform().compress(v, { seed: 1 }), 'ERR_GRADZIP_NONFINITE');
    const y = decompress(nonuniform({ nonFinite: 'zero' }).compress(v, { seed: 1 }));
    expect(y[517]).toBe(0);
  });

  it('hostile payloads (valid CRC): a level index above L, a negative bucket max -> CORRUPT, acc untouched', () => {
    const v = x.slice(0, 1000);
    const good: Uint8Array = nonuniform({ levels: 8, bucketSize: 100 }).compress(v, { seed: 1 });
    const info = inspect(good);
    const payloadStart = good.length - 4 - info.payloadBytes;
    const W = 5, bucketBytes = 4 + Math.ceil((100 * W) / 8);
    const acc = new Float32Array(1000).fill(2);
    for (const mutate of [
      (p: Uint8Array) => { const o = payloadStart + 3 * bucketBytes + 4; p[o] = (p[o] & 0xe0) | (15 << 1) | 0; },  // ζ = 15 > 8
      (p: Uint8Array) => { new DataView(p.buffer, p.byteOffset).setFloat32(payloadStart + 9 * bucketBytes, -1, true); },
      (p: Uint8Array) => { new DataView(p.buffer, p.byteOffset).setFloat32(payloadStart, NaN, true); },
    ]) {
      const bad = good.slice();
      mutate(bad);
      fixCrc(bad);
      expectCode(() => decompress(bad), 'ERR_GRADZIP_CORRUPT');
      const a = acc.slice();
      expectCode(() => decompressAdd(bad, a, 1), 'ERR_GRADZIP_CORRUPT');
      expect(a).toEqual(acc);
    }
  });
});
