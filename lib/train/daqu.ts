// DaQuSGD (Hanna et al., "Quantizing data for distributed learning"; papers/002): DataQ (Algorithm 2),
// GradCorrQ (Algorithm 3) and the loss-threshold sample selector of §VI. Plain TypeScript: the data batches and
// the single-coordinate correction are small next to a gradient, and nothing here is on a hot path.
//
// Randomness: Philox4x32-10 (the same generator as the codecs, docs/FORMAT.md §2), key = the 64-bit seed,
// counter = (t low, t high, stream, 0). Streams: 2 = GradCorrQ's shared coordinate i* (draw t = `round`),
// 3 = GradCorrQ's Bernoulli bit (draw t = `round`), 4 = DataQ stochastic rounding (draw t = the element's index
// in the batch; one 53-bit uniform per element).
import { GradzipError, invalid } from '../errors';

export type Seed = number | bigint;

// ---------------------------------------------------------------------------------------------------------
// Philox4x32-10

function mulhi32(a: number, b: number): number {
  const al = a & 0xffff, ah = a >>> 16, bl = b & 0xffff, bh = b >>> 16;
  const lolo = al * bl, hilo = ah * bl, lohi = al * bh, hihi = ah * bh;
  const cross = (lolo >>> 16) + (hilo & 0xffff) + lohi;  // < 2^33, exact in a double
  return (hihi + (hilo >>> 16) + Math.floor(cross / 65536)) >>> 0;
}

/** Philox4x32-10 block: counter (c0..c3), key (k0, k1), all 32-bit unsigned. */
export function philox4x32(c0: number, c1: number, c2: number, c3: number, k0: number, k1: number): [number, number, number, number] {
  for (let r = 0; r < 10; r++) {
    const hi0 = mulhi32(0xd2511f53, c0), lo0 = Math.imul(0xd2511f53, c0) >>> 0;
    const hi1 = mulhi32(0xcd9e8d57, c2), lo1 = Math.imul(0xcd9e8d57, c2) >>> 0;
    const n0 = (hi1 ^ c1 ^ k0) >>> 0, n2 = (hi0 ^ c3 ^ k1) >>> 0;
    c0 = n0; c1 = lo1; c2 = n2; c3 = lo0;
    k0 = (k0 + 0x9e3779b9) >>> 0;
    k1 = (k1 + 0xbb67ae85) >>> 0;
  }
  return [c0, c1, c2, c3];
}

function seedWords(seed: Seed, what: string): [number, number] {
  let s: bigint;
  if (typeof seed === 'bigint') s = seed;
  else if (typeof seed === 'number' && Number.isSafeInteger(seed)) s = BigInt(seed);
  else invalid(`${what}: seed must be a safe integer or a bigint, got ${String(seed)}`);
  if (s < 0n || s >= 1n << 64n) invalid(`${what}: seed must be in [0, 2^64)`);
  return [Number(s & 0xffffffffn), Number(s >> 32n)];
}

function draw(key: [number, number], t: number, stream: number): [number, number, number, number] {
  return philox4x32(t >>> 0, Math.floor(t / 4294967296) >>> 0, stream, 0, key[0], key[1]);
}

/** Uniform in [0, 1) with 53 random bits from two words. */
function unit53(w0: number, w1: number): number {
  return ((w0 >>> 5) * 67108864 + (w1 >>> 6)) / 9007199254740992;
}

// ---------------------------------------------------------------------------------------------------------
// Combinatorics (bigint)

function binom(n: number, r: number): bigint {
  if (r < 0 || r > n) return 0n;
  r = Math.min(r, n - r);
  let res = 1n;
  for (let i = 1; i <= r; i++) res = (res * BigInt(n - r + i)) / BigInt(i);
  return res;
}
/** Number of vectors of k non-negative integers with sum <= R: C(k + R, k). */
function countLE(k: number, R: number): bigint {
  return R < 0 ? 0n : binom(k + R, Math.min(k, R));
}
function bitLength(x: bigint): number {
  return x <= 0n ? 0 : x.toString(2).length;
}

// ---------------------------------------------------------------------------------------------------------
// DataQ

export type DataQScale = 'batch-linf' | 'sample-l2';
export type DataQRounding = 'floor' | 'stochastic';

export interface DataQOptions {
  /** m, the number of levels per feature magnitude in [0, B] (level i = i·B/(m−1)); 2..65536, default 8. */
  levels?: number;
  /** 'batch-linf' (default; §VI: one scale B = max |Z_ij| for the batch) or 'sample-l2' (B = ‖Z‖₂ per sample,
   *  the setting of Theorem 1, where (a, b) is indexed in S with ⌈log2 |S|⌉ bits). */
  scale?: DataQScale;
  /** 'floor' (default; Algorithm 2) or 'stochastic' (unbiased: up with probability equal to the fraction). */
  rounding?: DataQRounding;
}

export interface DataQBatch {
  readonly levels: number;
  readonly d: number;
  readonly count: number;
  readonly scale: DataQScale;
  readonly rounding: DataQRounding;
  /** B per batch ('batch-linf': one value) or per sample ('sample-l2'), float32 as sent. */
  readonly scales: Float32Array;
  /** a_j − b_j per feature (count·d values in [−(m−1), m−1]); a = max(c, 0), b = max(−c, 0). */
  readonly codes: Int32Array;
  /** Lossless index of each sample's (a, b): its rank in S (sample-l2 + floor) or a base-(2m−1) number. */
  readonly index: bigint[];
  /** Bits of one index: ⌈log2 |S|⌉ = bit length of |S| − 1 (or of (2m−1)^d − 1). */
  readonly bitsPerSample: number;
  /** Total: count · bitsPerSample + 32 per scale. */
  readonly bits: number;
}

export interface DataQ {
  readonly options: Readonly<Required<DataQOptions>>;
  /** Quantizes `count = batch.length / d` samples of d features (row-major). */
  quantize(batch: Float32Array, d: number, opts?: { seed?: Seed }): DataQBatch;
  /** Z_Q = (a − b)·B/(m−1), row-major; the learning agent's reconstruction. */
  dequantize(q: DataQBatch, out?: Float32Array): Float32Array;
  /** Codes of one sample back from its index (the agent's side of Index_S). */
  decodeIndex(index: bigint, d: number): Int32Array;
  /** The size of the index space for d features: |S| = C(2d + (m−1)², 2d) for sample-l2 + floor, else (2m−1)^d. */
  spaceSize(d: number): bigint;
}

/** Theorem 1 (ii): DataQ uses at most 2·log2 m + min{2d·log2(e(2d+m²)/(2d)), m²·log2(e(2d+m²)/m²)} bits per sample. */
export function dataqBitBound(d: number, m: number): number {
  const a = 2 * d * Math.log2((Math.E * (2 * d + m * m)) / (2 * d));
  const b = m * m * Math.log2((Math.E * (2 * d + m * m)) / (m * m));
  return 2 * Math.log2(m) + Math.min(a, b);
}

function checkOptions(o: DataQOptions | undefined): Required<DataQOptions> {
  if (o === undefined) o = {};
  if (o === null || typeof o !== 'object') invalid('dataq: options must be an object');
  for (const k of Object.keys(o)) if (!['levels', 'scale', 'rounding'].includes(k)) invalid(`dataq: unknown option "${k}"`);
  const levels = o.levels ?? 8;
  if (!Number.isInteger(levels) || levels < 2 || levels > 65536) invalid(`dataq: levels must be an integer in [2, 65536], got ${String(levels)}`);
  const scale = o.scale ?? 'batch-linf';
  if (scale !== 'batch-linf' && scale !== 'sample-l2') invalid(`dataq: scale must be 'batch-linf' or 'sample-l2', got ${String(scale)}`);
  const rounding = o.rounding ?? 'floor';
  if (rounding !== 'floor' && rounding !== 'stochastic') invalid(`dataq: rounding must be 'floor' or 'stochastic', got ${String(rounding)}`);
  return { levels, scale, rounding };
}

/** float32 value >= x (the scale sent must not be below the true ‖Z‖₂, or (a, b) could leave S). */
function f32AtLeast(x: number): number {
  let f = Math.fround(x);
  if (f < x) {
    const buf = new Float32Array([f]);
    new Uint32Array(buf.buffer)[0] += 1;  // x > 0: next float up
    f = buf[0];
  }
  return f;
}

export function dataq(options?: DataQOptions): DataQ {
  const o = checkOptions(options);
  const m = o.levels, top = m - 1;
  const useS = o.scale === 'sample-l2' && o.rounding === 'floor';
  const Q = top * top;

  const spaceSize = (d: number): bigint => (useS ? countLE(2 * d, Q) : BigInt(2 * m - 1) ** BigInt(d));

  // Rank of w = (a_1..a_d, b_1..b_d) among the vectors of 2d non-negative integers with sum <= Q, in
  // lexicographic order: for each position, the vectors with a smaller entry there and the same prefix,
  // Σ_{v < w_i} C(k + R − v, k) = C(k + R + 1, k + 1) − C(k + R − w_i + 1, k + 1), k = positions after i.
  function rankS(c: Int32Array, off: number, d: number): bigint {
    const n = 2 * d;
    let r = 0n, R = Q;
    for (let i = 0; i < n; i++) {
      const cj = c[off + (i % d)];
      const w = i < d ? Math.max(cj, 0) : Math.max(-cj, 0);
      if (w === 0) continue;
      const k = n - i - 1;
      r += binom(k + R + 1, k + 1) - binom(k + R - w + 1, k + 1);
      R -= w;
      if (R < 0) throw new GradzipError('ERR_GRADZIP_INTERNAL', 'dataq: (a, b) outside S');
    }
    return r;
  }
  function unrankS(r: bigint, d: number): Int32Array {
    const n = 2 * d, out = new Int32Array(d);
    let R = Q;
    if (r < 0n || r >= countLE(n, Q)) invalid('dataq: index out of range');
    for (let i = 0; i < n; i++) {
      const k = n - i - 1;
      let v = 0;
      for (;;) {
        const cnt = countLE(k, R - v);  // vectors with this entry = v
        if (r < cnt) break;
        r -= cnt;
        v++;
      }
      R -= v;
      if (v > 0) {
        if (i >= d && out[i - d] !== 0)
          throw new GradzipError('ERR_GRADZIP_CORRUPT', 'dataq: index of an (a, b) with a_j and b_j both non-zero (DataQ never produces one)');
        out[i % d] = i < d ? v : -v;
      }
    }
    return out;
  }
  function rankBase(c: Int32Array, off: number, d: number): bigint {
    const base = BigInt(2 * m - 1);
    let r = 0n;
    for (let j = d - 1; j >= 0; j--) r = r * base + BigInt(c[off + j] + top);
    return r;
  }
  function unrankBase(r: bigint, d: number): Int32Array {
    const base = BigInt(2 * m - 1), out = new Int32Array(d);
    if (r < 0n || r >= base ** BigInt(d)) invalid('dataq: index out of range');
    for (let j = 0; j < d; j++) {
      out[j] = Number(r % base) - top;
      r /= base;
    }
    return out;
  }

  return {
    options: Object.freeze({ ...o }),
    spaceSize,
    quantize(batch, d, opts) {
      if (!(batch instanceof Float32Array)) invalid('dataq.quantize: batch must be a Float32Array');
      if (!Number.isInteger(d) || d < 1) invalid('dataq.quantize: d must be a positive integer');
      if (batch.length % d !== 0) invalid(`dataq.quantize: batch length ${batch.length} is not a multiple of d = ${d}`);
      for (let i = 0; i < batch.length; i++)
        if (!Number.isFinite(batch[i])) throw new GradzipError('ERR_GRADZIP_NONFINITE', `dataq.quantize: non-finite value at ${i}`);
      const count = batch.length / d;
      if (o.rounding === 'stochastic' && opts?.seed === undefined) invalid("dataq.quantize: rounding 'stochastic' needs a seed");
      const key = o.rounding === 'stochastic' ? seedWords(opts!.seed as Seed, 'dataq.quantize') : ([0, 0] as [number, number]);
      const scales = new Float32Array(o.scale === 'batch-linf' ? 1 : count);
      if (o.scale === 'batch-linf') {
        let M = 0;
        for (let i = 0; i < batch.length; i++) M = Math.max(M, Math.abs(batch[i]));
        scales[0] = M;
      } else {
        for (let s = 0; s < count; s++) {
          let ss = 0;
          for (let j = 0; j < d; j++) ss += batch[s * d + j] * batch[s * d + j];
          scales[s] = f32AtLeast(Math.sqrt(ss));
        }
      }
      const codes = new Int32Array(batch.length);
      for (let s = 0; s < count; s++) {
        const B = scales[o.scale === 'batch-linf' ? 0 : s];
        if (B === 0) continue;
        for (let j = 0; j < d; j++) {
          const i = s * d + j, z = batch[i];
          const t = Math.min((top * Math.abs(z)) / B, top);
          let a = Math.floor(t);
          if (o.rounding === 'stochastic' && a < top) {
            const w = draw(key, i, 4);
            if (unit53(w[0], w[1]) < t - a) a++;
          }
          codes[i] = z < 0 ? -a : a;
        }
      }
      const index: bigint[] = [];
      for (let s = 0; s < count; s++) index.push(useS ? rankS(codes, s * d, d) : rankBase(codes, s * d, d));
      const bitsPerSample = bitLength(spaceSize(d) - 1n);
      return {
        levels: m, d, count, scale: o.scale, rounding: o.rounding, scales, codes, index, bitsPerSample,
        bits: count * bitsPerSample + 32 * scales.length,
      };
    },
    dequantize(q, out) {
      const n = q.count * q.d;
      const y = out ?? new Float32Array(n);
      if (y.length !== n) invalid(`dataq.dequantize: out must have ${n} elements`);
      for (let s = 0; s < q.count; s++) {
        const B = q.scales[q.scale === 'batch-linf' ? 0 : s];
        for (let j = 0; j < q.d; j++) y[s * q.d + j] = (q.codes[s * q.d + j] * B) / (q.levels - 1);
      }
      return y;
    },
    decodeIndex(index, d) {
      if (typeof index !== 'bigint') invalid('dataq.decodeIndex: index must be a bigint');
      if (!Number.isInteger(d) || d < 1) invalid('dataq.decodeIndex: d must be a positive integer');
      return useS ? unrankS(index, d) : unrankBase(index, d);
    },
  };
}

// ---------------------------------------------------------------------------------------------------------
// GradCorrQ

export interface GradCorrQOptions {
  /** D = C_z·B·√d/(m−1), a bound on |Δ_i| (eq. 8); see gradCorrBound. */
  bound: number;
  /** Shared randomness: key of the coordinate draw (both sides) and of the Bernoulli bit (the node). */
  seed: Seed;
  /** Draw number (one per step), so one seed serves a whole run. Default 0. */
  round?: number;
  /** true (default): i* comes from the shared seed and only the bit travels (1 bit); false: i* is sent too
   *  (1 + ⌈log2 h⌉ bits). */
  sharedSeed?: boolean;
}

export interface GradCorrQMessage {
  /** i*, uniform in [0, h). */
  readonly index: number;
  /** e_g ∈ {0, 1}: 1 with probability Δ_{i*}/(2D) + 1/2. */
  readonly bit: 0 | 1;
  /** Bits on the wire. */
  readonly bits: number;
  readonly h: number;
  readonly bound: number;
}

/** D = C_z·B·√d/(m−1) (eq. 8): the bound on ‖g_Z − g_{Z_Q}‖₂, hence on every |Δ_i|. */
export function gradCorrBound(o: { lipschitz: number; B: number; d: number; levels: number }): number {
  for (const k of ['lipschitz', 'B', 'd', 'levels'] as const)
    if (typeof o[k] !== 'number' || !Number.isFinite(o[k]) || o[k] < 0) invalid(`gradCorrBound: ${k} must be a finite number >= 0`);
  if (o.levels < 2) invalid('gradCorrBound: levels must be >= 2');
  return (o.lipschitz * o.B * Math.sqrt(o.d)) / (o.levels - 1);
}

/** The shared coordinate i* of draw `round` (both sides compute it from the seed). */
export function gradCorrIndex(seed: Seed, round: number, h: number): number {
  if (!Number.isInteger(h) || h < 1) invalid('gradCorrQ: h must be a positive integer');
  const w = draw(seedWords(seed, 'gradCorrQ'), round, 2);
  const R = BigInt(w[0]) | (BigInt(w[1]) << 32n);
  return Number((R * BigInt(h)) >> 64n);
}

/** Algorithm 3: one coordinate i* and one Bernoulli bit; the decoded Δ̂ is unbiased (Lemma 1). */
export function gradCorrQ(delta: Float32Array | Float64Array, options: GradCorrQOptions): GradCorrQMessage {
  if (!(delta instanceof Float32Array || delta instanceof Float64Array)) invalid('gradCorrQ: delta must be a Float32Array or Float64Array');
  const h = delta.length;
  if (h < 1) invalid('gradCorrQ: delta must not be empty');
  if (options === null || typeof options !== 'object') invalid('gradCorrQ: options must be an object');
  const D = options.bound;
  if (typeof D !== 'number' || !Number.isFinite(D) || D <= 0) invalid('gradCorrQ: bound must be a finite number > 0');
  const round = options.round ?? 0;
  if (!Number.isSafeInteger(round) || round < 0) invalid('gradCorrQ: round must be a non-negative safe integer');
  const shared = options.sharedSeed ?? true;
  const key = seedWords(options.seed, 'gradCorrQ');
  const index = gradCorrIndex(options.seed, round, h);
  const di = delta[index];
  if (!Number.isFinite(di)) throw new GradzipError('ERR_GRADZIP_NONFINITE', `gradCorrQ: delta[${index}] is not finite`);
  if (Math.abs(di) > D) invalid(`gradCorrQ: |delta[${index}]| = ${Math.abs(di)} exceeds the bound ${D} (the probability would leave [0, 1])`);
  const p = di / (2 * D) + 0.5;
  const w = draw(key, round, 3);
  const bit: 0 | 1 = unit53(w[0], w[1]) < p ? 1 : 0;
  return { index, bit, bits: shared ? 1 : 1 + Math.ceil(Math.log2(h)), h, bound: D };
}

/** Δ̂: zero except Δ̂_{i*} = (2e − 1)·D·h (eq. 10). With `out`, adds Δ̂ into it (the agent's ĝ = g_{Z_Q} + Δ̂). */
export function gradCorrQDecode<T extends Float32Array | Float64Array>(msg: GradCorrQMessage, out?: T): T | Float64Array {
  const y = out ?? new Float64Array(msg.h);
  if (y.length !== msg.h) invalid(`gradCorrQDecode: out must have h = ${msg.h} elements`);
  if (!Number.isInteger(msg.index) || msg.index < 0 || msg.index >= msg.h) invalid('gradCorrQDecode: index out of range');
  y[msg.index] += (2 * msg.bit - 1) * msg.bound * msg.h;
  return y;
}

// ---------------------------------------------------------------------------------------------------------
// Sample selection (§VI)

/** Send a sample only when its loss exceeds the threshold; after each epoch the threshold becomes
 *  factor × the mean loss of the samples sent during that epoch (default factor 0.2, first epoch threshold 0). */
export class LossThresholdSelector {
  private thr: number;
  private readonly factor: number;
  private sum = 0;
  private sent = 0;
  private seen = 0;
  constructor(options: { factor?: number; initialThreshold?: number } = {}) {
    const f = options.factor ?? 0.2, t0 = options.initialThreshold ?? 0;
    if (typeof f !== 'number' || !Number.isFinite(f) || f < 0) invalid('LossThresholdSelector: factor must be a finite number >= 0');
    if (typeof t0 !== 'number' || !Number.isFinite(t0)) invalid('LossThresholdSelector: initialThreshold must be finite');
    this.factor = f;
    this.thr = t0;
  }
  get threshold(): number { return this.thr; }
  /** Samples offered and sent in the current epoch. */
  get stats(): { seen: number; sent: number } { return { seen: this.seen, sent: this.sent }; }
  /** true when the sample should be sent (loss > threshold); counts it for the next threshold. */
  shouldSend(loss: number): boolean {
    if (typeof loss !== 'number' || Number.isNaN(loss)) invalid('LossThresholdSelector: loss must be a number');
    this.seen++;
    if (!(loss > this.thr)) return false;
    this.sent++;
    this.sum += loss;
    return true;
  }
  /** Closes the epoch: the new threshold is factor × mean loss of the samples sent (unchanged if none was sent). */
  endEpoch(): number {
    if (this.sent > 0) this.thr = (this.factor * this.sum) / this.sent;
    this.sum = 0;
    this.sent = 0;
    this.seen = 0;
    return this.thr;
  }
}
