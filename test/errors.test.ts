// Every bad input is a GradzipError with a stable code, never a crash: wrong types, bad options, non-finite
// input, undersized buffers, and truncated / bit-flipped / hostile / random packets.
import { afterEach, describe, expect, it } from 'vitest';
import {
  decompress, decompressAdd, decompressAddAsync, decompressAsync, errorFeedback, GradzipError, inspect, nonuniform,
  onebit, qsgd, randomk, terngrad, topk, type Compressor,
} from '../dist/cjs/index.js';

// Yield to the event loop between tests: these tests are synchronous, and vitest's worker RPC (60 s reply timeout)
// needs the loop to run now and then on a loaded machine.
afterEach(() => new Promise<void>((resolve) => setImmediate(resolve)));

function code(f: () => unknown): string {
  try { f(); } catch (e) {
    expect(e).toBeInstanceOf(GradzipError);
    expect(e).toBeInstanceOf(Error);
    expect((e as Error).name).toBe('GradzipError');
    return (e as GradzipError).code;
  }
  return 'no error';
}
async function codeAsync(p: () => Promise<unknown>): Promise<string> {
  try { await p(); } catch (e) {
    expect(e).toBeInstanceOf(GradzipError);
    return (e as GradzipError).code;
  }
  return 'no error';
}
function message(f: () => unknown): string {
  try { f(); } catch (e) { return (e as Error).message; }
  return '';
}

function data(n: number, seed: number): Float32Array {
  const x = new Float32Array(n);
  let s = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) { s = (Math.imul(s, 1664525) + 1013904223) >>> 0; x[i] = s / 2 ** 31 - 1; }
  return x;
}

// CRC32C (Castagnoli, reflected), FORMAT section 1: to build hostile packets that pass the CRC.
const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let i = 0; i < 256; i++) {
    let c = i;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
    t[i] = c >>> 0;
  }
  return t;
})();
function crc32c(b: Uint8Array, len: number): number {
  let c = 0xffffffff;
  for (let i = 0; i < len; i++) c = CRC_TABLE[(c ^ b[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}
function fixCrc(p: Uint8Array): Uint8Array {
  new DataView(p.buffer, p.byteOffset, p.byteLength).setUint32(p.byteLength - 4, crc32c(p, p.byteLength - 4), true);
  return p;
}

const ALL: Array<[string, () => Compressor]> = [
  ['qsgd', () => qsgd({ bucketSize: 100 })], ['qsgd gamma', () => qsgd({ coding: 'gamma', bucketSize: 64 })],
  ['qsgd sparse', () => qsgd({ coding: 'sparse', levels: 8, bucketSize: 50 })], ['terngrad', () => terngrad({ bucketSize: 33 })],
  ['onebit', () => onebit({ bucketSize: 40 })], ['topk', () => topk({ ratio: 0.1 })],
  ['topk f16', () => topk({ ratio: 0.1, values: 'f16' })], ['randomk', () => randomk({ ratio: 0.1 })],
  ['nonuniform', () => nonuniform({ bucketSize: 70 })],
];

describe('GradzipError', () => {
  it('has a stable code, the name GradzipError and a JS stack', () => {
    let err: unknown;
    try { qsgd().compress(new Float32Array([NaN])); } catch (e) { err = e; }
    expect(err).toBeInstanceOf(GradzipError);
    const e = err as GradzipError;
    expect(e.code).toBe('ERR_GRADZIP_NONFINITE');
    expect(e.name).toBe('GradzipError');
    expect(e.stack).toContain('errors.test.ts');
    expect(String(e)).toMatch(/^GradzipError: /);
  });
});

describe('wrong types', () => {
  const c = qsgd();
  it('compress input must be a Float32Array', async () => {
    for (const bad of [[1, 2, 3], new Float64Array(3), new Uint8Array(4), new Int32Array(2), undefined, null, 5, 'x', {}, new ArrayBuffer(8)]) {
      expect(code(() => c.compress(bad as unknown as Float32Array))).toBe('ERR_GRADZIP_INVALID_ARG');
      expect(await codeAsync(() => c.compressAsync(bad as unknown as Float32Array))).toBe('ERR_GRADZIP_INVALID_ARG');
    }
  });
  it('compress options: seed, out, unknown keys', () => {
    const x = data(10, 1);
    for (const seed of [-1, 1.5, NaN, Infinity, 2 ** 53, -1n, 2n ** 64n, '7', {}]) {
      expect(code(() => c.compress(x, { seed: seed as number }))).toBe('ERR_GRADZIP_INVALID_ARG');
    }
    expect(code(() => c.compress(x, { out: new Float32Array(100) as unknown as Uint8Array }))).toBe('ERR_GRADZIP_INVALID_ARG');
    expect(code(() => c.compress(x, { sead: 1 } as unknown as { seed: number }))).toBe('ERR_GRADZIP_INVALID_ARG');
    expect(code(() => c.compress(x, 7 as unknown as { seed: number }))).toBe('ERR_GRADZIP_INVALID_ARG');
  });
  it('out smaller than maxCompressedBytes(n) is INVALID_ARG, even when the packet would fit', async () => {
    for (const [, make] of ALL) {
      const cc = make();
      const x = data(1000, 2);
      const m = cc.maxCompressedBytes(1000);
      expect(code(() => cc.compress(x, { out: new Uint8Array(m - 1) }))).toBe('ERR_GRADZIP_INVALID_ARG');
      expect(await codeAsync(() => cc.compressAsync(x, { out: new Uint8Array(m - 1) }))).toBe('ERR_GRADZIP_INVALID_ARG');
      expect(code(() => cc.compress(x, { out: new Uint8Array(m) }))).toBe('no error');
    }
  });
  it('decompress: packet type, out length must be n, acc length must be n, alpha finite', async () => {
    const p = c.compress(data(10, 3), { seed: 1 });
    for (const bad of [[1, 2], new Float32Array(4), undefined, 'abc', new ArrayBuffer(60)]) {
      expect(code(() => decompress(bad as unknown as Uint8Array))).toBe('ERR_GRADZIP_INVALID_ARG');
      expect(code(() => inspect(bad as unknown as Uint8Array))).toBe('ERR_GRADZIP_INVALID_ARG');
    }
    expect(code(() => decompress(p, new Float32Array(9)))).toBe('ERR_GRADZIP_INVALID_ARG');
    expect(code(() => decompress(p, new Float32Array(11)))).toBe('ERR_GRADZIP_INVALID_ARG');
    expect(code(() => decompress(p, new Float64Array(10) as unknown as Float32Array))).toBe('ERR_GRADZIP_INVALID_ARG');
    expect(code(() => decompressAdd(p, new Float32Array(11)))).toBe('ERR_GRADZIP_INVALID_ARG');
    expect(code(() => decompressAdd(p, [0, 0] as unknown as Float32Array))).toBe('ERR_GRADZIP_INVALID_ARG');
    expect(code(() => decompressAdd(p, new Float32Array(10), NaN))).toBe('ERR_GRADZIP_INVALID_ARG');
    expect(code(() => decompressAdd(p, new Float32Array(10), '1' as unknown as number))).toBe('ERR_GRADZIP_INVALID_ARG');
    expect(await codeAsync(() => decompressAsync(p, new Float32Array(3)))).toBe('ERR_GRADZIP_INVALID_ARG');
    expect(await codeAsync(() => decompressAddAsync(p, new Float32Array(3)))).toBe('ERR_GRADZIP_INVALID_ARG');
    expect(code(() => c.maxCompressedBytes(-1))).toBe('ERR_GRADZIP_INVALID_ARG');
    expect(code(() => c.maxCompressedBytes(1.5))).toBe('ERR_GRADZIP_INVALID_ARG');
    expect(code(() => c.maxCompressedBytes(2 ** 34 + 1))).toBe('ERR_GRADZIP_INVALID_ARG');
  });
});

describe('bad options', () => {
  const cases: Array<[string, () => unknown, string]> = [
    ['qsgd unknown key', () => qsgd({ level: 4 } as never), 'level'],
    ['qsgd levels 0', () => qsgd({ levels: 0 }), 'levels'],
    ['qsgd levels 65536', () => qsgd({ levels: 65536 }), 'levels'],
    ['qsgd levels 2.5', () => qsgd({ levels: 2.5 }), 'levels'],
    ['qsgd levels "4"', () => qsgd({ levels: '4' } as never), 'levels'],
    ['qsgd bucketSize 0', () => qsgd({ bucketSize: 0 }), 'bucketSize'],
    ['qsgd bucketSize NaN', () => qsgd({ bucketSize: NaN }), 'bucketSize'],
    ['qsgd norm', () => qsgd({ norm: 'l1' } as never), 'norm'],
    ['qsgd coding', () => qsgd({ coding: 'huffman' } as never), 'coding'],
    ['qsgd nonFinite', () => qsgd({ nonFinite: 'ignore' } as never), 'nonFinite'],
    ['qsgd threads -1', () => qsgd({ threads: -1 }), 'threads'],
    ['qsgd options not an object', () => qsgd(4 as never), 'options'],
    ['qsgd options null', () => qsgd(null as never), 'options'],
    ['terngrad levels', () => terngrad({ levels: 2 } as never), 'levels'],
    ['onebit bucketSize -3', () => onebit({ bucketSize: -3 }), 'bucketSize'],
    ['topk ratio 0', () => topk({ ratio: 0 }), 'ratio'],
    ['topk ratio 1.5', () => topk({ ratio: 1.5 }), 'ratio'],
    ['topk k 0', () => topk({ k: 0 }), "'k'"],
    ['topk both', () => topk({ k: 3, ratio: 0.1 }), 'ratio'],
    ['topk values', () => topk({ values: 'f64' } as never), 'values'],
    ['randomk k 1.5', () => randomk({ k: 1.5 }), "'k'"],
    ['randomk values', () => randomk({ values: 'f16' } as never), 'values'],
    ['nonuniform levels 65', () => nonuniform({ levels: 65 }), 'levels'],
    ['nonuniform shape 0', () => nonuniform({ shape: 0 }), 'shape'],
    ['nonuniform shape NaN', () => nonuniform({ shape: NaN }), 'shape'],
    ['errorFeedback inner', () => errorFeedback({} as never), 'inner'],
    ['errorFeedback alpha', () => errorFeedback(qsgd(), { alpha: 'x' } as never), 'alpha'],
    ['errorFeedback unknown', () => errorFeedback(qsgd(), { gamma: 1 } as never), 'gamma'],
  ];
  it.each(cases)('%s -> INVALID_ARG naming the option', (_l, f, name) => {
    expect(code(f)).toBe('ERR_GRADZIP_INVALID_ARG');
    expect(message(f)).toContain(name);
  });
  it('undefined option values mean the default', () => {
    expect(qsgd({ levels: undefined }).options.levels).toBe(4);
  });
});

describe('non-finite input', () => {
  for (const [label, make] of ALL) {
    it(`${label}: NaN/Inf -> NONFINITE; nonFinite 'zero' = the same input with zeros`, async () => {
      const c = make();
      const opts = { ...(c.options as object), nonFinite: 'zero' } as Record<string, unknown>;
      // rebuild the same codec with nonFinite: 'zero' from its resolved options
      const name = c.name as 'qsgd';
      const factories = { qsgd, terngrad, onebit, topk, randomk, nonuniform } as Record<string, (o: unknown) => Compressor>;
      const z = factories[name](opts);
      for (const bad of [NaN, Infinity, -Infinity]) {
        for (const at of [0, 517, 999]) {
          const x = data(1000, at + 1);
          x[at] = bad;
          expect(code(() => c.compress(x, { seed: 3 }))).toBe('ERR_GRADZIP_NONFINITE');
          expect(await codeAsync(() => c.compressAsync(x, { seed: 3 }))).toBe('ERR_GRADZIP_NONFINITE');
          const clean = x.slice();
          clean[at] = 0;
          const a = z.compress(x, { seed: 3 });
          const b = z.compress(clean, { seed: 3 });
          expect(Buffer.from(a).equals(Buffer.from(b))).toBe(true);
          expect(Array.from(x).some(Number.isNaN) || !Number.isFinite(x[at])).toBe(true); // input untouched
        }
      }
    });
  }
  it('errorFeedback: NONFINITE leaves the residual unchanged', () => {
    const ef = errorFeedback(topk({ ratio: 0.1 }));
    const g = data(100, 5);
    ef.compress(g);
    const h = ef.residual();
    const bad = g.slice();
    bad[7] = NaN;
    expect(code(() => ef.compress(bad))).toBe('ERR_GRADZIP_NONFINITE');
    expect(Buffer.from(ef.residual().buffer).equals(Buffer.from(h.buffer))).toBe(true);
  });
});

describe('corrupt packets: rejected with ERR_GRADZIP_CORRUPT, never a crash', () => {
  for (const [label, make] of ALL) {
    it(`${label}: trailing byte, truncation, bit flips`, () => {
      for (const n of [0, 1, 300]) {
        const p = make().compress(data(n, n + 1), { seed: 1 });
        const withTrail = new Uint8Array(p.length + 1);
        withTrail.set(p);
        expect(code(() => decompress(withTrail))).toBe('ERR_GRADZIP_CORRUPT');
        expect(code(() => inspect(withTrail))).toBe('ERR_GRADZIP_CORRUPT');
        for (let len = 0; len < p.length; len++) {
          expect(code(() => decompress(p.subarray(0, len)))).toBe('ERR_GRADZIP_CORRUPT');
        }
        // every single-bit flip is caught (by the CRC when nothing else notices)
        for (let bit = 0; bit < p.length * 8; bit += n === 300 ? 7 : 1) {
          const q = p.slice();
          q[bit >> 3] ^= 1 << (bit & 7);
          expect(code(() => decompress(q))).toBe('ERR_GRADZIP_CORRUPT');
        }
      }
    });

    it(`${label}: hostile packets with a valid CRC decode or throw CORRUPT; decompressAdd leaves acc alone on error`, () => {
      const n = 300;
      const p = make().compress(data(n, 9), { seed: 1 });
      let s = 12345;
      const rnd = (k: number): number => { s = (Math.imul(s, 1103515245) + 12345) >>> 0; return s % k; };
      let rejected = 0;
      for (let trial = 0; trial < 800; trial++) {
        const q = p.slice();
        const flips = 1 + rnd(4);
        for (let f = 0; f < flips; f++) {
          // half of the mutations hit the header / params / chunk table, where lengths live
          const at = rnd(2) ? rnd(Math.min(q.length - 4, 80)) : rnd(q.length - 4);
          q[at] = rnd(3) === 0 ? 0xff : q[at] ^ (1 << rnd(8));
        }
        fixCrc(q);
        const acc = new Float32Array(n).fill(1.5);
        const c = code(() => decompressAdd(q, acc, 1));
        if (c === 'no error') continue;
        rejected++;
        expect([ 'ERR_GRADZIP_CORRUPT', 'ERR_GRADZIP_INVALID_ARG' ]).toContain(c); // INVALID_ARG: header n != 300
        expect(acc.every((v) => v === 1.5)).toBe(true);
        // A valid topk/randomk packet may describe a huge sparse tensor (n up to 2^34 from a few bytes): only
        // decode into a fresh array when the header's n is small.
        let small = true;
        try { small = inspect(q).n <= 1e6; } catch { /* corrupt: decompress rejects it before allocating */ }
        if (!small) continue;
        const c2 = code(() => decompress(q));
        expect(['ERR_GRADZIP_CORRUPT', 'no error']).toContain(c2);
      }
      expect(rejected).toBeGreaterThan(0);
    });
  }

  it('a header claiming a huge n (valid CRC) is CORRUPT, without allocating n floats', () => {
    const p = qsgd().compress(data(10, 1), { seed: 1 });
    for (const n of [2n ** 34n, 2n ** 34n + 1n, 2n ** 63n, 1000000n]) {
      const q = p.slice();
      new DataView(q.buffer).setBigUint64(8, n, true);
      fixCrc(q);
      expect(code(() => decompress(q))).toBe('ERR_GRADZIP_CORRUPT');
    }
  });

  it('a valid randomk packet claiming n = 2^33 is a typed error on decompress (V8 would abort on the allocation)', async () => {
    for (const n of [2n ** 33n, 2n ** 34n, 2n ** 32n + 1n]) {
      const q = randomk({ k: 1 }).compress(data(5, 1), { seed: 1 }).slice();
      new DataView(q.buffer).setBigUint64(8, n, true);
      fixCrc(q);
      expect(inspect(q).n).toBe(Number(n)); // still a valid packet
      expect(code(() => decompress(q))).toBe('ERR_GRADZIP_INVALID_ARG');
      expect(await codeAsync(() => decompressAsync(q))).toBe('ERR_GRADZIP_INVALID_ARG');
      expect(code(() => decompressAdd(q, new Float32Array(5)))).toBe('ERR_GRADZIP_INVALID_ARG');
    }
  });

  it('random byte strings and wrong magic are CORRUPT', () => {
    let s = 99;
    for (let t = 0; t < 300; t++) {
      const len = t % 120;
      const b = new Uint8Array(len);
      for (let i = 0; i < len; i++) { s = (Math.imul(s, 1664525) + 1013904223) >>> 0; b[i] = s >>> 24; }
      if (t % 2 && len >= 4) b.set([0x47, 0x5a, 0x50, 0x4b]);
      expect(code(() => decompress(b))).toBe('ERR_GRADZIP_CORRUPT');
      expect(code(() => inspect(b))).toBe('ERR_GRADZIP_CORRUPT');
    }
  });

  it('async decode rejects with CORRUPT', async () => {
    const p = qsgd().compress(data(100, 1), { seed: 1 });
    const q = p.slice();
    q[60] ^= 1;
    expect(await codeAsync(() => decompressAsync(q))).toBe('ERR_GRADZIP_CORRUPT');
    expect(await codeAsync(() => decompressAddAsync(q, new Float32Array(100)))).toBe('ERR_GRADZIP_CORRUPT');
  });
});

describe('errorFeedback misuse', () => {
  it('size change without reset, overlapping sync use, residual type', async () => {
    const ef = errorFeedback(onebit());
    ef.compress(data(100, 1));
    expect(code(() => ef.compress(data(101, 1)))).toBe('ERR_GRADZIP_INVALID_ARG');
    expect(await codeAsync(() => ef.compressAsync(data(99, 1)))).toBe('ERR_GRADZIP_INVALID_ARG');
    const pending = ef.compressAsync(data(100, 2));
    expect(code(() => ef.compress(data(100, 3)))).toBe('ERR_GRADZIP_INVALID_ARG');
    expect(code(() => ef.reset())).toBe('ERR_GRADZIP_INVALID_ARG');
    await pending;
    ef.reset();
    expect(code(() => ef.compress(data(101, 1)))).toBe('no error');
    expect(code(() => ef.setResidual([1, 2] as unknown as Float32Array))).toBe('ERR_GRADZIP_INVALID_ARG');
  });
});

describe('nonuniform shape range', () => {
  it('a given Weibull shape outside [0.05, 20] is rejected by the factory, inside it works', () => {
    for (const shape of [0, 0.049, 20.5, -1, Number.NaN, Infinity]) expect(code(() => nonuniform({ shape }))).toBe('ERR_GRADZIP_INVALID_ARG');
    for (const shape of [0.05, 0.7, 20]) expect(code(() => nonuniform({ shape }).compress(data(100, 1), { seed: 1 }))).toBe('no error');
  });
});
