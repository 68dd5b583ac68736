// One encode and one decode per codec at n = 2^26, for a profiler run (ncu / nsys): node bench/gpu/profile.mjs
import { createRequire } from 'node:module';
const require = createRequire(import.meta.url);
const gz = require('../../dist/cjs/index.js');
const cuda = require('../../dist/cjs/cuda.js');
const n = 2 ** Number(process.argv[2] ?? 26);
const x = new Float32Array(n);
for (let i = 0; i < n; i++) x[i] = Math.sin(i * 0.7311) * Math.exp(Math.cos(i * 0.013));
const dx = cuda.DeviceArray.from(x);
const out = cuda.DeviceArray.alloc(n);
const which = (process.argv[3] ?? 'qsgd,terngrad,onebit,gamma,topk').split(',');
const all = { qsgd: gz.qsgd(), terngrad: gz.terngrad(), onebit: gz.onebit(), gamma: gz.qsgd({ coding: 'gamma' }),
  sparse: gz.qsgd({ coding: 'sparse' }), topk: gz.topk({ ratio: 0.01 }), nonuniform: gz.nonuniform(), randomk: gz.randomk({ ratio: 0.01 }) };
for (const w of which) {
  const p = cuda.compressDevice(all[w], dx, { seed: 1 });
  cuda.decompressDevice(p, out);
  cuda.decompressAddDevice(p, out, 1);
  console.log(w, p.byteLength);
}
