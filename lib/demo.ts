// `npm start` training demo: 4 worker threads (comm.runInProcess, the in-process transport) train a
// logistic-regression model on synthetic data with Quantized-PR-SGD (K = 4 local steps, then an
// all-reduce of the model difference): exact float32 all-reduce against the compressed one (qsgd, 4 bits
// per element, ring), and D-Quantized-PR-SGD (compressed gossip over a ring). Prints one line per epoch
// and a summary of the bytes each rank published.
import * as path from 'path';
import { runInProcess } from './comm/inprocess';
import type { DemoArgs } from './train/demo-worker';

interface Summary { rank: number; sent: number; log: { epoch: number; loss: number; acc: number; bytesSent: number }[]; stats: { bytesSent: number }; ms: number }

export async function runDemo(): Promise<void> {
  const size = 4;
  const base = { d: 2000, samples: 1024, epochs: 6, batch: 32, K: 8, lr: 40, seed: 42 };
  const runs: [string, DemoArgs['mode']][] = [
    ['fp32 all-reduce', 'fp32'],
    ['qsgd 4-bit ring', 'qsgd-ring'],
    ['qsgd 4-bit gossip(ring)', 'gossip'],
  ];
  console.log(`\nTraining demo: ${size} workers (worker_threads + SharedArrayBuffer), logistic regression, d = ${base.d}, ` +
    `${base.samples} samples per worker, Quantized-PR-SGD with K = ${base.K} local steps, batch ${base.batch}`);
  const results: { label: string; s: Summary[] }[] = [];
  for (const [label, mode] of runs) {
    const s = (await runInProcess({
      size, module: path.join(__dirname, 'train', 'demo-worker.js'), args: { ...base, label, mode }, timeoutMs: 60000,
    })) as Summary[];
    results.push({ label, s });
  }
  const fp = results[0].s[0].sent;
  console.log('\n  run                        final loss   accuracy   training bytes sent (rank 0)   vs fp32');
  for (const { label, s } of results) {
    const last = s[0].log[s[0].log.length - 1];
    console.log(`  ${label.padEnd(26)} ${last.loss.toFixed(4).padStart(10)}   ${(last.acc * 100).toFixed(1).padStart(7)}%   ` +
      `${(s[0].sent / 1e6).toFixed(3).padStart(12)} MB              ${label === results[0].label ? '   -' : `${(fp / s[0].sent).toFixed(1)}x less`}`);
  }
}
