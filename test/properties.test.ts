// Property tests (fast-check, fixed seed, bounded runs): every codec on arbitrary finite input and options
// round-trips to a finite array of length n whose error respects the codec's deterministic bound; packets survive
// inspect; random mutations of valid packets (with and without a recomputed CRC, so the damage reaches the payload
// decoder) either decode to finite output of the header's length or throw GradzipError ERR_GRADZIP_CORRUPT.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import * as gz from '../dist/cjs/index.js';

const { qsgd, terngrad, onebit, topk, randomk, nonuniform, decompress, decompressAdd, inspect, GradzipError } = gz as any;

const SEED = 20240601;
const RUNS = Number(process.env.GRADZIP_PROP_RUNS ?? 300);
const F = Math.fround;
const TINY = 2 ** -149;

// ---------- arbitraries ----------
const finiteF32 = fc.float({ noNaN: true, noDefaultInfinity: true, min: F(-1e30), max: F(1e30) });
/** A mix of raw arbitrary float32 arrays and structured ones (Gaussian at a random scale, with zeros and spikes). */
const vecArb: fc.Arbitrary<Float32Array> = fc.oneof(
  fc.array(finiteF32, { maxLength: 700 }).map((a) => Float32Array.from(a)),
  fc.record({
    n: fc.integer({ min: 0, max: 5000 }),
    seed: fc.integer({ min: 1, max: 1 << 30 }),
    exp: fc.integer({ min: -40, max: 28 }),
    zeros: fc.double({ min: 0, max: 1, noNaN: true }),
  }).map(({ n, seed, exp, zeros }) => {
    let a = seed;
    const r = () => { a = (Math.imul(a, 1664525) + 1013904223) >>> 0; return (a + 0.5) / 4294967296; };
    const x = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      if (r() < zeros) continue;
      x[i] = 10 ** exp * Math.sqrt(-2 * Math.log(r())) * Math.cos(2 * Math.PI * r());
      if (r() < 0.01) x[i] *= 1000;
    }
    return x;
  }),
);

type Spec = { kind: string; opts: Record<string, unknown> };
const bucketArb = fc.oneof(fc.integer({ min: 1, max: 64 }), fc.integer({ min: 65, max: 4096 }));
const kOrRatio = fc.oneof(
  fc.record({ k: fc.integer({ min: 1, max: 6000 }) }),
  fc.record({ ratio: fc.double({ min: 1e-4, max: 1, noNaN: true }) }),
);
const specArb: fc.Arbitrary<Spec> = fc.oneof(
  fc.record({
    levels: fc.oneof(fc.integer({ min: 1, max: 16 }), fc.constantFrom(31, 255, 1024, 65535)),
    bucketSize: bucketArb,
    norm: fc.constantFrom('l2', 'linf'),
    coding: fc.constantFrom('fixed', 'gamma', 'sparse'),
  }).map((opts) => ({ kind: 'qsgd', opts })),
  fc.record({ bucketSize: bucketArb }).map((opts) => ({ kind: 'terngrad', opts })),
  fc.record({ bucketSize: bucketArb }).map((opts) => ({ kind: 'onebit', opts })),
  fc.tuple(kOrRatio, fc.constantFrom('f32', 'f16', 'bf16')).map(([kr, values]) => ({ kind: 'topk', opts: { ...kr, values } })),
  kOrRatio.map((opts) => ({ kind: 'randomk', opts })),
  fc.record({
    levels: fc.integer({ min: 1, max: 64 }),
    bucketSize: bucketArb,
    shape: fc.option(fc.double({ min: 0.2, max: 5, noNaN: true }), { nil: undefined }),
  }).map(({ shape, ...o }) => ({ kind: 'nonuniform', opts: shape === undefined ? o : { ...o, shape } })),
);
const factories: Record<string, (o: any) => any> = { qsgd, terngrad, onebit, topk, randomk, nonuniform };
const make = (s: Spec) => factories[s.kind](s.opts);

// ---------- deterministic error bounds ----------
function bucketStats(v: Float32Array, start: number, end: number) {
  let l2 = 0, max = 0;
  for (let i = start; i < end; i++) { l2 += v[i] * v[i]; max = Math.max(max, Math.abs(v[i])); }
  return { l2: Math.sqrt(l2), max };
}
function resolveK(opts: any, n: number) {
  if (n === 0) return 0;
  const k = opts.k !== undefined ? opts.k : Math.max(1, Math.ceil(opts.ratio * n));
  return Math.min(k, n);
}
function nuLevels(p: Uint8Array): number[] {
  const dv = new DataView(p.buffer, p.byteOffset, p.byteLength);
  const L = dv.getUint32(48, true);
  return Array.from({ length: L + 1 }, (_, t) => dv.getFloat32(60 + 4 * t, true));
}

/** Throws a descriptive error when d violates the codec's deterministic bound for input v. */
// Buckets with a tiny scale (N < s * 2^-112, where s / N * 65536 overflows float32) once decoded to zeros; FORMAT 3.1
// now pre-scales them by 2^64. The dedicated test 'tiny buckets' below keeps that case covered.
function checkBound(spec: Spec, v: Float32Array, d: Float32Array, pkt: Uint8Array) {
  const n = v.length, o: any = spec.opts;
  const fail = (i: number, why: string) => { throw new Error(`${spec.kind} ${JSON.stringify(o)} n=${n} i=${i}: v=${v[i]} d=${d[i]}: ${why}`); };
  if (d.length !== n) throw new Error(`length ${d.length} != ${n}`);
  for (let i = 0; i < n; i++) if (!Number.isFinite(d[i])) fail(i, 'not finite');
  const b = o.bucketSize ?? 512;
  if (spec.kind === 'qsgd' || spec.kind === 'terngrad') {
    const s = spec.kind === 'qsgd' ? o.levels : 1;
    const norm = spec.kind === 'qsgd' ? o.norm : 'linf';
    for (let j = 0; j < n; j += b) {
      const e = Math.min(n, j + b);
      const st = bucketStats(v, j, e);
      const N = norm === 'l2' ? st.l2 : st.max;
      // zeta in {l, l+1} with l <= s|v|/N <= l+1: |Q - v| <= N/s (one level), plus float slack
      const bound = (N / s) * (1 + 2 ** -18) + (s + 2) * TINY;
      for (let i = j; i < e; i++) {
        if (Math.abs(d[i] - v[i]) > bound) fail(i, `|Q-v| > N/s = ${N / s}`);
        if (d[i] * v[i] < 0) fail(i, 'sign flipped');
        if (spec.kind === 'terngrad' && !(d[i] === 0 || Math.abs(d[i]) === st.max)) fail(i, `not in {0, +-${st.max}}`);
      }
    }
  } else if (spec.kind === 'onebit') {
    for (let j = 0; j < n; j += b) {
      const e = Math.min(n, j + b);
      const st = bucketStats(v, j, e);
      let pos: number | undefined, neg: number | undefined;
      for (let i = j; i < e; i++) {
        if (v[i] < 0) { neg ??= d[i]; if (d[i] !== neg) fail(i, 'negative class not one value'); if (d[i] > 0) fail(i, 'neg mean > 0'); }
        else { pos ??= d[i]; if (d[i] !== pos) fail(i, 'non-negative class not one value'); if (d[i] < 0) fail(i, 'pos mean < 0'); }
        if (Math.abs(d[i]) > st.max * (1 + 2 ** -18)) fail(i, 'mean beyond bucket max');
      }
    }
  } else if (spec.kind === 'nonuniform') {
    const q = nuLevels(pkt);
    let gap = 0;
    for (let t = 1; t < q.length; t++) gap = Math.max(gap, q[t] - q[t - 1]);
    for (let j = 0; j < n; j += b) {
      const e = Math.min(n, j + b);
      const M = bucketStats(v, j, e).max;
      const bound = M * gap * (1 + 2 ** -16) + M * 2 ** -20 + 4 * TINY;
      for (let i = j; i < e; i++) {
        if (Math.abs(d[i] - v[i]) > bound) fail(i, `|Q-v| > M * max gap = ${M * gap}`);
        if (Math.abs(d[i]) > M) fail(i, 'beyond bucket max');
        if (d[i] * v[i] < 0) fail(i, 'sign flipped');
      }
    }
  } else if (spec.kind === 'topk') {
    const k = resolveK(o, n);
    let nnz = 0, minSel = Infinity, maxUnsel = 0;
    for (let i = 0; i < n; i++) {
      if (d[i] !== 0) { nnz++; minSel = Math.min(minSel, Math.abs(v[i])); } else maxUnsel = Math.max(maxUnsel, Math.abs(v[i]));
      if (d[i] * v[i] < 0) fail(i, 'sign flipped');
      if ((o.values ?? 'f32') === 'f32' && d[i] !== 0 && d[i] !== v[i]) fail(i, 'f32 value changed');
    }
    if (nnz > k) throw new Error(`topk: ${nnz} non-zeros > k = ${k}`);
    if ((o.values ?? 'f32') === 'f32' && nnz > 0 && maxUnsel > minSel) throw new Error(`topk: dropped ${maxUnsel} > kept ${minSel}`);
  } else if (spec.kind === 'randomk') {
    const k = resolveK(o, n);
    const scale = n ? F(n / k) : 0;
    let nnz = 0;
    for (let i = 0; i < n; i++) {
      if (d[i] !== 0) nnz++;
      if (d[i] !== 0 && d[i] !== F(v[i] * scale)) fail(i, `not v * n/k = ${F(v[i] * scale)}`);
    }
    if (nnz > k) throw new Error(`randomk: ${nnz} non-zeros > k = ${k}`);
  }
}

const codecName: Record<string, number> = { qsgd: 1, terngrad: 2, onebit: 3, topk: 4, randomk: 5, nonuniform: 6 };

describe('round trip on arbitrary input and options', () => {
  it('decompress(compress(x)) has length n, is finite and within the codec bound; inspect agrees', () => {
    fc.assert(
      fc.property(vecArb, specArb, fc.integer({ min: 0, max: 2 ** 31 }), (v, spec, seed) => {
        const c = make(spec);
        const pkt: Uint8Array = c.compress(v, { seed });
        expect(pkt).toBeInstanceOf(Uint8Array);
        expect(pkt.length).toBeLessThanOrEqual(c.maxCompressedBytes(v.length));
        expect(pkt[5]).toBe(codecName[spec.kind]);
        const ins = inspect(pkt);
        expect(ins.n).toBe(v.length);
        expect(ins.bytes).toBe(pkt.length);
        expect(typeof ins.seed).toBe('bigint');
        const d = decompress(pkt);
        checkBound(spec, v, d, pkt);
        // the same bytes again with the same seed; decompress into a caller's buffer gives the same values
        expect(Buffer.from(c.compress(v, { seed })).equals(Buffer.from(pkt))).toBe(true);
        const out = new Float32Array(v.length).fill(123);
        decompress(pkt, out);
        expect(Buffer.from(out.buffer).equals(Buffer.from(d.buffer, d.byteOffset, d.byteLength))).toBe(true);
      }),
      { seed: SEED, numRuns: RUNS },
    );
  });
  it('tiny buckets (scale below s * 2^-112, subnormal data) also stay within one level of v', () => {
    // Formerly failing: qsgd({levels: 1, norm: 'linf'}).compress(Float32Array.of(1.12e-44)) decoded to [0]
    // (r * 65536 was clamped to FLT_MAX, so every zeta was 0).
    const tiny = fc.array(fc.float({ noNaN: true, min: F(-1e-36), max: F(1e-36) }), { minLength: 1, maxLength: 200 });
    const qs = fc.record({
      levels: fc.integer({ min: 1, max: 16 }), bucketSize: bucketArb, norm: fc.constantFrom('l2', 'linf'),
      coding: fc.constantFrom('fixed', 'gamma', 'sparse'),
    }).map((opts) => ({ kind: 'qsgd', opts }) as Spec);
    fc.assert(
      fc.property(tiny.map((a) => Float32Array.from(a)), qs, (v, spec) => {
        const pkt = make(spec).compress(v, { seed: 1 });
        checkBound(spec, v, decompress(pkt), pkt);
      }),
      { seed: SEED + 5, numRuns: Math.ceil(RUNS / 3) },
    );
  });
  it('the bytes do not depend on the SIMD path or the thread count (forceScalar, threads 1 / 2)', () => {
    fc.assert(
      fc.property(vecArb, specArb, fc.integer({ min: 0, max: 2 ** 31 }), (v, spec, seed) => {
        const ref = Buffer.from(make(spec).compress(v, { seed }));
        for (const extra of [{ forceScalar: true }, { threads: 1 }, { threads: 2 }]) {
          const p = factories[spec.kind]({ ...spec.opts, ...extra }).compress(v, { seed });
          if (!ref.equals(Buffer.from(p))) throw new Error(`${spec.kind} ${JSON.stringify(spec.opts)} ${JSON.stringify(extra)}: bytes differ`);
        }
        const pkt = new Uint8Array(ref);
        const d0 = decompress(pkt);
        for (const o of [{ forceScalar: true }, { threads: 2 }]) {
          const d = decompress(pkt, undefined, o);
          if (!Buffer.from(d.buffer, d.byteOffset, d.byteLength).equals(Buffer.from(d0.buffer, d0.byteOffset, d0.byteLength))) throw new Error(`${spec.kind}: decode differs with ${JSON.stringify(o)}`);
        }
      }),
      { seed: SEED + 6, numRuns: Math.ceil(RUNS / 2) },
    );
  });
  it('decompressAdd(p, acc, a) is exactly acc + fround(a * decoded) per element (no FMA)', () => {
    fc.assert(
      fc.property(vecArb, specArb, fc.constantFrom(1, 0.25, -0.5, 3), (v, spec, alpha) => {
        const pkt = make(spec).compress(v, { seed: 9 });
        const d = decompress(pkt);
        const acc = Float32Array.from(v, (x, i) => (i % 3) - 1);
        const want = Float32Array.from(acc, (a, i) => F(a + F(alpha * d[i])));
        decompressAdd(pkt, acc, alpha);
        for (let i = 0; i < v.length; i++) if (!Object.is(acc[i], want[i]) && !(acc[i] === 0 && want[i] === 0)) throw new Error(`i=${i}: ${acc[i]} != ${want[i]}`);
      }),
      { seed: SEED + 1, numRuns: Math.ceil(RUNS / 3) },
    );
  });
  it('compressAsync gives the same bytes as compress', async () => {
    await fc.assert(
      fc.asyncProperty(vecArb, specArb, async (v, spec) => {
        const c = make(spec);
        const a = await c.compressAsync(v, { seed: 77 });
        expect(Buffer.from(a).equals(Buffer.from(c.compress(v, { seed: 77 })))).toBe(true);
      }),
      { seed: SEED + 2, numRuns: Math.ceil(RUNS / 6) },
    );
  });
  it('huge magnitudes: either a valid round trip or ERR_GRADZIP_NONFINITE (l2 norm overflow), never NaN', () => {
    const huge = fc.array(fc.float({ noNaN: true, noDefaultInfinity: true, min: F(-3.4e38), max: F(3.4e38) }), { minLength: 1, maxLength: 300 });
    fc.assert(
      fc.property(huge.map((a) => Float32Array.from(a)), specArb.filter((sp) => sp.kind !== 'randomk'), (v, spec) => {
        let pkt: Uint8Array;
        try { pkt = make(spec).compress(v, { seed: 1 }); } catch (e: any) {
          expect(e).toBeInstanceOf(GradzipError);
          expect(e.code).toBe('ERR_GRADZIP_NONFINITE');
          return;
        }
        const d = decompress(pkt);
        expect(d.length).toBe(v.length);
        for (const y of d) expect(Number.isFinite(y)).toBe(true);
      }),
      { seed: SEED + 3, numRuns: Math.ceil(RUNS / 3) },
    );
  });
  it('randomk: |v_i| * n/k beyond FLT_MAX is rejected (NONFINITE) rather than decoded to +-Inf', () => {
    // Formerly failing: randomk({ k: 1 }).compress(Float32Array.of(3e38, 0), { seed: 1 }) decoded to [Infinity, 0].
    const v = Float32Array.of(3e38, 0);
    let d: Float32Array | undefined;
    try { d = decompress(randomk({ k: 1 }).compress(v, { seed: 1 })); } catch (e: any) {
      expect(e).toBeInstanceOf(GradzipError);
      expect(e.code).toBe('ERR_GRADZIP_NONFINITE');
    }
    if (d) for (const y of d) expect(Number.isFinite(y)).toBe(true);
  });
});

// ---------- mutations ----------
const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let i = 0; i < 256; i++) {
    let c = i;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
    t[i] = c >>> 0;
  }
  return t;
})();
function crc32c(b: Uint8Array): number {
  let c = 0xffffffff;
  for (let i = 0; i < b.length; i++) c = CRC_TABLE[(c ^ b[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}
function fixCrc(p: Uint8Array): Uint8Array {
  if (p.length < 4) return p;
  new DataView(p.buffer, p.byteOffset, p.byteLength).setUint32(p.length - 4, crc32c(p.subarray(0, p.length - 4)), true);
  return p;
}

type Mut = { op: 'flip' | 'set' | 'truncate' | 'append' | 'header'; pos: number; val: number };
const mutArb: fc.Arbitrary<Mut> = fc.record({
  op: fc.constantFrom('flip', 'set', 'truncate', 'append', 'header'),
  pos: fc.nat(),
  val: fc.nat(),
}) as fc.Arbitrary<Mut>;
function mutate(p0: Uint8Array, muts: Mut[]): Uint8Array {
  let p = Uint8Array.from(p0);
  for (const m of muts) {
    if (p.length === 0 && m.op !== 'append') continue;
    if (m.op === 'flip') p[m.pos % p.length] ^= 1 << (m.val % 8);
    else if (m.op === 'set') p[m.pos % p.length] = m.val & 0xff;
    else if (m.op === 'header') p[(m.pos % 64) % p.length] = [0, 1, 0xff, 0x7f, 0x80, m.val & 0xff][m.val % 6];
    else if (m.op === 'truncate') p = p.slice(0, m.pos % (p.length + 1));
    else {
      const q = new Uint8Array(p.length + 1 + (m.val % 16));
      q.set(p);
      p = q;
    }
  }
  return p;
}
function headerN(p: Uint8Array): number {
  if (p.length < 16) return 0;
  return Number(new DataView(p.buffer, p.byteOffset, p.byteLength).getBigUint64(8, true));
}

describe('mutated packets', () => {
  it('decode to finite output of length n or throw GradzipError ERR_GRADZIP_CORRUPT; decompressAdd leaves acc untouched on error', () => {
    const stats = { decoded: 0, corrupt: 0, invalidArg: 0 };
    const small = vecArb.filter((v) => v.length <= 3000);
    fc.assert(
      fc.property(small, specArb, fc.array(mutArb, { minLength: 1, maxLength: 4 }), fc.boolean(), (v, spec, muts, recrc) => {
        const good = make(spec).compress(v, { seed: 3 });
        let bad = mutate(good, muts);
        if (recrc) bad = fixCrc(bad);
        const n = headerN(bad);
        const expectCorrupt = (e: any) => {
          if (!(e instanceof GradzipError) || e.code !== 'ERR_GRADZIP_CORRUPT') throw new Error(`expected ERR_GRADZIP_CORRUPT, got ${e?.constructor?.name} ${e?.code}: ${e?.message}`);
        };
        try { inspect(bad); } catch (e) { expectCorrupt(e); }
        if (n <= 1 << 24) { // a valid top-k/random-k header may legitimately ask for up to 2^34 outputs: skip those
          try {
            const d = decompress(bad);
            expect(d.length).toBe(n);
            for (let i = 0; i < d.length; i++) if (!Number.isFinite(d[i])) throw new Error(`non-finite output at ${i}`);
            stats.decoded++;
          } catch (e) { expectCorrupt(e); stats.corrupt++; }
        }
        const acc = Float32Array.from(v);
        const before = Buffer.from(acc.buffer).toString('hex');
        try {
          decompressAdd(bad, acc, 0.5);
        } catch (e: any) {
          if (n !== v.length && e instanceof GradzipError && e.code === 'ERR_GRADZIP_INVALID_ARG') stats.invalidArg++; // acc has the wrong length for the mutated n
          else expectCorrupt(e);
          expect(Buffer.from(acc.buffer).toString('hex')).toBe(before);
        }
      }),
      { seed: SEED + 4, numRuns: RUNS * 2 },
    );
    console.log(`mutations: ${stats.decoded} decoded, ${stats.corrupt} corrupt, ${stats.invalidArg} n changed (acc length)`);
  });
  it('every truncation and every single-bit flip of a small packet of each codec (CRC recomputed) is handled', () => {
    const v = Float32Array.from({ length: 300 }, (_, i) => Math.sin(i) * (i % 7));
    const specs: Spec[] = [
      { kind: 'qsgd', opts: { levels: 4, bucketSize: 64, coding: 'fixed' } },
      { kind: 'qsgd', opts: { levels: 4, bucketSize: 64, coding: 'gamma' } },
      { kind: 'qsgd', opts: { levels: 17, bucketSize: 100, coding: 'sparse' } },
      { kind: 'terngrad', opts: { bucketSize: 50 } },
      { kind: 'onebit', opts: { bucketSize: 50 } },
      { kind: 'topk', opts: { k: 30, values: 'f16' } },
      { kind: 'randomk', opts: { k: 30 } },
      { kind: 'nonuniform', opts: { levels: 8, bucketSize: 64 } },
    ];
    let outcomes = 0;
    const failures: string[] = [];
    for (const spec of specs) {
      const good = make(spec).compress(v, { seed: 1 });
      // [packet, must be rejected]: truncations and plain bit flips always are (CRC32C detects every single-bit error)
      const cases: Array<[Uint8Array, boolean]> = [];
      for (let L = 0; L < good.length; L++) cases.push([good.slice(0, L), true]);
      for (let bit = 0; bit < good.length * 8; bit++) {
        const p = Uint8Array.from(good);
        p[bit >> 3] ^= 1 << (bit & 7);
        cases.push([p, true], [fixCrc(Uint8Array.from(p)), false]);
      }
      for (const [p, mustFail] of cases) {
        const n = headerN(p);
        if (n > 1 << 24) continue;
        try {
          const d = decompress(p);
          if (mustFail) throw new Error(`${spec.kind}: a truncated or bit-flipped packet (length ${p.length}) was accepted`);
          expect(d.length).toBe(n);
          for (const y of d) if (!Number.isFinite(y)) throw new Error(`${spec.kind}: non-finite output`);
        } catch (e: any) {
          if (!(e instanceof GradzipError) || e.code !== 'ERR_GRADZIP_CORRUPT') failures.push(`${spec.kind}: ${e?.code ?? ''} ${e?.message}`);
        }
        outcomes++;
      }
    }
    // A recomputed CRC lets a flipped exponent bit through: random-k once scaled such a huge value by n/k to Inf.
    expect([...new Set(failures)]).toEqual([]);
    expect(outcomes).toBeGreaterThan(1000);
  });
});
