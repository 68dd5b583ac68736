// GPU = CPU, byte for byte: every codec, several sizes, seeds and data shapes; encode, decode and decode-add.
// Run: node --test test/gpu/   (skips with a message when no GPU is usable)
import test from 'node:test';
import assert from 'node:assert/strict';
import { gz, cuda, skip, gaussian, assertSameBytes, bits } from './helpers.mjs';

const configs = [
  ['qsgd fixed s4 b512 l2', () => gz.qsgd({ levels: 4, bucketSize: 512 })],
  ['qsgd fixed s1 b128 linf', () => gz.qsgd({ levels: 1, bucketSize: 128, norm: 'linf' })],
  ['qsgd fixed s3 b7 (W=3, odd bucket)', () => gz.qsgd({ levels: 3, bucketSize: 7 })],
  ['qsgd fixed s255 b1000', () => gz.qsgd({ levels: 255, bucketSize: 1000 })],
  ['qsgd fixed s65535 b64', () => gz.qsgd({ levels: 65535, bucketSize: 64 })],
  ['terngrad b512', () => gz.terngrad({ bucketSize: 512 })],
  ['terngrad b33', () => gz.terngrad({ bucketSize: 33 })],
  ['onebit b512', () => gz.onebit({ bucketSize: 512 })],
  ['onebit b100', () => gz.onebit({ bucketSize: 100 })],
  ['qsgd gamma s4 b512', () => gz.qsgd({ levels: 4, bucketSize: 512, coding: 'gamma' })],
  ['qsgd gamma s16 b100 linf', () => gz.qsgd({ levels: 16, bucketSize: 100, norm: 'linf', coding: 'gamma' })],
  ['qsgd gamma s4 b4096', () => gz.qsgd({ levels: 4, bucketSize: 4096, coding: 'gamma' })],
  ['qsgd gamma s1000 b5', () => gz.qsgd({ levels: 1000, bucketSize: 5, coding: 'gamma' })],
  ['qsgd sparse s4 b512', () => gz.qsgd({ levels: 4, bucketSize: 512, coding: 'sparse' })],
  ['qsgd sparse s2 b3000', () => gz.qsgd({ levels: 2, bucketSize: 3000, coding: 'sparse' })],
  ['qsgd sparse s22 b512', () => gz.qsgd({ levels: 22, bucketSize: 512, coding: 'sparse' })],
  ['topk 1% f32', () => gz.topk({ ratio: 0.01 })],
  ['topk k=1000 f16', () => gz.topk({ k: 1000, values: 'f16' })],
  ['topk 10% bf16', () => gz.topk({ ratio: 0.1, values: 'bf16' })],
  ['randomk 1%', () => gz.randomk({ ratio: 0.01 })],
  ['randomk k=5', () => gz.randomk({ k: 5 })],
  ['nonuniform L8 b512', () => gz.nonuniform({ levels: 8, bucketSize: 512 })],
  ['nonuniform L3 b100 shape 0.7', () => gz.nonuniform({ levels: 3, bucketSize: 100, shape: 0.7 })],
];
const sizes = [0, 1, 7, 1000, 4099, 65536 + 13, (1 << 20) + 3];
const seeds = [1, 7, 2n ** 40n + 3n];
const shapes = [{}, { zeros: true, negzero: true }, { ties: true }, { scale: 1e-30 }];

function cpuGpu(c, x, seed) {
  const cpu = c.compress(x, { seed });
  const dx = cuda.DeviceArray.from(x);
  const dp = cuda.compressDevice(c, dx, { seed });
  const gpu = dp.download();
  dx.free();
  return { cpu, gpu, dp };
}

for (const [name, make] of configs) {
  test(`encode parity: ${name}`, { skip }, () => {
    const c = make();
    let k = 0;
    for (const n of sizes) {
      for (const seed of seeds) {
        const shape = shapes[k++ % shapes.length];
        const x = gaussian(n, Number(BigInt(seed) % 1000n) + n, shape);
        const { cpu, gpu, dp } = cpuGpu(c, x, seed);
        assertSameBytes(assert, gpu, cpu, `${name} n=${n} seed=${seed} ${JSON.stringify(shape)}`);
        dp.free();
      }
    }
  });

  test(`decode / decode-add parity: ${name}`, { skip }, () => {
    const c = make();
    for (const n of [0, 5, 4099, (1 << 20) + 3]) {
      const x = gaussian(n, n + 11, { zeros: true });
      const pkt = c.compress(x, { seed: 99 });
      const want = gz.decompress(pkt);
      const dout = cuda.decompressDevice(pkt);
      assert.deepEqual(bits(dout.download()), bits(want), `${name} decode n=${n}`);
      // device packet in, too
      const dpk = cuda.DeviceArray.from(pkt);
      const dout2 = cuda.decompressDevice(dpk);
      assert.deepEqual(bits(dout2.download()), bits(want), `${name} decode (device packet) n=${n}`);
      const acc = gaussian(n, n + 12);
      const dacc = cuda.DeviceArray.from(acc);
      cuda.decompressAddDevice(dpk, dacc, 0.375);
      gz.decompressAdd(pkt, acc, 0.375);
      assert.deepEqual(bits(dacc.download()), bits(acc), `${name} decode-add n=${n}`);
      dout.free(); dout2.free(); dpk.free(); dacc.free();
    }
  });
}

test('device packets are accepted by the CPU decoder (gz::parse validates them)', { skip }, () => {
  const x = gaussian(100003, 5);
  for (const [name, make] of configs) {
    const c = make();
    const dp = cuda.compressDevice(c, cuda.DeviceArray.from(x), { seed: 3 });
    const host = dp.download();
    const y = gz.decompress(host);
    assert.equal(y.length, x.length, name);
  }
});

test('async encode and decode give the same bytes, on a user stream', { skip }, async () => {
  const s = new cuda.Stream();
  const x = gaussian(300001, 8);
  for (const [name, make] of configs) {
    const c = make();
    const cpu = c.compress(x, { seed: 5 });
    const dx = await cuda.DeviceArray.fromAsync(x, s);
    const dp = await cuda.compressDeviceAsync(c, dx, { seed: 5, stream: s });
    assert.deepEqual(await dp.downloadAsync(undefined, s), cpu, name);
    const out = await cuda.decompressDeviceAsync(dp, undefined, { stream: s });
    assert.deepEqual(bits(await out.downloadAsync(undefined, s)), bits(gz.decompress(cpu)), name);
  }
  // the public API routes device arrays through the hook
  const q = gz.qsgd({ levels: 4 });
  const dp = q.compress(cuda.DeviceArray.from(x), { seed: 5 });
  assert.ok(cuda.isDeviceArray(dp));
  assert.deepEqual(dp.download(), q.compress(x, { seed: 5 }));
  s.destroy();
});

test('errors: non-finite input, corrupt packets (acc untouched), CUDA error codes', { skip }, () => {
  const x = gaussian(10000, 1);
  x[777] = NaN;
  for (const [name, make] of configs) {
    assert.throws(() => cuda.compressDevice(make(), cuda.DeviceArray.from(x), { seed: 1 }), (e) => e.code === 'ERR_GRADZIP_NONFINITE', name);
  }
  // nonFinite: 'zero' parity
  const z = gz.qsgd({ levels: 4, nonFinite: 'zero' });
  assert.deepEqual(cuda.compressDevice(z, cuda.DeviceArray.from(x), { seed: 2 }).download(), z.compress(x, { seed: 2 }));
  x[777] = 0.5;
  for (const [name, make] of configs) {
    const pkt = make().compress(x, { seed: 4 });
    const bad = pkt.slice();
    bad[Math.floor(bad.length / 2) + 20 < bad.length - 4 ? Math.floor(bad.length / 2) + 20 : 48] ^= 0x10;
    const acc = gaussian(x.length, 9);
    const dacc = cuda.DeviceArray.from(acc);
    assert.throws(() => cuda.decompressAddDevice(bad, dacc, 1), (e) => e.code === 'ERR_GRADZIP_CORRUPT', name);
    assert.deepEqual(bits(dacc.download()), bits(acc), `${name}: acc changed by a corrupt packet`);
    assert.throws(() => cuda.decompressDevice(pkt.subarray(0, pkt.length - 1)), (e) => e.code === 'ERR_GRADZIP_CORRUPT', name);
  }
  assert.throws(() => cuda.DeviceArray.alloc(2 ** 50), (e) => e.code === 'ERR_GRADZIP_CUDA' && /cudaError/.test(e.message));
});

test('topk is exact: ties to the lower index, against a sort', { skip }, () => {
  for (const n of [1000, 100000, 1 << 20]) {
    const x = gaussian(n, n, { ties: true, zeros: true });
    for (const k of [1, 17, Math.ceil(n / 100), Math.ceil(n / 2), n]) {
      const c = gz.topk({ k });
      const dp = cuda.compressDevice(c, cuda.DeviceArray.from(x));
      const y = gz.decompress(dp.download());
      const order = Array.from({ length: n }, (_, i) => i);
      const mag = (i) => Math.abs(x[i]);
      order.sort((a, b) => mag(b) - mag(a) || a - b);
      const want = new Float32Array(n);
      for (let j = 0; j < k; j++) want[order[j]] = x[order[j]];
      assert.deepEqual(bits(y), bits(want), `topk n=${n} k=${k}`);
    }
  }
});

test('large inputs (many chunks per block): n = 2^23 + 5', { skip }, () => {
  const n = (1 << 23) + 5;
  const x = gaussian(n, 4242, { zeros: true });
  for (const c of [gz.qsgd({ levels: 4, coding: 'gamma' }), gz.qsgd({ levels: 4, coding: 'sparse' }), gz.qsgd({ levels: 4 }),
    gz.onebit(), gz.topk({ ratio: 0.01 }), gz.nonuniform()]) {
    const { cpu, gpu } = cpuGpu(c, x, 77);
    assertSameBytes(assert, gpu, cpu, `${c.name} ${JSON.stringify(c.options)} n=${n}`);
    const y = cuda.decompressDevice(cpu).download();
    assert.deepEqual(bits(y), bits(gz.decompress(cpu)), `${c.name} decode n=${n}`);
  }
});
