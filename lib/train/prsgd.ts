// Quantized parallel restarted SGD (Wu et al., papers/004): Algorithm 1 (all-reduce) and Algorithm 2
// (D-Quantized-PR-SGD, gossip). The user supplies the stochastic gradient; the model is a Float32Array.
import { decompressAdd } from '../codecs';
import type { AllreduceOptions, CompressorLike, Group } from '../comm/group';
import { mixingMatrix, type Topology } from '../comm/topology';
import { commError } from '../comm/util';

/** Writes a stochastic gradient of the local objective at x into `out` (may be async). `step` counts
 *  local steps on this rank from 0. */
export type GradFn = (x: Float32Array, out: Float32Array, step: number) => void | Promise<void>;

export interface RoundInfo {
  round: number;
  /** local steps done so far on this rank */
  steps: number;
  bytesSent: number;
  bytesReceived: number;
}

export interface PRSGDOptions {
  /** the model, updated in place (the same initial value on every rank) */
  x: Float32Array;
  grad: GradFn;
  /** step size gamma_n (a number, or a function of the round n) */
  lr: number | ((round: number) => number);
  /** local steps between synchronizations */
  K: number;
  /** number of rounds N */
  rounds: number;
  /** compressor for the model difference (absent: exact float32 all-reduce, i.e. PR-SGD) */
  compressor?: CompressorLike | null;
  /** all-reduce algorithm (default 'ring') */
  algorithm?: AllreduceOptions['algorithm'];
  /** base seed: round n uses seed + n (each rank and hop derives its own, see comm.deriveSeed) */
  seed?: number;
  /** called after every round (e.g. to log the loss) */
  onRound?: (info: RoundInfo) => void | Promise<void>;
}

function checkCommon(o: { x: unknown; grad: unknown; K: unknown; rounds: unknown; lr: unknown }, what: string) {
  if (!(o.x instanceof Float32Array)) throw commError('ERR_GRADZIP_INVALID_ARG', `${what}: x must be a Float32Array`);
  if (typeof o.grad !== 'function') throw commError('ERR_GRADZIP_INVALID_ARG', `${what}: grad must be a function`);
  if (!Number.isInteger(o.K) || (o.K as number) < 1) throw commError('ERR_GRADZIP_INVALID_ARG', `${what}: K must be an integer >= 1`);
  if (!Number.isInteger(o.rounds) || (o.rounds as number) < 0) throw commError('ERR_GRADZIP_INVALID_ARG', `${what}: rounds must be an integer >= 0`);
  if (typeof o.lr !== 'function' && !(typeof o.lr === 'number' && Number.isFinite(o.lr))) {
    throw commError('ERR_GRADZIP_INVALID_ARG', `${what}: lr must be a finite number or a function of the round`);
  }
}

/** Algorithm 1 (Quantized-PR-SGD, all-reduce): every round, K local SGD steps from x̃_n, then
 *  g = Q(x_{n,0} - x_{n,K}), Δ = (1/M) Σ_m g^(m) (compressed all-reduce, identical on every rank) and
 *  x̃_{n+1} = x̃_n - Δ. */
export async function quantizedPRSGD(group: Group, o: PRSGDOptions): Promise<RoundInfo> {
  checkCommon(o, 'quantizedPRSGD');
  const x = o.x, n = x.length;
  const local = new Float32Array(n), g = new Float32Array(n), diff = new Float32Array(n);
  let steps = 0;
  let info: RoundInfo = { round: 0, steps: 0, bytesSent: 0, bytesReceived: 0 };
  for (let round = 0; round < o.rounds; round++) {
    const lr = typeof o.lr === 'function' ? o.lr(round) : o.lr;
    local.set(x);
    for (let k = 0; k < o.K; k++) {
      await o.grad(local, g, steps++);
      for (let i = 0; i < n; i++) local[i] -= lr * g[i];
    }
    for (let i = 0; i < n; i++) diff[i] = x[i] - local[i];
    await group.allreduce(diff, {
      compressor: o.compressor ?? null, algorithm: o.algorithm, average: true,
      seed: o.seed !== undefined ? o.seed + round : undefined,
    });
    for (let i = 0; i < n; i++) x[i] -= diff[i];
    const st = group.stats();
    info = { round: round + 1, steps, bytesSent: st.bytesSent, bytesReceived: st.bytesReceived };
    if (o.onRound) await o.onRound(info);
  }
  return info;
}

export interface DPRSGDOptions extends Omit<PRSGDOptions, 'algorithm' | 'compressor'> {
  /** mixing matrix: 'ring', 'torus' or a validated symmetric doubly stochastic matrix */
  topology?: Topology;
  compressor: CompressorLike;
}

/** Algorithm 2 (D-Quantized-PR-SGD, gossip). Rank m keeps replicas x̃^(j) of its neighbours' models
 *  (and its own), all equal to x at the start. Every round: K local steps from x̃^(m) give x_{n,K};
 *  x̃_{n+1/2} = Σ_j W_mj x̃^(j) - x_{n,0} + x_{n,K}; g = Q(x̃^(m) - x̃_{n+1/2}) goes to the neighbours;
 *  every rank applies x̃^(j) <- x̃^(j) - ĝ^(j) for itself and each neighbour j, with the same decoded
 *  packets, so the replicas stay equal to the neighbours' own models. x holds x̃^(m) at the end. */
export async function dQuantizedPRSGD(group: Group, o: DPRSGDOptions): Promise<RoundInfo> {
  checkCommon(o, 'dQuantizedPRSGD');
  if (!o.compressor) throw commError('ERR_GRADZIP_INVALID_ARG', 'dQuantizedPRSGD: a compressor is required');
  const W = mixingMatrix(o.topology ?? 'ring', group.size).W;
  const m = group.rank, x = o.x, n = x.length;
  const replicas = new Map<number, Float32Array>();
  for (let j = 0; j < group.size; j++) if (j === m || W[m][j] !== 0) replicas.set(j, j === m ? x : Float32Array.from(x));
  const local = new Float32Array(n), g = new Float32Array(n), v = new Float32Array(n);
  let steps = 0;
  let info: RoundInfo = { round: 0, steps: 0, bytesSent: 0, bytesReceived: 0 };
  for (let round = 0; round < o.rounds; round++) {
    const lr = typeof o.lr === 'function' ? o.lr(round) : o.lr;
    local.set(x);
    for (let k = 0; k < o.K; k++) {
      await o.grad(local, g, steps++);
      for (let i = 0; i < n; i++) local[i] -= lr * g[i];
    }
    // v = x̃^(m) - x̃_{n+1/2} = x̃^(m) - Σ_j W_mj x̃^(j) + x_{n,0} - x_{n,K}   (x_{n,0} = x̃^(m))
    for (let i = 0; i < n; i++) v[i] = 2 * x[i] - local[i];
    for (const [j, r] of replicas) {
      const w = W[m][j];
      for (let i = 0; i < n; i++) v[i] -= w * r[i];
    }
    await group.neighborExchange(v, {
      topology: W, compressor: o.compressor, seed: o.seed !== undefined ? o.seed + round : undefined,
    }, (j, packet) => {
      decompressAdd(packet, replicas.get(j)!, -1);
    });
    const st = group.stats();
    info = { round: round + 1, steps, bytesSent: st.bytesSent, bytesReceived: st.bytesReceived };
    if (o.onRound) await o.onRound(info);
  }
  return info;
}
