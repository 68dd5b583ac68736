// Statistical guarantees of the randomized codecs, checked against the exact distribution of every coordinate.
//
// Method (same for every codec): fix a vector v, compress it with seeds 1..S (S >= 2000), decode, and compare the
// per-coordinate sample mean with v. Each decoded coordinate takes one of two values (stochastic rounding between
// two adjacent levels) or, for random-k, is either 0 or v_i * n/k. Its exact variance sigma_i^2 follows from the
// level gap g_i and the rounding probability p_i: sigma_i^2 = g_i^2 p_i (1 - p_i) (random-k: v_i^2 (n/k - 1)), so
// the standard error of the mean over S seeds is SE_i = sigma_i / sqrt(S). We assert |mean_i - v_i| <= 5 SE_i
// plus two deterministic terms:
//  * FORMAT.md rounds up iff u < T with T = trunc(p * 65536) and u a 16-bit uniform, so
//    P(up) = T / 65536 in (p - 2^-16, p]: the expectation sits *towards zero* by at most g_i * 2^-16. We fold it in
//    one-sidedly: (mean_i - v_i) * sign(v_i) must lie in [-5 SE_i - g_i 2^-16 - eps_i, 5 SE_i + eps_i].
//  * eps_i covers float32 rounding of the scale, of |v_i| * r and of w * zeta: a handful of operations each with
//    relative error 2^-24, bounded generously by 2^-20 * (|v_i| + g_i), plus g_i / S (one count of the binomial:
//    the normal approximation of 5 SE is loose when S p_i is tiny).
// 5 SE is a two-sided normal tail of 5.7e-7 per coordinate; with ~10^4 coordinates checked in this file the chance
// of a false alarm is below 1%, and the seeds are fixed, so the outcome is reproducible.
// Besides the mean, the normalised squared deviations z_i^2 = ((mean_i - v_i) / SE_i)^2 must average to 1 (the
// variance is exactly the two-point variance): their mean over m coordinates is within 1 +- 6 sqrt(2/m).
import { describe, expect, it } from 'vitest';
import * as gz from '../dist/cjs/index.js';
import { rng } from './rng';

const { qsgd, terngrad, onebit, topk, randomk, nonuniform, errorFeedback, decompress } = gz as any;

const S = 2000; // seeds per statistical test
const F = Math.fround;
const U24 = 2 ** -24;

// ---------- deterministic data ----------
function gaussian(n: number, seed: number, scale = 1): Float32Array {
  const r = rng(seed);
  const x = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const u = Math.max(r(), 1e-12), v = r();
    x[i] = scale * Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
  }
  return x;
}
/** Gaussian data with a few hand-picked special coordinates (zeros, -0, a spike, equal entries). */
function testVector(n: number, seed: number): Float32Array {
  const x = gaussian(n, seed);
  x[0] = 0; x[1] = -0; x[5] = 7.5; x[6] = -7.5; x[10] = x[11] = x[12] = 0.25;
  return x;
}
function bucketNorms(v: Float32Array, b: number, norm: 'l2' | 'linf'): number[] {
  const out: number[] = [];
  for (let s = 0; s < v.length; s += b) {
    let acc = 0;
    for (let i = s; i < Math.min(v.length, s + b); i++) acc = norm === 'l2' ? acc + v[i] * v[i] : Math.max(acc, Math.abs(v[i]));
    out.push(norm === 'l2' ? Math.sqrt(acc) : acc);
  }
  return out;
}

interface Moments { sum: Float64Array; sq: Float64Array; count: number }
function newMoments(n: number): Moments { return { sum: new Float64Array(n), sq: new Float64Array(n), count: 0 }; }
function addSample(m: Moments, d: Float32Array, ref?: Float32Array) {
  for (let i = 0; i < d.length; i++) {
    m.sum[i] += d[i];
    const e = ref ? d[i] - ref[i] : d[i];
    m.sq[i] += e * e;
  }
  m.count++;
}

/**
 * Checks the per-coordinate means against v with the two-point model: coordinate i rounds between levels
 * lo_i = |v_i| - gap_i * p_i and lo_i + gap_i with probability p_i. Returns the z^2 statistics for reporting.
 */
function checkTwoPoint(v: Float32Array, m: Moments, gap: (i: number) => number, p: (i: number) => number, label: string) {
  let z2 = 0, nz = 0, worst = 0;
  const bad: string[] = [];
  for (let i = 0; i < v.length; i++) {
    const g = gap(i), pi = p(i);
    const se = g * Math.sqrt(Math.max(0, pi * (1 - pi)) / m.count);
    const eps = 2 ** -20 * (Math.abs(v[i]) + g) + g / m.count;
    const mean = m.sum[i] / m.count;
    const sgn = v[i] < 0 ? -1 : 1;
    const dev = (mean - v[i]) * sgn; // positive = away from zero
    const lo = -5 * se - g * 2 ** -16 - eps, hi = 5 * se + eps;
    if (!(dev >= lo && dev <= hi)) bad.push(`${label} i=${i} v=${v[i]} mean=${mean} dev=${dev} se=${se} gap=${g} p=${pi}`);
    if (se > 0 && pi * (1 - pi) * m.count > 25) { // z^2 only where the normal approximation holds
      const z = (mean - v[i]) / se;
      z2 += z * z; nz++; worst = Math.max(worst, Math.abs(z));
    }
  }
  expect(bad.slice(0, 5), `${bad.length} coordinates outside the 5-SE band`).toEqual([]);
  if (nz > 20) {
    const meanZ2 = z2 / nz;
    expect(Math.abs(meanZ2 - 1), `${label}: mean z^2 = ${meanZ2} over ${nz} coordinates`).toBeLessThan(6 * Math.sqrt(2 / nz));
  }
  return { meanZ2: nz ? z2 / nz : NaN, nz, worst };
}

// ---------- QSGD / TernGrad ----------
describe('qsgd is unbiased, per coordinate, with the exact two-point variance', () => {
  const n = 1100, b = 256, s = 4; // last bucket short (1100 = 4*256 + 76)
  const v = testVector(n, 11);
  // bucket 2 at a tiny scale (N ~ 1.6e-35 < s * 2^-112, where s/N * 65536 overflows float32: FORMAT 3.1's 2^64
  // pre-scaling path)
  for (let i = 2 * b; i < 3 * b; i++) v[i] = F(v[i] * 1e-36);
  for (const norm of ['l2', 'linf'] as const) {
    it(`norm ${norm}: fixed, gamma and sparse give identical values; mean within 5 SE`, () => {
      const codecs = (['fixed', 'gamma', 'sparse'] as const).map((coding) => qsgd({ levels: s, bucketSize: b, norm, coding }));
      const m = newMoments(n);
      for (let seed = 1; seed <= S; seed++) {
        const d0 = decompress(codecs[0].compress(v, { seed }));
        // all three codings quantize identically: the same zeta, hence bit-identical decoded values
        if (seed <= 200) {
          for (const c of codecs.slice(1)) {
            const d = decompress(c.compress(v, { seed }));
            expect(Buffer.from(d.buffer, d.byteOffset, d.byteLength).equals(Buffer.from(d0.buffer, d0.byteOffset, d0.byteLength))).toBe(true);
          }
        }
        addSample(m, d0);
      }
      const N = bucketNorms(v, b, norm);
      const w = (i: number) => N[Math.floor(i / b)] / s;
      const a = (i: number) => (w(i) > 0 ? Math.min(Math.abs(v[i]) / w(i), s) : 0);
      const r = checkTwoPoint(v, m, w, (i) => a(i) - Math.floor(a(i)), `qsgd ${norm}`);
      console.log(`qsgd ${norm} s=${s} b=${b}: mean z^2 = ${r.meanZ2.toFixed(3)} over ${r.nz} coordinates, max |z| = ${r.worst.toFixed(2)}`);
    });
  }
  it('gamma and sparse codings also match fixed at other levels (s = 1, 16, 23)', () => {
    const x = gaussian(3000, 5);
    for (const lv of [1, 16, 23]) {
      for (const norm of ['l2', 'linf']) {
        const f = qsgd({ levels: lv, bucketSize: 512, norm, coding: 'fixed' });
        for (const coding of ['gamma', 'sparse']) {
          const c = qsgd({ levels: lv, bucketSize: 512, norm, coding });
          for (let seed = 1; seed <= 20; seed++) {
            expect(Array.from(decompress(c.compress(x, { seed })))).toEqual(Array.from(decompress(f.compress(x, { seed }))));
          }
        }
      }
    }
  });
});

describe('terngrad is unbiased (values in {-1, 0, 1} * max|v|)', () => {
  it('mean within 5 SE of v', () => {
    const n = 700, b = 64;
    const v = testVector(n, 12);
    const c = terngrad({ bucketSize: b });
    const m = newMoments(n);
    for (let seed = 1; seed <= S; seed++) addSample(m, decompress(c.compress(v, { seed })));
    const N = bucketNorms(v, b, 'linf');
    const g = (i: number) => N[Math.floor(i / b)];
    const r = checkTwoPoint(v, m, g, (i) => (g(i) > 0 ? Math.abs(v[i]) / g(i) : 0), 'terngrad');
    console.log(`terngrad b=${b}: mean z^2 = ${r.meanZ2.toFixed(3)} over ${r.nz}`);
  });
});

// ---------- random-k ----------
describe('randomk is unbiased and includes each index with probability k/n', () => {
  it('mean within 5 SE, inclusion counts within 5 SE of S k/n', () => {
    const n = 500, k = 60;
    const v = gaussian(n, 13);
    for (let i = 0; i < n; i++) if (v[i] === 0) v[i] = 1; // no zeros: inclusion is visible
    const c = randomk({ k });
    const m = newMoments(n);
    const cnt = new Float64Array(n);
    const scale = F(n / k);
    for (let seed = 1; seed <= S; seed++) {
      const d = decompress(c.compress(v, { seed }));
      let nnz = 0;
      for (let i = 0; i < n; i++) {
        if (d[i] !== 0) {
          nnz++; cnt[i]++;
          if (d[i] !== F(v[i] * scale)) throw new Error(`seed ${seed} i=${i}: ${d[i]} != v_i * (float)(n/k) = ${F(v[i] * scale)}`); // exact
        }
      }
      if (nnz !== k) throw new Error(`seed ${seed}: ${nnz} non-zeros, want k = ${k}`);
      addSample(m, d);
    }
    // inclusion: Binomial(S, k/n) per index
    const q = k / n, seInc = Math.sqrt(S * q * (1 - q));
    let worstInc = 0;
    for (let i = 0; i < n; i++) worstInc = Math.max(worstInc, Math.abs(cnt[i] - S * q) / seInc);
    expect(worstInc).toBeLessThan(5);
    // mean: v_i * n/k with probability k/n, else 0  ->  SE = |v_i| sqrt((n/k - 1) / S). Modelled as a two-point
    // variable with gap |v_i| n/k and p = k/n (the same variance); no 2^-16 rounding term applies here (|bias| <= 2^-64).
    const r = checkTwoPoint(v, m, (i) => Math.abs(v[i]) * scale, () => q, 'randomk');
    console.log(`randomk n=${n} k=${k}: worst inclusion |z| = ${worstInc.toFixed(2)}, mean z^2 = ${r.meanZ2.toFixed(3)}`);
  });
});

// ---------- nonuniform (TinyScript) ----------
/** Reads the nonuniform parameter block of FORMAT.md section 3.6: L, shape, scale, levels q_0..q_L. */
function nonuniformLevels(pkt: Uint8Array): number[] {
  const dv = new DataView(pkt.buffer, pkt.byteOffset, pkt.byteLength);
  expect(pkt[5]).toBe(6);
  const L = dv.getUint32(48, true);
  const q: number[] = [];
  for (let t = 0; t <= L; t++) q.push(dv.getFloat32(60 + 4 * t, true));
  return q;
}
describe('nonuniform (TinyScript) is unbiased between adjacent levels', () => {
  for (const shape of [undefined, 0.5]) {
    it(`mean within 5 SE (shape ${shape ?? 'fitted'})`, () => {
      const n = 900, b = 128, L = 8;
      const v = testVector(n, 14);
      const c = nonuniform({ levels: L, bucketSize: b, ...(shape ? { shape } : {}) });
      const first = c.compress(v, { seed: 1 });
      const q = nonuniformLevels(first);
      expect(q[0]).toBe(0); expect(q[L]).toBe(1);
      for (let t = 1; t <= L; t++) expect(q[t]).toBeGreaterThan(q[t - 1]);
      const m = newMoments(n);
      for (let seed = 1; seed <= S; seed++) {
        const pkt = c.compress(v, { seed });
        if (seed <= 3) expect(nonuniformLevels(pkt)).toEqual(q); // the fit depends on the data only
        addSample(m, decompress(pkt));
      }
      const M = bucketNorms(v, b, 'linf');
      const tau = (i: number) => {
        const Mi = M[Math.floor(i / b)];
        if (Mi === 0) return 0;
        const a = Math.min(Math.abs(v[i]) / Mi, 1);
        let t = 0;
        while (t + 1 < L && q[t + 1] <= a) t++;
        return t;
      };
      const gap = (i: number) => M[Math.floor(i / b)] * (q[tau(i) + 1] - q[tau(i)]);
      const p = (i: number) => {
        const Mi = M[Math.floor(i / b)];
        if (Mi === 0) return 0;
        const a = Math.min(Math.abs(v[i]) / Mi, 1), t = tau(i);
        return Math.min((a - q[t]) / (q[t + 1] - q[t]), 1);
      };
      const r = checkTwoPoint(v, m, gap, p, 'nonuniform');
      console.log(`nonuniform L=${L} shape=${shape ?? 'fit'}: mean z^2 = ${r.meanZ2.toFixed(3)} over ${r.nz}; levels ${q.map((x) => x.toFixed(4)).join(' ')}`);
    });
  }
});

// ---------- QSGD variance bound ----------
describe('qsgd variance: E||Q(v) - v||^2 <= min(b/s^2, sqrt(b)/s) ||v||^2 per bucket', () => {
  // The measured mean squared error over S seeds is compared with (1) its exact value
  // sum_i w^2 p_i (1 - p_i) (within 5 SE of the estimator, whose exact variance per seed is
  // sum_i w^4 p_i (1-p_i) (1-2p_i)^2, plus the 2^-16 rounding term w^2 * m * 2^-16) and (2) the bound.
  // The flat vector (all |v_i| equal) is the near-worst case: E = sqrt(b)/s (1 - s/sqrt(b)) ||v||^2.
  const cases: Array<{ name: string; b: number; s: number; v: Float32Array }> = [];
  for (const [b, s] of [[512, 4], [512, 1], [512, 23], [64, 16], [4096, 4]] as const) {
    cases.push({ name: `gaussian b=${b} s=${s}`, b, s, v: gaussian(b * 2, 100 + b + s) });
    const flat = new Float32Array(b * 2);
    for (let i = 0; i < flat.length; i++) flat[i] = i % 3 === 0 ? -1 : 1;
    cases.push({ name: `flat b=${b} s=${s}`, b, s, v: flat });
  }
  const table: string[] = [];
  for (const cs of cases) {
    it(cs.name, () => {
      const { b, s, v } = cs;
      const seeds = b >= 4096 ? 600 : S; // 600 x 8192 elements still gives a relative SE well under 1%
      const c = qsgd({ levels: s, bucketSize: b, norm: 'l2', coding: 'fixed' });
      const B = Math.ceil(v.length / b);
      const mse = new Float64Array(B);
      for (let seed = 1; seed <= seeds; seed++) {
        const d = decompress(c.compress(v, { seed }));
        for (let j = 0; j < B; j++) {
          let e = 0;
          for (let i = j * b; i < Math.min(v.length, (j + 1) * b); i++) e += (d[i] - v[i]) ** 2;
          mse[j] += e / seeds;
        }
      }
      const N = bucketNorms(v, b, 'l2');
      for (let j = 0; j < B; j++) {
        const w = N[j] / s;
        let exact = 0, varE = 0, m = 0;
        for (let i = j * b; i < Math.min(v.length, (j + 1) * b); i++, m++) {
          const a = Math.min(Math.abs(v[i]) / w, s), p = a - Math.floor(a);
          exact += w * w * p * (1 - p);
          varE += w ** 4 * p * (1 - p) * (1 - 2 * p) ** 2;
        }
        const tol = 5 * Math.sqrt(varE / seeds) + w * w * m * 2 ** -16 + 1e-5 * exact;
        expect(Math.abs(mse[j] - exact), `bucket ${j}: measured ${mse[j]} exact ${exact}`).toBeLessThanOrEqual(tol);
        const nv2 = N[j] ** 2;
        const bound = Math.min(m / (s * s), Math.sqrt(m) / s) * nv2;
        expect(mse[j]).toBeLessThanOrEqual(bound);
        // Quantized-PR-SGD Lemma 3: the sharper d/(4 s^2) ||v||^2 also holds (p(1-p) <= 1/4).
        expect(mse[j]).toBeLessThanOrEqual((m / (4 * s * s)) * nv2 * (1 + 1e-3));
        if (j === 0) table.push(`${cs.name.padEnd(22)} measured/||v||^2 = ${(mse[j] / nv2).toFixed(4)}  bound = ${(bound / nv2).toFixed(3)}  tightness = ${(mse[j] / bound).toFixed(3)}`);
      }
      console.log(table[table.length - 1]);
    });
  }
});

// ---------- top-k exact ----------
function f16round(x: number): number {
  // float32 -> float16 round-to-nearest-even with saturation (FORMAT 3.4), returned as a number
  const max = 65504;
  if (Math.abs(x) >= max) return Math.sign(x) * max;
  if (x === 0) return x;
  const a = Math.abs(x);
  let e = Math.floor(Math.log2(a));
  if (2 ** e > a) e--; if (2 ** (e + 1) <= a) e++;
  const q = Math.max(e, -14) - 10; // ulp exponent (subnormals below 2^-14)
  const ulp = 2 ** q;
  let m = a / ulp;
  const fl = Math.floor(m), fr = m - fl;
  m = fr > 0.5 || (fr === 0.5 && fl % 2 === 1) ? fl + 1 : fl;
  const r = m * ulp;
  return Math.sign(x) * Math.min(r, max);
}
function bf16round(x: number): number {
  const f = new Float32Array([x]);
  const u = new Uint32Array(f.buffer);
  const bits = u[0];
  const rounded = (bits + 0x7fff + ((bits >>> 16) & 1)) >>> 0;
  u[0] = rounded & 0xffff0000;
  if (!Number.isFinite(f[0])) { u[0] = (bits & 0x80000000) | 0x7f7f0000; } // saturate to +-max bf16
  return f[0];
}
describe('topk is exact (ties to the lower index)', () => {
  it('matches brute force on data full of ties', () => {
    const r = rng(21);
    for (let trial = 0; trial < 60; trial++) {
      const n = 1 + Math.floor(r() * 3000);
      const x = new Float32Array(n);
      const distinct = 1 + Math.floor(r() * 20);
      for (let i = 0; i < n; i++) x[i] = (r() < 0.5 ? -1 : 1) * Math.floor(r() * distinct) * 0.125;
      const k = trial % 3 === 0 ? n : 1 + Math.floor(r() * Math.min(n, 200));
      const mag = new Uint32Array(x.buffer.slice(0)).map((u) => u & 0x7fffffff);
      const order = Array.from({ length: n }, (_, i) => i).sort((i, j) => mag[j] - mag[i] || i - j);
      const sel = new Set(order.slice(0, k));
      for (const vt of ['f32', 'f16', 'bf16']) {
        const d = decompress(topk({ k, values: vt }).compress(x));
        expect(d.length).toBe(n);
        for (let i = 0; i < n; i++) {
          const want = sel.has(i) ? (vt === 'f32' ? x[i] : vt === 'f16' ? f16round(x[i]) : bf16round(x[i])) : 0;
          if (d[i] !== want) throw new Error(`trial ${trial} n=${n} k=${k} ${vt}: index ${i} decoded ${d[i]} want ${want} (x=${x[i]})`);
        }
      }
      // explicit tie case: equal magnitudes, the lower indices win
      const t = new Float32Array([1, -2, 2, -2, 2, 1]);
      expect(Array.from(decompress(topk({ k: 2 }).compress(t)))).toEqual([0, -2, 2, 0, 0, 0]);
    }
  });
  it('ratio gives k = max(1, ceil(ratio n)); values f16 saturate', () => {
    const x = gaussian(1001, 3);
    const d = decompress(topk({ ratio: 0.01 }).compress(x));
    expect(d.filter((y: number) => y !== 0).length).toBe(11);
    const big = new Float32Array([1e6, -1e6, 1]);
    expect(Array.from(decompress(topk({ k: 2, values: 'f16' }).compress(big)))).toEqual([65504, -65504, 0]);
  });
});

// ---------- onebit ----------
/** The class means of FORMAT.md 3.3 in float32: 32 lanes in element order, the fixed tree, one division. */
function onebitMeans(v: Float32Array): [number, number] {
  const res: number[] = [];
  for (const neg of [false, true]) {
    const lane = new Array(32).fill(0);
    let c = 0;
    for (let i = 0; i < v.length; i++) if ((v[i] < 0) === neg) { lane[i & 31] = F(lane[i & 31] + v[i]); c++; }
    for (let w = 16; w >= 1; w >>= 1) for (let j = 0; j < w; j++) lane[j] = F(lane[j] + lane[j + w]);
    res.push(c ? F(lane[0] / F(c)) : 0);
  }
  return [res[0], res[1]];
}
describe('onebit decodes to the class means exactly', () => {
  it('per bucket: non-negative entries -> mean of non-negatives, negative -> mean of negatives', () => {
    for (const [n, b] of [[1000, 512], [77, 3], [4096, 4096], [100, 1], [513, 64]]) {
      const v = gaussian(n, n + b);
      v[0] = -0; if (n > 3) { v[1] = 0; v[2] = 1e-30; }
      const d = decompress(onebit({ bucketSize: b }).compress(v));
      for (let s0 = 0; s0 < n; s0 += b) {
        const bucket = v.subarray(s0, Math.min(n, s0 + b));
        const [pos, neg] = onebitMeans(bucket);
        // the float32 means agree with exact double means to float accuracy
        let sp = 0, cp = 0, sn = 0, cn = 0;
        for (const y of bucket) if (y < 0) { sn += y; cn++; } else { sp += y; cp++; }
        if (cp) expect(Math.abs(pos - sp / cp)).toBeLessThanOrEqual(1e-5 * (Math.abs(sp / cp) + 1e-30));
        if (cn) expect(Math.abs(neg - sn / cn)).toBeLessThanOrEqual(1e-5 * Math.abs(sn / cn));
        for (let i = 0; i < bucket.length; i++) {
          const want = bucket[i] < 0 ? neg : pos;
          if (d[s0 + i] !== want) throw new Error(`n=${n} b=${b} i=${s0 + i}: ${d[s0 + i]} != ${want}`);
        }
      }
    }
  });
});

// ---------- error feedback ----------
function norm2(x: ArrayLike<number>): number { let s = 0; for (let i = 0; i < x.length; i++) s += x[i] * x[i]; return Math.sqrt(s); }

/**
 * Runs T steps of error feedback on a constant gradient g and checks, every step, the identity
 * sum(sent) + h_T = T g (alpha = beta = 1). Each step the core computes d = g + h (rounded), then
 * h <- h + (g - d_sent): two roundings, |error| <= 2^-24 (|g - d_t| + |h_{t+1}|) per element. The tolerance
 * accumulates that bound from the observed values (factor 2 for the rounding of v = g + h inside Q, which does not
 * enter the identity but keeps the bound conservative), so it follows the actual magnitudes.
 */
function runEF(codec: any, g: Float32Array, T: number, opts: { alpha: number; beta: number }, checkpoints: number[]) {
  const ef = errorFeedback(codec, opts);
  const n = g.length;
  const sent = new Float64Array(n);
  const tol = new Float64Array(n);
  const hNorms: Record<number, number> = {};
  const meanErr: Record<number, number> = {};
  let h = new Float32Array(n);
  for (let t = 1; t <= T; t++) {
    const d = decompress(ef.compress(g, { seed: t }));
    h = ef.residual();
    for (let i = 0; i < n; i++) {
      sent[i] += d[i];
      tol[i] += 2 * U24 * (Math.abs(g[i] - d[i]) + Math.abs(h[i]) + Math.abs(g[i]));
    }
    if (checkpoints.includes(t)) {
      hNorms[t] = norm2(h);
      const diff = new Float64Array(n);
      for (let i = 0; i < n; i++) diff[i] = sent[i] / t - g[i];
      meanErr[t] = norm2(diff);
      if (opts.alpha === 1 && opts.beta === 1) {
        for (let i = 0; i < n; i++) {
          const resid = Math.abs(sent[i] + h[i] - t * g[i]);
          if (resid > tol[i] + 1e-30) throw new Error(`identity broken at t=${t} i=${i}: |sum sent + h - T g| = ${resid} > ${tol[i]}`);
        }
      }
    }
  }
  return { hNorms, meanErr, ef };
}

describe('error feedback (ECQ-SGD)', () => {
  const g = gaussian(2048, 31);
  const gn = norm2(g);
  it('alpha = beta = 1, topk: sum sent = T g - h_T; h stays bounded, the running mean error falls like 1/T', () => {
    const cps = [100, 400, 1600];
    const { hNorms, meanErr } = runEF(topk({ ratio: 0.05 }), g, 1600, { alpha: 1, beta: 1 }, cps);
    console.log(`EF topk 5%: ||h_T||/||g|| = ${cps.map((t) => (hNorms[t] / gn).toFixed(2)).join(', ')}; ||mean sent - g||/||g|| = ${cps.map((t) => (meanErr[t] / gn).toExponential(2)).join(', ')} at T = ${cps.join(', ')}`);
    // Bounded memory: a coordinate waits at most about n/k steps before it is sent, so ||h|| <= (n/k) ||g||.
    expect(hNorms[1600]).toBeLessThanOrEqual(20 * gn);
    // Running mean error = ||h_T|| / T: x16 more steps shrink it ~16x (we require at least 8x, i.e. faster than 1/sqrt(T)'s 4x).
    expect(meanErr[1600]).toBeLessThan(meanErr[100] / 8);
  });
  it('alpha = beta = 1, onebit: identity holds; h grows like sqrt(T), the running mean error falls like 1/sqrt(T)', () => {
    const cps = [100, 400, 1600];
    const { hNorms, meanErr } = runEF(onebit({ bucketSize: 512 }), g, 1600, { alpha: 1, beta: 1 }, cps);
    const slopeH = Math.log(hNorms[1600] / hNorms[100]) / Math.log(16);
    const slopeE = Math.log(meanErr[1600] / meanErr[100]) / Math.log(16);
    console.log(`EF onebit: ||h_T||/||g|| = ${cps.map((t) => (hNorms[t] / gn).toFixed(2)).join(', ')}; mean error ${cps.map((t) => (meanErr[t] / gn).toExponential(2)).join(', ')}; slopes: h ${slopeH.toFixed(2)}, mean error ${slopeE.toFixed(2)}`);
    // The running mean converges (error falls) ...
    expect(meanErr[1600]).toBeLessThan(meanErr[100]);
    // ... slower than the 1/T of a bounded residual: the log-log slope of the error is near -1/2, not -1.
    expect(slopeE).toBeGreaterThan(-0.8);
    expect(slopeE).toBeLessThan(-0.2);
  });
  it('qsgd s=4 on 4096-element buckets: alpha = 0.1 keeps h bounded, alpha = 1 lets it explode; identity holds with alpha = 1', () => {
    const gq = gaussian(8192, 32), gqn = norm2(gq);
    const q = qsgd({ levels: 4, bucketSize: 4096, norm: 'l2' });
    // alpha = 0.1, beta = 1: h <- 0.9 h + (v - Q(v)) with v = g + 0.1 h and E||v - Q(v)||^2 ~ c ||v||^2,
    // c ~ 0.8 sqrt(b)/s ~ 13; the recursion contracts when 0.81 + 0.01 c < 1, stationary ||h|| ~ 15 ||g||.
    const cps = [250, 500, 750, 1000];
    const { hNorms } = runEF(q, gq, 1000, { alpha: 0.1, beta: 1 }, cps);
    console.log(`EF qsgd alpha=0.1: ||h_t||/||g|| at t = ${cps.join(', ')}: ${cps.map((t) => (hNorms[t] / gqn).toFixed(2)).join(', ')}`);
    for (const t of cps) expect(hNorms[t]).toBeLessThan(40 * gqn);
    // alpha = 1: ||h_{t+1}||^2 ~ c ||g + h_t||^2 with c > 1, geometric growth. The identity still holds.
    const { hNorms: h1 } = runEF(q, gq, 10, { alpha: 1, beta: 1 }, [1, 10]);
    console.log(`EF qsgd alpha=1: ||h_10||/||g|| = ${(h1[10] / gqn).toExponential(2)}`);
    expect(h1[10]).toBeGreaterThan(100 * gqn);
  });
  it('reset() and setResidual() behave; residual() is a copy', () => {
    const q = topk({ k: 10 });
    const ef = errorFeedback(q, { alpha: 1, beta: 1 });
    const x = gaussian(100, 4);
    ef.compress(x, { seed: 1 });
    const h = ef.residual();
    expect(norm2(h)).toBeGreaterThan(0);
    h.fill(0);
    expect(norm2(ef.residual())).toBeGreaterThan(0);
    ef.reset();
    expect(norm2(ef.residual())).toBe(0);
    const h0 = gaussian(100, 5);
    ef.setResidual(h0);
    expect(Array.from(ef.residual())).toEqual(Array.from(h0));
  });
});
