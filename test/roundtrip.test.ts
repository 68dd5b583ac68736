// Round trips of every codec over sizes {0, 1, 7, 1000, 4097, 100003} and odd bucket sizes, with
// deterministic per-element checks derived from each codec's definition (docs/FORMAT.md section 3), plus the
// error-feedback identity.
import { afterEach, describe, expect, it } from 'vitest';
import {
  decompress, decompressAdd, errorFeedback, inspect, nonuniform, onebit, qsgd, randomk, terngrad, topk,
  type Compressor,
} from '../dist/cjs/index.js';

// Yield to the event loop between tests: these tests are synchronous, and vitest's worker RPC (60 s reply timeout)
// needs the loop to run now and then on a loaded machine.
afterEach(() => new Promise<void>((resolve) => setImmediate(resolve)));

const SIZES = [0, 1, 7, 1000, 4097, 100003];
const BUCKETS = [1, 7, 333, 1021];
const U = 2 ** -24; // unit roundoff of float32

// Deterministic Gaussian-ish data: sum of uniforms from an LCG, with a few exact zeros and a -0.
function data(n: number, seed: number, scale = 1): Float32Array {
  const x = new Float32Array(n);
  let s = (seed * 2654435761) >>> 0 || 1;
  const u = (): number => { s = (Math.imul(s, 1664525) + 1013904223) >>> 0; return s / 4294967296; };
  for (let i = 0; i < n; i++) x[i] = (u() + u() + u() + u() - 2) * scale * 1.7;
  if (n > 10) { x[3] = 0; x[5] = -0; }
  return x;
}

function buckets(n: number, b: number): Array<[number, number]> {
  const r: Array<[number, number]> = [];
  for (let s = 0; s < n; s += b) r.push([s, Math.min(n, s + b)]);
  return r;
}

// float64 l2 norm of a bucket; the float32 norm the encoder uses differs by a few ulps (32-lane sum), covered
// by the relative slack below.
function l2(x: Float32Array, s: number, e: number): number {
  let a = 0;
  for (let i = s; i < e; i++) a += x[i] * x[i];
  return Math.sqrt(a);
}
function linf(x: Float32Array, s: number, e: number): number {
  let a = 0;
  for (let i = s; i < e; i++) a = Math.max(a, Math.abs(x[i]));
  return a;
}

// Element checks collect failures instead of calling expect per element (millions of elements).
class Fails {
  list: string[] = [];
  count = 0;
  ok(cond: boolean, what: () => string): void {
    if (cond) return;
    this.count++;
    if (this.list.length < 5) this.list.push(what());
  }
  done(): void { expect({ count: this.count, first: this.list }).toEqual({ count: 0, first: [] }); }
}

// Shared checks of every round trip.
function common(c: Compressor, x: Float32Array, packet: Uint8Array, y: Float32Array): void {
  expect(y).toBeInstanceOf(Float32Array);
  expect(y.length).toBe(x.length);
  expect(packet.byteLength).toBeLessThanOrEqual(c.maxCompressedBytes(x.length));
  const info = inspect(packet);
  expect(info.n).toBe(x.length);
  expect(info.bytes).toBe(packet.byteLength);
  expect(info.codec).toBe(c.name);
  let finite = true;
  for (let i = 0; i < y.length; i++) finite &&= Number.isFinite(y[i]);
  expect(finite).toBe(true);
}

describe('qsgd round trip', () => {
  for (const coding of ['fixed', 'gamma', 'sparse'] as const) {
    for (const [levels, norm] of [[4, 'l2'], [1, 'linf'], [16, 'l2'], [255, 'linf']] as const) {
      it(`coding ${coding}, s = ${levels}, norm ${norm}: values on the level grid, error < one level`, () => {
        const f = new Fails();
        for (const n of SIZES) {
          for (const bucketSize of BUCKETS) {
            const c = qsgd({ levels, norm, coding, bucketSize });
            const x = data(n, n + bucketSize);
            const p = c.compress(x, { seed: 7 });
            const y = decompress(p);
            common(c, x, p, y);
            for (const [s, e] of buckets(n, bucketSize)) {
              const N = norm === 'l2' ? l2(x, s, e) : linf(x, s, e);
              const w = N / levels; // one level
              for (let i = s; i < e; i++) {
                // |Q(v_i) - v_i| < w: zeta is floor or ceil of |v_i| s / N (float rounding: relative slack 1e-5)
                f.ok(Math.abs(y[i] - x[i]) <= w * (1 + 1e-5) + 1e-30, () => `n=${n} b=${bucketSize} i=${i}: |${y[i]} - ${x[i]}| > w=${w}`);
                // sign is kept (or the value is zero); zeta * w with 0 <= zeta <= s
                f.ok(y[i] * x[i] >= 0 && Math.abs(y[i]) <= N * (1 + 1e-5), () => `n=${n} b=${bucketSize} i=${i}: ${y[i]} vs ${x[i]}`);
                if (w > 0) {
                  const z = Math.abs(y[i]) / w;
                  f.ok(Math.abs(z - Math.round(z)) < 1e-3, () => `n=${n} b=${bucketSize} i=${i}: ${y[i]} not a multiple of ${w}`);
                }
              }
            }
          }
        }
        f.done();
      });
    }
  }

  it('meets the variance bound min(b/s^2, sqrt(b)/s) ||v||^2 summed over buckets (large n)', () => {
    // E||Q(v)-v||^2 <= min(b/s^2, sqrt(b)/s) ||v||^2 per bucket (QSGD Lemma 3.1). The realized error on 100003
    // elements is a sum of ~1e5 independent bounded terms: its relative standard deviation is below 1%, so 1.1x the
    // bound cannot be exceeded by chance (the actual error is well below the worst-case bound anyway).
    for (const [s, b] of [[4, 512], [1, 333], [16, 1021], [2, 7]] as const) {
      const x = data(100003, s * b);
      const y = decompress(qsgd({ levels: s, bucketSize: b }).compress(x, { seed: 11 }));
      let err = 0, bound = 0;
      for (const [st, e] of buckets(x.length, b)) {
        const m = e - st;
        const nv = l2(x, st, e);
        bound += Math.min(m / (s * s), Math.sqrt(m) / s) * nv * nv;
        for (let i = st; i < e; i++) err += (y[i] - x[i]) ** 2;
      }
      expect(err).toBeLessThanOrEqual(1.1 * bound);
    }
  });

  it('is unbiased: the mean of 200 decodes with different seeds approaches x', () => {
    // Each decode has per-element variance <= w^2/4 (w = N/s); the mean of T decodes has variance <= w^2/(4T).
    // With T = 200 a 6-sigma band is 6 * w / (2 sqrt(200)) = 0.212 w.
    const x = data(1000, 3);
    const c = qsgd({ levels: 4, bucketSize: 100 });
    const acc = new Float64Array(x.length);
    const T = 200;
    for (let t = 0; t < T; t++) { const y = decompress(c.compress(x, { seed: t })); for (let i = 0; i < x.length; i++) acc[i] += y[i]; }
    const f = new Fails();
    for (const [s, e] of buckets(x.length, 100)) {
      const w = l2(x, s, e) / 4;
      for (let i = s; i < e; i++) f.ok(Math.abs(acc[i] / T - x[i]) <= 0.212 * w, () => `i=${i}: mean ${acc[i] / T} vs ${x[i]}`);
    }
    f.done();
  });
});

describe('terngrad round trip', () => {
  it('values in {-M, 0, M} per bucket with the sign of the input', () => {
    const f = new Fails();
    for (const n of SIZES) {
      for (const bucketSize of BUCKETS) {
        const c = terngrad({ bucketSize });
        const x = data(n, n ^ bucketSize);
        const p = c.compress(x, { seed: 3 });
        const y = decompress(p);
        common(c, x, p, y);
        for (const [s, e] of buckets(n, bucketSize)) {
          const M = Math.fround(linf(x, s, e));
          for (let i = s; i < e; i++) {
            const a = Math.abs(y[i]);
            f.ok((a === 0 || a === M) && y[i] * x[i] >= 0, () => `n=${n} b=${bucketSize} i=${i}: ${y[i]} (M=${M}, x=${x[i]})`);
            if (Math.abs(x[i]) === M && M > 0) f.ok(a === M, () => `max element must round up: i=${i}`); // p = 1
          }
        }
      }
    }
    f.done();
  });
});

describe('onebit round trip', () => {
  it('decodes each element to the mean of its sign class in its bucket', () => {
    const f = new Fails();
    for (const n of SIZES) {
      for (const bucketSize of BUCKETS) {
        const c = onebit({ bucketSize });
        const x = data(n, n + 2 * bucketSize);
        const p = c.compress(x);
        const y = decompress(p);
        common(c, x, p, y);
        expect(inspect(p).seed).toBe(0n);
        for (const [s, e] of buckets(n, bucketSize)) {
          let sp = 0, np = 0, sn = 0, nn = 0, ap = 0, an = 0;
          for (let i = s; i < e; i++) {
            const neg = x[i] < 0;
            if (neg) { sn += x[i]; nn++; an += Math.abs(x[i]); } else { sp += x[i]; np++; ap += Math.abs(x[i]); }
          }
          const pos = np ? sp / np : 0, negm = nn ? sn / nn : 0;
          // float32 sums of m terms: |error| <= m * u * sum|x| / count (sum of absolute values bound)
          const tp = np ? (e - s) * 2 * U * ap / np + 1e-30 : 0, tn = nn ? (e - s) * 2 * U * an / nn + 1e-30 : 0;
          for (let i = s; i < e; i++) {
            if (x[i] < 0) f.ok(Math.abs(y[i] - negm) <= tn, () => `n=${n} b=${bucketSize} i=${i}: ${y[i]} vs neg mean ${negm}`);
            else f.ok(Math.abs(y[i] - pos) <= tp, () => `n=${n} b=${bucketSize} i=${i}: ${y[i]} vs pos mean ${pos}`);
          }
        }
      }
    }
    f.done();
  });
});

describe('topk round trip', () => {
  for (const values of ['f32', 'f16', 'bf16'] as const) {
    it(`values ${values}: keeps exactly the k largest magnitudes (ties to the lower index)`, () => {
      const f = new Fails();
      for (const n of SIZES) {
        for (const opt of [{ ratio: 0.01 }, { ratio: 0.3 }, { k: 5 }, { ratio: 1 }]) {
          const c = topk({ ...opt, values });
          const x = data(n, n + 5);
          const p = c.compress(x, { seed: 99 });
          const y = decompress(p);
          common(c, x, p, y);
          const k = n === 0 ? 0 : Math.min(n, 'k' in opt ? opt.k : Math.max(1, Math.ceil(opt.ratio * n)));
          expect((inspect(p).params as { k: number }).k).toBe(k);
          // the selected set: the k largest |x|, ties to the lower index
          const order = Array.from(x.keys()).sort((a, b) => Math.abs(x[b]) - Math.abs(x[a]) || a - b);
          const sel = new Set(order.slice(0, k));
          const relTol = values === 'f32' ? 0 : values === 'f16' ? 2 ** -11 : 2 ** -8;
          for (let i = 0; i < n; i++) {
            // f16 / bf16: round to nearest (half an ulp: 2^-11, 2^-8 relative); f16 subnormals: 2^-25 absolute
            if (sel.has(i)) f.ok(Math.abs(y[i] - x[i]) <= relTol * Math.abs(x[i]) + (values === 'f16' ? 2 ** -25 : 0), () => `n=${n} i=${i}: ${y[i]} vs ${x[i]}`);
            else f.ok(y[i] === 0, () => `n=${n} ${JSON.stringify(opt)} i=${i}: not selected but ${y[i]}`);
          }
        }
      }
      f.done();
    });
  }
});

describe('randomk round trip', () => {
  it('k values, each x_i * fround(n/k), indices regenerated from the seed', () => {
    const f = new Fails();
    for (const n of SIZES) {
      for (const opt of [{ ratio: 0.01 }, { ratio: 0.5 }, { k: 3 }, { ratio: 1 }]) {
        const c = randomk(opt);
        const x = data(n, n + 9);
        for (let i = 0; i < n; i++) if (x[i] === 0) x[i] = 0.5; // so every kept value is non-zero
        const p = c.compress(x, { seed: 1234 });
        const y = decompress(p);
        common(c, x, p, y);
        const k = n === 0 ? 0 : Math.min(n, 'k' in opt ? opt.k : Math.max(1, Math.ceil(opt.ratio * n)));
        const scale = k ? Math.fround(n / k) : 0;
        let nz = 0;
        for (let i = 0; i < n; i++) {
          if (y[i] !== 0) { nz++; f.ok(y[i] === Math.fround(x[i] * scale), () => `n=${n} i=${i}: ${y[i]} vs ${x[i]} * ${scale}`); }
        }
        expect(nz).toBe(k);
        // no index bits travel: the payload is exactly k float32 values (FORMAT 4.1)
        expect(inspect(p).payloadBytes).toBe(4 * k);
      }
    }
    f.done();
  });
});

describe('nonuniform round trip', () => {
  it('each value is M_b * q_j for a level j adjacent to |x_i| / M_b', () => {
    const f = new Fails();
    for (const n of SIZES) {
      for (const bucketSize of BUCKETS) {
        for (const opts of [{}, { levels: 3, shape: 0.7 }]) {
          const c = nonuniform({ bucketSize, ...opts });
          const x = data(n, n * 3 + bucketSize);
          const p = c.compress(x, { seed: 5 });
          const y = decompress(p);
          common(c, x, p, y);
          const q = (inspect(p).params as { levelTable: number[] }).levelTable;
          expect(q[0]).toBe(0);
          expect(q[q.length - 1]).toBe(1);
          for (const [s, e] of buckets(n, bucketSize)) {
            const M = Math.fround(linf(x, s, e));
            for (let i = s; i < e; i++) {
              f.ok(y[i] * x[i] >= 0, () => `sign i=${i}`);
              if (M === 0) { f.ok(y[i] === 0, () => `zero bucket i=${i}`); continue; }
              const j = q.findIndex((qj) => Math.fround(M * qj) === Math.abs(y[i]));
              f.ok(j >= 0, () => `n=${n} b=${bucketSize} i=${i}: ${y[i]} is not M * a level (M=${M})`);
              if (j < 0) continue;
              const a = Math.abs(x[i]) / M;
              // a lies between the neighbouring levels of the chosen one (float slack 1e-6)
              f.ok(a >= (j > 0 ? q[j - 1] : 0) - 1e-6 && a <= (j < q.length - 1 ? q[j + 1] : 1) + 1e-6,
                () => `n=${n} b=${bucketSize} i=${i}: a=${a} not next to level ${j} (${q[j]})`);
            }
          }
        }
      }
    }
    f.done();
  });
});

describe('every codec', () => {
  const all: Array<[string, () => Compressor]> = [
    ['qsgd', () => qsgd()], ['qsgd gamma', () => qsgd({ coding: 'gamma' })], ['qsgd sparse', () => qsgd({ coding: 'sparse' })],
    ['terngrad', () => terngrad()], ['onebit', () => onebit()], ['topk', () => topk()], ['randomk', () => randomk()],
    ['nonuniform', () => nonuniform()],
  ];
  for (const [label, make] of all) {
    it(`${label}: zero vector -> zeros, n = 0 -> valid empty packet`, () => {
      const c = make();
      for (const n of [1, 7, 4097]) {
        const z = new Float32Array(n);
        const y = decompress(c.compress(z, { seed: 1 }));
        expect(Array.from(y).every((v) => v === 0)).toBe(true);
      }
      const p = c.compress(new Float32Array(0), { seed: 1 });
      expect(decompress(p).length).toBe(0);
      const i = inspect(p);
      expect(i.n).toBe(0);
      expect(i.bitsPerElement).toBe(0);
      expect(decompressAdd(p, new Float32Array(0)).length).toBe(0);
    });
  }
});

// ---------------------------------------------------------------------------------------------------------
describe('errorFeedback', () => {
  // Identity for alpha = beta = 1: h_{t+1} = h_t + g - q_t exactly in real arithmetic, so
  // sum_{t<T} q_t = T g + h_0 - h_T = T g - h_T (h_0 = 0). In float32 each step computes
  // h' = fl(h + fl(g - q)), with error at most u (|g - q| + |h'|) (two roundings, each at most u times its result,
  // and |fl(g - q)| <= (1+u)|g - q|). Summed over the steps this bounds |sum q - (T g - h_T)| elementwise; the
  // sums on the JS side are in float64 (their own error is far below this). The test accumulates that bound.
  const cases: Array<[string, () => Compressor, number]> = [
    ['topk', () => topk({ ratio: 0.05 }), 200],
    ['onebit', () => onebit({ bucketSize: 64 }), 200],
    ['qsgd (small alpha irrelevant here: alpha = 1)', () => qsgd({ levels: 4, bucketSize: 128 }), 100],
    ['randomk', () => randomk({ ratio: 0.25 }), 100],
    ['terngrad', () => terngrad({ bucketSize: 64 }), 100],
  ];
  for (const [label, make, T] of cases) {
    it(`${label}: sum of decoded packets = T g - h_T (float32 tolerance derived per step)`, () => {
      const n = 1000;
      const g = data(n, 77);
      const ef = errorFeedback(make(), { alpha: 1, beta: 1 });
      const sum = new Float64Array(n), tol = new Float64Array(n);
      for (let t = 0; t < T; t++) {
        const q = decompress(ef.compress(g, { seed: t }));
        const h = ef.residual();
        for (let i = 0; i < n; i++) {
          sum[i] += q[i];
          tol[i] += U * (Math.abs(g[i] - q[i]) * 1.01 + Math.abs(h[i]));
        }
      }
      const h = ef.residual();
      const f = new Fails();
      for (let i = 0; i < n; i++) {
        const err = Math.abs(sum[i] - (T * g[i] - h[i]));
        f.ok(err <= 2 * tol[i] + 1e-12, () => `i=${i}: |sum q - (T g - h_T)| = ${err} > ${2 * tol[i]}`);
      }
      f.done();
    });
  }

  it('running mean converges to g: like 1/T for topk, like 1/sqrt(T) for onebit', () => {
    // mean_T - g = -h_T / T. topk on a constant gradient keeps h_T bounded (every coordinate is sent once its
    // residual grows large enough), so the error falls ~16x from T = 25 to T = 400; onebit's h_T grows like
    // sqrt(T) (SPEC), so its error falls ~4x. We require 8x and 2x.
    const n = 2000;
    const g = data(n, 5);
    const gn = Math.sqrt(g.reduce((a, v) => a + v * v, 0));
    const relErrAt = (c: Compressor, Ts: number[]): number[] => {
      const ef = errorFeedback(c);
      const sum = new Float64Array(n);
      const out: number[] = [];
      for (let t = 1; t <= Ts[Ts.length - 1]; t++) {
        const q = decompress(ef.compress(g));
        for (let i = 0; i < n; i++) sum[i] += q[i];
        if (Ts.includes(t)) {
          let e = 0;
          for (let i = 0; i < n; i++) e += (sum[i] / t - g[i]) ** 2;
          out.push(Math.sqrt(e) / gn);
        }
      }
      return out;
    };
    const [tk25, tk400] = relErrAt(topk({ ratio: 0.1 }), [25, 400]);
    expect(tk400).toBeLessThan(tk25 / 8);
    expect(tk400).toBeLessThan(0.05);
    const [ob25, ob400] = relErrAt(onebit({ bucketSize: 128 }), [25, 400]);
    expect(ob400).toBeLessThan(ob25 / 2);
    expect(ob400).toBeLessThan(0.25);
  });
});
