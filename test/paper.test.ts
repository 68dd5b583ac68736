// The papers' figures, reproduced with gradzip: bits per element of each QSGD coding, the Quantized-PR-SGD
// Table 1 saving, the ECQ-SGD bit formula and the ECQ-SGD synthetic experiment (small, fixed seeds).
// (The TinyScript figure lives in test/nonuniform.test.ts.)
import { describe, expect, it } from 'vitest';
import * as gz from '../dist/cjs/index.js';
import { rng } from './rng';

const { qsgd, errorFeedback, decompress, inspect } = gz as any;

function gaussian(n: number, seed: number): Float32Array {
  const r = rng(seed);
  const x = new Float32Array(n);
  for (let i = 0; i < n; i++) x[i] = Math.sqrt(-2 * Math.log(Math.max(r(), 1e-12))) * Math.cos(2 * Math.PI * r());
  return x;
}

/** Header fields of FORMAT.md section 1. */
function header(p: Uint8Array) {
  const dv = new DataView(p.buffer, p.byteOffset, p.byteLength);
  const P = dv.getUint32(28, true), C = dv.getUint32(32, true);
  return { n: Number(dv.getBigUint64(8, true)), b: dv.getUint32(24, true), P, C, payload: Number(dv.getBigUint64(40, true)) };
}
/** Length of Elias-gamma(x): 2 floor(log2 x) + 1 bits. */
const gammaLen = (x: number) => 2 * Math.floor(Math.log2(x)) + 1;

/**
 * Expected code bits per element of the gamma coding, from the exact distribution of every zeta:
 * zeta_i = l_i + Bernoulli(p_i), bits = |gamma(zeta + 1)| + [zeta > 0] (sign only for non-zero levels).
 * Also returns the expected fraction of zeros (the sign bits the Quantized-PR-SGD encoding would add).
 */
function expectedGammaBits(v: Float32Array, s: number, b: number) {
  let bits = 0, zeros = 0;
  for (let j = 0; j < v.length; j += b) {
    let nn = 0;
    const e = Math.min(v.length, j + b);
    for (let i = j; i < e; i++) nn += v[i] * v[i];
    const N = Math.sqrt(nn);
    for (let i = j; i < e; i++) {
      const a = N > 0 ? Math.min((s * Math.abs(v[i])) / N, s) : 0, l = Math.floor(a), p = a - l;
      const len = (z: number) => gammaLen(z + 1) + (z > 0 ? 1 : 0);
      bits += (1 - p) * len(l) + p * len(l + 1);
      zeros += l === 0 ? 1 - p : 0;
    }
  }
  return { bits: bits / v.length, zeroFrac: zeros / v.length };
}

describe('bits per element on Gaussian data (qsgd s = 4, b = 512)', () => {
  const n = 1 << 20, s = 4, b = 512;
  const x = gaussian(n, 1);
  const rows: string[] = [];
  it('fixed = 4 code bits (+ 32/512 for the scale); gamma ~ 1.42 code bits, 2.35 with a sign for every element', () => {
    const res: Record<string, { total: number; code: number }> = {};
    for (const coding of ['fixed', 'gamma', 'sparse']) {
      const p = qsgd({ levels: s, bucketSize: b, norm: 'l2', coding }).compress(x, { seed: 3 });
      const h = header(p);
      expect(h.n).toBe(n);
      expect(48 + h.P + 4 * h.C + h.payload + 4).toBe(p.length);
      const scaleBytes = 4 * Math.ceil(n / b);
      const total = (8 * p.length) / n;
      const code = (8 * (h.payload - scaleBytes)) / n; // code bits only (the chunk padding included)
      res[coding] = { total, code };
      const ins = inspect(p);
      expect(ins.n).toBe(n);
      expect(ins.bytes).toBe(p.length);
      expect(Math.abs(ins.bitsPerElement - total)).toBeLessThan(0.01);
    }
    const ex = expectedGammaBits(x, s, b);
    // fixed: W = 1 + ceil(log2(s + 1)) = 4 bits exactly, plus one f32 scale per 512 elements
    expect(res.fixed.code).toBe(4);
    expect(Math.abs(res.fixed.total - (4 + 32 / 512))).toBeLessThan(1e-3);
    // gamma: the measured code length matches the exact expectation within 0.3% (the sum of ~10^6 independent
    // lengths has a relative SD far below 0.1%) plus the padding to a byte per 2048-element chunk (<= 7/2048 bit).
    expect(Math.abs(res.gamma.code - ex.bits)).toBeLessThan(0.003 * ex.bits + 7 / 2048);
    expect(res.gamma.code).toBeGreaterThan(1.38);
    expect(res.gamma.code).toBeLessThan(1.46); // PERF-NOTES / SPEC: 1.42
    const signEvery = res.gamma.code + ex.zeroFrac; // the Quantized-PR-SGD encoding: a sign bit for zeros too
    expect(signEvery).toBeGreaterThan(2.28);
    expect(signEvery).toBeLessThan(2.42); // SPEC: 2.35
    rows.push('| coding | code bits/elem | total bits/elem (scales, chunk table, header) | reference |');
    rows.push('|---|---|---|---|');
    rows.push(`| fixed | ${res.fixed.code.toFixed(3)} | ${res.fixed.total.toFixed(3)} | 4 + 32/512 |`);
    rows.push(`| gamma (sign only for zeta > 0) | ${res.gamma.code.toFixed(3)} | ${res.gamma.total.toFixed(3)} | 1.42; exact expectation ${ex.bits.toFixed(3)} |`);
    rows.push(`| gamma with a sign per element (Quantized-PR-SGD) | ${signEvery.toFixed(3)} | ${(signEvery + res.gamma.total - res.gamma.code).toFixed(3)} | 2.35 |`);
    rows.push(`| sparse | ${res.sparse.code.toFixed(3)} | ${res.sparse.total.toFixed(3)} | (meant for s ~ sqrt(b)) |`);
    console.log(`bits per element, Gaussian n=2^20, qsgd s=4 b=512 l2\n${rows.join('\n')}`);
  });
});

describe('Quantized-PR-SGD Table 1: s = sqrt(d), gamma coding, saving per transfer over fp32 (paper: over 91%)', () => {
  const d = 1 << 20;
  const x = gaussian(d, 2);
  // Model differences are heavier-tailed than a Gaussian (TinyScript: sub-Weibull); a Laplace vector (|x| ~ Weibull
  // with k = 1) stands in for them. The paper: 91.1% (42.63 MB -> 3.80 MB, 2.85 bits per element with a sign for
  // every element).
  const laplace = (() => {
    const r = rng(7);
    return Float32Array.from({ length: d }, () => (r() < 0.5 ? -1 : 1) * -Math.log(Math.max(r(), 1e-12)));
  })();
  it('one bucket = the whole tensor, and bucketed; Gaussian and Laplace data', () => {
    const rows: string[] = ['| data | setting | coding | bytes | bits/elem | saving vs fp32 |', '|---|---|---|---|---|---|'];
    const saving = (bytes: number) => 1 - bytes / (4 * d);
    const results: Record<string, number> = {};
    for (const [dist, v] of [['gaussian', x], ['laplace', laplace]] as const) {
      for (const [label, b] of [['whole tensor (b = d)', d], ['bucketed b = 512', 512], ['bucketed b = 4096', 4096]] as const) {
        const s = Math.round(Math.sqrt(b));
        for (const coding of ['gamma', 'sparse', 'fixed']) {
          const p = qsgd({ levels: s, bucketSize: b, norm: 'l2', coding }).compress(v, { seed: 5 });
          results[`${dist}/${b}/${coding}`] = saving(p.length);
          rows.push(`| ${dist} | ${label}, s = ${s} | ${coding} | ${p.length} | ${((8 * p.length) / d).toFixed(3)} | ${(100 * saving(p.length)).toFixed(2)}% |`);
          if (coding === 'gamma') {
            // the paper's wire format writes a sign for every element: add the zeros' sign bits
            const ex = expectedGammaBits(v, s, b);
            const paperBytes = p.length + (ex.zeroFrac * d) / 8;
            results[`${dist}/${b}/paper`] = saving(paperBytes);
            rows.push(`| ${dist} | ${label}, s = ${s} | gamma + sign per element (paper) | ${Math.round(paperBytes)} | ${((8 * paperBytes) / d).toFixed(3)} | ${(100 * saving(paperBytes)).toFixed(2)}% |`);
          }
        }
      }
    }
    console.log(`Quantized-PR-SGD Table 1 analogue, d = 2^20 (paper: 42.63 MB -> 3.80 MB, 91.1%)\n${rows.join('\n')}`);
    // Gaussian: ~2.9 bits per element, a 90.9% saving; heavier tails (Laplace) clear the paper's 91%.
    expect(results[`gaussian/${d}/gamma`]).toBeGreaterThan(0.90);
    expect(results[`gaussian/${d}/sparse`]).toBeGreaterThan(0.91);
    expect(results[`laplace/${d}/gamma`]).toBeGreaterThan(0.91);
    // The paper's own encoding (a sign for every element) gives 89.7% (Gaussian) and 90.2% (Laplace) here: its 91.1%
    // came from model differences more concentrated near zero than either; gradzip's gamma (no sign for zeros) wins.
    expect(results[`laplace/${d}/paper`]).toBeGreaterThan(0.90);
    for (const dist of ['gaussian', 'laplace']) {
      expect(results[`${dist}/${d}/gamma`]).toBeGreaterThan(results[`${dist}/${d}/paper`]); // skipping zeros' signs saves bits
      expect(results[`${dist}/512/gamma`]).toBeGreaterThan(0.88);
    }
  });
  it('decoded with s = sqrt(d) the error obeys Lemma 3: E||Q(v) - v||^2 <= d/(4s^2) ||v||^2 = ||v||^2 / 4', () => {
    const s = Math.round(Math.sqrt(d));
    let nv = 0;
    for (const y of x) nv += y * y;
    let mse = 0;
    const seeds = 8;
    for (let seed = 1; seed <= seeds; seed++) {
      const y = decompress(qsgd({ levels: s, bucketSize: d, norm: 'l2', coding: 'gamma' }).compress(x, { seed }));
      for (let i = 0; i < d; i++) mse += (y[i] - x[i]) ** 2 / seeds;
    }
    console.log(`s = sqrt(d): E||Q(v)-v||^2/||v||^2 = ${(mse / nv).toFixed(4)} (Lemma 3 bound 0.25)`);
    expect(mse / nv).toBeLessThanOrEqual(0.25);
  });
});

describe('ECQ-SGD bit count: 32 + d ceil(log2(2s+1)) per bucket equals gradzip fixed coding', () => {
  it('for s = 1..70 and several bucket sizes, payload = sum over buckets of 4 + ceil(m W / 8) with W = ceil(log2(2s+1))', () => {
    const rows: string[] = [];
    for (const s of [1, 2, 3, 4, 5, 7, 8, 15, 16, 31, 32, 63, 64, 70]) {
      const W = Math.ceil(Math.log2(2 * s + 1));
      expect(W).toBe(1 + Math.ceil(Math.log2(s + 1))); // sign + level bits = the paper's joint code
      for (const [n, b] of [[4096, 4096], [10000, 512], [1000, 3]]) {
        const p = qsgd({ levels: s, bucketSize: b, norm: 'l2', coding: 'fixed' }).compress(gaussian(n, s), { seed: 1 });
        let want = 0;
        for (let j = 0; j < n; j += b) want += 4 + Math.ceil((Math.min(b, n - j) * W) / 8);
        expect(header(p).payload).toBe(want);
        if (b === 4096) rows.push(`s=${s}: paper ${32 + 4096 * W} bits/bucket, gradzip ${8 * want} bits/bucket`);
      }
    }
    console.log(`ECQ-SGD bits per 4096-bucket:\n${rows.join('\n')}`);
  });
});

describe('ECQ-SGD synthetic experiment (Syn-256): ECQ-SGD ends closer to w* than QSGD', () => {
  // Syn-256 as in the paper: 10k samples, d = 256, y = w*^T x + eps, lr 0.02, s = 4, l2 scale; ECQ alpha = 0.2,
  // beta = 0.9; one bucket holds the whole gradient (the paper's ECQ bucket, 4096, exceeds d). Small and fast:
  // mini-batches of 32, 1000 steps, x ~ N(0, I), eps ~ N(0, 0.1^2). Three data seeds; fixed quantizer seeds.
  function experiment(dataSeed: number) {
    const d = 256, N = 10000, B = 32, T = 1000, lr = 0.02;
    const r = rng(dataSeed);
    const g1 = () => Math.sqrt(-2 * Math.log(Math.max(r(), 1e-12))) * Math.cos(2 * Math.PI * r());
    const wStar = Float64Array.from({ length: d }, g1);
    const X = new Float32Array(N * d);
    for (let i = 0; i < X.length; i++) X[i] = g1();
    const y = new Float64Array(N);
    for (let j = 0; j < N; j++) {
      let p = 0;
      for (let i = 0; i < d; i++) p += X[j * d + i] * wStar[i];
      y[j] = p + 0.1 * g1();
    }
    const run = (ecq: boolean) => {
      const q = qsgd({ levels: 4, bucketSize: 4096, norm: 'l2', coding: 'fixed' });
      const comp = ecq ? errorFeedback(q, { alpha: 0.2, beta: 0.9 }) : q;
      const w = new Float64Array(d);
      const pick = rng(dataSeed + 1000);
      const dist: number[] = [];
      const g = new Float32Array(d);
      for (let t = 1; t <= T; t++) {
        g.fill(0);
        const acc = new Float64Array(d);
        for (let k = 0; k < B; k++) {
          const j = Math.floor(pick() * N);
          let p = 0;
          for (let i = 0; i < d; i++) p += X[j * d + i] * w[i];
          const e = (p - y[j]) / B;
          for (let i = 0; i < d; i++) acc[i] += e * X[j * d + i];
        }
        for (let i = 0; i < d; i++) g[i] = acc[i];
        const sent = decompress(comp.compress(g, { seed: t }));
        for (let i = 0; i < d; i++) w[i] -= lr * sent[i];
        if (t % 200 === 0) {
          let s2 = 0;
          for (let i = 0; i < d; i++) s2 += (w[i] - wStar[i]) ** 2;
          dist.push(Math.sqrt(s2));
        }
      }
      return dist;
    };
    return { qsgd: run(false), ecq: run(true) };
  }
  it('three data seeds', () => {
    for (const seed of [1, 2, 3]) {
      const { qsgd: dq, ecq: de } = experiment(seed);
      console.log(`Syn-256 seed ${seed}: ||w - w*|| every 200 steps\n  QSGD    ${dq.map((x) => x.toFixed(4)).join(' ')}\n  ECQ-SGD ${de.map((x) => x.toFixed(4)).join(' ')}`);
      const tail = (a: number[]) => (a[2] + a[3] + a[4]) / 3; // average over the last 600 steps
      expect(Number.isFinite(tail(dq))).toBe(true);
      expect(tail(de)).toBeLessThan(0.85 * tail(dq));
      expect(de[4]).toBeLessThan(dq[4]);
    }
  });
});
