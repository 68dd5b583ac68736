// errorFeedback(inner, {alpha, beta}): ECQ-SGD error feedback. Sends Q(g + alpha*h), then
// h <- beta*h + (g - decode(packet)). The residual h lives in this object (host memory), sized on first use.
// One native call per step (gz::ef_step): encode, decode into a scratch buffer and the residual update.
import { binding, type Seed } from './binding';
import { _internal, compressorInternals, type CompressOptions, type Compressor } from './codecs';
import { convert, GradzipError, invalid } from './errors';

export interface ErrorFeedbackOptions {
  /** Weight of the residual added before compressing (default 1). */
  alpha?: number;
  /** Decay of the residual (default 1). */
  beta?: number;
}

export interface ErrorFeedback extends Compressor<{ alpha: number; beta: number }> {
  readonly inner: Compressor;
  /** Forgets the residual (and its size). */
  reset(): void;
  /** A copy of h (empty before the first step), e.g. for checkpoints. */
  residual(): Float32Array;
  /** Replaces h with a copy of `h` (its length becomes the gradient size; an empty array resets). */
  setResidual(h: Float32Array): void;
}

function finite(name: string, v: unknown, def: number): number {
  if (v === undefined) return def;
  if (typeof v !== 'number' || !Number.isFinite(v)) invalid(`errorFeedback: option '${name}' must be a finite number, got ${_internal.describe(v)}`);
  return v;
}

export function errorFeedback(inner: Compressor, options?: ErrorFeedbackOptions): ErrorFeedback {
  const ci = compressorInternals(inner);
  if (ci === undefined) invalid('errorFeedback: inner must be a compressor made by a gradzip factory (qsgd, topk, ...)');
  if (options !== undefined && (options === null || typeof options !== 'object' || Array.isArray(options)))
    invalid('errorFeedback: options must be a plain object');
  const o = (options ?? {}) as Record<string, unknown>;
  for (const k of Object.keys(o)) if (k !== 'alpha' && k !== 'beta') invalid(`errorFeedback: unknown option '${k}' (expected alpha, beta)`);
  const alpha = finite('alpha', o.alpha, 1);
  const beta = finite('beta', o.beta, 1);

  let h: Float32Array | null = null;
  let scratch: Float32Array | null = null;
  let pending = 0;
  let tail: Promise<unknown> = Promise.resolve();

  const size = (n: number): void => {
    if (h === null) {
      h = new Float32Array(n);
      scratch = new Float32Array(n);
    } else if (h.length !== n) {
      invalid(`errorFeedback: the gradient has ${n} elements but the residual has ${h.length}; call reset() to change size`);
    }
  };
  const idle = (what: string): void => {
    if (pending !== 0) invalid(`errorFeedback: ${what} while a compressAsync() is pending (await it first)`);
  };
  const call = (g: unknown, opts: CompressOptions | undefined, what: string): { seed: Seed; out: Uint8Array | undefined } => {
    if (!(g instanceof Float32Array)) _internal.notFloat32(`errorFeedback.${what}: input`, g);
    if (opts === undefined) return { seed: undefined, out: undefined };
    _internal.checkCall(opts);
    return { seed: _internal.readSeed(opts.seed), out: opts.out };
  };

  const ef: ErrorFeedback = {
    name: 'errorFeedback',
    options: Object.freeze({ alpha, beta }),
    inner,
    compress(g: Float32Array, opts?: CompressOptions): Uint8Array {
      idle('compress()');
      const { seed, out } = call(g, opts, 'compress');
      size(g.length);
      let r: Uint8Array | number;
      try {
        r = binding().efStep(ci.params(), g, h as Float32Array, scratch as Float32Array, alpha, beta, seed, out);
      } catch (e) { throw convert(e); }
      return typeof r === 'number' ? (out as Uint8Array).subarray(0, r) : r;
    },
    // Calls are queued: each step starts when the previous one has settled, so h is never shared.
    compressAsync(g: Float32Array, opts?: CompressOptions): Promise<Uint8Array> {
      let args: { seed: Seed; out: Uint8Array | undefined };
      try { args = call(g, opts, 'compressAsync'); } catch (e) { return Promise.reject(convert(e)); }
      const { seed, out } = args;
      const step = (): Promise<Uint8Array | number> => {
        size(g.length);
        return binding().efStepAsync(ci.params(), g, h as Float32Array, scratch as Float32Array, alpha, beta, seed, out);
      };
      pending++;
      const p = tail.then(step);
      tail = p.then(() => { pending--; }, () => { pending--; });
      return p.then((r) => (typeof r === 'number' ? (out as Uint8Array).subarray(0, r) : r), (e) => { throw convert(e); });
    },
    maxCompressedBytes(n: number): number {
      return inner.maxCompressedBytes(n);
    },
    reset(): void {
      idle('reset()');
      h = null;
      scratch = null;
    },
    residual(): Float32Array {
      idle('residual()');
      return h === null ? new Float32Array(0) : h.slice();
    },
    setResidual(v: Float32Array): void {
      idle('setResidual()');
      if (!(v instanceof Float32Array)) invalid('errorFeedback.setResidual: h must be a Float32Array');
      if (v.length === 0) { h = null; scratch = null; return; }
      h = v.slice();
      scratch = new Float32Array(v.length);
    },
  };
  return Object.freeze(ef);
}

export { GradzipError };
