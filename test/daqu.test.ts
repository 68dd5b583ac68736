// DaQuSGD (papers/002): DataQ's Theorem 1 (membership in S, the bit bound, the error bounds), lossless indexing,
// unbiased stochastic rounding, GradCorrQ's unbiasedness (Lemma 1) and the loss-threshold selector.
import { describe, expect, it } from 'vitest';
import * as gz from '../dist/cjs/index.js';
import { philox4x32 } from '../dist/cjs/train/daqu.js';
import { rngOpen as rng } from './rng';

const { dataq, dataqBitBound, gradCorrQ, gradCorrQDecode, gradCorrIndex, gradCorrBound, LossThresholdSelector, GradzipError } = gz as any;

function gaussBatch(n: number, seed: number, scale = 1): Float32Array {
  const r = rng(seed), x = new Float32Array(n);
  for (let i = 0; i < n; i++) x[i] = scale * Math.sqrt(-2 * Math.log(r())) * Math.cos(2 * Math.PI * r());
  return x;
}
function expectCode(f: () => unknown, code: string) {
  let err: any;
  try { f(); } catch (e) { err = e; }
  expect(err).toBeInstanceOf(GradzipError);
  expect(err.code).toBe(code);
}
function binom(n: number, r: number): bigint {
  let v = 1n;
  for (let i = 1; i <= r; i++) v = (v * BigInt(n - r + i)) / BigInt(i);
  return v;
}

describe('Philox4x32-10 in TypeScript', () => {
  it('matches the Random123 known answers and the C++ reference', () => {
    const hex = (w: number[]) => w.map((v) => v.toString(16).padStart(8, '0')).join(' ');
    expect(hex(philox4x32(0, 0, 0, 0, 0, 0))).toBe('6627e8d5 e169c58d bc57ac4c 9b00dbd8');
    expect(hex(philox4x32(~0 >>> 0, ~0 >>> 0, ~0 >>> 0, ~0 >>> 0, ~0 >>> 0, ~0 >>> 0))).toBe('408f276d 41c83b0e a20bc7c6 6d5451fd');
    expect(hex(philox4x32(0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344, 0xa4093822, 0x299f31d0))).toBe('d16cfe09 94fdcceb 5001e420 24126ea1');
    expect(hex(philox4x32(5, 0, 2, 0, 7, 0))).toBe('74d44aec d45fff50 c5b62227 2b112d3a');  // native/core/philox.h
  });
});

describe('DataQ (Algorithm 2) with per-sample l2 scale: Theorem 1', () => {
  it('|S| = C(2d + (m-1)^2, 2d) (brute force for small d, m)', () => {
    for (const [d, m] of [[1, 2], [1, 3], [2, 3], [2, 4], [3, 3]]) {
      const Q = (m - 1) ** 2;
      let count = 0;
      const rec = (pos: number, left: number) => {
        if (pos === 2 * d) { count++; return; }
        for (let v = 0; v <= left; v++) rec(pos + 1, left - v);
      };
      rec(0, Q);
      expect(dataq({ levels: m, scale: 'sample-l2' }).spaceSize(d)).toBe(BigInt(count));
      expect(BigInt(count)).toBe(binom(2 * d + Q, 2 * d));
    }
  });

  it('(a, b) ∈ S, the index is lossless and below |S|, bits <= the Theorem 1 bound, error bounds hold', () => {
    const rows: string[] = [];
    for (const d of [4, 16, 64, 256]) {
      for (const m of [2, 3, 4, 8, 16]) {
        const q = dataq({ levels: m, scale: 'sample-l2' });
        const count = 6;
        const x = gaussBatch(count * d, d * 100 + m);
        x[3] = 0; // a zero feature
        const r = q.quantize(x, d);
        const S = q.spaceSize(d);
        expect(r.bitsPerSample).toBe((S - 1n).toString(2).length);  // ⌈log2 |S|⌉
        const bound = dataqBitBound(d, m);
        expect(r.bitsPerSample).toBeLessThanOrEqual(Math.ceil(bound));  // Theorem 1 (ii)
        expect(r.bits).toBe(count * r.bitsPerSample + 32 * count);
        const y = q.dequantize(r);
        for (let s = 0; s < count; s++) {
          const c = r.codes.subarray(s * d, (s + 1) * d);
          let l1 = 0, n2 = 0, nq = 0, inf = 0;
          for (let j = 0; j < d; j++) {
            l1 += Math.abs(c[j]);
            n2 += x[s * d + j] ** 2;
            nq += y[s * d + j] ** 2;
            inf = Math.max(inf, Math.abs(x[s * d + j] - y[s * d + j]));
            expect(c[j] * x[s * d + j]).toBeGreaterThanOrEqual(0);  // sign kept (floor: |Z_Q| <= |Z|)
            expect(Math.abs(y[s * d + j])).toBeLessThanOrEqual(Math.abs(x[s * d + j]) * (1 + 1e-6));
          }
          const B = r.scales[s];
          expect(B).toBeGreaterThanOrEqual(Math.sqrt(n2));  // the sent scale never under-states ‖Z‖₂
          expect(l1).toBeLessThanOrEqual((m - 1) ** 2);     // Theorem 1 (i): (a, b) ∈ S
          expect(r.index[s] < S).toBe(true);
          expect(Array.from(q.decodeIndex(r.index[s], d))).toEqual(Array.from(c));
          expect(inf).toBeLessThanOrEqual((B / (m - 1)) * (1 + 1e-6));                         // (iii)
          expect(Math.sqrt(nq)).toBeLessThanOrEqual((1 + Math.sqrt(d) / (m - 1)) * B * (1 + 1e-6)); // (iii)
        }
        if (m === 4 || m === 16) rows.push(`d=${d} m=${m}: ${r.bitsPerSample} bits/sample (bound ${bound.toFixed(1)}, sign+level per feature ${Math.ceil(d * Math.log2(2 * m - 1))})`);
      }
    }
    // eslint-disable-next-line no-console
    console.log('[dataq bits]\n' + rows.join('\n'));
  });

  it('Index_S is a bijection between S and [0, |S|) on the (a, b) DataQ can produce (exhaustive, small d, m)', () => {
    // S also holds pairs with a_j and b_j both non-zero, which DataQ never emits: those indices are CORRUPT.
    for (const [d, m] of [[2, 3], [3, 3], [2, 4]]) {
      const q = dataq({ levels: m, scale: 'sample-l2' });
      const S = Number(q.spaceSize(d));
      const seen = new Set<string>();
      let invalidCount = 0;
      for (let r = 0; r < S; r++) {
        let c: Int32Array;
        try { c = q.decodeIndex(BigInt(r), d); } catch (e: any) { expect(e.code).toBe('ERR_GRADZIP_CORRUPT'); invalidCount++; continue; }
        const key = Array.from(c).join(',');
        expect(seen.has(key)).toBe(false);
        seen.add(key);
        // encoding the reconstructed sample gives the same index back
        const B = 1, x = Float32Array.from(c, (v) => (v * B) / (m - 1));
        const l1 = c.reduce((a, v) => a + Math.abs(v), 0);
        expect(l1).toBeLessThanOrEqual((m - 1) ** 2);
        if (l1 > 0 && Math.hypot(...x) <= 1) {
          const enc = dataq({ levels: m, scale: 'sample-l2' }).quantize(x, d);
          if (Array.from(enc.codes).join(',') === key) expect(enc.index[0]).toBe(BigInt(r));
        }
      }
      // valid indices = the vectors c ∈ Z^d with Σ|c_j| <= (m-1)^2 (brute force)
      let expected = 0;
      const rec = (pos: number, left: number) => {
        if (pos === d) { expected++; return; }
        for (let v = -left; v <= left; v++) rec(pos + 1, left - Math.abs(v));
      };
      rec(0, (m - 1) ** 2);
      expect(seen.size).toBe(expected);
      expect(seen.size + invalidCount).toBe(S);
      expectCode(() => q.decodeIndex(BigInt(S), d), 'ERR_GRADZIP_INVALID_ARG');
    }
  });
});

describe('DataQ with one batch l-inf scale (§VI)', () => {
  it('floor: error below one level, index round trip, bits = count·⌈d·log2(2m−1)⌉ + 32', () => {
    const d = 48, count = 16, m = 8;
    const x = gaussBatch(count * d, 5, 3);
    const q = dataq({ levels: m });
    const r = q.quantize(x, d);
    let M = 0;
    for (const v of x) M = Math.max(M, Math.abs(v));
    expect(r.scales[0]).toBe(M);
    const y = q.dequantize(r);
    for (let i = 0; i < x.length; i++) {
      expect(Math.abs(x[i] - y[i])).toBeLessThanOrEqual((M / (m - 1)) * (1 + 1e-6));
      expect(Math.abs(y[i])).toBeLessThanOrEqual(Math.abs(x[i]) * (1 + 1e-6));
    }
    const per = ((BigInt(2 * m - 1) ** BigInt(d)) - 1n).toString(2).length;
    expect(r.bitsPerSample).toBe(per);
    expect(r.bits).toBe(count * per + 32);
    for (let s = 0; s < count; s++) expect(Array.from(q.decodeIndex(r.index[s], d))).toEqual(Array.from(r.codes.subarray(s * d, (s + 1) * d)));
  });

  it('stochastic rounding is unbiased: per-feature mean over 2000 seeds within 5 SE of the two-point law', () => {
    // Each feature rounds to level ℓ = floor(t) or ℓ + 1 (t = (m−1)|z|/B), up with probability p = t − ℓ, so the
    // decoded value has standard deviation (B/(m−1))·sqrt(p(1−p)); the mean over S seeds is within 5·sd/√S of z
    // (plus the 2^-53 resolution of the uniforms and float32 rounding of the output, both far below).
    const d = 40, m = 4, S = 2000;
    const x = gaussBatch(d, 9);
    const q = dataq({ levels: m, rounding: 'stochastic' });
    const sum = new Float64Array(d);
    let B = 0;
    for (let seed = 1; seed <= S; seed++) {
      const r = q.quantize(x, d, { seed });
      B = r.scales[0];
      const y = q.dequantize(r);
      for (let j = 0; j < d; j++) sum[j] += y[j];
    }
    for (let j = 0; j < d; j++) {
      const t = ((m - 1) * Math.abs(x[j])) / B, p = t - Math.floor(t);
      const sd = (B / (m - 1)) * Math.sqrt(p * (1 - p));
      expect(Math.abs(sum[j] / S - x[j])).toBeLessThanOrEqual(5 * sd / Math.sqrt(S) + 1e-6 * B);
    }
    expectCode(() => q.quantize(x, d), 'ERR_GRADZIP_INVALID_ARG');  // stochastic needs a seed
  });

  it('validates options and input', () => {
    expectCode(() => dataq({ levels: 1 }), 'ERR_GRADZIP_INVALID_ARG');
    expectCode(() => dataq({ scale: 'l1' }), 'ERR_GRADZIP_INVALID_ARG');
    expectCode(() => dataq({ rounding: 'up' }), 'ERR_GRADZIP_INVALID_ARG');
    expectCode(() => dataq({ level: 3 }), 'ERR_GRADZIP_INVALID_ARG');
    expectCode(() => dataq().quantize(new Float32Array(5), 2), 'ERR_GRADZIP_INVALID_ARG');
    expectCode(() => dataq().quantize(new Float32Array([1, NaN]), 2), 'ERR_GRADZIP_NONFINITE');
    const z = dataq({ scale: 'sample-l2' }).quantize(new Float32Array(8), 4);  // zero samples
    expect(Array.from(z.codes)).toEqual(new Array(8).fill(0));
    expect(z.index).toEqual([0n, 0n]);
  });
});

describe('GradCorrQ (Algorithm 3)', () => {
  it('is unbiased (Lemma 1): per-coordinate mean over 20000 rounds within 5 SE', () => {
    // Δ̂_i = ±D·h with probabilities (1/h)·p_i and (1/h)·(1−p_i), p_i = Δ_i/(2D) + 1/2, else 0: E[Δ̂_i] = Δ_i,
    // Var Δ̂_i = D²·h − Δ_i², so the mean of S rounds has standard error sqrt((D²h − Δ_i²)/S).
    const h = 16, S = 20000, D = gradCorrBound({ lipschitz: 2, B: 1.5, d: 9, levels: 4 });  // = 3
    expect(D).toBeCloseTo(3, 12);
    const r = rng(3), delta = new Float64Array(h);
    for (let i = 0; i < h; i++) delta[i] = (2 * r() - 1) * D;
    delta[0] = D; delta[1] = -D; delta[2] = 0;
    const acc = new Float64Array(h);
    const hits = new Float64Array(h);
    for (let t = 0; t < S; t++) {
      const msg = gradCorrQ(delta, { bound: D, seed: 77n, round: t });
      expect(msg.index).toBe(gradCorrIndex(77n, t, h));  // the agent derives i* from the shared seed
      expect(msg.bits).toBe(1);
      hits[msg.index]++;
      gradCorrQDecode(msg, acc);
    }
    for (let i = 0; i < h; i++) {
      const se = Math.sqrt((D * D * h - delta[i] ** 2) / S);
      expect(Math.abs(acc[i] / S - delta[i])).toBeLessThanOrEqual(5 * se);
      // i* uniform: binomial(S, 1/h) counts within 5 SD
      expect(Math.abs(hits[i] - S / h)).toBeLessThanOrEqual(5 * Math.sqrt((S * (h - 1)) / (h * h)));
    }
  });

  it('bits: 1 with shared randomness, 1 + ⌈log2 h⌉ without; decode; bound checks', () => {
    const delta = new Float32Array([0.1, -0.2, 0.3, 0, 0, 0, 0, 0, 0, 0.05]);
    const m1 = gradCorrQ(delta, { bound: 0.5, seed: 1, sharedSeed: false });
    expect(m1.bits).toBe(1 + 4);
    const y = gradCorrQDecode(m1);
    expect(y.length).toBe(10);
    for (let i = 0; i < 10; i++) expect(y[i]).toBe(i === m1.index ? (2 * m1.bit - 1) * 0.5 * 10 : 0);
    expectCode(() => gradCorrQ(new Float64Array([0, 2, 0]).fill(2), { bound: 1, seed: 1 }), 'ERR_GRADZIP_INVALID_ARG');
    expectCode(() => gradCorrQ(delta, { bound: 0, seed: 1 }), 'ERR_GRADZIP_INVALID_ARG');
    expectCode(() => gradCorrQ(delta, { bound: 1, seed: -1 }), 'ERR_GRADZIP_INVALID_ARG');
  });
});

describe('loss-threshold sample selector', () => {
  it('sends losses above the threshold; next threshold = 0.2 × mean loss of the samples sent', () => {
    const sel = new LossThresholdSelector();
    expect(sel.threshold).toBe(0);
    const losses = [1, 2, 0, 3, 4];
    expect(losses.map((l) => sel.shouldSend(l))).toEqual([true, true, false, true, true]);
    expect(sel.endEpoch()).toBeCloseTo(0.2 * 2.5, 12);
    expect([0.4, 0.6, 5].map((l) => sel.shouldSend(l))).toEqual([false, true, true]);
    expect(sel.endEpoch()).toBeCloseTo(0.2 * 2.8, 12);
    expect(sel.endEpoch()).toBeCloseTo(0.56, 12);  // nothing sent: unchanged
    expectCode(() => new LossThresholdSelector({ factor: -1 }), 'ERR_GRADZIP_INVALID_ARG');
  });
});
