// GPU benchmark: encode / decode throughput per codec, as GB/s of f32 input and as a fraction of the
// device-to-device copy rate measured in the same run (cudaMemcpy D2D of the same bytes, CUDA events).
// Convention: copy rate = bytes copied / time (each copied byte is read once and written once); an encoder
// that reads x once at full memory bandwidth and writes little would approach 2x the copy rate.
// Also: top-k at n = 1e8, k = 1e6 against the one-read floor (n*4 bytes at the copy's read+write traffic rate).
// Usage: node bench/gpu/codecs.mjs [log2 n = 26] [iters = 20]   (prints a table and a JSON line)
import { createRequire } from 'node:module';
const require = createRequire(import.meta.url);
const gz = require('../../dist/cjs/index.js');
const cuda = require('../../dist/cjs/cuda.js');

const info = cuda.cudaInfo();
if (!info.available) { console.log(`skip: no usable CUDA device (${info.reason})`); process.exit(0); }
const log2n = Number(process.argv[2] ?? 26), iters = Number(process.argv[3] ?? 20);
const n = 2 ** log2n;
function gaussian(n, seed) {
  const x = new Float32Array(n);
  let s = seed >>> 0 || 1;
  const r = () => { s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0; return (s + 0.5) / 4294967296; };
  for (let i = 0; i < n; i += 2) { const m = Math.sqrt(-2 * Math.log(r())), v = 2 * Math.PI * r(); x[i] = m * Math.cos(v); if (i + 1 < n) x[i + 1] = m * Math.sin(v); }
  return x;
}
const x = gaussian(n, 12345);
const dx = cuda.DeviceArray.from(x);
const dcopy = cuda.DeviceArray.alloc(n);
const bytes = n * 4;
const copyMs = cuda.timing.copy(dcopy, dx, bytes, iters);
const copyGBs = bytes / copyMs / 1e6;
console.log(`device: ${info.devices[0]?.name}; n = 2^${log2n} (${(bytes / 2 ** 20).toFixed(0)} MiB f32); D2D copy ${copyGBs.toFixed(0)} GB/s (${(2 * copyGBs).toFixed(0)} GB/s read+write)`);
const codecs = [
  ['qsgd fixed s=4 b=512', gz.qsgd({ levels: 4, bucketSize: 512 })],
  ['terngrad b=512', gz.terngrad({ bucketSize: 512 })],
  ['onebit b=512', gz.onebit({ bucketSize: 512 })],
  ['qsgd gamma s=4 b=512', gz.qsgd({ levels: 4, bucketSize: 512, coding: 'gamma' })],
  ['qsgd sparse s=4 b=512', gz.qsgd({ levels: 4, bucketSize: 512, coding: 'sparse' })],
  ['nonuniform L=8 b=512', gz.nonuniform({ levels: 8, bucketSize: 512 })],
  ['topk 1% f32', gz.topk({ ratio: 0.01 })],
  ['randomk 1%', gz.randomk({ ratio: 0.01 })],
];
const rows = [];
const dout = cuda.DeviceArray.alloc(n);
for (const [name, c] of codecs) {
  const cap = c.maxCompressedBytes(n);
  const out = cuda.DeviceArray.alloc(cap, 'u8');
  const it = name.startsWith('randomk') || name.startsWith('nonuniform') || name.startsWith('topk') ? Math.max(3, iters >> 2) : iters;
  const encMs = cuda.timing.encode(c, dx, out, it, 1);
  const pkt = cuda.compressDevice(c, dx, { seed: 1, out });
  const decMs = cuda.timing.decode(pkt, dout, false, it);
  const addMs = cuda.timing.decode(pkt, dout, true, it);
  const r = { codec: name, encodeMs: encMs, decodeMs: decMs, decodeAddMs: addMs, bitsPerElement: (8 * pkt.byteLength) / n,
    encodeGBs: bytes / encMs / 1e6, decodeGBs: bytes / decMs / 1e6, decodeAddGBs: bytes / addMs / 1e6 };
  r.encodeVsCopy = r.encodeGBs / copyGBs; r.decodeVsCopy = r.decodeGBs / copyGBs; r.decodeAddVsCopy = r.decodeAddGBs / copyGBs;
  rows.push(r);
  console.log(`${name.padEnd(24)} enc ${r.encodeGBs.toFixed(0).padStart(5)} GB/s (${r.encodeVsCopy.toFixed(2)}x copy)  dec ${r.decodeGBs.toFixed(0).padStart(5)} GB/s (${r.decodeVsCopy.toFixed(2)}x)  dec-add ${r.decodeAddGBs.toFixed(0).padStart(5)} GB/s (${r.decodeAddVsCopy.toFixed(2)}x)  ${r.bitsPerElement.toFixed(2)} bits/elem`);
  out.free();
}
dout.free(); dcopy.free(); dx.free();

// top-k at n = 1e8, k = 1e6
const N = 1e8, K = 1e6;
const big = gaussian(N, 777);
const dbig = cuda.DeviceArray.from(big);
const tk = gz.topk({ k: K });
const tout = cuda.DeviceArray.alloc(tk.maxCompressedBytes(N), 'u8');
const tkMs = cuda.timing.encode(tk, dbig, tout, 5, 1);
const dcp = cuda.DeviceArray.alloc(N);
const cpMs = cuda.timing.copy(dcp, dbig, N * 4, 10);
const floorMs = cpMs / 2;  // one read of x at the copy's read+write traffic rate
console.log(`topk n=1e8 k=1e6: ${tkMs.toFixed(3)} ms; one-read floor ${floorMs.toFixed(3)} ms -> ${(tkMs / floorMs).toFixed(2)}x the floor`);
console.log('JSON ' + JSON.stringify({ device: info.devices[0], log2n, copyGBs, rows, topk: { n: N, k: K, ms: tkMs, floorMs, ratio: tkMs / floorMs } }));
