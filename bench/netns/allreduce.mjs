// One rank of bench/netns/run.sh (started by mpirun): times fp32 MPI all-reduce against gradzip's
// compressed all-reduce (qsgd 4-bit; top-1% with error feedback; ring and allgather) on the same gradient.
// Times are the slowest rank's, each run framed by barriers. Rank 0 writes the JSON results.
import { createRequire } from 'node:module';
import { writeFileSync } from 'node:fs';
const require = createRequire(import.meta.url);
const gz = require('../../dist/cjs/index.js');

const arg = (k, d) => { const i = process.argv.indexOf(`--${k}`); return i > 0 ? process.argv[i + 1] : d; };
const MB = Number(arg('mb', '100')), REPS = Number(arg('reps', '2')), RATE = arg('rate', '?'), OUT = arg('out', '');
// --only fp32: just the float32 MPI all-reduce (run.sh runs it a second time with OpenMPI's ring forced),
// --label: its name; --append: add to the results already in --out
const ONLY = arg('only', ''), LABEL = arg('label', ''), APPEND = process.argv.includes('--append');
import { existsSync, readFileSync } from 'node:fs';
const n = Math.floor((MB * 1e6) / 4);

gz.setThreads(1); // 4 ranks share this machine's cores: one thread each
const g = await gz.comm.mpi({ timeoutMs: 600000 });
const P = g.size;
// a gradient-like vector: Gaussian, seeded by rank
let s = 12345 + g.rank * 7919;
const rnd = () => ((s = (Math.imul(s, 1103515245) + 12345) >>> 0) / 4294967296);
const grad = new Float32Array(n);
for (let i = 0; i < n; i += 2) {
  const r = Math.sqrt(-2 * Math.log(rnd() + 1e-12)), t = 2 * Math.PI * rnd();
  grad[i] = 0.01 * r * Math.cos(t);
  if (i + 1 < n) grad[i + 1] = 0.01 * r * Math.sin(t);
}
const x = new Float32Array(n);
const q4 = gz.qsgd({ levels: 4, bucketSize: 512 }); // sign + 3 bits = 4 bits per element
const top = gz.topk({ ratio: 0.01 });
let configs = [
  [LABEL || 'fp32 MPI_Allreduce', {}],
  ['qsgd 4-bit ring', { compressor: q4, algorithm: 'ring' }],
  ['qsgd 4-bit allgather', { compressor: q4, algorithm: 'allgather' }],
  ['top-1% + EF ring', { compressor: top, algorithm: 'ring', errorFeedback: { key: 'ring' } }],
  ['top-1% + EF allgather', { compressor: top, algorithm: 'allgather', errorFeedback: { key: 'ag' } }],
];
if (ONLY === 'fp32') configs = configs.slice(0, 1);
const results = [];
for (const [name, opts] of configs) {
  const times = [];
  let bytes = 0;
  for (let r = 0; r <= REPS; r++) {
    x.set(grad);
    const before = g.stats().bytesSent;
    await g.barrier();
    const t0 = performance.now();
    await g.allreduce(x, { ...opts, average: true, seed: r + 1 });
    await g.barrier();
    const dt = performance.now() - t0;
    bytes = g.stats().bytesSent - before;
    // the slowest rank's time
    const all = new Float32Array(P);
    all[g.rank] = dt;
    await g.allreduce(all);
    if (r > 0) times.push(Math.max(...all)); // rep 0 warms up
  }
  times.sort((a, b) => a - b);
  const med = times[Math.floor(times.length / 2)];
  results.push({ name, ms: med, all: times, bytesPublishedRank0: bytes });
  if (g.rank === 0) console.error(`  ${RATE.padEnd(8)} ${name.padEnd(24)} ${med.toFixed(0).padStart(7)} ms   rank 0 published ${(bytes / 1e6).toFixed(2)} MB`);
}
if (g.rank === 0 && OUT) {
  const prev = APPEND && existsSync(OUT) ? JSON.parse(readFileSync(OUT, 'utf8')).results : [];
  writeFileSync(OUT, JSON.stringify({ rate: RATE, mb: MB, n, P, reps: REPS, results: [...prev, ...results] }, null, 1));
}
await g.close();
