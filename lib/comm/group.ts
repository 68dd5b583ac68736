// Group: the collective operations, written once over a Transport (in-process shared memory or MPI).
// See docs/COLLECTIVES.md for the algorithms, the seed derivation and the exact arithmetic order.
import { binding } from '../binding';
import { _internal, compressorInternals, decompress, decompressAdd } from '../codecs';
import type { ExchangeSpec, Transport } from './transport';
import { chunkOffsets, checkTimeout, commError, deriveSeed, freshSeed, isFloat32Array } from './util';
import { mixingMatrix, type Topology } from './topology';
import { planFusion } from './fusion';

/** What a collective needs from a compressor (qsgd(...), topk(...), ... from gradzip). */
export interface CompressorLike {
  compress(x: Float32Array, opts?: { seed?: number | bigint; out?: Uint8Array }): Uint8Array;
  maxCompressedBytes(n: number): number;
}

export interface ErrorFeedbackOptions {
  alpha?: number;
  beta?: number;
  /** the residual's key; default: the tensor object itself (a WeakMap) */
  key?: string;
}

export interface AllreduceOptions {
  /** divide the sum by the group size (default false) */
  average?: boolean;
  /** compress with this compressor; absent or null: plain float32 sum */
  compressor?: CompressorLike | null;
  /** compressed algorithm: 'ring' (default: reduce-scatter with re-compression, then all-gather) or
   *  'allgather' (every rank decodes and sums every packet) */
  algorithm?: 'ring' | 'allgather';
  /** base seed (number or bigint); each compression uses deriveSeed(seed, rank, step). Default: fresh */
  seed?: number | bigint;
  /** error feedback per tensor: send Q(y + alpha*h), h <- beta*h + (y - Q(y + alpha*h)) at every compression site */
  errorFeedback?: boolean | ErrorFeedbackOptions;
  /** tensors with fewer elements go uncompressed (float32 sum); default 0 */
  minCompressSize?: number;
  /** fusion buffer capacity in bytes for allreduce(tensor[]) (default 64 MiB) */
  fusionBytes?: number;
  /** per-operation timeout (ms); default: the group's */
  timeoutMs?: number;
}

export interface GossipOptions {
  topology?: Topology;
  compressor?: CompressorLike | null;
  seed?: number | bigint;
  timeoutMs?: number;
}

export interface GroupStats {
  rank: number;
  size: number;
  transport: string;
  bytesSent: number;
  bytesReceived: number;
  ops: number;
}

const OP_ALLREDUCE = 1, OP_RING = 2, OP_AG = 3, OP_BCAST = 4, OP_BARRIER = 5, OP_GOSSIP = 6, OP_NEIGH = 7;
function tagOf(op: number, n: number): number {
  return (op * 0x01000193 + (n % 0x7fffffff) * 31) | 0;
}

function asCompressor(c: unknown, what: string): CompressorLike {
  const k = c as CompressorLike;
  if (!k || typeof k.compress !== 'function' || typeof k.maxCompressedBytes !== 'function') {
    throw commError('ERR_GRADZIP_INVALID_ARG', `${what}: compressor must be a gradzip compressor (qsgd(...), topk(...), ...)`);
  }
  return k;
}

/** An errorFeedback(...) wrapper from gradzip (it exposes `inner` and `options.alpha/beta`). */
function efWrapper(c: CompressorLike): { inner: CompressorLike; options: { alpha: number; beta: number } } | null {
  const w = c as unknown as { name?: string; inner?: CompressorLike; options?: { alpha?: number; beta?: number } };
  if (w.name === 'errorFeedback' && w.inner && typeof w.inner.compress === 'function' && w.options) {
    return { inner: w.inner, options: { alpha: w.options.alpha ?? 1, beta: w.options.beta ?? 1 } } as never;
  }
  return null;
}

function toSeed(seed: unknown, what: string): bigint {
  if (seed === undefined || seed === null) return freshSeed();
  if (typeof seed === 'bigint') return BigInt.asUintN(64, seed);
  if (typeof seed === 'number' && Number.isInteger(seed) && seed >= 0 && seed <= Number.MAX_SAFE_INTEGER) return BigInt(seed);
  throw commError('ERR_GRADZIP_INVALID_ARG', `${what}: seed must be a non-negative integer or a bigint`);
}

export class Group {
  readonly rank: number;
  readonly size: number;
  readonly transport: Transport;
  timeoutMs: number;
  private opsDone = 0;
  private tail: Promise<unknown> = Promise.resolve();
  private closed = false;
  private broken: { code: string; message: string } | null = null;
  private residuals = new WeakMap<object, Float32Array>();
  private residualsByKey = new Map<string, Float32Array>();
  private scratch: Float32Array = new Float32Array(0);
  private scratch2: Float32Array = new Float32Array(0);

  constructor(transport: Transport, opts: { timeoutMs?: number } = {}) {
    this.transport = transport;
    this.rank = transport.rank;
    this.size = transport.size;
    this.timeoutMs = checkTimeout(opts.timeoutMs, 'group') || 0;
  }

  /** Serializes operations (they run in call order, one at a time, like MPI collectives). */
  private enqueue<T>(name: string, timeoutMs: number | undefined, fn: (deadline: number) => Promise<T>): Promise<T> {
    if (this.closed) return Promise.reject(commError('ERR_GRADZIP_INVALID_ARG', `${name}: the group is closed`));
    const ms = timeoutMs === undefined ? this.timeoutMs : checkTimeout(timeoutMs, name);
    const run = async () => {
      if (this.broken) {
        throw commError(this.broken.code, `${name}: the group is unusable after an earlier failure (${this.broken.message})`);
      }
      const deadline = ms > 0 ? Date.now() + ms : Infinity;
      try {
        return await fn(deadline);
      } catch (e) {
        // after a lost peer or a timeout the ranks no longer agree on the protocol state: every later
        // operation fails at once (with the same code) instead of mixing up steps
        const code = (e as { code?: string }).code;
        if (code === 'ERR_GRADZIP_TIMEOUT' || code === 'ERR_GRADZIP_PEER_LOST') this.broken = { code, message: (e as Error).message };
        throw e;
      } finally {
        this.opsDone++;
      }
    };
    const p = this.tail.then(run, run);
    this.tail = p.catch(() => undefined);
    return p;
  }

  stats(): GroupStats {
    return {
      rank: this.rank,
      size: this.size,
      transport: this.transport.kind,
      bytesSent: this.transport.bytesSent,
      bytesReceived: this.transport.bytesReceived,
      ops: this.opsDone,
    };
  }

  // ---------------------------------------------------------------- allreduce
  /** In-place all-reduce of one tensor, or of many tensors through the fusion buffer. */
  allreduce(x: Float32Array | Float32Array[], opts: AllreduceOptions = {}): Promise<void> {
    const o = opts ?? {};
    if (Array.isArray(x)) return this.allreduceMany(x, o);
    if (!isFloat32Array(x)) {
      return Promise.reject(commError('ERR_GRADZIP_INVALID_ARG', 'allreduce: x must be a Float32Array (or an array of them)'));
    }
    let comp: CompressorLike | null = null;
    let seed = 0n;
    try {
      if (o.compressor) comp = asCompressor(o.compressor, 'allreduce');
      if (o.algorithm !== undefined && o.algorithm !== 'ring' && o.algorithm !== 'allgather') {
        throw commError('ERR_GRADZIP_INVALID_ARG', "allreduce: algorithm must be 'ring' or 'allgather'");
      }
      const min = o.minCompressSize ?? 0;
      if (typeof min !== 'number' || !(min >= 0)) throw commError('ERR_GRADZIP_INVALID_ARG', 'allreduce: minCompressSize must be >= 0');
      if (comp && x.length < min) comp = null;
      if (comp) seed = toSeed(o.seed, 'allreduce');
      if (o.errorFeedback && !comp) {
        // nothing to feed back on an exact float32 sum
      }
    } catch (e) {
      return Promise.reject(e);
    }
    return this.enqueue('allreduce', o.timeoutMs, async (deadline) => {
      if (!comp) {
        await this.transport.allreduceSum(x, deadline, 'allreduce');
      } else if ((o.algorithm ?? 'ring') === 'allgather' || this.size === 1) {
        // an errorFeedback(...) wrapper keeps its own residual of the whole tensor: used as is
        await this.allgatherCompressed(x, comp, seed, this.efState(x, o), deadline, !!o.average);
      } else {
        // ring: each rank compresses every chunk once per operation (P-1 partial sums and its own final
        // chunk), so an errorFeedback(...) wrapper is unwrapped: its inner compressor runs at every
        // compression site with a residual of the whole tensor kept here (keyed by the wrapper).
        const w = efWrapper(comp);
        if (w) {
          await this.ringCompressed(x, w.inner, seed, this.efState(comp as object, { errorFeedback: w.options }, x.length), deadline, !!o.average);
        } else {
          await this.ringCompressed(x, comp, seed, this.efState(x, o), deadline, !!o.average);
        }
      }
      if (o.average && this.size > 1 && !(comp && pow2(this.size))) divideInPlace(x, this.size);
    });
  }

  private async allreduceMany(xs: Float32Array[], o: AllreduceOptions): Promise<void> {
    for (const t of xs) {
      if (!isFloat32Array(t)) throw commError('ERR_GRADZIP_INVALID_ARG', 'allreduce: every tensor must be a Float32Array');
    }
    const plans = planFusion(xs.map((t) => t.length), {
      minCompressSize: o.compressor ? o.minCompressSize ?? 0 : Infinity,
      fusionBytes: o.fusionBytes ?? 64 * 1024 * 1024,
    });
    for (const plan of plans) {
      const fused = new Float32Array(plan.total);
      let off = 0;
      for (const i of plan.members) {
        fused.set(xs[i], off);
        off += xs[i].length;
      }
      const key = o.errorFeedback
        ? `${typeof o.errorFeedback === 'object' && o.errorFeedback.key ? o.errorFeedback.key : 'fusion'}:${plan.members.map((i) => xs[i].length).join(',')}:${plan.compressed}`
        : undefined;
      const ef = o.errorFeedback ? { ...(typeof o.errorFeedback === 'object' ? o.errorFeedback : {}), key } : undefined;
      await this.allreduce(fused, {
        ...o,
        compressor: plan.compressed ? o.compressor : null,
        minCompressSize: 0,
        errorFeedback: plan.compressed ? ef : undefined,
      });
      off = 0;
      for (const i of plan.members) {
        xs[i].set(fused.subarray(off, off + xs[i].length));
        off += xs[i].length;
      }
    }
  }

  private efState(x: object, o: AllreduceOptions, n = (x as Float32Array).length): { h: Float32Array; alpha: number; beta: number } | null {
    const ef = o.errorFeedback;
    if (!ef) return null;
    const eo: ErrorFeedbackOptions = typeof ef === 'object' ? ef : {};
    const alpha = eo.alpha ?? 1, beta = eo.beta ?? 1;
    if (!Number.isFinite(alpha) || !Number.isFinite(beta)) throw commError('ERR_GRADZIP_INVALID_ARG', 'allreduce: errorFeedback alpha and beta must be finite');
    let h = eo.key !== undefined ? this.residualsByKey.get(eo.key) : this.residuals.get(x);
    if (!h || h.length !== n) {
      h = new Float32Array(n);
      if (eo.key !== undefined) this.residualsByKey.set(eo.key, h);
      else this.residuals.set(x, h);
    }
    return { h, alpha, beta };
  }

  /** The residual (error-feedback memory) kept for a tensor or key, or undefined. A live view. */
  residual(keyOrTensor: string | object): Float32Array | undefined {
    return typeof keyOrTensor === 'string' ? this.residualsByKey.get(keyOrTensor) : this.residuals.get(keyOrTensor);
  }

  private tmp(n: number, which = 0): Float32Array {
    if (which === 0) {
      if (this.scratch.length < n) this.scratch = new Float32Array(Math.max(n, this.scratch.length * 2));
      return this.scratch.subarray(0, n);
    }
    if (this.scratch2.length < n) this.scratch2 = new Float32Array(Math.max(n, this.scratch2.length * 2));
    return this.scratch2.subarray(0, n);
  }

  /** Compresses y = x[a, b) into out (no copy: out is the transport's shared / registered buffer). With
   *  error feedback (ECQ-SGD): packet = Q(y + alpha*h), h <- beta*h + (y - decode(packet)). */
  private compressSite(
    comp: CompressorLike, x: Float32Array, a: number, b: number, seed: bigint, out: Uint8Array,
    ef: { h: Float32Array; alpha: number; beta: number } | null,
  ): number {
    const y = x.subarray(a, b);
    if (!ef) return comp.compress(y, { seed, out }).length;
    const n = b - a, h = ef.h.subarray(a, b);
    const { alpha, beta } = ef;
    const ci = compressorInternals(comp);
    if (ci && n > 0) {
      // one native pass (gz::ef_step): encode y + alpha*h, decode into scratch, update h
      const r = binding().efStep(ci.params(), y, h, this.tmp(n, 0), alpha, beta, _internal.readSeed(seed), out);
      return typeof r === 'number' ? r : r.length;
    }
    const v = this.tmp(n, 0), d = this.tmp(n, 1);
    for (let i = 0; i < n; i++) v[i] = y[i] + Math.fround(alpha * h[i]);
    const pkt = comp.compress(v, { seed, out });
    decompress(pkt, d);
    for (let i = 0; i < n; i++) h[i] = Math.fround(beta * h[i]) + Math.fround(y[i] - d[i]);
    return pkt.length;
  }

  private others(): number[] {
    const r: number[] = [];
    for (let j = 0; j < this.size; j++) if (j !== this.rank) r.push(j);
    return r;
  }

  /** allgather: every rank compresses its whole tensor once; every rank decodes all P packets and sums
   *  them in rank order 0 .. P-1 (x = dec(p0); x += dec(p1); ...), so all ranks get identical bits. */
  private async allgatherCompressed(
    x: Float32Array, comp: CompressorLike, seed: bigint,
    ef: { h: Float32Array; alpha: number; beta: number } | null, deadline: number, average: boolean,
  ): Promise<void> {
    const n = x.length, T = this.transport;
    const cap = comp.maxCompressedBytes(n);
    const spec: ExchangeSpec = {
      tag: tagOf(OP_AG, n), maxBytes: cap, all: true,
      write: (out) => this.compressSite(comp, x, 0, n, deriveSeed(seed, this.rank, 0), out, ef),
      to: this.others(), from: this.others(), maxRecv: () => cap,
    };
    const views = await T.exchange(spec, deadline, 'allreduce(allgather)');
    try {
      if (average && pow2(this.size) && this.size > 1) {
        // x = Σ_j dec(p_j) / P computed as Σ_j (dec(p_j) · 2^-k): scaling by a power of two commutes with
        // float rounding, so this equals the sum-then-divide (outside the subnormal range), in one pass
        x.fill(0);
        for (let j = 0; j < this.size; j++) decompressAdd(views[j]!, x, 1 / this.size);
      } else {
        decompress(views[0]!, x);
        for (let j = 1; j < this.size; j++) decompressAdd(views[j]!, x, 1);
      }
    } finally {
      T.release();
    }
  }

  /** ring: P-1 reduce-scatter hops (at hop t rank r compresses its partial sum of chunk (r-t) mod P and
   *  sends it to r+1; it decodes the packet of chunk (r-t-1) mod P from r-1 and adds it to its own
   *  values), then one all-gather in which the owner of each chunk ((r+1) mod P for rank r) sends it
   *  compressed once more, and every rank, the owner included, decodes that packet. */
  private async ringCompressed(
    x: Float32Array, comp: CompressorLike, seed: bigint,
    ef: { h: Float32Array; alpha: number; beta: number } | null, deadline: number, average: boolean,
  ): Promise<void> {
    const P = this.size, r = this.rank, n = x.length, T = this.transport;
    const off = chunkOffsets(n, P);
    const len = (c: number) => off[c + 1] - off[c];
    const next = (r + 1) % P, prev = (r + P - 1) % P;
    for (let t = 0; t < P - 1; t++) {
      const sc = (((r - t) % P) + P) % P;
      const rc = (((r - t - 1) % P) + P) % P;
      const views = await T.exchange({
        tag: tagOf(OP_RING, n + t), maxBytes: comp.maxCompressedBytes(len(sc)),
        write: (out) => this.compressSite(comp, x, off[sc], off[sc + 1], deriveSeed(seed, r, t), out, ef),
        to: [next], from: [prev], maxRecv: () => comp.maxCompressedBytes(len(rc)),
      }, deadline, 'allreduce(ring)');
      try {
        decompressAdd(views[prev]!, x.subarray(off[rc], off[rc + 1]), 1);
      } finally {
        T.release();
      }
    }
    const own = (r + 1) % P;
    const views = await T.exchange({
      tag: tagOf(OP_RING, n + P), maxBytes: comp.maxCompressedBytes(len(own)), all: true,
      write: (out) => this.compressSite(comp, x, off[own], off[own + 1], deriveSeed(seed, r, P - 1), out, ef),
      to: this.others(), from: this.others(), maxRecv: (j) => comp.maxCompressedBytes(len((j + 1) % P)),
    }, deadline, 'allreduce(ring)');
    try {
      const fold = average && pow2(P);
      for (let j = 0; j < P; j++) {
        const c = (j + 1) % P, dst = x.subarray(off[c], off[c + 1]);
        if (fold) {
          // dec(p) / P with P = 2^k: exactly dec(p) · 2^-k, added to zeros in the decoder's pass
          dst.fill(0);
          decompressAdd(views[j]!, dst, 1 / P);
        } else {
          decompress(views[j]!, dst);
        }
      }
    } finally {
      T.release();
    }
  }

  // ---------------------------------------------------------------- broadcast, barrier
  /** Copies root's values into every rank's x (same length on every rank). Any typed array. */
  broadcast(x: ArrayBufferView, root = 0, opts: { timeoutMs?: number } = {}): Promise<void> {
    if (!ArrayBuffer.isView(x)) return Promise.reject(commError('ERR_GRADZIP_INVALID_ARG', 'broadcast: x must be a typed array'));
    if (!Number.isInteger(root) || root < 0 || root >= this.size) {
      return Promise.reject(commError('ERR_GRADZIP_INVALID_ARG', `broadcast: root must be an integer rank in [0, ${this.size})`));
    }
    const bytes = new Uint8Array(x.buffer, x.byteOffset, x.byteLength);
    return this.enqueue('broadcast', opts?.timeoutMs, (deadline) => this.transport.broadcast(bytes, root, deadline, 'broadcast'));
  }

  barrier(opts: { timeoutMs?: number } = {}): Promise<void> {
    return this.enqueue('barrier', opts?.timeoutMs, (deadline) => this.transport.barrier(deadline, 'barrier'));
  }

  // ---------------------------------------------------------------- gossip
  /** One gossip mixing step in place, with W the topology's mixing matrix (validated).
   *  Uncompressed: x_i <- sum_j W_ij x_j (float32, j in increasing order).
   *  Compressed: every rank sends x̂_i = Q(x_i) to its neighbours and sets
   *    x_i <- x_i + sum_{j != i} W_ij (x̂_j - x̂_i)   (= x_i - (1 - W_ii) x̂_i + sum_{j != i} W_ij x̂_j),
   *  which keeps the average over ranks exactly (up to float rounding) for a doubly stochastic W, and
   *  equals the plain step when Q is exact. */
  gossip(x: Float32Array, opts: GossipOptions = {}): Promise<void> {
    if (!isFloat32Array(x)) return Promise.reject(commError('ERR_GRADZIP_INVALID_ARG', 'gossip: x must be a Float32Array'));
    let W: number[][];
    let comp: CompressorLike | null = null;
    let seed = 0n;
    try {
      W = mixingMatrix(opts?.topology ?? 'ring', this.size).W;
      if (opts?.compressor) {
        comp = asCompressor(opts.compressor, 'gossip');
        seed = toSeed(opts.seed, 'gossip');
      }
    } catch (e) {
      return Promise.reject(e);
    }
    const i = this.rank, n = x.length, T = this.transport;
    const nb: number[] = [];
    for (let j = 0; j < this.size; j++) if (j !== i && W[i][j] !== 0) nb.push(j);
    return this.enqueue('gossip', opts?.timeoutMs, async (deadline) => {
      if (comp) {
        const c = comp;
        const cap = c.maxCompressedBytes(n);
        const views = await T.exchange({
          tag: tagOf(OP_GOSSIP, n), maxBytes: cap,
          write: (out) => c.compress(x, { seed: deriveSeed(seed, i, 0), out }).length,
          to: nb, from: nb, maxRecv: () => cap,
        }, deadline, 'gossip');
        try {
          let off = 0;
          for (const j of nb) off += W[i][j];
          decompressAdd(views[i]!, x, -off);
          for (const j of nb) decompressAdd(views[j]!, x, W[i][j]);
        } finally {
          T.release();
        }
      } else {
        const views = await T.exchange({
          tag: tagOf(OP_GOSSIP, n), maxBytes: 4 * n,
          write: (out) => {
            new Uint8Array(out.buffer, out.byteOffset, 4 * n).set(new Uint8Array(x.buffer, x.byteOffset, 4 * n));
            return 4 * n;
          },
          to: nb, from: nb, maxRecv: () => 4 * n,
        }, deadline, 'gossip');
        try {
          const acc = this.tmp(n, 0);
          const wii = Math.fround(W[i][i]);
          for (let k = 0; k < n; k++) acc[k] = Math.fround(wii * x[k]);
          for (const j of nb) {
            const v = f32view(views[j]!, n);
            const w = Math.fround(W[i][j]);
            for (let k = 0; k < n; k++) acc[k] = acc[k] + Math.fround(w * v[k]);
          }
          x.set(acc);
        } finally {
          T.release();
        }
      }
    });
  }

  /** Low-level step used by D-Quantized-PR-SGD: every rank compresses `v` (seed derived from `seed`,
   *  rank, 0), publishes the packet to its neighbours under W, and `onPacket(j, packet)` is called for
   *  every neighbour j and for itself (j = rank), in increasing j. The packets are valid only inside
   *  the callback. */
  neighborExchange(
    v: Float32Array, opts: { topology?: Topology; compressor: CompressorLike; seed?: number | bigint; timeoutMs?: number },
    onPacket: (j: number, packet: Uint8Array, weight: number) => void,
  ): Promise<void> {
    let W: number[][];
    let comp: CompressorLike;
    let seed: bigint;
    try {
      W = mixingMatrix(opts.topology ?? 'ring', this.size).W;
      comp = asCompressor(opts.compressor, 'neighborExchange');
      seed = toSeed(opts.seed, 'neighborExchange');
    } catch (e) {
      return Promise.reject(e);
    }
    const i = this.rank, n = v.length, T = this.transport;
    const nb: number[] = [];
    for (let j = 0; j < this.size; j++) if (j !== i && W[i][j] !== 0) nb.push(j);
    return this.enqueue('neighborExchange', opts.timeoutMs, async (deadline) => {
      const cap = comp.maxCompressedBytes(n);
      const views = await T.exchange({
        tag: tagOf(OP_NEIGH, n), maxBytes: cap,
        write: (out) => comp.compress(v, { seed: deriveSeed(seed, i, 0), out }).length,
        to: nb, from: nb, maxRecv: () => cap,
      }, deadline, 'neighborExchange');
      try {
        for (let j = 0; j < this.size; j++) if (j === i || W[i][j] !== 0) onPacket(j, views[j]!, W[i][j]);
      } finally {
        T.release();
      }
    });
  }

  /** Ends the group (MPI: MPI_Finalize once every group is closed). Pending operations finish first. */
  async close(): Promise<void> {
    if (this.closed) return;
    const last = this.tail;
    this.closed = true;
    await last;
    await this.transport.close();
  }
}

function pow2(P: number): boolean {
  return (P & (P - 1)) === 0;
}

function divideInPlace(x: Float32Array, P: number): void {
  const n = x.length;
  for (let i = 0; i < n; i++) x[i] = x[i] / P;
}

function f32view(u8: Uint8Array, n: number): Float32Array {
  if (u8.byteOffset % 4 === 0) return new Float32Array(u8.buffer, u8.byteOffset, n);
  return new Float32Array(u8.slice(0, 4 * n).buffer);
}

export { OP_ALLREDUCE, OP_BCAST, OP_BARRIER };
