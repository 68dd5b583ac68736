// The worker of `npm start` (lib/demo.ts): logistic regression on synthetic data, data-parallel over the
// in-process group, trained with Quantized-PR-SGD (K local steps, compressed model difference, all-reduce)
// or D-Quantized-PR-SGD (gossip over a ring).
import { qsgd } from '../codecs';
import type { Group } from '../comm/group';
import { dQuantizedPRSGD, quantizedPRSGD } from './prsgd';

export interface DemoArgs {
  label: string;
  mode: 'fp32' | 'qsgd-ring' | 'qsgd-allgather' | 'gossip';
  d: number;
  samples: number;
  epochs: number;
  batch: number;
  K: number;
  lr: number;
  seed: number;
}

function rng(seed: number) {
  let a = seed >>> 0;
  const u = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const normal = () => Math.sqrt(-2 * Math.log(u() + 1e-12)) * Math.cos(2 * Math.PI * u());
  return { u, normal };
}

export default async function demoWorker(group: Group, a: DemoArgs) {
  const { d, samples, batch } = a;
  // shared ground truth w*, per-rank shard of (features, label)
  const g0 = rng(a.seed);
  const wStar = new Float32Array(d).map(() => g0.normal());
  const r = rng(a.seed * 7919 + group.rank + 1);
  const X = new Float32Array(samples * d);
  const y = new Float32Array(samples);
  const scale = 1 / Math.sqrt(d);
  for (let s = 0; s < samples; s++) {
    let dot = 0;
    for (let j = 0; j < d; j++) {
      const v = r.normal() * scale;
      X[s * d + j] = v;
      dot += v * wStar[j];
    }
    y[s] = dot + 0.3 * r.normal() > 0 ? 1 : 0;
  }
  const sigmoid = (z: number) => 1 / (1 + Math.exp(-z));
  let order = Array.from({ length: samples }, (_, i) => i);
  let cursor = samples;
  const grad = (w: Float32Array, out: Float32Array) => {
    if (cursor + batch > samples) {
      order = order.sort(() => r.u() - 0.5);
      cursor = 0;
    }
    out.fill(0);
    for (let b = 0; b < batch; b++) {
      const s = order[cursor++];
      let z = 0;
      for (let j = 0; j < d; j++) z += X[s * d + j] * w[j];
      const e = (sigmoid(z) - y[s]) / batch;
      for (let j = 0; j < d; j++) out[j] += e * X[s * d + j];
    }
  };
  const evaluate = async (w: Float32Array) => {
    let loss = 0, correct = 0;
    for (let s = 0; s < samples; s++) {
      let z = 0;
      for (let j = 0; j < d; j++) z += X[s * d + j] * w[j];
      const p = Math.min(1 - 1e-7, Math.max(1e-7, sigmoid(z)));
      loss -= y[s] ? Math.log(p) : Math.log(1 - p);
      if ((p > 0.5 ? 1 : 0) === y[s]) correct++;
    }
    const m = new Float32Array([loss / samples, correct / samples]);
    await group.allreduce(m, { average: true }); // exact float32: every rank sees the same figures
    return { loss: m[0], acc: m[1] };
  };

  const x = new Float32Array(d);
  const roundsPerEpoch = Math.max(1, Math.floor(samples / batch / a.K));
  const t0 = Date.now();
  const log: { epoch: number; loss: number; acc: number; bytesSent: number }[] = [];
  const q = qsgd({ levels: 7, bucketSize: 128 }); // sign + 3 bits (levels 0..7): 4 bits per element
  let sent = 0, mark = 0;
  for (let epoch = 1; epoch <= a.epochs; epoch++) {
    const common = { x, grad, lr: a.lr, K: a.K, rounds: roundsPerEpoch, seed: a.seed * 1000 + epoch * 100 };
    if (a.mode === 'gossip') await dQuantizedPRSGD(group, { ...common, compressor: q, topology: 'ring' });
    else if (a.mode === 'fp32') await quantizedPRSGD(group, { ...common, compressor: null });
    else await quantizedPRSGD(group, { ...common, compressor: q, algorithm: a.mode === 'qsgd-allgather' ? 'allgather' : 'ring' });
    // bytes of the training traffic so far (evaluation traffic excluded)
    sent += group.stats().bytesSent - mark;
    // all-reduce: the model is the same on every rank; gossip: evaluate the ranks' average model
    let w = x;
    if (a.mode === 'gossip') {
      w = Float32Array.from(x);
      await group.allreduce(w, { average: true });
    }
    const { loss, acc } = await evaluate(w);
    mark = group.stats().bytesSent;
    log.push({ epoch, loss, acc, bytesSent: sent });
    if (group.rank === 0) {
      console.log(`  [${a.label.padEnd(23)}] epoch ${String(epoch).padStart(2)}/${a.epochs}  loss ${loss.toFixed(4)}  acc ${(acc * 100).toFixed(1)}%` +
        `  sent ${(sent / 1e6).toFixed(3)} MB (rank 0)  ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    }
  }
  return { rank: group.rank, log, sent, stats: group.stats(), ms: Date.now() - t0 };
}
