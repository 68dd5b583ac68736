// Determinism: one seed gives the same bytes for every call path (sync, async, threads, SIMD/scalar, out
// buffer), and decompressAdd is bit-exact against float32 arithmetic done here with Math.fround.
import { afterEach, describe, expect, it } from 'vitest';
import {
  decompress, decompressAdd, decompressAddAsync, decompressAsync, errorFeedback, inspect, nonuniform, onebit, qsgd,
  randomk, terngrad, topk, type Compressor,
} from '../dist/cjs/index.js';

// Yield to the event loop between tests: these tests are synchronous, and vitest's worker RPC (60 s reply timeout)
// needs the loop to run now and then on a loaded machine.
afterEach(() => new Promise<void>((resolve) => setImmediate(resolve)));

function data(n: number, seed: number): Float32Array {
  const x = new Float32Array(n);
  let s = (seed * 2654435761) >>> 0 || 1;
  const u = (): number => { s = (Math.imul(s, 1664525) + 1013904223) >>> 0; return s / 4294967296; };
  for (let i = 0; i < n; i++) x[i] = (u() + u() + u() - 1.5) * (i % 97 === 0 ? 40 : 1);
  return x;
}

function same(a: Uint8Array, b: Uint8Array): boolean {
  return a.byteLength === b.byteLength && Buffer.compare(Buffer.from(a.buffer, a.byteOffset, a.byteLength),
    Buffer.from(b.buffer, b.byteOffset, b.byteLength)) === 0;
}

type Make = (o: { threads?: number; forceScalar?: boolean }) => Compressor;
const CODECS: Array<[string, Make, boolean]> = [ // [label, factory, randomized]
  ['qsgd fixed', (o) => qsgd({ bucketSize: 333, ...o }), true],
  ['qsgd gamma', (o) => qsgd({ coding: 'gamma', bucketSize: 511, ...o }), true],
  ['qsgd sparse', (o) => qsgd({ coding: 'sparse', levels: 16, bucketSize: 257, ...o }), true],
  ['qsgd linf s=7', (o) => qsgd({ levels: 7, norm: 'linf', bucketSize: 1021, ...o }), true],
  ['terngrad', (o) => terngrad({ bucketSize: 129, ...o }), true],
  ['onebit', (o) => onebit({ bucketSize: 77, ...o }), false],
  ['topk', (o) => topk({ ratio: 0.02, ...o }), false],
  ['topk bf16', (o) => topk({ k: 999, values: 'bf16', ...o }), false],
  ['randomk', (o) => randomk({ ratio: 0.03, ...o }), true],
  ['nonuniform', (o) => nonuniform({ bucketSize: 255, ...o }), true],
];
const SIZES = [0, 1, 7, 1000, 4097, 100003];

describe.each(CODECS)('%s', (_label, make, randomized) => {
  it('same seed => same bytes; different seed => different bytes (randomized codecs)', () => {
    for (const n of SIZES) {
      const x = data(n, n + 1);
      const a = make({}).compress(x, { seed: 42 });
      const b = make({}).compress(x, { seed: 42 });
      expect(same(a, b)).toBe(true);
      expect(same(make({}).compress(x, { seed: 42n }), a)).toBe(true); // number and bigint seeds are one key
      if (n >= 1000) {
        const c = make({}).compress(x, { seed: 43 });
        expect(same(a, c)).toBe(!randomized);
      }
    }
  });

  it('compress = compressAsync, with and without out', async () => {
    for (const n of SIZES) {
      const x = data(n, 2 * n + 3);
      const c = make({});
      const a = c.compress(x, { seed: 5 });
      const b = await c.compressAsync(x, { seed: 5 });
      expect(same(a, b)).toBe(true);
      const out = new Uint8Array(c.maxCompressedBytes(n) + 3);
      const d = await c.compressAsync(x, { seed: 5, out });
      expect(d.buffer).toBe(out.buffer);
      expect(same(a, d)).toBe(true);
    }
  });

  it('threads 1 = threads 2 = default, SIMD = scalar', async () => {
    for (const n of [...SIZES, (1 << 20) + 5]) {
      const x = data(n, n + 11);
      const ref = make({ threads: 1, forceScalar: true }).compress(x, { seed: 9 });
      for (const o of [{ threads: 1 }, { threads: 2 }, {}, { threads: 2, forceScalar: true }, { threads: 3 }]) {
        expect(same(make(o).compress(x, { seed: 9 }), ref), JSON.stringify(o)).toBe(true);
      }
      // decoding too: the same floats whatever the thread count or path
      const y1 = decompress(ref, undefined, { threads: 1, forceScalar: true });
      const y2 = decompress(ref, undefined, { threads: 2 });
      expect(Buffer.from(y1.buffer).equals(Buffer.from(y2.buffer))).toBe(true);
      expect(Buffer.from((await decompressAsync(ref)).buffer).equals(Buffer.from(y1.buffer))).toBe(true);
    }
  });

  it('decompressAdd = acc + alpha * decompress, bit-exact in float32 (sync and async)', async () => {
    for (const n of SIZES) {
      const x = data(n, n + 17);
      const p = make({}).compress(x, { seed: 1 });
      const v = decompress(p);
      for (const alpha of [1, 0.25, -3.7, 1e-3]) {
        const acc = data(n, n + 23);
        const a32 = Math.fround(alpha);
        const want = new Float32Array(n);
        for (let i = 0; i < n; i++) want[i] = Math.fround(acc[i] + Math.fround(a32 * v[i]));
        const acc2 = acc.slice();
        expect(decompressAdd(p, acc, alpha)).toBe(acc);
        expect(Buffer.from(acc.buffer).equals(Buffer.from(want.buffer))).toBe(true);
        expect(await decompressAddAsync(p, acc2, alpha)).toBe(acc2);
        expect(Buffer.from(acc2.buffer).equals(Buffer.from(want.buffer))).toBe(true);
      }
    }
  });
});

describe('seeds', () => {
  it('without a seed, a fresh one is drawn and recorded (flags bit 0)', () => {
    const x = data(5000, 1);
    const c = qsgd();
    const a = c.compress(x), b = c.compress(x);
    const ia = inspect(a), ib = inspect(b);
    expect(ia.seedDrawn).toBe(true);
    expect(typeof ia.seed).toBe('bigint');
    expect(ia.seed).not.toBe(ib.seed);
    // the recorded seed reproduces the packet except for the flags byte
    const again = c.compress(x, { seed: ia.seed });
    expect(inspect(again).seedDrawn).toBe(false);
    expect(Buffer.from(decompress(again).buffer).equals(Buffer.from(decompress(a).buffer))).toBe(true);
  });

  it('accepts the full 64-bit range', () => {
    const x = data(100, 2);
    for (const seed of [0, 1, Number.MAX_SAFE_INTEGER, 2n ** 63n, 2n ** 64n - 1n]) {
      const p = qsgd().compress(x, { seed });
      expect(inspect(p).seed).toBe(BigInt(seed));
    }
    // keys that differ only in the high word give different bytes
    expect(same(qsgd().compress(x, { seed: 1n }), qsgd().compress(x, { seed: 1n + (1n << 32n) }))).toBe(false);
  });

  it('deterministic codecs accept a seed and ignore it', () => {
    const x = data(3000, 3);
    for (const c of [onebit(), topk()]) {
      const a = c.compress(x, { seed: 1 }), b = c.compress(x, { seed: 99n }), d = c.compress(x);
      expect(same(a, b) && same(a, d)).toBe(true);
      expect(inspect(a).seed).toBe(0n);
    }
  });
});

describe('errorFeedback determinism', () => {
  it('queued compressAsync calls equal sequential sync calls', async () => {
    const g = data(4097, 8);
    const sync = errorFeedback(topk({ ratio: 0.05 }));
    const asyncEf = errorFeedback(topk({ ratio: 0.05 }));
    const want = [0, 1, 2, 3, 4].map((t) => sync.compress(g, { seed: t }).slice());
    // five overlapping calls: each must see the residual left by the previous one
    const got = await Promise.all([0, 1, 2, 3, 4].map((t) => asyncEf.compressAsync(g, { seed: t })));
    for (let t = 0; t < 5; t++) expect(same(got[t], want[t])).toBe(true);
    expect(Buffer.from(asyncEf.residual().buffer).equals(Buffer.from(sync.residual().buffer))).toBe(true);
  });
});
